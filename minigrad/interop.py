"""Move models between minigrad and PyTorch with the same weights.

``to_torch(module)`` builds the equivalent ``torch.nn`` module and ``from_torch(torch_module)``
the equivalent minigrad module. Supported layers: Linear, Embedding, RNN, LSTM, GRU, LayerNorm,
MultiheadAttention, Dropout, Tanh, Sigmoid, ReLU, Flatten, Identity. Any tree of modules whose
leaves are those converts: Sequential becomes Sequential; any other container (your own model
class) becomes a container with the same child names, so every ``state_dict`` key is the same
on both sides, but its ``forward`` is yours to write. To convert into your own class with its
forward, pass an instance of it: ``to_torch(model, into=TorchModel())`` and
``from_torch(torch_model, into=MyModel())`` copy every weight by ``state_dict`` name after
checking that names, shapes and dtypes all match (nothing is written otherwise).

A recurrent layer built with minigrad's Keras-style options (``return_sequences`` or
``return_state``) becomes a ``TorchRNN``/``TorchLSTM``/``TorchGRU``: a subclass of the torch
layer (same parameters and state_dict keys) whose ``forward(x, hx=None, lengths=None)`` returns
what the minigrad layer returns (``lengths`` through ``pack_padded_sequence``).  Plain layers
become plain torch layers.  torch is imported only inside these functions.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import nn

__all__ = ["to_torch", "from_torch", "ModuleTree"]

_INSTALL = "pip install torch==2.13.0"


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"minigrad.interop needs PyTorch, which is not installed ({e}). "
            f"Install it with: {_INSTALL}"
        ) from e
    return torch


# ------------------------------------------------------------------------ torch-side wrappers
_WRAPPERS: dict[str, type] = {}


def _keras_forward(self, x, hx=None, lengths=None):
    """forward of TorchRNN/TorchLSTM/TorchGRU: minigrad's lengths and return conventions."""
    torch = _torch()
    rnn_utils = torch.nn.utils.rnn
    base = type(self).__mro__[1]
    time_axis = 1 if self.batch_first else 0
    T = x.shape[time_axis]
    if lengths is not None:
        ln = torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
        packed = rnn_utils.pack_padded_sequence(
            x, ln, batch_first=self.batch_first, enforce_sorted=False
        )
        out, state = base.forward(self, packed, hx)
        out, _ = rnn_utils.pad_packed_sequence(out, batch_first=self.batch_first, total_length=T)
    else:
        out, state = base.forward(self, x, hx)
    rs = self.return_sequences
    if rs is False:
        h_n = state[0] if isinstance(state, tuple) else state
        out = h_n[-1] if not self.bidirectional else torch.cat([h_n[-2], h_n[-1]], dim=1)
    if rs is not None and not self.return_state:
        return out
    return out, state


def _keras_extra_repr(self):
    s = type(self).__mro__[1].extra_repr(self)
    if self.return_sequences is not None:
        s += f", return_sequences={self.return_sequences}"
    if self.return_state:
        s += ", return_state=True"
    return s


def _wrapper_class(mode):
    if mode in _WRAPPERS:
        return _WRAPPERS[mode]
    torch = _torch()
    base = getattr(torch.nn, mode)
    cls = type(
        f"Torch{mode}",
        (base,),
        {
            "__module__": __name__,
            "__doc__": (
                f"torch.nn.{mode} with minigrad's return_sequences / return_state / lengths."
            ),
            "forward": _keras_forward,
            "extra_repr": _keras_extra_repr,
            "return_sequences": None,
            "return_state": False,
        },
    )
    _WRAPPERS[mode] = cls
    return cls


def __getattr__(name):
    # TorchRNN / TorchLSTM / TorchGRU are made on first use (they subclass torch classes), and
    # made importable here so torch.save of a whole module can find them again.
    if name in ("TorchRNN", "TorchLSTM", "TorchGRU"):
        return _wrapper_class(name[len("Torch") :])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------ helpers
