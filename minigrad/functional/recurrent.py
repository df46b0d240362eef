"""Recurrent cells and whole sequences on the tape, three ways.

* Composed (``lstm_cell_composed`` etc.): the cell written in a few lines of primitive tape ops
  (``linear``, ``split``, ``sigmoid``, ``tanh``, ``*``, ``+``).  Nothing here knows about
  recurrence: unrolling it over time and calling ``backward`` *is* backpropagation through time,
  and every gate is a node ``print_tape`` shows.
* A cell step (``lstm_cell``, and ``lstm_cell_step`` on a precomputed input projection) is one
  node whose compiled kernel does the GEMM, every gate and the state update in one pass.
* A whole sequence (``lstm_sequence``) is also one node whose kernel runs the time loop itself
  (the fast path).

Recurrent dropout and zoneout take fixed masks (ndarrays, constants of the tape) on every form,
as ``masks=(drop_h, zone_h, zone_c)`` (an entry None when off; only the LSTM has a ``zone_c``):
``drop_h`` (B, H) multiplies the state entering the recurrent matmul, the same
mask at every step (its values 0 or 1/(1-p)); ``zone_h`` (and the LSTM's ``zone_c``),
(T, B, H) for a sequence and (B, H) for one step, is zoneout's weight of the previous state:
h_t = zone_h[t] * h_{t-1} + (1 - zone_h[t]) * h~_t.  ``nn.LSTM(recurrent_dropout=, zoneout=)``
draws them; here they are given, so every form computes the same function of them.

The compiled nodes call ``kernels.*``, so ``MINIGRAD_BACKEND=numpy`` runs the identical graph on
the NumPy twins.  The math and cache layouts are in docs/kernels.md.

Layer norm (LSTM and GRU, ``ln_w``/``ln_b``: the norms' gains and shifts, Ba et al. 2016): the
LSTM normalises each gate block's pre-activation and the cell state before its tanh,
``h1 = o * tanh(LN_c(c1))`` (ln_w, ln_b (5H,) = [i | f | g | o | c]); the GRU normalises
``x_r + h_r``, ``x_z + h_z``, and the input part ``x_n`` and the recurrent part ``h_n`` of n
separately, ``n = tanh(LN(x_n) + r * LN(h_n))`` (ln_w, ln_b (4H,) = [r | z | n_x | n_h]).  Each
block is normalised over its H units with eps 1e-5.  The compiled nodes take them as their last
two inputs and run the norms inside the kernels; the composed cells build them from
``layer_norm``.  With both, recurrent dropout masks the state before its matmul (so before the
norms), and zoneout mixes the states the layer-normalised cell produced with the previous ones.
"""

import math
import sys

import numpy as np

from .. import kernels
from ..autograd import _FREED, Function
from ..tensor import Tensor
from .arithmetic import linear
from .attention import layer_norm
from .elementwise import relu, sigmoid, tanh
from .shape import split

__all__ = [
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
    "rnn_cell_step",
    "lstm_cell_step",
    "gru_cell_step",
    "rnn_sequence",
    "lstm_sequence",
    "gru_sequence",
    "rnn_cell_composed",
    "lstm_cell_composed",
    "gru_cell_composed",
]

_contiguous = np.ascontiguousarray


def _data(t):
    """The ndarray behind a Tensor (anything else as given)."""
    return t.data if isinstance(t, Tensor) else t


def _bias_args(b_ih, b_hh):
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None")
    return () if b_ih is None else (b_ih, b_hh)


def _zeros_like_state(x, batch_axis, hidden, what):
    xd = _data(x)
    if xd.ndim < 2:
        raise ValueError(f"{what}: x must have a batch dimension, got shape {xd.shape}")
    return np.zeros((xd.shape[batch_axis], hidden), dtype=xd.dtype)


def _grad_or_zeros(g, like):
    """An output's gradient as the kernels take it: contiguous, or zeros when nothing used it."""
    return _contiguous(g) if g is not None else _zeros(like.shape, like.dtype)


def _state_2d(s, B, name):
    """h0 or c0 as the kernels take it, (B, H): a (1, B, H) state (a one-layer module's layout)
    as a view of it, a 2-D one as it is (the kernel checks its sizes)."""
    if s.ndim == 2:
        return s
    if s.ndim != 3 or s.shape[:2] != (1, B):
        raise ValueError(
            f"{name} must have shape (B, H) or (1, B, H) with B = {B} (x's batch "
            f"size), got {s.shape}"
        )
    return s.reshape(s.shape[1:])


