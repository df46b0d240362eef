"""Neural-network modules (PyTorch-shaped): Module, Parameter, layers, recurrent layers,
initializers (``nn.init``), ``summary``, gradient utilities (``nn.utils``), and
``nn.functional`` (an alias of minigrad.functional)."""

import sys as _sys

from .. import functional
from . import (
    attention,
    init,
    layers,
    normalization,
    recurrent,
    utils,  # clip_grad_norm_, clip_grad_value_, detach_state
)

# re-exported: __all__ below takes these modules' own lists
from .attention import AdditiveAttention, DotAttention, MultiheadAttention  # noqa: F401
from .layers import (  # noqa: F401
    Dropout,
    Embedding,
    Flatten,
    Identity,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from .module import Module, Parameter
from .normalization import LayerNorm  # noqa: F401
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: F401
from .summary import summary

# `import minigrad.nn.functional as F` works as `import torch.nn.functional as F` does
_sys.modules.setdefault(__name__ + ".functional", functional)

__all__ = [
    "Module",
    "Parameter",
    *layers.__all__,
    *recurrent.__all__,
    *attention.__all__,
    *normalization.__all__,
    "summary",
    "init",
    "functional",
    "utils",
]
