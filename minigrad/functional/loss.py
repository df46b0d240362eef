"""Losses: cross_entropy and nll_loss (PyTorch's layout, classes on axis 1),
softmax_cross_entropy (classes on the last axis), mse_loss, binary_cross_entropy_with_logits."""

import operator

import numpy as np

from .. import kernels
from ..autograd import Function
from .elementwise import Sigmoid, stable_sigmoid
from .reduction import Softmax, log_softmax
from .reduction import sum as _sum
from .shape import transpose

__all__ = [
    "cross_entropy",
    "nll_loss",
    "softmax_cross_entropy",
    "mse_loss",
    "binary_cross_entropy_with_logits",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction, count):
    if reduction == "none":
        return loss
    s = loss.sum()
    return s / count if reduction == "mean" else s


def _check_ignore_index(ignore_index, who):
    """ignore_index must be a number (an int as in PyTorch; a float that equals no target is
    accepted too)."""
    if isinstance(ignore_index, bool) or not isinstance(
        ignore_index, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{who} ignore_index must be an int, got {type(ignore_index).__name__}")


def _as_int64(ignore_index):
    """ignore_index as the kernels take it, an int64: itself when it is one, else -1, which
    then stands for "no target ignored" (every target was checked to lie in [0, C) or to equal
    ignore_index, and no int64 target equals a value beyond int64 or a non-integral float)."""
    try:
        v = operator.index(ignore_index)
    except TypeError:
        f = float(ignore_index)
        v = int(f) if f.is_integer() else -1
    return v if -(2**63) <= v < 2**63 else -1


class CrossEntropy(Function):
    """-log softmax(logits)[target] over the last axis. Integer targets run on the kernels
    softmax_cross_entropy_forward/backward over the (rows, C) view: one pass a row each way,
    the softmax kept from forward (all backward needs). Soft targets (class probabilities)
    are computed here in NumPy."""

    def __init__(self, target, ignore_index, reduction, soft, who="cross_entropy"):
        self.target, self.ignore_index = target, ignore_index
        self.reduction, self.soft, self.who = reduction, soft, who

    def forward(self, logits):
        if self.soft:
            z = logits - logits.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            loss = -(self.target * logp).sum(axis=-1)
            count = loss.size
            self.saved = (logp, None, count)
        else:
            C = logits.shape[-1]
            t = np.ascontiguousarray(self.target.reshape(-1), dtype=np.int64)
            x = np.ascontiguousarray(logits.reshape(t.size, C))  # (-1, C) fails when C = 0
            ignore = _as_int64(self.ignore_index)
            if x.size:
                try:  # the kernel checks every target before it computes anything
                    rows, probs = kernels.softmax_cross_entropy_forward(x, t, ignore)
                except IndexError:
                    _check_range(self.target, C, self.ignore_index, self.who)
                    raise
            else:  # no rows (or no classes, every target ignored): nothing to compute
                _check_range(self.target, C, self.ignore_index, self.who)
                rows, probs = np.zeros(x.shape[0], x.dtype), x.copy()
            valid = self.target != self.ignore_index
            count = int(np.count_nonzero(valid))
            loss = rows.reshape(self.target.shape)
            self.flat_target, self.kernel_ignore = t, ignore
            self.saved = (probs, valid, count)
        out = _reduce(loss, self.reduction, max(count, 1) if self.reduction == "mean" else count)
        if self.reduction == "mean" and count == 0:
            out = np.asarray(np.nan, dtype=logits.dtype)  # as PyTorch: every target ignored
        return np.asarray(out, dtype=logits.dtype)

    def backward(self, g):
        saved, valid, count = self.saved
        if self.soft:
            p = np.exp(saved)
            grad = p * self.target.sum(axis=-1, keepdims=True) - self.target
            if self.reduction == "none":
                grad *= g[..., None]
            elif self.reduction == "mean":
                grad *= g / max(count, 1)
            else:
                grad *= g
            return (grad,)
        probs, dt = saved, saved.dtype
        if self.reduction == "none":
            dy = np.ascontiguousarray(g.reshape(-1), dtype=dt)
        else:
            scale = g / max(count, 1) if self.reduction == "mean" else g
            dy = np.full(probs.shape[0], scale, dtype=dt)
        if probs.size:
            grad = kernels.softmax_cross_entropy_backward(
                probs, self.flat_target, self.kernel_ignore, dy
            )
        else:
            grad = np.zeros(probs.shape, dt)
        return (grad.reshape(valid.shape + (probs.shape[1],)),)

    def backward_graph(self, g):
        logp, valid, count = self.saved
        p = Softmax(-1)(self.inputs[0])
        if self.soft:
            grad = p * self.target.sum(axis=-1, keepdims=True) - self.target
        else:
            onehot = np.zeros(p.shape, dtype=logp.dtype)
            t = np.where(valid, self.target, 0)
            np.put_along_axis(onehot, t[..., None], 1, axis=-1)
            grad = (p - onehot) * valid[..., None]
        if self.reduction == "none":
            return (grad * g.reshape(g.shape + (1,)),)
        if self.reduction == "mean":
            return (grad * (g / max(count, 1)),)
        return (grad * g,)


def softmax_cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """loss = -log softmax(logits)[target] with the classes on the LAST axis (the layout of
    Keras and TensorFlow, and of a batch-first RNN's output); ``cross_entropy`` is PyTorch's
    form, classes on axis 1. One fused node.

    logits (..., C): (N, C) or (N, T, C). target: integer class indices of shape
    logits.shape[:-1] (entries equal to ignore_index are skipped; 'mean' divides by the number
    of the others), or class probabilities of the same shape as logits.
    dlogits = softmax(logits) - onehot(target)."""
    _check_reduction(reduction)
    _check_ignore_index(ignore_index, "softmax_cross_entropy")
    shape = logits.shape
    if len(shape) < 1:
        raise ValueError("softmax_cross_entropy needs logits with a class axis, got a 0-d tensor")
    if np.dtype(logits.dtype).kind != "f":  # as PyTorch: an integer loss would be truncated
        raise TypeError(
            f"softmax_cross_entropy needs floating point logits (float32 or "
            f"float64), got dtype {logits.dtype}; convert them with .float()"
        )
    if getattr(target, "requires_grad", False):
        raise ValueError(
            "softmax_cross_entropy does not differentiate with respect to the target; "
            "pass target.detach() (gradients flow to the logits only)"
        )
    t = np.asarray(getattr(target, "data", target))
    if t.dtype.kind == "f":
        if t.shape != shape:
            raise ValueError(
                "softmax_cross_entropy target must be integer class indices of shape "
                f"{shape[:-1]} or class probabilities of shape {shape}; got a float target of "
                f"shape {t.shape}"
            )
        if np.isnan(t).any():
            raise ValueError("softmax_cross_entropy target contains NaN")
        return CrossEntropy(t.astype(logits.dtype), ignore_index, reduction, True)(logits)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"softmax_cross_entropy target must be integer class indices, got dtype {t.dtype}"
        )
    if t.shape != shape[:-1]:
        raise ValueError(
            f"softmax_cross_entropy target must have shape {shape[:-1]} for logits of shape "
            f"{shape}, got {t.shape}"
        )
    t = _kernel_targets(t, shape[-1], ignore_index, "softmax_cross_entropy")
    return CrossEntropy(t, ignore_index, reduction, False, "softmax_cross_entropy")(logits)


