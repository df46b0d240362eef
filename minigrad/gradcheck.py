"""Numerical gradients by central differences: gradcheck() compares them with the tape's first
derivatives, gradgradcheck() with its second derivatives."""

import numpy as np

from . import autograd
from .autograd import enable_grad, no_grad
from .tensor import Tensor

__all__ = ["numerical_grad", "gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    flat = []
    for o in outs:  # nested tuples such as (ys, (h_n, c_n))
        if isinstance(o, (tuple, list)):
            flat.extend(o)
        else:
            flat.append(o)
    return [o for o in flat if isinstance(o, Tensor)]


def numerical_grad(f, x, eps=1e-6):
    """d f / d x by central differences: (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for each
    element i.  ``f`` takes no argument and returns a float; ``x`` (an ndarray) is perturbed in
    place and restored."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Check the tape's gradients of ``fn(*inputs)`` against central differences.

    Every input Tensor with requires_grad must be float64.  For each output o of fn a random
    weight w is drawn and the scalar L = sum(o * w) over all outputs is differentiated, so
    every element of every output's gradient path is exercised.  Returns True, or raises
    GradcheckError naming the input, the worst element's index, and the analytic and numeric
    values (returns False instead when raise_exception=False).
    """
    inputs = list(inputs)
    targets = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input requires grad")
    for t in targets:
        if t.dtype != np.float64:
            raise ValueError(
                f"gradcheck needs float64 inputs (finite differences in float32 are "
                f"too coarse), got {t.dtype}"
            )
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    weights = [rng.standard_normal(o.shape) for o in outs]

    def loss_value():
        with no_grad():
            return float(sum(np.sum(o.data * w) for o, w in zip(_outputs(fn, inputs), weights)))

    for t in targets:
        t.grad = None
    outs = _outputs(fn, inputs)
    total = None
    for o, w in zip(outs, weights):
        if not o.requires_grad:
            continue
        term = (o * Tensor(w, dtype=np.float64)).sum()
        total = term if total is None else total + term
    if total is not None:
        total.backward()
    for t in targets:
        analytic = t.grad if t.grad is not None else np.zeros_like(t.data)
        numeric = numerical_grad(loss_value, t.data, eps)
        err = np.abs(analytic - numeric)
        bound = atol + rtol * np.abs(numeric)
        if not np.all(err <= bound) or not np.all(np.isfinite(analytic)):
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(err - bound)), t.shape))
            pos = next(i for i, a in enumerate(inputs) if a is t)
            msg = (
                f"gradcheck failed for input {pos} "
                f"(shape {t.shape}) at index {idx}: analytic {float(analytic[idx])!r}, "
                f"numeric {float(numeric[idx])!r} (atol {atol}, rtol {rtol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def gradgradcheck(
    fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0
):
    """Check the tape's second derivatives of ``fn(*inputs)`` against central differences of
    its first derivatives (PyTorch's gradgradcheck, same default tolerances as gradcheck).

    The first derivative is the vector-Jacobian product ``v -> sum_o v_o . d o / d inputs``
    computed by ``minigrad.autograd.grad(..., create_graph=True)``; it is a function of the
    inputs and of the upstream gradients ``v`` (``grad_outputs``: one float64 Tensor per
    differentiable output; random, requiring grad, when None).  ``gradcheck`` then compares the
    tape's derivative of that function (a backward pass through the recorded backward pass)
    with central differences of it.  Every input Tensor with requires_grad must be float64.
    Returns True, or raises GradcheckError (returns False when raise_exception=False)."""
    inputs = list(inputs)
    targets = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not targets:
        raise ValueError("gradgradcheck: no input requires grad")
    outs = [o for o in _outputs(fn, inputs) if o.requires_grad]
    if not outs:
        raise ValueError("gradgradcheck: no output of fn requires grad")
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = [
            Tensor(rng.standard_normal(o.shape), requires_grad=True, dtype=np.float64) for o in outs
        ]
    else:
        grad_outputs = autograd._as_list(grad_outputs)
        if len(grad_outputs) != len(outs):
            raise ValueError(
                f"gradgradcheck: {len(grad_outputs)} grad_outputs for {len(outs)} "
                "differentiable output(s)"
            )
        grad_outputs = [
            g if isinstance(g, Tensor) else Tensor(g, dtype=np.float64) for g in grad_outputs
        ]
        for g, o in zip(grad_outputs, outs):
            if g.shape != o.shape:
                raise ValueError(
                    f"gradgradcheck: a grad_output of shape {g.shape} for an output "
                    f"of shape {o.shape}"
                )
    n = len(inputs)

    def first_derivative(*args):
        ins, gos = list(args[:n]), args[n:]
        with enable_grad():  # gradcheck evaluates under no_grad; this function needs the tape
            o = [t for t in _outputs(fn, ins) if t.requires_grad]
            grads = autograd.grad(
                o, [ins[i] for i in targets], list(gos), create_graph=True, allow_unused=True
            )
        return tuple(g for g in grads if g is not None)

    return gradcheck(
        first_derivative,
        inputs + grad_outputs,
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
        seed=seed,
    )
