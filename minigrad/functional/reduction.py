"""Reductions and normalizers: sum, mean, max, min, var, logsumexp, softmax, log_softmax."""

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..autograd import Function
from ._util import expand_reduced, normalize_axis

__all__ = ["sum", "mean", "max", "min", "var", "logsumexp", "softmax", "log_softmax"]


class Sum(Function):
    saves_inputs = False

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        self.saved = a.shape
        return np.sum(a, axis=self.axis, keepdims=self.keepdims)

    def backward(self, g):
        shape = self.saved
        return (np.broadcast_to(expand_reduced(g, shape, self.axis, self.keepdims), shape).copy(),)

    def backward_graph(self, g):
        shape = self.saved
        return (_expand(expand_reduced(g, shape, self.axis, self.keepdims), shape),)


def sum(a, axis=None, keepdims=False):
    """y = sum of a over axis;  da = dy broadcast back"""
    axis = _check_axis(a, axis)
    return Sum(axis, keepdims)(a)


class Mean(Function):
    saves_inputs = False

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        y = np.mean(a, axis=self.axis, keepdims=self.keepdims)
        self.saved = (
            a.shape,
            a.size // (y.size or 1) if a.size else 1,
        )  # not max(): shadowed below
        return y.astype(a.dtype, copy=False) if a.dtype.kind == "f" else y  # ints/bools: float

    def backward(self, g):
        shape, n = self.saved
        g = expand_reduced(g, shape, self.axis, self.keepdims) / n
        return (np.broadcast_to(g, shape).copy(),)

    def backward_graph(self, g):
        shape, n = self.saved
        return (_expand(expand_reduced(g, shape, self.axis, self.keepdims) / n, shape),)


def mean(a, axis=None, keepdims=False):
    """y = mean of a over axis;  da = dy / n broadcast back"""
    axis = _check_axis(a, axis)
    return Mean(axis, keepdims)(a)


class _Extreme(Function):
    """max / min over axis; the gradient is shared evenly among tied extremes (like amax)."""

    op: ClassVar[Callable[..., Any] | None] = None

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        if a.size == 0:
            raise ValueError(
                f"{type(self).__name__.lower()}() of an empty tensor (shape {a.shape})"
            )
        y = self.op(a, axis=self.axis, keepdims=self.keepdims)
        self.saved = (a, y)
        return y

    def backward(self, g):
        a, y = self.saved
        yk = expand_reduced(y, a.shape, self.axis, self.keepdims)
        mask = (a == yk).astype(g.dtype)
        count = mask.sum(axis=self.axis, keepdims=True)
        gk = expand_reduced(g, a.shape, self.axis, self.keepdims)
        return (mask * (gk / count),)

    def backward_graph(self, g):
        a, y = self.saved
        yk = expand_reduced(y, a.shape, self.axis, self.keepdims)
        mask = (a == yk).astype(g.dtype)
        weight = mask / mask.sum(axis=self.axis, keepdims=True)  # constant: no second order
        return (expand_reduced(g, a.shape, self.axis, self.keepdims) * weight,)


class Max(_Extreme):
    op = staticmethod(np.max)


class Min(_Extreme):
    op = staticmethod(np.min)


def max(a, axis=None, keepdims=False):
    """y = max of a over axis;  da = dy at the maxima (split evenly between ties)"""
    axis = _check_axis(a, axis)
    return Max(axis, keepdims)(a)


def min(a, axis=None, keepdims=False):
    """y = min of a over axis;  da = dy at the minima (split evenly between ties)"""
    axis = _check_axis(a, axis)
    return Min(axis, keepdims)(a)