def _state_grad_2d(g):
    """A state's gradient as (B, H) (a view), None kept: the sequence nodes also take and return
    the modules' (num_layers * directions, B, H) layout when that has one layer, so a one-layer
    module needs no reshape node around them; the gradients arrive in the states' shape."""
    return g if g is None or g.ndim == 2 else g.reshape(g.shape[1:])


def _shaped(g, shape):
    """A state's gradient in the shape the state came in (None: not computed)."""
    return None if g is None else g.reshape(shape)


def _outputs_grad(dys):
    """The outputs' gradient, or None when no output was used (only the final state was): the
    kernels then skip adding it at every step."""
    return None if dys is None else _contiguous(dys)


_ZEROS: dict[np.dtype, np.ndarray] = {}


def _zeros(shape, dtype):
    """A zero gradient for an output nobody used. Kernels only read their gradient inputs, so one
    cached, read-only buffer per dtype serves every step (no fresh allocation and page faults)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)  # (np.prod of a tuple costs ~5 us: once per step)
    buf = _ZEROS.get(dtype)
    if buf is None or buf.size < n:
        buf = np.zeros(max(n, 1), dtype=dtype)
        buf.flags.writeable = False
        _ZEROS[dtype] = buf
    return buf[:n].reshape(shape)


def check_lengths(lengths, T, B, who):
    """``lengths`` (ints, one per sequence, each in [1, T]) as a contiguous int64 array (B,), or
    None when None.  The one check in Python: the modules and the ``*_sequence`` functions call
    it where they first receive ``lengths``; ``who`` names the caller in the message."""
    if lengths is None:
        return None
    ln = _data(lengths)
    try:
        ln = np.asarray(ln)
    except (TypeError, ValueError):
        raise ValueError(
            f"{who}: lengths must be a sequence of ints, got {type(lengths).__name__}"
        ) from None
    if ln.dtype.kind not in "iu":
        raise ValueError(f"{who}: lengths must be integers, got dtype {ln.dtype}")
    if ln.shape != (B,):
        raise ValueError(
            f"{who}: lengths must have shape ({B},) (one per sequence in the batch), got {ln.shape}"
        )
    if ln.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(ln.min()), int(ln.max())
    if lo < 1 or hi > T:
        raise ValueError(
            f"{who}: lengths must lie in [1, {T}] (T = {T} time steps), got min {lo}, max {hi}"
        )
    return np.ascontiguousarray(ln, dtype=np.int64)


LN_EPS = 1e-5  # the layer norm's eps, as nn.LayerNorm's default (the kernels' MG_LN_EPS)


class _KernelFunction(Function):
    """A node whose backward is one compiled kernel call: every gradient it returns is a new
    array nothing else refers to, so a leaf's first ``.grad`` can keep it without a copy.
    ``masks``: the kernels' recurrent dropout and zoneout arguments (drop_h, zone_h, zone_c),
    passed to its forward and backward kernels alike (``with_masks``).  ``layer_norm``: the last
    two inputs are the norms' gains and shifts (the kernels' ``ln``)."""

    fresh_grads = True
    masks: dict = {}
    layer_norm = False
    ln = None

    def with_masks(self, masks):
        """Set the kernels' ``masks`` argument: None, or (drop_h, zone_h, zone_c) with entries
        None when off (an all-None tuple is None); returns the node."""
        if masks is not None:
            masks = _mask_parts(masks, 2, type(self).__name__)
            if any(m is not None for m in masks):
                self.masks = {"masks": tuple(None if m is None else _contiguous(m) for m in masks)}
        return self

    # The compiled kernels compute first derivatives only: a second-order pass
    # (create_graph=True) that reaches one of these nodes raises, naming the way that supports
    # any order.
    no_double_backward = (
        "the compiled recurrent kernels compute first derivatives only; build the layer with "
        'impl="composed" (made of differentiable ops) for higher-order derivatives'
    )

    def _extras(self, extra):
        """The inputs after the weights: the biases (a tuple, maybe empty); with layer norm the
        last two, (gain, shift), go to self.ln and the kernels get them as ``ln=``."""
        if not self.layer_norm:
            return extra
        self.ln = (_contiguous(extra[-2]), _contiguous(extra[-1]))
        return extra[:-2]

    def _kw(self):
        """The kernels' trailing keywords: ``masks=`` and ``ln=`` when they are on."""
        return self.masks if self.ln is None else {**self.masks, "ln": self.ln}


