"""Parameter initializers.  Each fills a Tensor's array in place (keeping its dtype) with draws
from ``minigrad.random.default_rng()``, so ``minigrad.manual_seed(s)`` makes them reproducible,
and returns the tensor.  Nothing is recorded on the tape.

Fans follow PyTorch: for a weight of shape (out, in, *k), fan_in = in * prod(k) and
fan_out = out * prod(k).
"""

import math

import numpy as np

from ..random import default_rng
from ..tensor import Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "constant_",
    "zeros_",
    "ones_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
]


def _array(tensor, what):
    arr = tensor.data if isinstance(tensor, Tensor) else tensor
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{what} expects a Tensor or an ndarray, got {type(tensor).__name__}")
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} needs a floating point tensor, got dtype {arr.dtype}")
    return arr


def _fill(tensor, values, what):
    arr = _array(tensor, what)
    arr[...] = values
    return tensor


def _fans(arr, what):
    if arr.ndim < 2:
        raise ValueError(
            f"{what} needs a tensor with at least 2 dimensions (out, in, ...), "
            f"got shape {arr.shape}"
        )
    receptive = int(np.prod(arr.shape[2:])) if arr.ndim > 2 else 1
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table): linear/sigmoid 1,
    tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope**2)), selu 3/4."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope must be a number, got {slope!r}")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"unsupported nonlinearity {nonlinearity!r}; expected one of linear, "
        "identity, sigmoid, tanh, relu, leaky_relu, selu"
    )


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    if not a <= b:
        raise ValueError(f"uniform_ needs a <= b, got a={a}, b={b}")
    arr = _array(tensor, "uniform_")
    return _fill(tensor, default_rng().uniform(a, b, arr.shape), "uniform_")


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std**2)."""
    if std < 0:
        raise ValueError(f"normal_ needs std >= 0, got {std}")
    arr = _array(tensor, "normal_")
    return _fill(tensor, default_rng().normal(mean, std, arr.shape), "normal_")


def constant_(tensor, value):
    """Fill with one value."""
    return _fill(tensor, value, "constant_")


def zeros_(tensor):
    return _fill(tensor, 0, "zeros_")


def ones_(tensor):
    return _fill(tensor, 1, "ones_")


def xavier_uniform_(tensor, gain=1.0):
    """Glorot: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(tensor, "xavier_uniform_"), "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(tensor, "xavier_normal_"), "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity, what):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(_array(tensor, what), what)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: U(-b, b) with b = gain * sqrt(3 / fan).  ``a = sqrt(5)`` on a (out, in) weight gives
    U(±1/sqrt(in)), PyTorch's default for Linear."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: N(0, std**2) with std = gain / sqrt(fan)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    return normal_(tensor, 0.0, std)


def orthogonal_(tensor, gain=1.0):
    """A (semi-)orthogonal matrix (Saxe et al. 2013) scaled by ``gain``: the tensor is viewed as
    (rows, cols) = (shape[0], size // shape[0]); its rows (rows <= cols) or columns are
    orthonormal.  The Q of a QR decomposition of a Gaussian matrix, signs fixed by diag(R) so
    the result is uniformly distributed."""
    arr = _array(tensor, "orthogonal_")
    if arr.ndim < 2:
        raise ValueError(
            f"orthogonal_ needs a tensor with at least 2 dimensions, got shape {arr.shape}"
        )
    rows = arr.shape[0]
    cols = arr.size // rows if rows else 0
    if arr.size == 0:
        return tensor
    a = default_rng().standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    d = np.sign(np.diag(r))
    d[d == 0] = 1
    q = q * d
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(arr.shape), "orthogonal_")
