"""Recurrent layers: RNNCell, LSTMCell, GRUCell (one step) and RNN, LSTM, GRU (whole sequences).

Parameter names, shapes, gate order and initialization are PyTorch's, so a torch state_dict
converted to ndarrays loads unchanged::

    weight_ih_l{k}[_reverse]   (G*H, I) for layer 0, (G*H, D*H) above
    weight_hh_l{k}[_reverse]   (G*H, H)
    bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse]   (G*H,)
    G = 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n);  D = 2 if bidirectional else 1;
    every parameter starts as U(-1/sqrt(H), 1/sqrt(H)).

How a sequence becomes a tape (``impl``, one switch, three implementations of the same math):

* ``impl="sequence"`` (default, the fast path): each layer and direction is ONE tape node
  (``functional.lstm_sequence`` etc.) whose kernel runs the time loop, hoists ``x @ W_ih^T``
  over all steps into one GEMM, and computes the weight gradients as one GEMM after the
  backward loop.
* ``impl="step"``: the generic BPTT of the tape over compiled cells.  ``x @ W_ih^T + b_ih`` for
  all steps is ONE ``linear`` node (hoisted, as cuDNN does), split into T steps by ONE ``unbind``
  node; each step is one cell node on its slice (``functional.lstm_cell_step``: ``h @ W_hh^T``,
  the gates and the state update), and the outputs are joined by ONE ``stack`` node; backward
  is the engine walking that unrolled graph.
* ``impl="composed"``: the same unroll over the cell written in primitive tape ops
  (``functional.lstm_cell_composed``: ``linear``, ``split``, ``sigmoid``, ``tanh``, ``*``,
  ``+``), one step of x at a time; every gate is a node, and BPTT is nothing but the engine's
  chain rule over them.  The slowest, and the one to read.

A property test holds the three to the same outputs and gradients.  The cell modules take
``impl="step"`` (default: one compiled cell node) or ``impl="composed"``.

Layer norm (``layer_norm=True`` on LSTM, GRU, LSTMCell, GRUCell; Ba et al. 2016): every gate
pre-activation block is normalised over its H units, each block with its own gain and shift,
and the shifts take the biases' role (the layer then has no ``bias_ih``/``bias_hh``).  With
LN(v) = gain * (v - mean(v)) / sqrt(var(v) + 1e-5) + shift over one block of H values::

    LSTM  [a_i, a_f, a_g, a_o] = x W_ih^T + h W_hh^T, split into four blocks
          i, f, o = σ(LN_i(a_i)), σ(LN_f(a_f)), σ(LN_o(a_o));  g = tanh(LN_g(a_g))
          c' = f * c + i * g;  h' = o * tanh(LN_c(c'))
    GRU   [x_r, x_z, x_n] = x W_ih^T;  [h_r, h_z, h_n] = h W_hh^T
          r = σ(LN_r(x_r + h_r));  z = σ(LN_z(x_z + h_z))
          n = tanh(LN_nx(x_n) + r * LN_nh(h_n));  h' = (1 - z) * n + z * h

The GRU normalises the input and the recurrent part of n apart, so the reset gate still scales
a normalised recurrent contribution.  The gains and shifts are one parameter each per layer and
direction, ``layer_norm_weight_l{k}[_reverse]`` and ``layer_norm_bias_l{k}[_reverse]``
(``layer_norm_weight``/``layer_norm_bias`` on the cells), (5H,) = [i | f | g | o | c] for the
LSTM and (4H,) = [r | z | n_x | n_h] for the GRU, starting at gain 1 and shift 0.  All three
``impl`` run it: the compiled kernels normalise each row inside their fused elementwise pass,
``impl="composed"`` builds it from ``functional.layer_norm``.  PyTorch has no such layer, so
``interop.to_torch`` refuses it.  It composes with the regularisation below: recurrent dropout
masks h_{t-1} before h W_hh^T (so before the norms), and zoneout mixes the normalised cell's
new state h' (and c') with the previous one.

Variable lengths: ``forward(x, hx, lengths)`` with one length per sequence.  At padded steps
(t >= lengths[b]) the output is zero and the state is carried unchanged, so ``h_n`` is the
state after each sequence's last real step (what PyTorch's packed sequences give).  The reverse
direction reads each sequence backwards *within its length*: the layer input is gathered with
``idx[t, b] = lengths[b] - 1 - t`` (t < lengths[b], else t), run forwards, and gathered back
with the same index (the permutation is its own inverse), all differentiable.

Regularisation inside the layers (``RNN``, ``LSTM``, ``GRU``; training mode only unless said):

* ``input_dropout=p``: variational dropout of the layer input (Gal & Ghahramani 2016): one mask
  per sequence (batch row) and input feature, the same at every time step, scaled by 1/(1-p).
  It multiplies x before ``x @ W_ih^T``, which is where x enters the cell, so it is one
  differentiable multiply ahead of the hoisted projection in all three impls.
* ``recurrent_dropout=p``: the same on the state entering the recurrent matmul:
  gates = x W_ih^T + (h_{t-1} * m) W_hh^T + b, m (B, H) fixed over the sequence.  The state itself
  (the GRU's z * h_{t-1}, the outputs, h_n) is not masked.  It runs inside the compiled kernels
  (the per-step GEMM reads h_{t-1} * m; backward multiplies that GEMM's gradient by m).
* ``zoneout=p`` (RNN, LSTM and GRU; Krueger et al. 2016): at each step each unit keeps its previous
  state with probability p, h_t = d h_{t-1} + (1 - d) h~_t (the LSTM's c with masks of its own);
  in eval mode the expectation, h_t = p h_{t-1} + (1 - p) h~_t.

Every layer, direction and level of a stack draws its own masks, once per ``forward`` call,
from ``generator`` (a numpy Generator; by default minigrad's stream, see
``minigrad.manual_seed``).  These differ from ``dropout=``, PyTorch's argument: that one drops
each element of the outputs passed *between* stacked layers independently (a new mask at every
step) and never touches the recurrence.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import functional as F
from ..functional.recurrent import GRUSequence, LSTMSequence, RNNSequence, check_lengths
from ..random import default_rng
from ..tensor import Tensor
from . import init
from .layers import _float_dtype, _positive_int, as_input
from .module import Module, Parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]

_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_SWAP_BT = (1, 0, 2)  # (B, T, F) <-> (T, B, F)
_LAYER_IMPLS = ("sequence", "step", "composed")
_CELL_IMPLS = ("step", "composed")
_LN_BLOCKS = {"LSTM": 5, "GRU": 4}  # layer norms per cell: LSTM i, f, g, o, c; GRU r, z, n_x, n_h


def _check_impl(impl, choices):
    if impl not in choices:
        raise ValueError(f"impl must be one of {', '.join(repr(c) for c in choices)}, got {impl!r}")
    return impl


def _init_uniform(module):
    """Every parameter U(-1/sqrt(H), 1/sqrt(H)), drawn in registration order (PyTorch's); the
    layer norms' gains 1 and shifts 0."""
    k = 1.0 / math.sqrt(module.hidden_size)
    for name, p in module.named_parameters():
        if name.startswith("layer_norm_"):
            p.data[...] = 1.0 if name.startswith("layer_norm_weight") else 0.0
        else:
            init.uniform_(p, -k, k)


def _check_layer_norm(layer_norm, mode):
    if not isinstance(layer_norm, (bool, np.bool_)):
        raise ValueError(f"layer_norm must be True or False, got {layer_norm!r}")
    if layer_norm and mode not in _LN_BLOCKS:
        raise ValueError(f"layer_norm=True is available for LSTM and GRU, not {mode}")
    return bool(layer_norm)


def _add_layer_norm(module, sfx, H, dt):
    """The norms' gains and shifts of one layer and direction (LN_BLOCKS[mode] * H each)."""
    n = _LN_BLOCKS[module._mode] * H
    setattr(module, "layer_norm_weight" + sfx, Parameter(np.ones((n,), dtype=dt)))
    setattr(module, "layer_norm_bias" + sfx, Parameter(np.zeros((n,), dtype=dt)))
    return ("layer_norm_weight" + sfx, "layer_norm_bias" + sfx)


def _tensor(x, who, what):
    if x is None or type(x) is Tensor:
        return x
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (tuple, list)):
        raise ValueError(f"{who}: {what} must be a Tensor or an ndarray, got a {type(x).__name__}")
    return Tensor(np.asarray(x))