def _dtype_of(module):
    p = next(iter(module.parameters()), None)
    return None if p is None else p.data.dtype


def _torch_dtype(torch, dt):
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dt)]


def _copy_into_torch(torch, tmod, module):
    with torch.no_grad():
        state = tmod.state_dict()
        ours = module.state_dict()
        if set(state) != set(ours):
            raise RuntimeError(
                f"internal error: parameter names differ: torch {sorted(state)}, "
                f"minigrad {sorted(ours)}"
            )
        tmod.load_state_dict(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.items()}
        )
    return tmod


def _numpy_state(torch, tmod):
    out = OrderedDict()
    for k, v in tmod.state_dict().items():
        v = v.detach().cpu()
        if v.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"from_torch supports float32 and float64 weights, {k!r} is {v.dtype}")
        out[k] = v.numpy().copy()
    return out


_SIMPLE = ("Tanh", "Sigmoid", "ReLU", "Identity")
_SUPPORTED_NAMES = (
    "Linear",
    "Embedding",
    "RNN",
    "LSTM",
    "GRU",
    "LayerNorm",
    "MultiheadAttention",
    "Dropout",
    "Flatten",
) + _SIMPLE
_SUPPORTED_MG = tuple(getattr(nn, n) for n in _SUPPORTED_NAMES)
_SUPPORTED_TEXT = ", ".join(_SUPPORTED_NAMES)


# ------------------------------------------------------------------------ minigrad -> torch
def to_torch(module, into=None):
    """The torch.nn equivalent of a minigrad module, with copies of its weights (same dtype);
    with ``into`` (a torch module), the weights are copied into it by state_dict name instead.
    Training mode is carried over."""
    torch = _torch()
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_torch expects a minigrad nn.Module, got {type(module).__name__}")
    if into is not None:
        if not isinstance(into, torch.nn.Module):
            raise TypeError(f"to_torch: into must be a torch.nn.Module, got {type(into).__name__}")
        for name, sub in module.named_modules():
            if getattr(sub, "layer_norm", False) is True:
                raise TypeError(
                    f"to_torch does not support {type(sub).__name__} with layer_norm=True "
                    f"({name or 'the module'}): torch has no layer-normalised recurrent layer"
                )
        ours = module.state_dict()
        _check_same_state(
            "to_torch", ours, {k: v.detach().cpu().numpy() for k, v in into.state_dict().items()}
        )
        with torch.no_grad():
            into.load_state_dict(
                {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.items()}
            )
        into.train(module.training)
        return into
    tmod = _to_torch(torch, module)
    tmod.train(module.training)
    return tmod


def _check_same_state(who, src, dst):
    """Every key, shape and dtype of ``src`` equals ``dst``'s, or one ValueError lists all."""
    problems = []
    missing = [k for k in dst if k not in src]
    extra = [k for k in src if k not in dst]
    if missing:
        problems.append("missing in the source: " + ", ".join(map(repr, missing)))
    if extra:
        problems.append("not in the target: " + ", ".join(map(repr, extra)))
    for k in src:
        if k in dst:
            a, b = np.asarray(src[k]), np.asarray(dst[k])
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{k!r}: source {a.shape} {a.dtype}, target {b.shape} {b.dtype}")
    if problems:
        raise ValueError(
            f"{who}: the two modules' state_dicts differ; nothing was copied:\n  "
            + "\n  ".join(problems)
        )


def _torch_tree_class(torch):
    cls = _WRAPPERS.get("tree")
    if cls is None:

        def forward(self, *args, **kwargs):
            raise NotImplementedError(
                f"{self.source_class} was converted as a container of its layers (same "
                "state_dict names), but its forward cannot be translated; write the torch "
                "class and pass an instance as to_torch(model, into=...)"
            )

        cls = type(
            "TorchModuleTree",
            (torch.nn.Module,),
            {
                "__module__": __name__,
                "forward": forward,
                "__doc__": "A torch container with the child layers of a converted minigrad model.",
            },
        )
        _WRAPPERS["tree"] = cls
    return cls


