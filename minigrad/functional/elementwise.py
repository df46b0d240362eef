"""Elementwise functions: exp, log, sqrt, abs, tanh, sigmoid, relu, softplus, clip, maximum,
minimum, where."""

import numpy as np

from .. import functional as F
from ..autograd import Function
from ._util import sum_to

__all__ = [
    "exp",
    "log",
    "sqrt",
    "abs",
    "tanh",
    "sigmoid",
    "relu",
    "softplus",
    "clip",
    "clamp",
    "maximum",
    "minimum",
    "where",
    "stable_sigmoid",
]


def stable_sigmoid(x):
    """σ(x) = 1 / (1 + exp(-x)) without overflow: exp is only taken of -|x|."""
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return y.astype(x.dtype, copy=False) if x.dtype.kind == "f" else y  # ints give floats, as exp


class Exp(Function):
    def forward(self, a):
        y = np.exp(a)
        self.saved = y
        return y

    def backward(self, g):
        return (g * self.saved,)

    def backward_graph(self, g):
        (a,) = self.inputs  # the single input of a recorded one-input op is a Tensor
        return (g * F.exp(a),)


def exp(a):
    """y = exp(a);  da = dy * y"""
    return Exp()(a)


class Log(Function):
    def forward(self, a):
        self.saved = a
        return np.log(a)

    def backward(self, g):
        return (g / self.saved,)

    def backward_graph(self, g):
        return (g / self.inputs[0],)


def log(a):
    """y = log(a);  da = dy / a"""
    return Log()(a)


class Sqrt(Function):
    def forward(self, a):
        y = np.sqrt(a)
        self.saved = y
        return y

    def backward(self, g):
        return (g / (2 * self.saved),)

    def backward_graph(self, g):
        return (g / (2 * F.sqrt(self.inputs[0])),)


def sqrt(a):
    """y = sqrt(a);  da = dy / (2 y)"""
    return Sqrt()(a)


class Abs(Function):
    saves_inputs = False  # keeps sign(a), which is what backward reads

    def forward(self, a):
        self.saved = np.sign(a)
        return np.abs(a)

    def backward(self, g):
        return (g * self.saved,)

    def backward_graph(self, g):
        return (g * self.saved,)  # sign(a) is piecewise constant: no second-order term


def abs(a):
    """y = |a|;  da = dy * sign(a)  (0 at a = 0, as PyTorch)"""
    return Abs()(a)


class Tanh(Function):
    def forward(self, a):
        y = np.tanh(a)
        self.saved = y
        return y

    def backward(self, g):
        y = self.saved
        return (g * (1 - y * y),)

    def backward_graph(self, g):
        y = F.tanh(self.inputs[0])
        return (g * (1 - y * y),)


def tanh(a):
    """y = tanh(a);  da = dy * (1 - y**2)"""
    return Tanh()(a)


class Sigmoid(Function):
    def forward(self, a):
        y = stable_sigmoid(a)
        self.saved = y
        return y

    def backward(self, g):
        y = self.saved
        return (g * y * (1 - y),)

    def backward_graph(self, g):
        y = F.sigmoid(self.inputs[0])
        return (g * y * (1 - y),)


def sigmoid(a):
    """y = 1 / (1 + exp(-a));  da = dy * y * (1 - y)"""
    return Sigmoid()(a)


class ReLU(Function):
    def forward(self, a):
        y = np.maximum(a, 0)
        self.saved = y
        return y

    def backward(self, g):
        return (g * (self.saved > 0),)

    def backward_graph(self, g):
        return (g * (self.saved > 0),)  # a 0/1 mask: no second-order term


def relu(a):
    """y = max(a, 0);  da = dy * (y > 0)"""
    return ReLU()(a)


class Softplus(Function):
    def forward(self, a):
        self.saved = a
        y = np.logaddexp(0, a)
        return y.astype(a.dtype, copy=False) if a.dtype.kind == "f" else y

    def backward(self, g):
        return (g * stable_sigmoid(self.saved),)

    def backward_graph(self, g):
        return (g * F.sigmoid(self.inputs[0]),)


def softplus(a):
    """y = log(1 + exp(a));  da = dy * sigmoid(a)"""
    return Softplus()(a)


class Clip(Function):
    saves_inputs = False  # keeps the mask, which is what backward reads

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, a):
        lo, hi = self.lo, self.hi
        mask = np.ones(a.shape, dtype=bool)
        if lo is not None:
            mask &= a >= lo
        if hi is not None:
            mask &= a <= hi
        self.saved = mask
        return np.clip(a, lo, hi).astype(a.dtype, copy=False)

    def backward(self, g):
        return (g * self.saved,)

    backward_graph = backward  # a constant mask: no second-order term


def clip(a, lo=None, hi=None):
    """y = min(max(a, lo), hi);  da = dy where lo <= a <= hi, else 0"""
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip needs lo <= hi, got lo={lo}, hi={hi}")
    return Clip(lo, hi)(a)


clamp = clip


class _Extremum(Function):
    """max or min of two inputs elementwise (``pick``); the input that ``wins`` gets dy, ties
    share it half and half, as PyTorch does."""

    pick: np.ufunc
    wins: np.ufunc

    def forward(self, a, b):
        self.saved = (a, b)
        return self.pick(a, b)

    def backward(self, g):
        a, b = self.saved
        wa = self.wins(a, b) + 0.5 * (a == b)
        na, nb = self.needs_input_grad
        return (
            sum_to(g * wa.astype(g.dtype), a.shape) if na else None,
            sum_to(g * (1 - wa).astype(g.dtype), b.shape) if nb else None,
        )

    backward_graph = backward  # constant weights: no second-order term


class Maximum(_Extremum):
    pick = np.maximum
    wins = np.greater


def maximum(a, b):
    """y = max(a, b) elementwise;  the larger input gets dy (ties: half each)"""
    return Maximum()(a, b)


class Minimum(_Extremum):
    pick = np.minimum
    wins = np.less


def minimum(a, b):
    """y = min(a, b) elementwise;  the smaller input gets dy (ties: half each)"""
    return Minimum()(a, b)


class Where(Function):
    saves_inputs = False

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        self.saved = (a.shape, b.shape)
        return np.where(self.cond, a, b)

    def backward(self, g):
        sa, sb = self.saved
        na, nb = self.needs_input_grad
        zero = np.zeros((), dtype=g.dtype)
        return (
            sum_to(np.where(self.cond, g, zero), sa) if na else None,
            sum_to(np.where(self.cond, zero, g), sb) if nb else None,
        )

    def backward_graph(self, g):
        sa, sb = self.saved
        na, nb = self.needs_input_grad
        return (
            sum_to(Where(self.cond)(g, 0.0), sa) if na else None,
            sum_to(Where(self.cond)(0.0, g), sb) if nb else None,
        )


def where(cond, a, b):
    """y = a where cond else b;  da = dy where cond, db = dy elsewhere"""
    cond = np.asarray(getattr(cond, "data", cond))
    if cond.dtype != np.bool_:
        raise TypeError(f"where() condition must be boolean, got dtype {cond.dtype}")
    return Where(cond)(a, b)