# ---------------------------------------------------------------- cells (one time step)
class _HiddenCell(_KernelFunction):
    """A cell node with one state h (RNN and GRU): calls ``kernels.<kernel>_forward`` and
    ``kernels.<kernel>_backward``, with ``self.options`` after their usual arguments."""

    kernel = ""
    options: tuple = ()

    def forward(self, x, h, w_ih, w_hh, *extra):
        b_ih, b_hh = self._extras(extra) or (None, None)
        return self._run(x, h, _contiguous(w_ih), w_hh, b_ih, b_hh)

    def _run(self, x, h, w_ih, w_hh, b_ih, b_hh):
        """The forward kernel; w_ih and b_ih None on an input projection (x is it)."""
        x, h, w_hh = _contiguous(x), _contiguous(h), _contiguous(w_hh)
        h1, cache = getattr(kernels, self.kernel + "_forward")(
            x, h, w_ih, w_hh, b_ih, b_hh, *self.options, **self._kw()
        )
        self.saved = (x, h, w_ih, w_hh, cache, b_hh is not None)
        return h1

    def _grads(self, dh1):
        """The backward kernel: (dx, dh, dw_ih, dw_hh, db_ih, db_hh[, dln_w, dln_b])."""
        x, h, w_ih, w_hh, cache, has_bias = self.saved
        return getattr(kernels, self.kernel + "_backward")(
            _contiguous(dh1),
            x,
            h,
            w_ih,
            w_hh,
            cache,
            has_bias,
            *self.options,
            need_dx=self.needs_input_grad[0],
            need_dh=self.needs_input_grad[1],
            **self._kw(),
        )

    def backward(self, dh1):
        dx, dh, dw_ih, dw_hh, db_ih, db_hh, *dln = self._grads(dh1)
        return (dx, dh, dw_ih, dw_hh) + ((db_ih, db_hh) if self.saved[-1] else ()) + tuple(dln)


class RNNCell(_HiddenCell):
    kernel = "rnn_cell"

    def __init__(self, nonlinearity):
        self.options = (nonlinearity,)


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", masks=None):
    """h1 = act(x W_ih^T + b_ih + (h * drop_h) W_hh^T + b_hh), act = tanh or relu (one fused
    kernel; drop_h: the recurrent dropout mask (B, H), or None); with zoneout
    h1 = zone_h*h + (1-zone_h)*h1 (zone_h (B, H), None: off)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if h is None:
        h = _zeros_like_state(x, 0, _data(w_hh).shape[-1], "rnn_cell")
    node = RNNCell(nonlinearity).with_masks(masks)
    return node(x, h, w_ih, w_hh, *_bias_args(b_ih, b_hh))


class LSTMCell(_KernelFunction):
    def __init__(self, layer_norm=False):
        self.layer_norm = layer_norm

    def forward(self, x, h, c, w_ih, w_hh, *extra):
        b_ih, b_hh = self._extras(extra) or (None, None)
        return self._run(x, h, c, _contiguous(w_ih), w_hh, b_ih, b_hh)

    def _run(self, x, h, c, w_ih, w_hh, b_ih, b_hh):
        """The forward kernel; w_ih and b_ih None on an input projection (x is it)."""
        x, h, c, w_hh = _contiguous(x), _contiguous(h), _contiguous(c), _contiguous(w_hh)
        h1, c1, cache = kernels.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, **self._kw())
        self.saved = (x, h, c, w_ih, w_hh, cache, b_hh is not None)
        return h1, c1

    def _grads(self, dh1, dc1):
        """The backward kernel: (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh[, dln_w, dln_b])."""
        x, h, c, w_ih, w_hh, cache, has_bias = self.saved
        return kernels.lstm_cell_backward(
            _grad_or_zeros(dh1, h),
            _grad_or_zeros(dc1, c),
            x,
            h,
            c,
            w_ih,
            w_hh,
            cache,
            has_bias,
            need_dx=self.needs_input_grad[0],
            need_dh=self.needs_input_grad[1] or self.needs_input_grad[2],
            **self._kw(),
        )

    def backward(self, dh1, dc1):
        dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, *dln = self._grads(dh1, dc1)
        return (dx, dh, dc, dw_ih, dw_hh) + ((db_ih, db_hh) if self.saved[-1] else ()) + tuple(dln)


def _ln_args(ln_w, ln_b):
    """The norms' (gain, shift) inputs of a node: () without layer norm."""
    if (ln_w is None) != (ln_b is None):
        raise ValueError("ln_w and ln_b must both be given or both be None")
    return () if ln_w is None else (ln_w, ln_b)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """(h1, c1): gates i,f,g,o = σ,σ,tanh,σ of (x W_ih^T + b_ih + (h * drop_h) W_hh^T + b_hh);
    c1 = f*c + i*g; h1 = o*tanh(c1)  (one fused kernel, one tape node, two outputs); with
    zoneout h1 = zone_h*h + (1-zone_h)*h1, c1 likewise (masks (B, H), None: off).
    ln_w, ln_b (5H,): layer norm (module docstring)."""
    H = _data(w_hh).shape[-1]
    if h is None:
        h = _zeros_like_state(x, 0, H, "lstm_cell")
    if c is None:
        c = _zeros_like_state(x, 0, H, "lstm_cell")
    ln = _ln_args(ln_w, ln_b)
    node = LSTMCell(bool(ln)).with_masks(masks)
    return node(x, h, c, w_ih, w_hh, *_bias_args(b_ih, b_hh), *ln)


