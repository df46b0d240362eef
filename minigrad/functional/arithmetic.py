"""Arithmetic: + - * / ** @, the fused linear layer, and dtype casts."""

import numpy as np

from .. import functional as F
from .. import kernels
from ..autograd import Function
from ._util import sum_to

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "matmul", "linear", "cast"]


class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.saved = (a.shape, b.shape)
        return a + b

    def backward(self, g):
        sa, sb = self.saved
        na, nb = self.needs_input_grad
        return (sum_to(g, sa) if na else None), (sum_to(g, sb) if nb else None)

    backward_graph = backward  # sum_to is written with methods a Tensor has too


def add(a, b):
    """y = a + b;  da = dy, db = dy (each summed back to its input's shape)"""
    return Add()(a, b)


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.saved = (a.shape, b.shape)
        return a - b

    def backward(self, g):
        sa, sb = self.saved
        na, nb = self.needs_input_grad
        return (sum_to(g, sa) if na else None), (-sum_to(g, sb) if nb else None)

    backward_graph = backward


def sub(a, b):
    """y = a - b;  da = dy, db = -dy"""
    return Sub()(a, b)


class Mul(Function):
    def forward(self, a, b):
        self.saved = (a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        na, nb = self.needs_input_grad
        return (sum_to(g * b, a.shape) if na else None, sum_to(g * a, b.shape) if nb else None)

    def backward_graph(self, g):
        a, b = self.input_tensors(*self.saved)
        na, nb = self.needs_input_grad
        return (sum_to(g * b, a.shape) if na else None, sum_to(g * a, b.shape) if nb else None)


def mul(a, b):
    """y = a * b;  da = dy * b, db = dy * a"""
    return Mul()(a, b)


class Div(Function):
    def forward(self, a, b):
        y = a / b
        self.saved = (a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        na, nb = self.needs_input_grad
        ga = g / b
        return (sum_to(ga, a.shape) if na else None, sum_to(-ga * y, b.shape) if nb else None)

    def backward_graph(self, g):
        a, b = self.input_tensors(*self.saved[:2])
        na, nb = self.needs_input_grad
        ga = g / b
        return (sum_to(ga, a.shape) if na else None, sum_to(-ga * (a / b), b.shape) if nb else None)


def div(a, b):
    """y = a / b;  da = dy / b, db = -dy * y / b"""
    return Div()(a, b)


class Neg(Function):
    saves_inputs = False

    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)

    backward_graph = backward


def neg(a):
    """y = -a;  da = -dy"""
    return Neg()(a)


class Pow(Function):
    def forward(self, a, b):
        y = a**b
        self.saved = (a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            with np.errstate(divide="ignore", invalid="ignore"):
                da = b * a ** (b - 1)
            ga = sum_to(g * np.where(b == 0, 0, da), a.shape)  # x**0 is constant, also at x = 0
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                loga = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            gb = sum_to(g * y * loga, b.shape)
        return ga, gb

    def backward_graph(self, g):
        a_arr, b_arr, _ = self.saved
        a, b = self.input_tensors(a_arr, b_arr)
        na, nb = self.needs_input_grad
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if na:
                # b * a**(b-1) is 0 at b = 0 except at a = 0 (0 * inf): only there is it set,
                # so that the derivative of da with respect to b (1/a at b = 0) still flows.
                da = F.where((b_arr == 0) & (a_arr == 0), 0.0, b * a ** (b - 1))
                ga = sum_to(g * da, a.shape)
            if nb:
                pos = a_arr > 0
                loga = F.where(pos, F.log(F.where(pos, a, 1.0)), 0.0)
                gb = sum_to(g * a**b * loga, b.shape)
        return ga, gb


def pow(a, b):
    """y = a ** b;  da = dy * b * a**(b-1), db = dy * y * log(a)  (a > 0)"""
    return Pow()(a, b)


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul needs tensors of at least 1 dimension, got shapes {a.shape} and {b.shape}"
            )
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape} "
                f"(inner dimensions {ka} and {kb} differ)"
            )
        self.saved = (a, b)
        return kernels.matmul(a, b)

    def backward(self, g):
        a, b = self.saved
        return _matmul_grads(g, a, b, self.needs_input_grad, kernels.matmul, np.swapaxes)

    def backward_graph(self, g):
        a, b = self.input_tensors(*self.saved)
        return _matmul_grads(g, a, b, self.needs_input_grad, F.matmul, F.swapaxes)