def _target_array(target, who):
    if getattr(target, "requires_grad", False):
        raise ValueError(
            f"{who} does not differentiate with respect to the target; pass "
            "target.detach() (gradients flow to the input only)"
        )
    return np.asarray(getattr(target, "data", target))


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """PyTorch's cross_entropy: -log softmax over the CLASS AXIS 1 (axis 0 for a single
    sample).

    input: (C,), (N, C) or (N, C, d1, ..., dk) logits. target: integer class indices of shape
    (), (N,) or (N, d1, ..., dk) (entries equal to ``ignore_index`` contribute nothing), or
    class probabilities of the input's shape. ``weight`` (C,): a weight per class; 'mean' then
    divides by the summed weights of the targets, as PyTorch. ``label_smoothing`` in [0, 1]
    mixes the target with the uniform distribution. For classes on the last axis (a
    batch-first RNN's (N, T, C) output) use ``softmax_cross_entropy``, or pass
    ``logits.permute(0, 2, 1)`` here."""
    _check_reduction(reduction)
    _check_ignore_index(ignore_index, "cross_entropy")
    x = input
    if np.dtype(x.dtype).kind != "f":
        raise TypeError(
            f"cross_entropy needs floating point logits (float32 or float64), got "
            f"dtype {x.dtype}; convert them with .float()"
        )
    shape = tuple(x.shape)
    if len(shape) == 0:
        raise ValueError("cross_entropy needs logits with a class axis, got a 0-d tensor")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    c_axis = 0 if len(shape) == 1 else 1
    C = shape[c_axis]
    t = _target_array(target, "cross_entropy")
    w = _class_weight(weight, C, x.dtype, "cross_entropy")
    if t.dtype.kind == "f":
        if t.shape != shape:
            raise ValueError(
                f"cross_entropy target must be integer class indices of shape "
                f"{shape[:c_axis] + shape[c_axis + 1 :]} or class probabilities of "
                f"shape {shape}; got a float target of shape {t.shape}"
            )
        if np.isnan(t).any():
            raise ValueError("cross_entropy target contains NaN")
    else:
        t = _class_indices(t, shape, c_axis, ignore_index, "cross_entropy", w is None and ls == 0)
    if w is None and ls == 0.0:  # the fused node, on a classes-last view
        if c_axis != len(shape) - 1:
            axes = (0,) + tuple(range(2, len(shape))) + (1,)
            x = transpose(x, axes)
            if t.dtype.kind == "f":
                t = np.transpose(t, axes)
        if t.dtype.kind == "f":
            return softmax_cross_entropy(x, t, ignore_index, reduction)
        return CrossEntropy(t, ignore_index, reduction, False)(x)  # t checked: _class_indices
    return _weighted_nll(log_softmax(x, axis=c_axis), t, w, ignore_index, reduction, ls, c_axis)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """PyTorch's nll_loss: -input[target] with input log-probabilities, classes on axis 1
    ((C,), (N, C) or (N, C, d1, ..., dk)); ``weight``, ``ignore_index`` and ``reduction`` as in
    ``cross_entropy``. cross_entropy(x, y) == nll_loss(log_softmax(x, axis=1), y)."""
    _check_reduction(reduction)
    _check_ignore_index(ignore_index, "nll_loss")
    shape = tuple(input.shape)
    if np.dtype(input.dtype).kind != "f":
        raise TypeError(f"nll_loss needs floating point input, got dtype {input.dtype}")
    if len(shape) == 0:
        raise ValueError("nll_loss needs an input with a class axis, got a 0-d tensor")
    c_axis = 0 if len(shape) == 1 else 1
    t = _target_array(target, "nll_loss")
    if t.dtype.kind == "f":
        raise TypeError(
            "nll_loss takes integer class indices; for class probabilities use cross_entropy"
        )
    t = _class_indices(t, shape, c_axis, ignore_index, "nll_loss")
    w = _class_weight(weight, shape[c_axis], input.dtype, "nll_loss")
    return _weighted_nll(input, t, w, ignore_index, reduction, 0.0, c_axis)


