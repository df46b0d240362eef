"""NumPy twin of ``minigrad/_gemm.pyx``: the linear kernels and matmul (``docs/kernels.md``).

Shapes: x (N, I), w (O, I), b (O,) or None; the checks and their messages are those of the
compiled kernels (x fixes N and I and the dtype, w fixes O).
"""

import numpy as np

from ._checks_ref import _check_array, _check_shape, _check_sizes, _grads_out, _write_out

__all__ = ["linear_forward", "linear_backward", "matmul"]


def _check_linear(x, w):
    """x (N, I) and w (O, I), one dtype; returns N, I, O and the dtype."""
    N, I = _check_sizes("x", x, "NI")
    _check_array("w", w, x.dtype)
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] != I:
        raise ValueError(f"w must have shape (O, {I}) with O > 0, got {w.shape}")
    return N, I, w.shape[0], x.dtype


def linear_forward(x, w, b):
    """y = x W^T + b"""
    N, I, O, dtype = _check_linear(x, w)
    if b is not None:
        _check_shape("b", b, (O,), dtype)
    y = x @ w.T
    if b is not None:
        y += b
    return y


def linear_backward(dy, x, w, has_bias, need_dx=True, out=None, scale=1.0):
    """dx = dy W (None when need_dx is false);  dW = dy^T x;  db = sum_rows(dy) (None without
    bias).  out: None, or (dw, db) with entries None or arrays that receive scale times that
    gradient (returned in its place)."""
    N, I, O, dtype = _check_linear(x, w)
    _check_shape("dy", dy, (N, O), dtype)
    shapes = ((O, I), (O,) if has_bias else None)
    out, scale = _grads_out(out, ("dw", "db"), shapes, dtype, (dy, x, w), scale)
    dx = dy @ w if need_dx else None
    dw = dy.T @ x
    db = dy.sum(axis=0) if has_bias else None
    dw, db = _write_out((dw, db), out, scale)
    return dx, dw, db


def matmul(a, b):
    """a @ b by np.matmul's rules (1-D operands, broadcast batch axes); the compiled kernel runs
    the products of float32 or float64 arrays of one dtype on the kernels' own GEMM and threads
    and gives everything else to np.matmul, as this does."""
    return np.matmul(a, b)
