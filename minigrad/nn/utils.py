"""Training utilities: gradient clipping and state detaching for truncated BPTT.

loss.backward()
minigrad.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
opt.step()

h = None
for chunk in chunks:                                  # truncated BPTT
    out, h = lstm(chunk, h)
    ...backward, step...
    h = minigrad.nn.utils.detach_state(h)             # keep the values, cut the tape
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .._validate import tensor_list
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "detach_state"]


def _params(parameters, fn):
    return tensor_list(parameters, f"{fn}() parameters")


def _real(fn, name, value):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{fn}() {name} must be a real number, got {value!r}")
    value = float(value)
    if not value >= 0.0:
        raise ValueError(f"{fn}() {name} must be >= 0, got {value!r}")
    return value


def _vector_norm(x, p):
    """The p-norm of ``x`` viewed as one vector (p = inf: max |x|; p = 0: count of nonzeros)."""
    x = x.ravel()
    if p == 2.0:
        return np.sqrt(np.dot(x, x)) if x.size else x.dtype.type(0)
    if x.size == 0:
        return x.dtype.type(0)
    if p == math.inf:
        return np.max(np.abs(x))
    if p == -math.inf:
        return np.min(np.abs(x))
    if p == 0.0:
        return x.dtype.type(np.count_nonzero(x))
    if p == 1.0:
        return np.sum(np.abs(x))
    return np.sum(np.abs(x) ** p) ** (1.0 / p)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their total ``norm_type``-norm is at most ``max_norm``.

    total = || (||g_1||, ||g_2||, ...) ||  (the norm of all gradients viewed as one vector);
    every gradient is multiplied in place by min(max_norm / (total + 1e-6), 1).
    Parameters without a gradient are ignored. Returns the total norm before clipping, as a
    0-d Tensor in the gradients' dtype, as PyTorch does (``float(total)`` / ``total.item()``
    give a Python float). ``error_if_nonfinite=True`` raises RuntimeError when the total is nan or
    inf; otherwise a nan total makes every gradient nan, as in PyTorch.
    """
    params = _params(parameters, "clip_grad_norm_")
    max_norm = _real("clip_grad_norm_", "max_norm", max_norm)
    if isinstance(norm_type, str) and norm_type.lower() in ("inf", "-inf"):
        norm_type = float(norm_type)
    if isinstance(norm_type, bool) or not isinstance(norm_type, Real) or math.isnan(norm_type):
        raise ValueError(
            f"clip_grad_norm_() norm_type must be a number or 'inf', got {norm_type!r}"
        )
    norm_type = float(norm_type)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(np.zeros((), dtype=np.float32))
    dtype = np.result_type(*grads)
    norms = np.array([_vector_norm(g, norm_type) for g in grads], dtype=dtype)
    total = _vector_norm(norms, norm_type)
    if not np.isfinite(total):
        if error_if_nonfinite:
            raise RuntimeError(
                f"the total norm of order {norm_type} of the gradients is {total}, which cannot "
                "be clipped; pass error_if_nonfinite=False to scale the gradients by it anyway"
            )
    coef = dtype.type(max_norm) / (total + dtype.type(1e-6))
    if not coef >= 1.0:  # clamp at 1 (a factor of 1 changes nothing); nan scales too, as torch
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(np.asarray(total, dtype=dtype))


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient in place to [-clip_value, clip_value]."""
    params = _params(parameters, "clip_grad_value_")
    c = _real("clip_grad_value_", "clip_value", clip_value)
    for p in params:
        g = p.grad
        if g is not None:
            np.clip(g, -c, c, out=g)


def detach_state(state):
    """The same structure with every Tensor detached (for truncated BPTT between chunks).

    Accepts a Tensor, None, or tuples/lists/dicts of these (nested: an LSTM's ``(h, c)``, a
    list of per-layer states); the values are shared, not copied, and nothing in the result
    requires grad, so the next chunk's backward stops here.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple):
        items = [detach_state(s) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if isinstance(state, list):
        return [detach_state(s) for s in state]
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    raise TypeError(
        "detach_state() expects a Tensor, None, or a tuple/list/dict of those, got "
        f"{type(state).__name__}"
    )
