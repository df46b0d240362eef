"""Losses: cross_entropy, mse_loss, binary_cross_entropy_with_logits."""
import numpy as np

from ..autograd import Function
from .elementwise import stable_sigmoid

__all__ = ["cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction, count):
    if reduction == "none":
        return loss
    s = loss.sum()
    return s / count if reduction == "mean" else s


class CrossEntropy(Function):
    def __init__(self, target, ignore_index, reduction, soft):
        self.target, self.ignore_index = target, ignore_index
        self.reduction, self.soft = reduction, soft

    def forward(self, logits):
        z = logits - logits.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        if self.soft:
            loss = -(self.target * logp).sum(axis=-1)
            count = loss.size
            valid = None
        else:
            valid = self.target != self.ignore_index
            t = np.where(valid, self.target, 0)
            loss = -np.take_along_axis(logp, t[..., None], axis=-1)[..., 0] * valid
            count = int(valid.sum())
            self.target = t
        self.saved = (logp, valid, count)
        out = _reduce(loss, self.reduction, max(count, 1) if self.reduction == "mean" else count)
        if self.reduction == "mean" and count == 0:
            out = np.asarray(np.nan, dtype=logits.dtype)  # as PyTorch: every target ignored
        return np.asarray(out, dtype=logits.dtype)

    def backward(self, g):
        logp, valid, count = self.saved
        p = np.exp(logp)
        if self.soft:
            grad = p * self.target.sum(axis=-1, keepdims=True) - self.target
        else:
            grad = p
            np.put_along_axis(grad, self.target[..., None],
                              np.take_along_axis(grad, self.target[..., None], axis=-1) - 1, axis=-1)
            grad *= valid[..., None]
        if self.reduction == "none":
            grad *= g[..., None]
        elif self.reduction == "mean":
            grad *= g / max(count, 1)
        else:
            grad *= g
        return (grad,)


def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """loss = -log softmax(logits)[target], over the last axis (the classes).

    logits (..., C): (N, C) or (N, T, C) (classes last, as Keras; PyTorch puts them at axis 1).
    target: integer class indices of shape logits.shape[:-1] (entries equal to ignore_index are
    skipped; 'mean' divides by the number of the others), or class probabilities of the same
    shape as logits.  dlogits = softmax(logits) - onehot(target)."""
    _check_reduction(reduction)
    shape = logits.shape
    if len(shape) < 1:
        raise ValueError("cross_entropy needs logits with a class axis, got a 0-d tensor")
    if np.dtype(logits.dtype).kind != "f":  # as PyTorch: an integer loss would be truncated
        raise TypeError(f"cross_entropy needs floating point logits (float32 or float64), got "
                        f"dtype {logits.dtype}; convert them with .float()")
    if getattr(target, "requires_grad", False):
        raise ValueError("cross_entropy does not differentiate with respect to the target; "
                         "pass target.detach() (gradients flow to the logits only)")
    t = np.asarray(getattr(target, "data", target))
    if t.dtype.kind == "f":
        if t.shape != shape:
            raise ValueError(
                f"cross_entropy target must be integer class indices of shape {shape[:-1]} or "
                f"class probabilities of shape {shape}; got a float target of shape {t.shape}")
        if np.isnan(t).any():
            raise ValueError("cross_entropy target contains NaN")
        return CrossEntropy(t.astype(logits.dtype), ignore_index, reduction, True)(logits)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy target must be integer class indices, got dtype {t.dtype}")
    if t.shape != shape[:-1]:
        raise ValueError(f"cross_entropy target must have shape {shape[:-1]} for logits of shape "
                         f"{shape}, got {t.shape}")
    C = shape[-1]
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(f"cross_entropy target {t[bad].ravel()[0]} is out of range [0, {C})")
    return CrossEntropy(t.astype(np.int64), ignore_index, reduction, False)(logits)


def _same_shape(name, a, b):
    sa, sb = np.shape(getattr(a, "data", a)), np.shape(getattr(b, "data", b))
    if sa != sb:
        raise ValueError(f"{name}: input and target must have the same shape, got {sa} and {sb}")


class MSELoss(Function):
    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, a, t):
        d = a - t
        self.saved = d
        return np.asarray(_reduce(d * d, self.reduction, d.size), dtype=a.dtype)

    def backward(self, g):
        d = self.saved
        scale = 2 / d.size if self.reduction == "mean" else 2
        ga = g * scale * d
        na, nt = self.needs_input_grad
        return (ga if na else None, -ga if nt else None)


def mse_loss(input, target, reduction="mean"):
    """loss = (input - target)^2, reduced;  dinput = 2 (input - target) [/ n]"""
    _check_reduction(reduction)
    _same_shape("mse_loss", input, target)
    return MSELoss(reduction)(input, target)


class BCEWithLogits(Function):
    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, x, t):
        if np.isnan(t).any():
            raise ValueError("binary_cross_entropy_with_logits target contains NaN")
        loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        self.saved = (x, t)
        return np.asarray(_reduce(loss, self.reduction, loss.size), dtype=x.dtype)

    def backward(self, g):
        x, t = self.saved
        scale = g / x.size if self.reduction == "mean" else g
        gx = (stable_sigmoid(x) - t) * scale
        na, nt = self.needs_input_grad
        return (gx if na else None, (-x * scale) if nt else None)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    """loss = max(x,0) - x t + log(1 + exp(-|x|)) (stable);  dx = sigmoid(x) - t"""
    _check_reduction(reduction)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    return BCEWithLogits(reduction)(input, target)
