"""Numerical gradients by central differences, and gradcheck() that compares them with the tape."""
import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["numerical_grad", "gradcheck", "GradcheckError"]


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
            raise ValueError(f"gradcheck needs float64 inputs (finite differences in float32 are "
                             f"too coarse), got {t.dtype}")
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
            msg = (f"gradcheck failed for input {pos} "
                   f"(shape {t.shape}) at index {idx}: analytic {float(analytic[idx])!r}, "
                   f"numeric {float(numeric[idx])!r} (atol {atol}, rtol {rtol})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