class Var(Function):
    def __init__(self, axis, keepdims, ddof):
        self.axis, self.keepdims, self.ddof = axis, keepdims, ddof

    def forward(self, a):
        axes = normalize_axis(self.axis, a.ndim)
        n = int(np.prod([a.shape[i] for i in axes])) if axes else 1
        if n - self.ddof <= 0:
            raise ValueError(
                f"var() over {n} element(s) with ddof={self.ddof}: need more than ddof elements"
            )
        centered = a - a.mean(axis=self.axis, keepdims=True)
        self.saved = (centered, n)
        return (
            np.sum(centered * centered, axis=self.axis, keepdims=self.keepdims) / (n - self.ddof)
        ).astype(a.dtype if a.dtype.kind == "f" else np.float64, copy=False)

    def backward(self, g):
        centered, n = self.saved
        gk = expand_reduced(g, centered.shape, self.axis, self.keepdims)
        return (gk * (2 / (n - self.ddof)) * centered,)

    def backward_graph(self, g):
        _, n = self.saved
        a = self.inputs[0]
        centered = a - a.mean(axis=self.axis, keepdims=True)
        gk = expand_reduced(g, a.shape, self.axis, self.keepdims)
        return (gk * (2 / (n - self.ddof)) * centered,)


def var(a, axis=None, keepdims=False, ddof=0):
    """y = sum((a - mean)^2) / (n - ddof);  da = dy * 2 (a - mean) / (n - ddof)

    NumPy's convention (ddof=0, population variance); PyTorch's default is ddof=1."""
    axis = _check_axis(a, axis)
    return Var(axis, keepdims, ddof)(a)


class LogSumExp(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        m = np.max(a, axis=self.axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        e = np.exp(a - m)
        s = np.sum(e, axis=self.axis, keepdims=True)
        y = np.log(s) + m
        self.saved = (e / s,)
        return y if self.keepdims else np.squeeze(y, axis=self.axis)

    def backward(self, g):
        (p,) = self.saved
        return (p * expand_reduced(g, p.shape, self.axis, self.keepdims),)

    def backward_graph(self, g):
        a = self.inputs[0]
        p = Softmax(self.axis)(a)
        return (p * expand_reduced(g, a.shape, self.axis, self.keepdims),)


def logsumexp(a, axis=None, keepdims=False):
    """y = log(sum(exp(a))) over axis, stably;  da = dy * softmax(a)"""
    axis = _check_axis(a, axis)
    return LogSumExp(axis, keepdims)(a)


class Softmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        e = np.exp(a - np.max(a, axis=self.axis, keepdims=True))
        y = e / np.sum(e, axis=self.axis, keepdims=True)
        self.saved = y
        return y

    def backward(self, g):
        y = self.saved
        return (y * (g - np.sum(g * y, axis=self.axis, keepdims=True)),)

    def backward_graph(self, g):
        y = Softmax(self.axis)(self.inputs[0])
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)


def _axis_or_dim(axis, dim, who):
    """PyTorch spells the axis ``dim``: accept either, not two different ones."""
    if dim is None:
        return axis
    if axis not in (-1, dim):
        raise ValueError(f"{who}: give axis or dim, not both (got axis={axis}, dim={dim})")
    return dim


def softmax(a, axis=-1, dim=None):
    """y = exp(a) / sum(exp(a)) along axis (``dim=`` as in PyTorch);
    da = y * (dy - sum(dy * y))"""
    axis = _check_axis(a, _axis_or_dim(axis, dim, "softmax"))
    return Softmax(axis)(a)


class LogSoftmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        z = a - np.max(a, axis=self.axis, keepdims=True)
        y = z - np.log(np.sum(np.exp(z), axis=self.axis, keepdims=True))
        self.saved = y
        return y

    def backward(self, g):
        y = self.saved
        return (g - np.exp(y) * np.sum(g, axis=self.axis, keepdims=True),)

    def backward_graph(self, g):
        p = Softmax(self.axis)(self.inputs[0])
        return (g - p * g.sum(axis=self.axis, keepdims=True),)


def log_softmax(a, axis=-1, dim=None):
    """y = a - logsumexp(a) along axis (``dim=`` as in PyTorch);
    da = dy - softmax(a) * sum(dy)"""
    axis = _check_axis(a, _axis_or_dim(axis, dim, "log_softmax"))
    return LogSoftmax(axis)(a)


def _expand(g, shape):
    from .shape import Expand

    return g if g.shape == shape else Expand(shape)(g)


def _check_axis(a, axis):
    """Validate axis against a's dimensions; a list becomes a tuple (NumPy needs a tuple)."""
    ndim = a.ndim if hasattr(a, "ndim") else np.ndim(a)
    if isinstance(axis, list):
        axis = tuple(axis)
    if axis is not None:
        normalize_axis(axis, ndim)
    return axis
