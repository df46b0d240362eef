"""Feed-forward layers: Linear, Embedding, Dropout, activations, Flatten, Identity, Sequential."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = [
    "Linear",
    "Embedding",
    "Dropout",
    "Sequential",
    "Tanh",
    "Sigmoid",
    "ReLU",
    "Flatten",
    "Identity",
]


def _float_dtype(dtype):
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _positive_int(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return int(value)


def as_input(x, who):
    """``x`` as a Tensor (ndarrays and lists are wrapped, without gradient).  A tuple gets an
    error that points at the usual cause: a recurrent layer returning (output, state)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, tuple):
        raise TypeError(
            f"{who} got a tuple of {len(x)} items, expected a Tensor. If the previous layer is "
            "an RNN/LSTM/GRU returning (output, h_n), construct it with return_sequences=True "
            "(the output sequence) or return_sequences=False (the last output only)."
        )
    return Tensor(x)


class Linear(Module):
    """y = x W^T + b on the last dimension.  W (out_features, in_features) and b
    (out_features,) start as U(-k, k), k = 1/sqrt(in_features), as in PyTorch."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        dt = _float_dtype(dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dt))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if type(x) is not Tensor:
            x = as_input(x, "Linear")
        p = self._parameters
        w = p["weight"]
        if x.data.dtype != w.data.dtype:
            raise ValueError(
                f"Linear: input dtype must match the weight dtype {w.data.dtype}, "
                f"got {x.data.dtype} (convert the input, or the layer with "
                f".double()/.float())"
            )
        b = p["bias"]
        if x.data.size == 0:  # an empty batch: the generic ops (the GEMM kernels need rows)
            y = F.matmul(x, F.transpose(w, None))
            return y if b is None else y + b
        return F.linear(x, w) if b is None else F.linear(x, w, b)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Embedding(Module):
    """A lookup table: integer indices (any shape) -> rows of ``weight`` (num_embeddings,
    embedding_dim), appended as a last dimension.  Rows start as N(0, 1); the row at
    ``padding_idx`` starts at zero and never receives a gradient."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=None):
        super().__init__()
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(
                    f"padding_idx must be an int or None, got {type(padding_idx).__name__}"
                )
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(
                    f"padding_idx must be within [-{self.num_embeddings}, "
                    f"{self.num_embeddings}), got {padding_idx}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        dt = _float_dtype(dtype)
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dt))
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, indices):
        if isinstance(indices, tuple):
            as_input(indices, "Embedding")
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by 1/(1-p);
    in eval mode, the identity.  ``generator``: a numpy Generator to draw the masks from (for a
    stream of its own, e.g. one per thread); by default minigrad's (``manual_seed``,
    ``minigrad.random.use_generator``)."""

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be a number in [0, 1], got {p!r}")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                "Dropout generator must be a numpy Generator "
                f"(np.random.default_rng(seed)) or None, got {type(generator).__name__}"
            )
        self.p = float(p)
        self.generator = generator

    def forward(self, x):
        if type(x) is not Tensor:
            x = as_input(x, "Dropout")
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class Tanh(Module):
    """y = tanh(x)"""

    def forward(self, x):
        return F.tanh(x if type(x) is Tensor else as_input(x, "Tanh"))


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))"""

    def forward(self, x):
        return F.sigmoid(x if type(x) is Tensor else as_input(x, "Sigmoid"))


class ReLU(Module):
    """y = max(x, 0)"""

    def forward(self, x):
        return F.relu(x if type(x) is Tensor else as_input(x, "ReLU"))


class Identity(Module):
    """y = x (any arguments are accepted and ignored, as in PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge dimensions start_dim..end_dim (default: all but the batch dimension)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        x = x if type(x) is Tensor else as_input(x, "Flatten")
        nd = x.ndim
        for name, d in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if nd and not -nd <= d < nd:
                raise ValueError(
                    f"Flatten: {name}={d} is out of range for an input with "
                    f"{nd} dimensions (shape {x.shape})"
                )
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Sequential(Module):
    """Modules called one after another, each on the previous one's output.

    ``Sequential(m0, m1, ...)`` names the children "0", "1", ...; ``Sequential(OrderedDict)``
    keeps the given names.  Indexing (an int gives a module, a slice a new Sequential sharing
    the modules), ``len``, iteration and ``append`` work as in PyTorch.  Outputs are passed on
    unchanged: a recurrent layer followed by Linear should be built with ``return_sequences``
    set so it returns a Tensor rather than the ``(output, h_n)`` tuple.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                if not isinstance(m, Module):
                    raise TypeError(
                        f"Sequential argument {i} is a {type(m).__name__}, expected a Module"
                    )
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def _index(self, idx):
        n = len(self._modules)
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"Sequential indices must be ints or slices, got {type(idx).__name__}")
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of length {n}")
        return int(idx) % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            items = list(self._modules.items())[idx]
            return Sequential(OrderedDict(items))
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx, module):
        key = list(self._modules.keys())[self._index(idx)]
        if not isinstance(module, Module):
            raise TypeError(f"Sequential items must be Modules, got {type(module).__name__}")
        self._modules[key] = module

    def __delitem__(self, idx):
        if isinstance(idx, slice):
            keys = list(self._modules.keys())[idx]
        else:
            keys = [list(self._modules.keys())[self._index(idx)]]
        for k in keys:
            del self._modules[k]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Add ``module`` at the end (named by the next free integer); returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential items must be Modules, got {type(module).__name__}")
        i = len(self._modules)
        while str(i) in self._modules:
            i += 1
        self.add_module(str(i), module)
        return self