def _matmul_grads(g, a, b, needs, matmul, swapaxes):
    """(da, db) = (g @ b^T, a^T @ g), each summed to its input's shape, None where ``needs``
    says no; a 1-D operand takes part as a matrix (a as one row, b as one column), as in the
    forward. Written with methods arrays and Tensors share, so ``matmul``/``swapaxes`` are
    kernels.matmul/np.swapaxes for ``backward`` and F.matmul/F.swapaxes for ``backward_graph``."""
    a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
    b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
    if b.ndim == 1:  # first: for 1-D @ 1-D, g is 0-d and gets its column axis here
        g = g.reshape(g.shape + (1,))
    if a.ndim == 1:
        g = g.reshape(g.shape[:-1] + (1,) + g.shape[-1:])
    na, nb = needs
    da = db = None
    if na:
        da = sum_to(matmul(g, swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
    if nb:
        db = sum_to(matmul(swapaxes(a2, -1, -2), g), b2.shape).reshape(b.shape)
    return da, db


def matmul(a, b):
    """y = a @ b (NumPy rules: 1-D, 2-D, batched; float products on the kernels' GEMM and
    threads: kernels.matmul);  da = dy @ b^T, db = a^T @ dy"""
    return MatMul()(a, b)


class Linear(Function):
    """The fused kernel ``kernels.linear_forward``: one GEMM plus bias, on any leading shape."""

    fresh_grads = True  # dw, db (and dx) are new arrays from the kernel
    takes_grad_out = True  # dw, db can be written into destinations (autograd.grad_out)

    def forward(self, x, w, b=None):
        if w.ndim != 2:
            raise ValueError(
                f"linear weight must be 2-D (out_features, in_features), got shape {w.shape}"
            )
        if x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"linear input must have last dimension {w.shape[1]} (in_features), "
                f"got shape {x.shape}"
            )
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear bias must have shape ({w.shape[0]},), got {b.shape}")
        lead = x.shape[:-1]
        x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        w = np.ascontiguousarray(w)
        if x2.shape[0] == 0:
            y = np.zeros((0, w.shape[0]), dtype=np.result_type(x, w))
        else:
            y = kernels.linear_forward(x2, w, b)
        self.saved = (x2, w, lead)
        return y.reshape(lead + (w.shape[0],))

    def backward(self, g):
        x2, w, lead = self.saved
        g2 = np.ascontiguousarray(g.reshape(-1, w.shape[0]))
        has_bias = len(self.needs_input_grad) > 2
        need_dx = self.needs_input_grad[0]
        dx, dw, db = kernels.linear_backward(
            g2, x2, w, has_bias, need_dx=need_dx, **self.grad_out_args((1, 2))
        )
        dx = dx.reshape(lead + (w.shape[1],)) if need_dx else None
        return (dx, dw) + ((db,) if has_bias else ())

    def backward_graph(self, g):
        x2, w_arr, lead = self.saved
        x, w = self.input_tensors(x2.reshape(lead + (x2.shape[1],)), w_arr)[:2]
        g2 = g.reshape((-1, w.shape[0]))
        need = self.needs_input_grad
        dx = F.matmul(g, w) if need[0] else None
        dw = F.matmul(F.transpose(g2), x.reshape((-1, w.shape[1]))) if need[1] else None
        if len(need) > 2:
            return dx, dw, (g2.sum(axis=0) if need[2] else None)
        return dx, dw


def linear(x, weight, bias=None):
    """y = x @ W^T + b;  dx = dy @ W, dW = dy^T x, db = sum(dy)  (one GEMM each, BLAS kernel)"""
    if bias is None:
        return Linear()(x, weight)
    return Linear()(x, weight, bias)


class Cast(Function):
    saves_inputs = False

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, a):
        self.saved = a.dtype
        return a.astype(self.dtype, copy=True)

    def backward(self, g):
        return (g.astype(self.saved, copy=False),)

    def backward_graph(self, g):
        return (Cast(self.saved)(g),)


def cast(a, dtype):
    """y = a as dtype (a copy);  da = dy as a's dtype"""
    return Cast(dtype)(a)