def _recurrent_args(r, mode):
    """The constructor arguments (after the sizes) that an RNN, LSTM or GRU of minigrad and
    one of torch share, read from either (they name these attributes alike)."""
    args = dict(
        num_layers=r.num_layers,
        bias=r.bias,
        batch_first=r.batch_first,
        dropout=float(r.dropout),
        bidirectional=r.bidirectional,
    )
    if mode == "RNN":
        args["nonlinearity"] = r.nonlinearity
    return args


def _attention_args(a):
    """The constructor arguments (after embed_dim, num_heads) of a MultiheadAttention of
    minigrad or of torch, read from either (they name these attributes alike)."""
    return dict(
        dropout=a.dropout,
        bias=a.in_proj_bias is not None,
        add_bias_kv=a.bias_k is not None,
        add_zero_attn=a.add_zero_attn,
        kdim=a.kdim,
        vdim=a.vdim,
        batch_first=a.batch_first,
    )


def _to_torch(torch, m):
    tn = torch.nn
    if isinstance(m, nn.Sequential):
        return tn.Sequential(
            OrderedDict((name, _to_torch(torch, c)) for name, c in m._modules.items())
        )
    if type(m) not in _SUPPORTED_MG and m._modules and not m._parameters:
        tree = _torch_tree_class(torch)()
        tree.source_class = type(m).__name__
        for name, child in m._modules.items():
            if child is not None:
                tree.add_module(name, _to_torch(torch, child))
        return tree
    dt = _dtype_of(m)
    kw = {} if dt is None else {"dtype": _torch_dtype(torch, dt)}
    if isinstance(m, nn.Linear):
        t = tn.Linear(m.in_features, m.out_features, bias=m.bias is not None, **kw)
    elif isinstance(m, nn.Embedding):
        t = tn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, **kw)
    elif isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)):
        mode = m._mode
        if m.layer_norm:
            raise TypeError(
                f"to_torch does not support {mode} with layer_norm=True: torch.nn.{mode} has no "
                "layer-normalised form (build the torch model from its cells and LayerNorm)"
            )
        cls = getattr(tn, mode)
        if m.return_sequences is not None or m.return_state:
            cls = _wrapper_class(mode)
        t = cls(m.input_size, m.hidden_size, **_recurrent_args(m, mode), **kw)
        if cls is not getattr(tn, mode):
            t.return_sequences = m.return_sequences
            t.return_state = m.return_state
    elif isinstance(m, nn.LayerNorm):
        t = tn.LayerNorm(
            m.normalized_shape,
            eps=m.eps,
            elementwise_affine=m.elementwise_affine,
            bias=m.bias is not None,
            **kw,
        )
    elif isinstance(m, nn.MultiheadAttention):
        t = tn.MultiheadAttention(m.embed_dim, m.num_heads, **_attention_args(m), **kw)
    elif isinstance(m, nn.Dropout):
        return tn.Dropout(m.p)
    elif isinstance(m, nn.Flatten):
        return tn.Flatten(m.start_dim, m.end_dim)
    elif type(m).__name__ in _SIMPLE and type(m) is getattr(nn, type(m).__name__):
        return getattr(tn, type(m).__name__)()
    else:
        raise TypeError(
            f"to_torch does not support {type(m).__name__}; supported: "
            f"{_SUPPORTED_TEXT}, and any tree of modules made of those"
        )
    return _copy_into_torch(torch, t, m)


