"""Losses by Keras name, as functions of (y_true, y_pred) returning one scalar Tensor.

Each computes a per-sample loss over the last axis (Keras's convention), then averages over
the rest ('sum_over_batch_size'). Probabilities are clipped to [1e-7, 1 - 1e-7] before the log,
as Keras does; ``from_logits=True`` takes raw scores instead.
"""

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .. import functional as F
from ..tensor import Tensor

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "get",
    "mean_absolute_error",
    "mean_squared_error",
    "sparse_categorical_crossentropy",
]

EPSILON = 1e-7


def _as(y, like):
    if isinstance(y, Tensor):
        return y
    return Tensor(np.asarray(y, dtype=like.data.dtype))


def _same_rank(y, p):
    """Keras's squeeze_or_expand_to_same_rank: (B,) targets for (B, 1) predictions and back."""
    if y.ndim == p.ndim - 1 and p.shape[-1] == 1:
        y = F.unsqueeze(y, -1)
    elif y.ndim == p.ndim + 1 and y.shape[-1] == 1:
        y = F.squeeze(y, -1)
    if tuple(y.shape) != tuple(p.shape):
        raise ValueError(
            f"targets of shape {tuple(y.shape)} do not match predictions of shape {tuple(p.shape)}"
        )
    return y


def mean_squared_error(y_true, y_pred):
    y = _same_rank(_as(y_true, y_pred), y_pred)
    d = y_pred - y
    return F.mean(d * d, axis=-1)


def mean_absolute_error(y_true, y_pred):
    y = _same_rank(_as(y_true, y_pred), y_pred)
    return F.mean(F.abs(y_pred - y), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    y = _same_rank(_as(y_true, y_pred), y_pred)
    if from_logits:
        return F.mean(F.binary_cross_entropy_with_logits(y_pred, y, reduction="none"), axis=-1)
    p = F.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return -F.mean(y * F.log(p) + (1.0 - y) * F.log(1.0 - p), axis=-1)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    y = _same_rank(_as(y_true, y_pred), y_pred)
    if from_logits:
        return -F.sum(y * F.log_softmax(y_pred, axis=-1), axis=-1)
    p = y_pred / F.sum(y_pred, axis=-1, keepdims=True)
    p = F.clip(p, EPSILON, 1.0 - EPSILON)
    return -F.sum(y * F.log(p), axis=-1)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    t = np.asarray(getattr(y_true, "data", y_true))
    if t.ndim == y_pred.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    if t.shape != tuple(y_pred.shape[:-1]):
        raise ValueError(
            f"sparse targets must have shape {tuple(y_pred.shape[:-1])} (one class "
            f"index per prediction row), got {t.shape}"
        )
    if t.dtype.kind == "f":
        if not np.all(t == np.round(t)):
            raise ValueError("sparse_categorical_crossentropy takes integer class indices")
        t = t.astype(np.int64)
    C = y_pred.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= C):
        raise ValueError(f"class index out of range [0, {C}): got {t.min()}..{t.max()}")
    if from_logits:
        logp = F.log_softmax(y_pred, axis=-1)
    else:
        logp = F.log(F.clip(y_pred / F.sum(y_pred, axis=-1, keepdims=True), EPSILON, 1.0 - EPSILON))
    onehot = np.zeros(tuple(y_pred.shape), dtype=y_pred.data.dtype)
    np.put_along_axis(onehot, t[..., None], 1, axis=-1)
    return -F.sum(logp * onehot, axis=-1)


class Loss:
    """A loss object: ``loss(y_true, y_pred)`` -> the mean of the per-sample losses. A subclass
    sets ``fn``, the per-sample loss function; the function's name is the loss's default name."""

    fn: ClassVar[Callable[..., Any] | None] = None

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        if reduction not in ("sum_over_batch_size", "sum", "none", None):
            raise ValueError(
                f"reduction must be 'sum_over_batch_size', 'sum' or 'none', got {reduction!r}"
            )
        self.from_logits, self.reduction = from_logits, reduction
        self.name = name or getattr(type(self).fn, "__name__", "loss")

    def per_sample(self, y_true, y_pred):
        if type(self).fn in (mean_squared_error, mean_absolute_error):
            return type(self).fn(y_true, y_pred)
        return type(self).fn(y_true, y_pred, from_logits=self.from_logits)

    def __call__(self, y_true, y_pred):
        v = self.per_sample(y_true, y_pred)
        if self.reduction in ("none", None):
            return v
        return F.sum(v) if self.reduction == "sum" else F.mean(v)


class MeanSquaredError(Loss):
    fn = mean_squared_error


class MeanAbsoluteError(Loss):
    fn = mean_absolute_error


class BinaryCrossentropy(Loss):
    fn = binary_crossentropy


class CategoricalCrossentropy(Loss):
    fn = categorical_crossentropy


class SparseCategoricalCrossentropy(Loss):
    fn = sparse_categorical_crossentropy


_BY_NAME = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


class _FnLoss(Loss):
    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self._fn = fn

    def per_sample(self, y_true, y_pred):
        return self._fn(y_true, y_pred)


def get(identifier):
    """A Loss from a Keras name ('mse', 'binary_crossentropy', ...), a Loss, or a function
    f(y_true, y_pred) returning per-sample losses."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if callable(identifier):
        return _FnLoss(identifier)
    raise ValueError(
        f"unknown loss {identifier!r}; expected one of {sorted(_BY_NAME)}, a "
        "keras.losses.Loss or a function f(y_true, y_pred)"
    )
