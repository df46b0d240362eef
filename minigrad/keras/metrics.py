"""Metrics by Keras name: running means over the samples seen since ``reset_state``."""

import numpy as np

__all__ = [
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "Mean",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "SparseCategoricalAccuracy",
    "get",
]


def _arr(x):
    return np.asarray(getattr(x, "data", x))


def _align(y, p):
    if y.ndim == p.ndim - 1 and p.shape[-1] == 1:
        y = y[..., None]
    elif y.ndim == p.ndim + 1 and y.shape[-1] == 1:
        y = y[..., 0]
    return y


class Metric:
    """A running mean of per-sample values: ``update_state(y_true, y_pred)``, ``result()``,
    ``reset_state()``."""

    name = "metric"

    def __init__(self, name=None):
        self.name = name or self.name
        self.reset_state()

    def reset_state(self):
        self.total, self.count = 0.0, 0

    def values(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true, y_pred):
        v = np.asarray(self.values(_arr(y_true), _arr(y_pred)), dtype=np.float64)
        self.total += float(v.sum())
        self.count += int(v.size)

    def result(self):
        return self.total / self.count if self.count else 0.0


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(value, weight)``."""

    name = "mean"

    def update_state(self, value, sample_weight=1):
        self.total += float(value) * float(sample_weight)
        self.count += float(sample_weight)


class BinaryAccuracy(Metric):
    name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name)

    def values(self, y, p):
        y = _align(y, p)
        return np.mean((p > self.threshold) == (y > self.threshold), axis=-1)


class CategoricalAccuracy(Metric):
    name = "categorical_accuracy"

    def values(self, y, p):
        return np.argmax(y, axis=-1) == np.argmax(p, axis=-1)


class SparseCategoricalAccuracy(Metric):
    name = "sparse_categorical_accuracy"

    def values(self, y, p):
        if y.ndim == p.ndim and y.shape[-1] == 1:
            y = y[..., 0]
        return y.astype(np.int64) == np.argmax(p, axis=-1)


class Accuracy(Metric):
    """Exact equality of targets and predictions."""

    name = "accuracy"

    def values(self, y, p):
        return _align(y, p) == p


class MeanSquaredError(Metric):
    name = "mean_squared_error"

    def values(self, y, p):
        return np.mean((_align(y, p) - p) ** 2, axis=-1)


class MeanAbsoluteError(Metric):
    name = "mean_absolute_error"

    def values(self, y, p):
        return np.mean(np.abs(_align(y, p) - p), axis=-1)


def _accuracy_for(y_shape, p_shape, loss_name):
    """Keras's choice for metrics=['accuracy']: binary for a single output unit, sparse when
    the targets are class indices, categorical when they are one-hot rows."""
    if p_shape[-1] == 1 or loss_name == "binary_crossentropy":
        return BinaryAccuracy
    if (
        len(y_shape) < len(p_shape)
        or y_shape[-1] == 1
        or loss_name == "sparse_categorical_crossentropy"
    ):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


_BY_NAME = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
}


def get(identifier, y_shape=None, p_shape=None, loss_name=None):
    """A Metric from a Keras name ('accuracy', 'mae', 'mse', ...) or a Metric as it is.
    'accuracy'/'acc' picks binary, sparse or categorical accuracy from the shapes, as Keras,
    and keeps the name 'accuracy' in the logs."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        if y_shape is None:
            return BinaryAccuracy(name=identifier)
        return _accuracy_for(y_shape, p_shape, loss_name)(name=identifier)
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)
    raise ValueError(
        f"unknown metric {identifier!r}; expected 'accuracy', 'acc' or one of "
        f"{sorted(_BY_NAME)}, or a keras.metrics.Metric"
    )
