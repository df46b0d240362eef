"""minigrad: a tape-based autograd framework with Cython recurrent kernels.

import minigrad as mg
x = mg.tensor([1.0, 2.0], requires_grad=True)
(x * x).sum().backward()
x.grad  # array([2., 4.], dtype=float32)
"""

from . import autograd, data, func, functional, nn, optim
from .autograd import (  # noqa: F401 (re-exported: __all__ takes autograd's list)
    Function,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .gradcheck import gradcheck, gradgradcheck, numerical_grad
from .random import manual_seed, multinomial
from .serialization import load, save
from .tensor import Tensor, tensor
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "tensor",
    # the tape's names; backward and grad stay in minigrad.autograd, as in torch.autograd
    *(name for name in autograd.__all__ if name not in ("backward", "grad")),
    "gradcheck",
    "gradgradcheck",
    "numerical_grad",
    "autograd",
    "func",
    "functional",
    "manual_seed",
    "zeros",
    "ones",
    "randn",
    "arange",
    "data",
    "nn",
    "optim",
    "save",
    "load",
    "set_num_threads",
    "get_num_threads",
    "from_numpy",
    "multinomial",
]


def zeros(*shape, dtype=None, requires_grad=False):
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.zeros(shape, dtype=dtype or np.float32), requires_grad=requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    import numpy as np

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(np.ones(shape, dtype=dtype or np.float32), requires_grad=requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal samples from minigrad's seedable generator (see manual_seed)."""
    from .random import default_rng

    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    data = default_rng().standard_normal(shape).astype(dtype or "float32")
    return Tensor(data, requires_grad=requires_grad)


def arange(*args, dtype=None):
    import numpy as np

    return Tensor(np.arange(*args), dtype=dtype)


def from_numpy(array):
    """A Tensor that shares memory with the ndarray ``array`` (no copy; writes to one show in
    the other), keeping its dtype, as ``torch.from_numpy``. Floating arrays must be float32 or
    float64 (minigrad's float types); integer and bool arrays are kept as they are."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    kind = array.dtype.kind
    if kind not in "fiub" or (kind == "f" and array.dtype not in (np.float32, np.float64)):
        raise TypeError(
            f"from_numpy supports float32, float64, integer and bool arrays, got {array.dtype}"
        )
    t = Tensor(np.empty((0,), dtype=array.dtype))
    t._data = array
    return t