# ------------------------------------------------------------------------ torch -> minigrad
def from_torch(torch_module, into=None):
    """The minigrad equivalent of a torch.nn module, with copies of its weights (same dtype);
    with ``into`` (a minigrad module), the weights are copied into it by state_dict name
    instead. Training mode is carried over."""
    torch = _torch()
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(torch_module).__name__}")
    if into is not None:
        if not isinstance(into, nn.Module):
            raise TypeError(
                f"from_torch: into must be a minigrad nn.Module, got {type(into).__name__}"
            )
        theirs = _numpy_state(torch, torch_module)
        _check_same_state("from_torch", theirs, into.state_dict())
        into.load_state_dict(theirs)
        into.train(bool(torch_module.training))
        return into
    m = _from_torch(torch, torch_module)
    m.train(bool(torch_module.training))
    return m


class ModuleTree(nn.Module):
    """A minigrad container with the child layers of a converted torch model (same names)."""

    def __init__(self, source_class):
        super().__init__()
        self.source_class = source_class

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.source_class} was converted as a container of its layers (same state_dict "
            "names), but its forward cannot be translated; write the minigrad class and pass "
            "an instance as from_torch(torch_model, into=...)"
        )


def _from_torch(torch, t):
    tn = torch.nn
    if isinstance(t, tn.Sequential):
        return nn.Sequential(
            OrderedDict((name, _from_torch(torch, c)) for name, c in t._modules.items())
        )
    if (
        not isinstance(t, _supported_torch(torch))
        and t._modules
        and not list(t.named_parameters(recurse=False))
    ):
        tree = ModuleTree(type(t).__name__)
        for name, child in t._modules.items():
            if child is not None:
                tree.add_module(name, _from_torch(torch, child))
        return tree
    state = _numpy_state(torch, t)
    dt = next(iter(state.values())).dtype if state else None
    if isinstance(t, (tn.RNN, tn.LSTM, tn.GRU)):
        mode = "RNN" if isinstance(t, tn.RNN) else ("LSTM" if isinstance(t, tn.LSTM) else "GRU")
        if getattr(t, "proj_size", 0):
            raise ValueError(
                f"from_torch: LSTM with proj_size={t.proj_size} is not supported "
                "(minigrad's LSTM has no projection)"
            )
        m = getattr(nn, mode)(
            t.input_size,
            t.hidden_size,
            **_recurrent_args(t, mode),
            return_sequences=getattr(t, "return_sequences", None),
            return_state=bool(getattr(t, "return_state", False)),
            dtype=dt,
        )
    elif isinstance(t, tn.Linear):
        m = nn.Linear(t.in_features, t.out_features, bias=t.bias is not None, dtype=dt)
    elif isinstance(t, tn.Embedding):
        if t.max_norm is not None or t.scale_grad_by_freq:
            raise ValueError(
                "from_torch: Embedding with max_norm or scale_grad_by_freq is not "
                "supported (minigrad's Embedding is a plain lookup)"
            )
        m = nn.Embedding(t.num_embeddings, t.embedding_dim, padding_idx=t.padding_idx, dtype=dt)
    elif isinstance(t, tn.LayerNorm):
        m = nn.LayerNorm(
            t.normalized_shape,
            eps=t.eps,
            elementwise_affine=t.elementwise_affine,
            bias=getattr(t, "bias", None) is not None,
            dtype=dt,
        )
    elif isinstance(t, tn.MultiheadAttention):
        m = nn.MultiheadAttention(t.embed_dim, t.num_heads, **_attention_args(t), dtype=dt)
    elif isinstance(t, tn.Dropout):
        return nn.Dropout(t.p)
    elif isinstance(t, tn.Flatten):
        return nn.Flatten(t.start_dim, t.end_dim)
    elif type(t) in tuple(getattr(tn, n) for n in _SIMPLE):
        return getattr(nn, type(t).__name__)()
    else:
        raise TypeError(
            f"from_torch does not support {type(t).__name__}; supported: "
            f"{_SUPPORTED_TEXT}, and any tree of modules made of those"
        )
    m.load_state_dict(state)
    return m


def _supported_torch(torch):
    tn = torch.nn
    return tuple(getattr(tn, n) for n in _SUPPORTED_NAMES)
