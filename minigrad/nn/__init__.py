"""Neural-network modules (PyTorch-shaped): Module, Parameter, layers, recurrent layers,
initializers (``nn.init``), ``summary``, gradient utilities (``nn.utils``), and
``nn.functional`` (an alias of minigrad.functional)."""

import sys as _sys

from .. import functional
from . import (
    init,
    utils,  # clip_grad_norm_, clip_grad_value_, detach_state
)
from . import layers as _layers
from .attention import AdditiveAttention, DotAttention, MultiheadAttention
from .layers import *  # noqa: F403  (the names of _layers.__all__, listed in __all__ below)
from .module import Module, Parameter
from .normalization import LayerNorm
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .summary import summary

# `import minigrad.nn.functional as F` works as `import torch.nn.functional as F` does
_sys.modules.setdefault(__name__ + ".functional", functional)

__all__ = [
    "Module",
    "Parameter",
    *_layers.__all__,  # Linear, Embedding, Dropout, Sequential, activations, Flatten, Identity
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "AdditiveAttention",
    "DotAttention",
    "MultiheadAttention",
    "LayerNorm",
    "summary",
    "init",
    "functional",
    "utils",
]
