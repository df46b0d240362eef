"""minigrad: a tape-based autograd framework with Cython recurrent kernels.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # array([2., 4.], dtype=float32)
"""
from .autograd import (Function, enable_grad, inference_mode, is_grad_enabled,
                       is_inference_mode_enabled, no_grad, set_grad_enabled)
from .tensor import Tensor, tensor
from .random import manual_seed
from . import functional
from .gradcheck import gradcheck, gradgradcheck, numerical_grad
from . import autograd, data, func, nn, optim
from .serialization import save, load
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["Tensor", "tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
           "set_grad_enabled", "inference_mode", "is_inference_mode_enabled", "gradcheck",
           "gradgradcheck", "numerical_grad", "autograd", "func", "functional", "manual_seed",
           "zeros", "ones", "randn", "arange", "data", "nn", "optim", "save", "load",
           "set_num_threads", "get_num_threads"]


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