def _stack_states(states):
    """The final states of every layer and direction as one (L*D, B, H) tensor."""
    if len(states) > 1:
        return F.stack(states, 0)
    s = states[0]
    return s if s.ndim == 3 else F.reshape(s, (1,) + s.shape)  # sequence nodes give (1, B, H)


def _probability(name, p):
    """p as a float in [0, 1) (a dropout or zoneout rate), else ValueError."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def _keep_mask(rng, shape, p, dtype):
    """Inverted dropout's mask: 1/(1-p) with probability 1-p, else 0."""
    return (rng.random(shape) >= p).astype(dtype) / np.asarray(1 - p, dtype=dtype)


def _zone_weights(rng, shape, p, dtype, training):
    """Zoneout's weight of the previous state: 1 with probability p, else 0 (training); p, the
    expectation, everywhere (eval)."""
    if not training:
        return np.full(shape, p, dtype=dtype)
    return (rng.random(shape) < p).astype(dtype)


def _check_generator(who, generator):
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"{who} generator must be a numpy Generator "
            f"(np.random.default_rng(seed)) or None, got {type(generator).__name__}"
        )
    return generator


def _check_state(who, name, s, shape, dtype):
    if s.shape != shape:
        raise ValueError(f"{who}: {name} must have shape {shape}, got {s.shape}")
    if s.dtype != dtype:
        raise ValueError(
            f"{who}: {name} must have dtype {dtype} (the parameters' dtype), got {s.dtype}"
        )