def _class_weight(weight, C, dtype, who):
    if weight is None:
        return None
    w = np.asarray(getattr(weight, "data", weight))
    if w.dtype.kind not in "fiu" or w.shape != (C,):
        raise ValueError(
            f"{who}: weight must be {C} numbers (one per class), got {w.dtype} of shape {w.shape}"
        )
    return w.astype(dtype)


def _class_indices(t, shape, c_axis, ignore_index, who, fused=False):
    """t as int64 class indices, checked against the input's shape; with fused (the target of
    the fused CrossEntropy node) the range of each index is left to the kernel when it can
    check it (_kernel_targets)."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{who} target must be integer class indices, got dtype {t.dtype}")
    want = shape[:c_axis] + shape[c_axis + 1 :]
    if t.shape != want:
        raise ValueError(
            f"{who} target must have shape {want} for input of shape {shape} "
            f"(classes on axis {c_axis}), got {t.shape}"
        )
    if fused:
        return _kernel_targets(t, shape[c_axis], ignore_index, who)
    _check_range(t, shape[c_axis], ignore_index, who)
    return t.astype(np.int64)


def _check_range(t, C, ignore_index, who):
    """IndexError naming the first target that is neither in [0, C) nor ignore_index."""
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(f"{who} target {t[bad].ravel()[0]} is out of range [0, {C})")


def _kernel_targets(t, C, ignore_index, who):
    """Integer targets t as int64 for the fused node. The softmax cross-entropy kernel checks
    every target before it computes (and the node then names the first bad one as
    _check_range does), so they are checked here only where the kernel cannot tell a bad
    target from an ignored one: an ignore_index that is no int64 (the kernel then takes -1)."""
    if _as_int64(ignore_index) != ignore_index:
        _check_range(t, C, ignore_index, who)
    return t.astype(np.int64, copy=False)


def _weighted_nll(logp, t, w, ignore_index, reduction, eps, c_axis):
    """The loss -sum_c A_c logp_c as one product with a constant array A (so its derivatives
    of every order come from the tape): A holds the target's (smoothed) distribution times the
    class weights, zero where the target is ignored."""
    shape = tuple(logp.shape)
    C = shape[c_axis]
    dt = np.dtype(logp.dtype)
    wshape = [1] * len(shape)
    wshape[c_axis] = C
    wb = np.ones(wshape, dtype=dt) if w is None else w.reshape(wshape)
    if t.dtype.kind == "f":
        A = (t.astype(dt) * (1 - eps) + eps / C) * wb
        count = t.size // C
    else:
        valid = t != ignore_index
        tt = np.expand_dims(np.where(valid, t, 0), c_axis)
        onehot = np.zeros(shape, dtype=dt)
        np.put_along_axis(onehot, tt, 1.0, axis=c_axis)
        wy = np.take_along_axis(np.broadcast_to(wb, shape), tt, axis=c_axis)
        vmask = np.expand_dims(valid, c_axis).astype(dt)
        A = (onehot * (1 - eps) * wy + (eps / C) * wb) * vmask
        count = float((wy * vmask).sum())
    per = -_sum(logp * A, axis=c_axis)
    if reduction == "none":
        return per
    total = _sum(per)
    if reduction == "sum":
        return total
    if count == 0:  # every target ignored (or weighted 0): NaN, as PyTorch
        return total * np.asarray(np.nan, dtype=dt)
    return total * np.asarray(1.0 / count, dtype=dt)


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

    def backward_graph(self, g):
        d_arr = self.saved
        a, t = self.inputs
        a = a if a is not None else d_arr + t.data  # a constant input, rebuilt from a - t
        t = t if t is not None else a.data - d_arr
        scale = 2 / d_arr.size if self.reduction == "mean" else 2
        ga = g * scale * (a - t)
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

    def backward_graph(self, g):
        x, t = self.input_tensors(*self.saved)
        scale = g / x.numel() if self.reduction == "mean" else g
        na, nt = self.needs_input_grad
        return ((Sigmoid()(x) - t) * scale if na else None, (-x * scale) if nt else None)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    """loss = max(x,0) - x t + log(1 + exp(-|x|)) (stable);  dx = sigmoid(x) - t"""
    _check_reduction(reduction)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    return BCEWithLogits(reduction)(input, target)