class GRUCell(_HiddenCell):
    kernel = "gru_cell"

    def __init__(self, layer_norm=False):
        self.layer_norm = layer_norm


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """h1 = (1-z)*n + z*h with r,z = σ(..), n = tanh(x W_in^T + b_in + r*(h W_hn^T + b_hn));
    with recurrent dropout h*drop_h enters the matmuls, with zoneout
    h1 = zone_h*h + (1-zone_h)*h1 (masks (B, H), None: off).  ln_w, ln_b (4H,): layer norm
    (module docstring)."""
    if h is None:
        h = _zeros_like_state(x, 0, _data(w_hh).shape[-1], "gru_cell")
    ln = _ln_args(ln_w, ln_b)
    node = GRUCell(bool(ln)).with_masks(masks)
    return node(x, h, w_ih, w_hh, *_bias_args(b_ih, b_hh), *ln)


# ---------------------------------------------------------------- cells composed of primitive ops
# The same three cells as above, written with the tape's primitive ops and nothing else: each
# gate is a node of its own, and backward through an unrolled sequence of them is the engine's
# generic BPTT (``nn.LSTM(..., impl="composed")``).  The tests hold the compiled cells to these.
def _composed_state(s, x, H, name, what):
    """A composed cell's state: zeros (B, H) when None, else checked to be (B, H)."""
    B = _data(x).shape[0]
    if s is None:
        return _zeros_like_state(x, 0, H, what)
    shape = _data(s).shape
    if len(shape) != 2 or shape != (B, H):
        raise ValueError(f"{what}: {name} must have shape ({B}, {H}) (batch, hidden), got {shape}")
    return s


def _mask_parts(masks, nz, who):
    """masks (None or a tuple (drop_h, zone_h, zone_c)) as three ndarrays or None; the last
    2 - nz must be None (nz = 1: the RNN and GRU, no cell state)."""
    if masks is None:
        return None, None, None
    if not isinstance(masks, (tuple, list)) or len(masks) != 3:
        raise ValueError(
            f"{who}: masks must be None or a tuple (drop_h, zone_h, zone_c), got "
            f"{type(masks).__name__}"
            + (f" of length {len(masks)}" if isinstance(masks, (tuple, list)) else "")
        )
    for i, name in enumerate(("zone_h", "zone_c")):
        if i >= nz and masks[1 + i] is not None:
            raise ValueError(f"{who}: {name} must be None (this cell has no zoneout of it)")
    return tuple(None if m is None else _data(m) for m in masks)


def _cell_masks(masks, nz, who, h):
    """_mask_parts for one cell step, each mask checked to be the state's shape (B, H) and dtype
    (the kernels refuse the same; broadcasting a (H,) mask or promoting the state's dtype would
    be silent otherwise)."""
    parts = _mask_parts(masks, nz, who)
    state = _data(h)
    for name, m in zip(("drop_h", "zone_h", "zone_c"), parts):
        if m is not None and (m.shape != state.shape or m.dtype != state.dtype):
            raise ValueError(
                f"{who}: {name} must have the state's shape {state.shape} and dtype "
                f"{state.dtype}, got shape {m.shape} and dtype {m.dtype}"
            )
    return parts


def _dropped(h, drop_h):
    """The state entering the recurrent matmul: h * drop_h (h without recurrent dropout)."""
    return h if drop_h is None else h * _data(drop_h)


def _zoned(new, prev, z):
    """Zoneout: z * prev + (1 - z) * new, as new + (prev - new) * z (new when z is None)."""
    return new if z is None else new + (prev - new) * _data(z)


