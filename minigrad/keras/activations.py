"""Activations by Keras name: ``get('relu')`` returns a function of a Tensor, built from
minigrad's differentiable ops."""

import numpy as np

from .. import functional as F

__all__ = [
    "elu",
    "exponential",
    "get",
    "hard_sigmoid",
    "linear",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "swish",
    "tanh",
]


def linear(x):
    """y = x"""
    return x


# minigrad's elementwise ops serve as they are.
relu = F.relu  # y = max(x, 0)
sigmoid = F.sigmoid  # y = 1 / (1 + exp(-x))
tanh = F.tanh  # y = tanh(x)
softplus = F.softplus  # y = log(1 + exp(x))
exponential = F.exp  # y = exp(x)


def softmax(x):
    """y = exp(x) / sum(exp(x)) over the last axis"""
    return F.softmax(x, axis=-1)


def elu(x):
    """y = x for x > 0, exp(x) - 1 otherwise"""
    pos = np.asarray(x.data > 0)
    return F.where(pos, x, F.exp(F.minimum(x, 0.0)) - 1.0)


def hard_sigmoid(x):
    """y = clip(x / 6 + 1/2, 0, 1)  (Keras 3's definition, relu6(x + 3) / 6)"""
    return F.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def swish(x):
    """y = x * sigmoid(x)"""
    return x * F.sigmoid(x)


_BY_NAME = {
    "linear": linear,
    None: linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "softplus": softplus,
    "elu": elu,
    "hard_sigmoid": hard_sigmoid,
    "swish": swish,
    "silu": swish,
    "exponential": exponential,
}


def get(identifier):
    """The activation function named ``identifier`` (None -> linear), or ``identifier`` itself
    when it is callable."""
    if callable(identifier):
        return identifier
    if identifier in _BY_NAME:
        return _BY_NAME[identifier]
    names = sorted(k for k in _BY_NAME if k)
    raise ValueError(f"unknown activation {identifier!r}; expected one of {names} or a callable")


def name_of(fn):
    for k, v in _BY_NAME.items():
        if v is fn and k is not None:
            return k
    return getattr(fn, "__name__", repr(fn))
