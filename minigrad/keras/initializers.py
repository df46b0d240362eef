"""Weight initializers by Keras name (drawn from minigrad's seedable generator,
``minigrad.manual_seed``)."""

import math

import numpy as np

from ..random import default_rng

__all__ = ["get"]


def _fans(shape):
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    return shape[-2], shape[-1]


def zeros(shape):
    return np.zeros(shape, np.float32)


def ones(shape):
    return np.ones(shape, np.float32)


def glorot_uniform(shape):
    fan_in, fan_out = _fans(shape)
    lim = math.sqrt(6.0 / (fan_in + fan_out))
    return default_rng().uniform(-lim, lim, shape).astype(np.float32)


def he_uniform(shape):
    lim = math.sqrt(6.0 / _fans(shape)[0])
    return default_rng().uniform(-lim, lim, shape).astype(np.float32)


def random_uniform(shape):
    """Keras's RandomUniform default range, [-0.05, 0.05] (Embedding's default)."""
    return default_rng().uniform(-0.05, 0.05, shape).astype(np.float32)


def random_normal(shape):
    return (0.05 * default_rng().standard_normal(shape)).astype(np.float32)


def orthogonal(shape):
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = default_rng().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


_BY_NAME = {
    "zeros": zeros,
    "ones": ones,
    "glorot_uniform": glorot_uniform,
    "he_uniform": he_uniform,
    "uniform": random_uniform,
    "random_uniform": random_uniform,
    "random_normal": random_normal,
    "orthogonal": orthogonal,
}


def get(identifier):
    """An initializer ``f(shape) -> float32 ndarray`` by Keras name, or a callable as it is."""
    if callable(identifier):
        return identifier
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]
    raise ValueError(
        f"unknown initializer {identifier!r}; expected one of {sorted(_BY_NAME)} "
        "or a callable f(shape)"
    )