def _check_composed_input(x, what):
    if _data(x).ndim != 2:
        raise ValueError(f"{what}: x must have shape (B, I), got {_data(x).shape}")


def rnn_cell_composed(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", masks=None):
    """``rnn_cell`` from primitive ops: h1 = act(linear(x, W_ih, b_ih) + linear(h, W_hh, b_hh)),
    act = tanh or relu.  x (B, I), h (B, H) (zeros when None); drop_h: h * drop_h enters the
    second linear (recurrent dropout); zone_h: zoneout last, h1 = zone_h * h + (1 - zone_h) * h1."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    _bias_args(b_ih, b_hh)
    _check_composed_input(x, "rnn_cell_composed")
    h = _composed_state(h, x, _data(w_hh).shape[-1], "h", "rnn_cell_composed")
    drop_h, zone_h, _ = _cell_masks(masks, 1, "rnn_cell_composed", h)
    a = linear(x, w_ih, b_ih) + linear(_dropped(h, drop_h), w_hh, b_hh)
    return _zoned(tanh(a) if nonlinearity == "tanh" else relu(a), h, zone_h)


def _normalised(blocks, ln_w, ln_b, H):
    """Each block (B, H) through its own layer_norm, with the matching H-slices of the gains
    ln_w and shifts ln_b as its weight and bias (as many as there are blocks)."""
    ws, bs = split(ln_w, H, axis=0), split(ln_b, H, axis=0)
    return [layer_norm(a, H, w, b, LN_EPS) for a, w, b in zip(blocks, ws, bs)]


def lstm_cell_composed(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """``lstm_cell`` from primitive ops, returning (h1, c1): the gate pre-activations
    linear(x, W_ih, b_ih) + linear(h, W_hh, b_hh) split into i, f, g, o (H columns each);
    c1 = sigmoid(f) * c + sigmoid(i) * tanh(g);  h1 = sigmoid(o) * tanh(c1).  With layer
    norm (ln_w, ln_b (5H,)): i, f, g, o each through ``layer_norm`` and
    h1 = sigmoid(o) * tanh(layer_norm(c1)).  drop_h: h * drop_h enters the second linear;
    zone_h, zone_c: zoneout last, h1 = zone_h * h + (1 - zone_h) * h1 and c1 likewise."""
    _bias_args(b_ih, b_hh)
    ln = _ln_args(ln_w, ln_b)
    _check_composed_input(x, "lstm_cell_composed")
    H = _data(w_hh).shape[-1]
    h = _composed_state(h, x, H, "h", "lstm_cell_composed")
    c = _composed_state(c, x, H, "c", "lstm_cell_composed")
    drop_h, zone_h, zone_c = _cell_masks(masks, 2, "lstm_cell_composed", h)
    i, f, g, o = split(linear(x, w_ih, b_ih) + linear(_dropped(h, drop_h), w_hh, b_hh), H, axis=1)
    if ln:
        i, f, g, o = _normalised((i, f, g, o), ln_w, ln_b, H)
    c1 = sigmoid(f) * c + sigmoid(i) * tanh(g)
    if ln:
        (c_n,) = _normalised((c1,), ln_w[4 * H :], ln_b[4 * H :], H)
        h1 = sigmoid(o) * tanh(c_n)
    else:
        h1 = sigmoid(o) * tanh(c1)
    return _zoned(h1, h, zone_h), _zoned(c1, c, zone_c)


def gru_cell_composed(x, h, w_ih, w_hh, b_ih=None, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """``gru_cell`` from primitive ops (PyTorch's form, gates r, z, n):
    r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n),
    h1 = (1 - z) * n + z * h, where x_* and h_* are the H-column pieces of linear(x, W_ih, b_ih)
    and linear(h, W_hh, b_hh) (so b_hn sits inside r * (...), as in PyTorch).  With layer norm
    (ln_w, ln_b (4H,)): x_r + h_r, x_z + h_z, x_n and h_n each through ``layer_norm`` first.
    drop_h: h * drop_h enters the second linear (z * h keeps h); zone_h: zoneout as in
    ``lstm_cell_composed``."""
    _bias_args(b_ih, b_hh)
    ln = _ln_args(ln_w, ln_b)
    _check_composed_input(x, "gru_cell_composed")
    H = _data(w_hh).shape[-1]
    h = _composed_state(h, x, H, "h", "gru_cell_composed")
    drop_h, zone_h, _ = _cell_masks(masks, 1, "gru_cell_composed", h)
    x_r, x_z, x_n = split(linear(x, w_ih, b_ih), H, axis=1)
    h_r, h_z, h_n = split(linear(_dropped(h, drop_h), w_hh, b_hh), H, axis=1)
    a_r, a_z = x_r + h_r, x_z + h_z
    if ln:
        a_r, a_z, x_n, h_n = _normalised((a_r, a_z, x_n, h_n), ln_w, ln_b, H)
    r = sigmoid(a_r)
    z = sigmoid(a_z)
    n = tanh(x_n + r * h_n)
    return _zoned((1 - z) * n + z * h, h, zone_h)


# ---------------------------------------------------------------- cell steps on an input projection
# The unrolled modules (impl="step") compute x @ W_ih^T + b_ih for all steps in ONE linear node,
# split it per step with ONE unbind node, and run each step on its slice: the cell kernels called
# with w_ih None, which add h @ W_hh^T + b_hh to the given projection (no input GEMM per step).
class _HiddenCellStep(_HiddenCell):
    """A cell step with one state h (RNN and GRU) on an input projection xw: the kernels of
    ``_HiddenCell`` called with w_ih and b_ih None."""

    def forward(self, xw, h, w_hh, *extra):
        (b_hh,) = self._extras(extra) or (None,)
        return self._run(xw, h, None, w_hh, None, b_hh)

    def backward(self, dh1):
        dxw, dh, _, dw_hh, _, db_hh, *dln = self._grads(dh1)
        return (dxw, dh, dw_hh) + ((db_hh,) if self.saved[-1] else ()) + tuple(dln)


class RNNCellStep(_HiddenCellStep):
    kernel = "rnn_cell"

    def __init__(self, nonlinearity):
        self.options = (nonlinearity,)


def rnn_cell_step(xw, h, w_hh, b_hh=None, nonlinearity="tanh", masks=None):
    """h1 = act(xw + (h * drop_h) W_hh^T + b_hh), xw = x W_ih^T + b_ih given (B, H): one step of
    ``rnn_cell`` on a precomputed input projection."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    node = RNNCellStep(nonlinearity).with_masks(masks)
    return node(xw, h, w_hh, *(() if b_hh is None else (b_hh,)))


class LSTMCellStep(LSTMCell):
    """The LSTM cell on an input projection xw: ``LSTMCell``'s kernels with w_ih, b_ih None."""

    def forward(self, xw, h, c, w_hh, *extra):
        (b_hh,) = self._extras(extra) or (None,)
        return self._run(xw, h, c, None, w_hh, None, b_hh)

    def backward(self, dh1, dc1):
        dxw, dh, dc, _, dw_hh, _, db_hh, *dln = self._grads(dh1, dc1)
        return (dxw, dh, dc, dw_hh) + ((db_hh,) if self.saved[-1] else ()) + tuple(dln)


def lstm_cell_step(xw, h, c, w_hh, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """(h1, c1) of ``lstm_cell`` from a precomputed input projection xw = x W_ih^T + b_ih
    (B, 4H): gates = xw + (h * drop_h) W_hh^T + b_hh; zoneout as in ``lstm_cell``.
    ln_w, ln_b (5H,): layer norm."""
    ln = _ln_args(ln_w, ln_b)
    node = LSTMCellStep(bool(ln)).with_masks(masks)
    return node(xw, h, c, w_hh, *(() if b_hh is None else (b_hh,)), *ln)


class GRUCellStep(_HiddenCellStep):
    kernel = "gru_cell"

    def __init__(self, layer_norm=False):
        self.layer_norm = layer_norm


def gru_cell_step(xw, h, w_hh, b_hh=None, masks=None, ln_w=None, ln_b=None):
    """h1 of ``gru_cell`` from a precomputed input projection xw = x W_ih^T + b_ih (B, 3H):
    r, z = σ(xw_rz + (h W_hh^T + b_hh)_rz), n = tanh(xw_n + r (h W_hn^T + b_hn)); masks as in
    ``gru_cell``.  ln_w, ln_b (4H,): layer norm."""
    ln = _ln_args(ln_w, ln_b)
    node = GRUCellStep(bool(ln)).with_masks(masks)
    return node(xw, h, w_hh, *(() if b_hh is None else (b_hh,)), *ln)


# ---------------------------------------------------------------- whole sequences
class _SequenceFunction(_KernelFunction):
    """A node of a whole-sequence kernel. After its backward (without ``retain_graph``) it gives
    the forward's cache arrays back to the compiled kernels, which reuse them for the next
    forward of the same shape (``minigrad._checks.recycle``: fresh multi-megabyte arrays cost a
    page fault per 4 KB on first write). Only what nothing else refers to is reused: the saved
    tuple, the cache tuple and each array are checked to be held here alone.  The weight and
    bias gradients can go straight into destinations (``autograd.grad_out``): ``weights`` is
    the input index of W_ih (W_hh, b_ih, b_hh follow it)."""

    takes_grad_out = True
    weights = 0

    def _out_args(self):
        w = self.weights
        if not self.saved[-1]:  # no biases: the inputs after the weights are the norms'
            return self.grad_out_args((w, w + 1, None, None))
        return self.grad_out_args((w, w + 1, w + 2, w + 3))

    def release_saved(self):
        saved, self.saved = self.saved, _FREED
        # references to saved: this frame's and getrefcount's argument
        if kernels.backend() != "cython" or type(saved) is not tuple or sys.getrefcount(saved) != 2:
            return
        cache = next((v for v in saved if type(v) is tuple), None)
        del saved
        if cache is None or sys.getrefcount(cache) != 2:
            return
        arrays = list(cache)
        del cache
        from .. import _checks

        _checks.recycle(arrays)


class _HiddenSequence(_SequenceFunction):
    """A sequence node with one state h (RNN and GRU): calls ``kernels.<kernel>_forward`` and
    ``kernels.<kernel>_backward``, with ``self.options`` after their usual arguments."""

    kernel = ""
    options: tuple = ()
    weights = 2  # inputs (x, h0, w_ih, w_hh, b_ih, b_hh, ...)

    def __init__(self, lengths, layer_norm=False):
        self.lengths = lengths
        self.layer_norm = layer_norm

    def forward(self, x, h0, w_ih, w_hh, *extra):
        b_ih, b_hh = self._extras(extra) or (None, None)
        self.state_shape = h0.shape  # (B, H), or (1, B, H) from a one-layer module
        x, h0 = _contiguous(x), _contiguous(_state_2d(h0, x.shape[1], "h0"))
        w_ih, w_hh = _contiguous(w_ih), _contiguous(w_hh)
        ys, h_n, cache = getattr(kernels, self.kernel + "_forward")(
            x, h0, w_ih, w_hh, b_ih, b_hh, self.lengths, *self.options, **self._kw()
        )
        self.saved = (x, h0, w_ih, w_hh, cache, b_ih is not None)
        return ys, h_n.reshape(self.state_shape)

    def backward(self, dys, dh_n):
        x, h0, w_ih, w_hh, cache, has_bias = self.saved
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh, *dln = getattr(kernels, self.kernel + "_backward")(
            _outputs_grad(dys),
            _grad_or_zeros(_state_grad_2d(dh_n), h0),
            x,
            h0,
            w_ih,
            w_hh,
            cache,
            self.lengths,
            has_bias,
            *self.options,
            need_dx=self.needs_input_grad[0],
            need_dh0=self.needs_input_grad[1],
            **self._kw(),
            **self._out_args(),
        )
        return (
            (dx, _shaped(dh0, self.state_shape), dw_ih, dw_hh)
            + ((db_ih, db_hh) if has_bias else ())
            + tuple(dln)
        )


class RNNSequence(_HiddenSequence):
    kernel = "rnn_sequence"

    def __init__(self, lengths, nonlinearity):
        self.lengths, self.options = lengths, (nonlinearity,)


class LSTMSequence(_SequenceFunction):
    weights = 3  # inputs (x, h0, c0, w_ih, w_hh, b_ih, b_hh, ...)

    def __init__(self, lengths, layer_norm=False):
        self.lengths = lengths
        self.layer_norm = layer_norm

    def forward(self, x, h0, c0, w_ih, w_hh, *extra):
        b_ih, b_hh = self._extras(extra) or (None, None)
        if h0.shape != c0.shape:
            raise ValueError(f"h0 and c0 must have the same shape, got {h0.shape} and {c0.shape}")
        self.state_shape = h0.shape  # (B, H), or (1, B, H) from a one-layer module
        B = x.shape[1]
        x = _contiguous(x)
        h0, c0 = _contiguous(_state_2d(h0, B, "h0")), _contiguous(_state_2d(c0, B, "c0"))
        w_ih, w_hh = _contiguous(w_ih), _contiguous(w_hh)
        ys, h_n, c_n, cache = kernels.lstm_sequence_forward(
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, self.lengths, **self._kw()
        )
        self.saved = (x, h0, c0, w_ih, w_hh, cache, b_ih is not None)
        return ys, h_n.reshape(self.state_shape), c_n.reshape(self.state_shape)

    def backward(self, dys, dh_n, dc_n):
        x, h0, c0, w_ih, w_hh, cache, has_bias = self.saved
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, *dln = kernels.lstm_sequence_backward(
            _outputs_grad(dys),
            _grad_or_zeros(_state_grad_2d(dh_n), h0),
            _grad_or_zeros(_state_grad_2d(dc_n), c0),
            x,
            h0,
            c0,
            w_ih,
            w_hh,
            cache,
            self.lengths,
            has_bias,
            need_dx=self.needs_input_grad[0],
            need_dh0=self.needs_input_grad[1] or self.needs_input_grad[2],
            **self._kw(),
            **self._out_args(),
        )
        shape = self.state_shape
        return (
            (dx, _shaped(dh0, shape), _shaped(dc0, shape), dw_ih, dw_hh)
            + ((db_ih, db_hh) if has_bias else ())
            + tuple(dln)
        )


class GRUSequence(_HiddenSequence):
    kernel = "gru_sequence"


def _sequence_prep(x, w_hh, lengths, what):
    """(checked lengths, H) for a ``*_sequence`` call on x (T, B, I)."""
    xd = _data(x)
    if xd.ndim != 3:
        raise ValueError(f"{what}: x must have shape (T, B, I), got {xd.shape}")
    T, B = xd.shape[:2]
    return check_lengths(lengths, T, B, what), _data(w_hh).shape[-1]


def rnn_sequence(
    x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, lengths=None, nonlinearity="tanh", masks=None
):
    """(ys, h_n): the RNN cell run over x (T, B, I) in one kernel call; ys (T, B, H).
    With lengths, padded steps output zeros and keep the state. h0 is (B, H), or (1, B, H) (a
    one-layer module's layout), and h_n has the shape of h0 (zeros (B, H) when None).
    drop_h (B, H): recurrent dropout, h * drop_h enters the recurrent matmul at every step;
    zone_h (T, B, H): zoneout's weight of the previous h at each step (module docstring)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    ln, H = _sequence_prep(x, w_hh, lengths, "rnn_sequence")
    if h0 is None:
        h0 = _zeros_like_state(x, 1, H, "rnn_sequence")
    node = RNNSequence(ln, nonlinearity).with_masks(masks)
    return node(x, h0, w_ih, w_hh, *_bias_args(b_ih, b_hh))


def lstm_sequence(
    x,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    h0=None,
    c0=None,
    lengths=None,
    masks=None,
    ln_w=None,
    ln_b=None,
):
    """(ys, (h_n, c_n)): the LSTM cell run over x (T, B, I) in one kernel call. h0 and c0: (B, H)
    or (1, B, H) as in ``rnn_sequence``; h_n and c_n have their shape. drop_h (B, H): recurrent
    dropout; zone_h, zone_c (T, B, H): zoneout's weights of the previous h and c at each step.
    ln_w, ln_b (5H,): layer norm (module docstring)."""
    lens, H = _sequence_prep(x, w_hh, lengths, "lstm_sequence")
    if h0 is None:
        h0 = _zeros_like_state(x, 1, H, "lstm_sequence")
    if c0 is None:
        c0 = _zeros_like_state(x, 1, H, "lstm_sequence")
    ln = _ln_args(ln_w, ln_b)
    node = LSTMSequence(lens, bool(ln)).with_masks(masks)
    ys, h_n, c_n = node(x, h0, c0, w_ih, w_hh, *_bias_args(b_ih, b_hh), *ln)
    return ys, (h_n, c_n)


def gru_sequence(
    x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, lengths=None, masks=None, ln_w=None, ln_b=None
):
    """(ys, h_n): the GRU cell run over x (T, B, I) in one kernel call. h0: (B, H) or (1, B, H)
    as in ``rnn_sequence``; h_n has its shape. drop_h, zone_h as in ``lstm_sequence``.
    ln_w, ln_b (4H,): layer norm (module docstring)."""
    lens, H = _sequence_prep(x, w_hh, lengths, "gru_sequence")
    if h0 is None:
        h0 = _zeros_like_state(x, 1, H, "gru_sequence")
    ln = _ln_args(ln_w, ln_b)
    node = GRUSequence(lens, bool(ln)).with_masks(masks)
    return node(x, h0, w_ih, w_hh, *_bias_args(b_ih, b_hh), *ln)