# ------------------------------------------------------------------------------ cells
class _CellBase(Module):
    _mode: str | None = None

    def __init__(
        self,
        input_size,
        hidden_size,
        bias=True,
        dtype=None,
        impl="step",
        zoneout=0.0,
        generator=None,
        layer_norm=False,
    ):
        super().__init__()
        self.zoneout = _probability("zoneout", zoneout)
        self.generator = _check_generator(type(self).__name__, generator)
        self.impl = _check_impl(impl, _CELL_IMPLS)
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.bias = bool(bias)
        self.layer_norm = _check_layer_norm(layer_norm, self._mode)
        dt = _float_dtype(dtype)
        gh = _GATES[self._mode] * self.hidden_size
        self.weight_ih = Parameter(np.empty((gh, self.input_size), dtype=dt))
        self.weight_hh = Parameter(np.empty((gh, self.hidden_size), dtype=dt))
        if self.bias and not self.layer_norm:
            self.bias_ih = Parameter(np.empty((gh,), dtype=dt))
            self.bias_hh = Parameter(np.empty((gh,), dtype=dt))
        self._ln_names = _add_layer_norm(self, "", self.hidden_size, dt) if self.layer_norm else ()
        self.reset_parameters()

    reset_parameters = _init_uniform

    def _zoneout_masks(self, B, dtype):
        """The cell kernels' masks for one step: zoneout's weights of the previous h (and c)
        (B, H), drawn in training, p in eval; None when zoneout is 0."""
        if not self.zoneout:
            return None
        rng = self.generator or default_rng()
        shape, p, train = (B, self.hidden_size), self.zoneout, self.training
        zh = _zone_weights(rng, shape, p, dtype, train)
        zc = _zone_weights(rng, shape, p, dtype, train) if self._mode == "LSTM" else None
        return None, zh, zc

    def _prepare(self, x, states):
        """Validate x (B, I) or (I,) and the states (B, H) or (H,); returns
        (x, states, weights, unbatched)."""
        who = type(self).__name__
        x = as_input(x, who) if type(x) is not Tensor else x
        p = self._parameters
        w_ih = p["weight_ih"]
        dtype = w_ih.data.dtype
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{who}: input must have shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {x.shape}"
            )
        if x.dtype != dtype:
            raise ValueError(
                f"{who}: input must have dtype {dtype} (the parameters' dtype), got {x.dtype}"
            )
        unbatched = x.ndim == 1
        if unbatched:
            x = F.reshape(x, (1, self.input_size))
        B = x.shape[0]
        H = self.hidden_size
        out = []
        for name, s in states:
            s = _tensor(s, who, name)
            if s is None:
                s = Tensor(np.zeros((B, H), dtype=dtype))
            else:
                _check_state(who, name, s, (H,) if unbatched else (B, H), dtype)
                if unbatched:
                    s = F.reshape(s, (1, H))
            out.append(s)
        ws = (w_ih, p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"))
        return x, out, ws, unbatched

    def _kernel_options(self, x):
        """The cell function's trailing keywords: zoneout's masks and the layer norms'
        (gain, shift) (``ln_w``, ``ln_b``; absent without layer norm)."""
        kw = {"masks": self._zoneout_masks(x.shape[0], x.dtype)}
        if self._ln_names:
            kw["ln_w"], kw["ln_b"] = (self._parameters[n] for n in self._ln_names)
        return kw

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.impl != "step":
            s += f", impl={self.impl!r}"
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        return s


def _step_masks(masks, t):
    """Step t's kernel masks from a sequence's (drop_h, zone_h, zone_c): the dropout mask is the
    same at every step, the zoneout weights are zone_h[t], zone_c[t]."""
    if masks is None:
        return None
    drop_h, zone_h, zone_c = masks
    return drop_h, None if zone_h is None else zone_h[t], None if zone_c is None else zone_c[t]


def _squeeze0(t):
    return F.reshape(t, t.shape[1:])


class RNNCell(_CellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu.
    ``forward(x, hx=None) -> h'``; x (B, I) or (I,), hx (B, H) or (H,) (zeros when None).
    ``impl="step"`` (default) runs one compiled cell node, ``impl="composed"`` the cell written
    in primitive tape ops (the same for LSTMCell and GRUCell).  ``zoneout``, ``generator``: as
    on LSTMCell (on h)."""

    _mode = "RNN"

    def __init__(
        self,
        input_size,
        hidden_size,
        bias=True,
        nonlinearity="tanh",
        dtype=None,
        impl="step",
        zoneout=0.0,
        generator=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, dtype, impl, zoneout, generator)
        self.nonlinearity = nonlinearity

    def forward(self, x, hx=None):
        x, (h,), ws, unbatched = self._prepare(x, [("hx", hx)])
        cell = F.rnn_cell if self.impl == "step" else F.rnn_cell_composed
        h1 = cell(x, h, *ws, nonlinearity=self.nonlinearity, **self._kernel_options(x))
        return _squeeze0(h1) if unbatched else h1

    def extra_repr(self):
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class LSTMCell(_CellBase):
    """One LSTM step (gates i, f, g, o).  ``forward(x, hx=None) -> (h', c')`` with
    hx = (h, c) (zeros when None).  ``zoneout=p``: in training each unit of h and of c keeps
    its previous value with probability p (masks drawn per call from ``generator``), in eval
    h' = p h + (1 - p) h'~ (c likewise); recurrent dropout, fixed over a sequence, needs the
    sequence: ``nn.LSTM(recurrent_dropout=)``.  ``layer_norm=True``: the layer-normalised cell
    (the module docstring: LN per gate block and on c' before its tanh,
    h' = o * tanh(LN_c(c')))."""

    _mode = "LSTM"

    def forward(self, x, hx=None):
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        x, (h, c), ws, unbatched = self._prepare(x, [("h", hx[0]), ("c", hx[1])])
        cell = F.lstm_cell if self.impl == "step" else F.lstm_cell_composed
        h1, c1 = cell(x, h, c, *ws, **self._kernel_options(x))
        if unbatched:
            return _squeeze0(h1), _squeeze0(c1)
        return h1, c1


class GRUCell(_CellBase):
    """One GRU step (gates r, z, n; PyTorch's reset-after form).  ``forward(x, hx=None) -> h'``.
    ``zoneout``, ``generator``: as on LSTMCell (on h).  ``layer_norm=True``: the
    layer-normalised cell (the module docstring: LN on r's and z's pre-activations and on n's
    input and recurrent parts apart)."""

    _mode = "GRU"

    def forward(self, x, hx=None):
        x, (h,), ws, unbatched = self._prepare(x, [("hx", hx)])
        cell = F.gru_cell if self.impl == "step" else F.gru_cell_composed
        h1 = cell(x, h, *ws, **self._kernel_options(x))
        return _squeeze0(h1) if unbatched else h1


# ------------------------------------------------------------------------------ sequences
class _RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU (see the module docstring)."""

    _mode: str | None = None

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        return_sequences=None,
        return_state=False,
        impl="sequence",
        dtype=None,
        input_dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=0.0,
        generator=None,
        layer_norm=False,
    ):
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_layers = _positive_int("num_layers", num_layers)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float, np.floating))
            or not 0 <= dropout <= 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: dropout is applied "
                "between layers only, not after the last one",
                UserWarning,
                # the user's call: LSTM and GRU run this __init__ directly, RNN calls it
                stacklevel=2 if type(self).__init__ is _RNNBase.__init__ else 3,
            )
        if return_sequences not in (None, True, False):
            raise ValueError(
                f"return_sequences must be None, True or False, got {return_sequences!r}"
            )
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.return_sequences = return_sequences
        self.return_state = bool(return_state)
        self.impl = _check_impl(impl, _LAYER_IMPLS)
        self.input_dropout = _probability("input_dropout", input_dropout)
        self.recurrent_dropout = _probability("recurrent_dropout", recurrent_dropout)
        self.zoneout = _probability("zoneout", zoneout)
        self.generator = _check_generator(self._mode, generator)
        self.layer_norm = _check_layer_norm(layer_norm, self._mode)
        self.nonlinearity = "tanh"  # RNN sets its own after this
        dt = _float_dtype(dtype)
        H = self.hidden_size
        gh = _GATES[self._mode] * H
        D = 2 if self.bidirectional else 1
        names = []  # per (layer, direction): (w_ih, w_hh, b_ih, b_hh) names, b_* None without bias
        ln_names = []  # per (layer, direction): the layer norms' (gain, shift) names, or ()
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * H
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                setattr(self, "weight_ih" + sfx, Parameter(np.empty((gh, in_k), dtype=dt)))
                setattr(self, "weight_hh" + sfx, Parameter(np.empty((gh, H), dtype=dt)))
                if self.bias and not self.layer_norm:
                    setattr(self, "bias_ih" + sfx, Parameter(np.empty((gh,), dtype=dt)))
                    setattr(self, "bias_hh" + sfx, Parameter(np.empty((gh,), dtype=dt)))
                    names.append(
                        ("weight_ih" + sfx, "weight_hh" + sfx, "bias_ih" + sfx, "bias_hh" + sfx)
                    )
                else:
                    names.append(("weight_ih" + sfx, "weight_hh" + sfx, None, None))
                ln_names.append(_add_layer_norm(self, sfx, H, dt) if self.layer_norm else ())
        self._names = names
        self._ln_names = ln_names
        self.reset_parameters()

    reset_parameters = _init_uniform

    @property
    def all_weights(self):
        """[[w_ih, w_hh, b_ih, b_hh], ...] per layer and direction (PyTorch's order); with
        layer norm [w_ih, w_hh, ln gain, ln shift]."""
        p = self._parameters
        return [
            [p[n] for n in names + ln if n is not None]
            for names, ln in zip(self._names, self._ln_names)
        ]

    def flatten_parameters(self):
        """No-op, for PyTorch code (minigrad's weights are already one array each)."""

    # ----- validation -------------------------------------------------------------------
    def _split_state(self, s, name, B, dtype, layered):
        """hx part (L*D, B, H) -> list of L*D tensors (B, H) (one unbind node); [s] as given
        when layered (one layer run as a sequence node, which takes (1, B, H))."""
        who = type(self).__name__
        s = _tensor(s, who, name)
        LD = self.num_layers * (2 if self.bidirectional else 1)
        _check_state(who, name, s, (LD, B, self.hidden_size), dtype)
        if LD == 1:
            return [s] if layered else [F.reshape(s, (B, self.hidden_size))]
        return list(F.unbind(s, 0))

    def _states(self, hx, B, dtype, layered):
        """(h0 list, c0 list); entries None mean zeros; layered: see _split_state."""
        LD = self.num_layers * (2 if self.bidirectional else 1)
        none = [None] * LD
        if self._mode == "LSTM":
            if hx is None:
                return none, none
            if not isinstance(hx, (tuple, list)) or len(hx) != 2 or hx[0] is None or hx[1] is None:
                got = (
                    f"({', '.join(type(v).__name__ for v in hx)})"
                    if isinstance(hx, (tuple, list))
                    else type(hx).__name__
                )
                raise ValueError(
                    f"LSTM: hx must be a tuple (h_0, c_0) of two tensors of shape "
                    f"({LD}, {B}, {self.hidden_size}) each (or None for zeros), "
                    f"got {got}"
                )
            return (
                self._split_state(hx[0], "h_0", B, dtype, layered),
                self._split_state(hx[1], "c_0", B, dtype, layered),
            )
        if hx is None:
            return none, none
        if isinstance(hx, (tuple, list)):
            raise ValueError(
                f"{type(self).__name__}: hx must be one Tensor of shape "
                f"({LD}, {B}, {self.hidden_size}), got a {type(hx).__name__}"
            )
        return self._split_state(hx, "h_0", B, dtype, layered), none

    def _draw_masks(self, T, B, dtype):
        """One (input mask, kernel masks) pair per layer and direction, drawn once per forward
        call in that order: the input mask (B, I_k) multiplies the layer's input at every step
        (None when off or in eval); the kernel masks are None or (drop_h, zone_h, zone_c) as the
        ``functional`` sequences take them (see the class docstring)."""
        D = 2 if self.bidirectional else 1
        pi, pr, pz = self.input_dropout, self.recurrent_dropout, self.zoneout
        train = self.training
        out = []
        if not (pz or (train and (pi or pr))):
            return [(None, None)] * (self.num_layers * D)
        rng = self.generator or default_rng()
        H = self.hidden_size
        for k in range(self.num_layers):
            width = self.input_size if k == 0 else D * H
            for _ in range(D):
                xm = _keep_mask(rng, (B, width), pi, dtype) if pi and train else None
                hm = _keep_mask(rng, (B, H), pr, dtype) if pr and train else None
                zh = _zone_weights(rng, (T, B, H), pz, dtype, train) if pz else None
                zc = (
                    _zone_weights(rng, (T, B, H), pz, dtype, train)
                    if zh is not None and (self._mode == "LSTM")
                    else None
                )
                out.append((xm, None if hm is None and zh is None else (hm, zh, zc)))
        return out

    # ----- forward ----------------------------------------------------------------------
    def forward(self, x, hx=None, lengths=None):
        """Run the layers over x: (T, B, input_size), or (B, T, input_size) when batch_first.

        ``hx``: initial state, (num_layers*D, B, H) (LSTM: a tuple (h_0, c_0)), zeros when
        None.  ``lengths``: ints, one per sequence, in [1, T] (see the module docstring).

        Returns, with output (T, B, D*H) ((B, T, D*H) when batch_first) and
        h_n (and c_n) (num_layers*D, B, H):

        * return_sequences=None (default): ``(output, h_n)``; LSTM ``(output, (h_n, c_n))``.
        * return_sequences=True: ``output`` only.
        * return_sequences=False: the last step's output only, (B, D*H): the forward
          direction's output at step lengths-1 (or T-1) next to the reverse direction's final
          state (Keras' Bidirectional), i.e. the last layer's h_n of both directions.
        * return_state=True (with True or False above): ``(that output, h_n)``; LSTM
          ``(that output, (h_n, c_n))`` -- the states have the hx shape, so they can be
          passed on as another layer's hx.
        """
        who = self._mode
        if type(x) is not Tensor:
            x = as_input(x, who)
        xd = x.data
        p = self._parameters
        names = self._names
        dtype = p[names[0][0]].data.dtype
        if xd.ndim != 3 or xd.shape[2] != self.input_size:
            layout = "(batch, time, " if self.batch_first else "(time, batch, "
            raise ValueError(
                f"{who}: input must be 3-D {layout}{self.input_size}), got shape {xd.shape}"
            )
        if xd.dtype != dtype:
            raise ValueError(
                f"{who}: input must have dtype {dtype} (the parameters' dtype), got {xd.dtype}"
            )
        if self.batch_first:
            B, T = xd.shape[0], xd.shape[1]
            x = F.transpose(x, _SWAP_BT)
        else:
            T, B = xd.shape[0], xd.shape[1]
        if T == 0 or B == 0:
            raise ValueError(
                f"{who}: input must have at least one time step and one sequence, "
                f"got shape {xd.shape}"
            )
        if lengths is not None:
            lengths = check_lengths(lengths, T, B, who)
            if lengths.min() == T:
                lengths = None  # every sequence is full: the plain path computes the same thing
        D = 2 if self.bidirectional else 1
        L = self.num_layers
        rs = self.return_sequences
        impl = self.impl
        # One layer and direction run as a sequence node whose states are returned: the node
        # takes and returns them in h_n's (1, B, H) layout, so no reshape nodes sit around it.
        layered = L * D == 1 and impl == "sequence" and rs is not False
        h0s, c0s = self._states(hx, B, dtype, layered)
        if layered:
            zeros = np.zeros((1, B, self.hidden_size), dtype)
            h0s = [zeros if h0s[0] is None else h0s[0]]
            if self._mode == "LSTM":
                c0s = [zeros if c0s[0] is None else c0s[0]]
        rev_idx = None
        if D == 2:
            if lengths is None:
                rev_idx = slice(None, None, -1)
            else:
                t = np.arange(T)[:, None]
                rev_idx = (np.where(t < lengths, lengths - 1 - t, t), np.arange(B)[None, :])
        mask = None
        if lengths is not None and impl != "sequence":
            mask = (np.arange(T)[:, None] < lengths)[:, :, None]  # (T, B, 1) real steps

        masks = self._draw_masks(T, B, dtype)
        inp = x
        hns, cns = [], []
        for k in range(L):
            need_ys = k < L - 1 or rs is not False
            outs = []
            for d in range(D):
                i = k * D + d
                nm = names[i]
                ws = (
                    p[nm[0]],
                    p[nm[1]],
                    None if nm[2] is None else p[nm[2]],
                    None if nm[3] is None else p[nm[3]],
                )
                ln = tuple(p[n] for n in self._ln_names[i])
                src = inp if d == 0 else F.getitem(inp, rev_idx)
                xm, km = masks[i]
                if xm is not None:  # input dropout: one mask for every step, before x W_ih^T
                    src = src * xm
                if impl == "sequence":
                    ys, hn, cn = self._run_sequence(src, h0s[i], c0s[i], ws, lengths, B, km, ln)
                else:
                    ys, hn, cn = self._run_cells(
                        src, h0s[i], c0s[i], ws, mask, B, need_ys, impl, km, ln
                    )
                if d == 1 and need_ys:
                    ys = F.getitem(ys, rev_idx)
                outs.append(ys)
                hns.append(hn)
                cns.append(cn)
            if need_ys:
                inp = outs[0] if D == 1 else F.concatenate(outs, axis=2)
                if k < L - 1 and self.dropout > 0 and self.training:
                    inp = F.dropout(inp, self.dropout, True)

        if rs is False:
            out = hns[-1] if D == 1 else F.concatenate(hns[-2:], axis=1)
        else:
            out = F.transpose(inp, _SWAP_BT) if self.batch_first else inp
        if rs is not None and not self.return_state:
            return out
        h_n = _stack_states(hns)
        if self._mode != "LSTM":
            return out, h_n
        return out, (h_n, _stack_states(cns))

    def _run_sequence(self, src, h0, c0, ws, lengths, B, masks, ln=()):
        """One whole-sequence node (``functional.lstm_sequence``'s, called directly: forward has
        checked x, the states and lengths); ln: the layer norms' (gain, shift), or ()."""
        mode = self._mode
        dtype = src.data.dtype
        if h0 is None:
            h0 = np.zeros((B, self.hidden_size), dtype=dtype)
        ws = ws if ws[2] is not None else ws[:2]
        if mode == "LSTM":
            if c0 is None:
                c0 = np.zeros((B, self.hidden_size), dtype=dtype)
            return LSTMSequence(lengths, bool(ln)).with_masks(masks)(src, h0, c0, *ws, *ln)
        if mode == "GRU":
            ys, hn = GRUSequence(lengths, bool(ln)).with_masks(masks)(src, h0, *ws, *ln)
        else:
            ys, hn = RNNSequence(lengths, self.nonlinearity).with_masks(masks)(src, h0, *ws)
        return ys, hn, None

    def _run_cells(self, src, h, c, ws, mask, B, need_ys, impl, masks, ln=()):
        """The per-step unroll.  impl "step": one linear node (the input projection of all
        steps), one unbind node, T compiled cell-step nodes, one stack node.  impl "composed":
        one unbind node of x, T cells of primitive ops, one stack node."""
        mode = self._mode
        dtype = src.data.dtype
        H = self.hidden_size
        if h is None:
            h = np.zeros((B, H), dtype=dtype)
        if mode == "LSTM" and c is None:
            c = np.zeros((B, H), dtype=dtype)
        w_ih, w_hh, b_ih, b_hh = ws
        nl = self.nonlinearity
        if impl == "step":
            xs = F.unbind(F.linear(src, w_ih, b_ih), 0)  # x W_ih^T + b_ih, hoisted: one GEMM
            if mode == "LSTM":

                def cell(x_t, h, c, m):
                    return F.lstm_cell_step(x_t, h, c, w_hh, b_hh, m, *ln)
            elif mode == "GRU":

                def cell(x_t, h, c, m):
                    return F.gru_cell_step(x_t, h, w_hh, b_hh, m, *ln), None
            else:

                def cell(x_t, h, c, m):
                    return F.rnn_cell_step(x_t, h, w_hh, b_hh, nl, m), None
        elif impl == "composed":
            xs = F.unbind(src, 0)
            if mode == "LSTM":

                def cell(x_t, h, c, m):
                    return F.lstm_cell_composed(x_t, h, c, w_ih, w_hh, b_ih, b_hh, m, *ln)
            elif mode == "GRU":

                def cell(x_t, h, c, m):
                    return F.gru_cell_composed(x_t, h, w_ih, w_hh, b_ih, b_hh, m, *ln), None
            else:

                def cell(x_t, h, c, m):
                    return F.rnn_cell_composed(x_t, h, w_ih, w_hh, b_ih, b_hh, nl, m), None
        else:
            raise ValueError(
                f"{mode}: impl must be one of "
                f"{', '.join(repr(c) for c in _LAYER_IMPLS)}, got {impl!r}"
            )
        T = len(xs)
        # Steps before every sequence has ended need no masking.
        first_masked = T if mask is None else int(mask[:, :, 0].sum(axis=0).min())
        zero = np.zeros((), dtype=dtype)
        outs = []
        for t in range(T):
            h1, c1 = cell(xs[t], h, c, _step_masks(masks, t))
            if t < first_masked:
                y, h, c = h1, h1, c1
            else:  # padded rows: output zero, state carried unchanged
                m = mask[t]
                if need_ys:
                    y = F.where(m, h1, zero)
                h = F.where(m, h1, h)
                if mode == "LSTM":
                    c = F.where(m, c1, c)
            if need_ys:
                outs.append(y)
        ys = F.stack(outs, 0) if need_ys else None
        return ys, h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self._mode == "RNN" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.return_sequences is not None:
            s += f", return_sequences={self.return_sequences}"
        if self.return_state:
            s += ", return_state=True"
        if self.layer_norm:
            s += ", layer_norm=True"
        if self.impl != "sequence":
            s += f", impl={self.impl!r}"
        for name in ("input_dropout", "recurrent_dropout", "zoneout"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        return s


class RNN(_RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu.
    The arguments are those of LSTM and GRU with ``nonlinearity`` after ``num_layers``
    (PyTorch's order); see ``_RNNBase.forward`` for inputs and return values.
    ``input_dropout``, ``recurrent_dropout``, ``zoneout`` (on h), ``generator`` as on LSTM."""

    _mode = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *args, **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(_RNNBase):
    """LSTM (gates i, f, g, o): c_t = f*c_{t-1} + i*g, h_t = o*tanh(c_t).
    ``forward(x, hx=(h_0, c_0), lengths)`` -> ``(output, (h_n, c_n))`` by default.
    ``input_dropout``, ``recurrent_dropout``, ``zoneout`` (on h and c), ``generator``: see the
    module docstring; ``dropout`` is PyTorch's, between stacked layers.
    ``layer_norm=True``: the layer-normalised LSTM (Ba et al. 2016; the module docstring):
    i, f, g, o = σ, σ, tanh, σ of LN(x W_ih^T + h W_hh^T) per gate block, and
    h_t = o * tanh(LN_c(c_t)); parameters ``layer_norm_weight_l{k}``/``layer_norm_bias_l{k}``
    (5H,) instead of the biases."""

    _mode = "LSTM"


class GRU(_RNNBase):
    """GRU (gates r, z, n, PyTorch's form): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),
    h_t = (1-z)*n + z*h_{t-1}.  ``forward(x, hx, lengths)`` -> ``(output, h_n)`` by default.
    ``input_dropout``, ``recurrent_dropout`` (on h in W_hn h etc., not in z*h_{t-1}),
    ``zoneout``, ``generator``: see the module docstring.
    ``layer_norm=True``: the layer-normalised GRU (the module docstring):
    r = σ(LN_r(x_r + h_r)), z = σ(LN_z(x_z + h_z)), n = tanh(LN_nx(x_n) + r * LN_nh(h_n));
    parameters ``layer_norm_weight_l{k}``/``layer_norm_bias_l{k}`` (4H,) instead of the
    biases."""

    _mode = "GRU"
