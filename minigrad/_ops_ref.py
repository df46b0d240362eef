"""NumPy twin of ``minigrad/_ops.pyx``: the executable specification of every cell kernel.

Each function here has the name, signature, outputs and cache layout given in
``docs/kernels.md``.  The compiled kernels are tested against these functions output by output,
cache included, so this file is written to be read: plain NumPy, one step at a time, with the
math next to the code.

Shapes (PyTorch layout, time-major sequences)::

    x      (B, I) for a cell, (T, B, I) for a sequence
    h, c   (B, H)                         h0, c0  (B, H)
    w_ih   (G*H, I)   w_hh  (G*H, H)      b_ih, b_hh  (G*H,)  or both None
    G = 1 (RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: gates r, z, n)

Argument validation (the Cython wrappers raise the same errors, before touching memory):

* every floating argument is a ``numpy.ndarray``, C-contiguous, of dtype float32 or float64,
  and all of them have the dtype of ``x``;
* ``x`` fixes the sizes T (sequences), B and I; the state ``h`` (cells) or ``h0``
  (sequences) fixes H; in ``linear_*`` the weight ``w`` fixes O.  Every other argument is
  checked against these sizes, and no size may be zero;
* ``b_ih`` and ``b_hh`` are both None or both arrays;
* ``lengths`` is None or an integer array of shape (B,) with values in [1, T] (converted to
  int64); ``nonlinearity`` is ``'tanh'`` or ``'relu'``;
* ``ln`` (LSTM and GRU, layer norm) is None or a tuple (gain, shift) of two arrays of shape
  (nb*H,): nb = 5 norms for the LSTM (gates i, f, g, o and the cell state), 4 for the GRU (r, z,
  and n's input and recurrent parts).

A failed check raises ``ValueError("<name> must <expected>, got <got>")``, for example
``"w_hh must have shape (20, 5), got (20, 6)"``.
"""

import numpy as np

from ._checks_ref import _check_array, _check_shape, _check_sizes, _grads_out, _write_out

__all__ = [
    "rnn_cell_forward",
    "rnn_cell_backward",
    "rnn_sequence_forward",
    "rnn_sequence_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_sequence_forward",
    "lstm_sequence_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "gru_sequence_forward",
    "gru_sequence_backward",
]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_state(name, a, B, dtype):
    """a is the state that fixes H: shape (B, H) with H > 0; return H."""
    _check_array(name, a, dtype)
    if a.ndim != 2 or a.shape[0] != B or a.shape[1] == 0:
        raise ValueError(f"{name} must have shape ({B}, H) with H > 0, got {a.shape}")
    return a.shape[1]


def _check_biases(b_ih, b_hh, GH, dtype):
    """Both None (returns False) or both arrays of shape (G*H,) (returns True)."""
    if (b_ih is None) != (b_hh is None):

        def got(b):
            return "None" if b is None else "an array"

        raise ValueError(
            "b_ih and b_hh must both be arrays or both be None, "
            f"got b_ih={got(b_ih)} and b_hh={got(b_hh)}"
        )
    if b_ih is None:
        return False
    _check_shape("b_ih", b_ih, (GH,), dtype)
    _check_shape("b_hh", b_hh, (GH,), dtype)
    return True


def _check_lengths(lengths, T, B):
    """None, or an integer array of shape (B,) with values in [1, T]; returned as int64."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths must have an integer dtype, got {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {lengths.shape}")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > T:
        raise ValueError(f"lengths must have values in [1, {T}], got values in [{lo}, {hi}]")
    return lengths.astype(np.int64)


def _check_nonlinearity(nonlinearity):
    if not (isinstance(nonlinearity, str) and nonlinearity in ("tanh", "relu")):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _what(seq):
    """How an error message names a tuple or list argument of the wrong length, or anything
    else of the wrong type: "a tuple of length 2", or the type's name."""
    if isinstance(seq, (tuple, list)):
        return f"a {type(seq).__name__} of length {len(seq)}"
    return type(seq).__name__


def _check_cache(cache, names, shapes, dtype):
    """A sequence cache: a tuple of arrays with these names and shapes."""
    if not isinstance(cache, (tuple, list)) or len(cache) != len(names):
        raise ValueError(
            f"cache must be a tuple of {len(names)} arrays ({', '.join(names)}), got {_what(cache)}"
        )
    for name, a, shape in zip(names, cache, shapes):
        _check_shape(name, a, shape, dtype)
    return tuple(cache)


def _check_cell(G, x, h, w_ih, w_hh):
    """Common part of every cell kernel: returns B, I, H, dtype. w_ih None: x is the step's
    input projection x_in @ W_ih^T + b_ih, (B, G*H)."""
    B, I = _check_sizes("x", x, "BI")
    dtype = x.dtype
    H = _check_state("h", h, B, dtype)
    if w_ih is None:
        if I != G * H:
            raise ValueError(
                f"x must have shape ({B}, {G * H}) when w_ih is None (x is then the "
                f"input projection, G*H = {G} * {H} columns), got {x.shape}"
            )
    else:
        _check_shape("w_ih", w_ih, (G * H, I), dtype)
    _check_shape("w_hh", w_hh, (G * H, H), dtype)
    return B, I, H, dtype


def _check_cell_biases(w_ih, b_ih, b_hh, GH, dtype):
    """_check_biases, except on an input projection (w_ih None): b_ih must be None (it is in the
    projection) and b_hh may be given alone. Returns whether a bias gradient is due."""
    if w_ih is not None:
        return _check_biases(b_ih, b_hh, GH, dtype)
    if b_ih is not None:
        raise ValueError(
            "b_ih must be None when w_ih is None (x is the input projection, "
            "b_ih already added), got an array"
        )
    if b_hh is not None:
        _check_shape("b_hh", b_hh, (GH,), dtype)
    return b_hh is not None


def _check_ln(ln, nb, H, dtype):
    """ln: None (no layer norm) or (gain, shift), each (nb*H,)."""
    if ln is None:
        return None
    if not isinstance(ln, tuple) or len(ln) != 2:
        got = f"a tuple of length {len(ln)}" if isinstance(ln, tuple) else type(ln).__name__
        raise ValueError(f"ln must be None or a tuple (gain, shift) of two arrays, got {got}")
    _check_shape("ln gain", ln[0], (nb * H,), dtype)
    _check_shape("ln shift", ln[1], (nb * H,), dtype)
    return ln


def _check_cell_cache(cache, nb, ln, B, H, dtype):
    """A cell backward's cache: its gates (B, nb*H) (LSTM nb = 5, GRU 4), with layer norm
    (gates, lnc), lnc (B, nb*H + nb) (nb norms too)."""
    if ln is None:
        _check_shape("cache", cache, (B, nb * H), dtype)
        return cache
    return _check_cache(cache, ("gates", "lnc"), ((B, nb * H), (B, nb * H + nb)), dtype)


def _check_sequence(G, x, h0, w_ih, w_hh, lengths):
    """Common part of every sequence kernel: returns T, B, I, H, dtype, lengths."""
    T, B, I = _check_sizes("x", x, "TBI")
    dtype = x.dtype
    H = _check_state("h0", h0, B, dtype)
    _check_shape("w_ih", w_ih, (G * H, I), dtype)
    _check_shape("w_hh", w_hh, (G * H, H), dtype)
    return T, B, I, H, dtype, _check_lengths(lengths, T, B)


# ---------------------------------------------------------------------------------------------
# Shared pieces: elementwise math, projections, the deferred weight gradients
# ---------------------------------------------------------------------------------------------


def _sigmoid(a):
    """σ(a) = 1 / (1 + exp(-a)), branching on the sign so exp never overflows."""
    with np.errstate(under="ignore"):  # exp(-|a|) -> 0 for |a| > ~745 is the right answer
        e = np.exp(-np.abs(a))  # in (0, 1]
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


# Layer norm (Ba et al. 2016) of nb blocks of H columns, each with its own gain and shift:
# y = gain xhat + shift, xhat = (v - mean(v)) / sqrt(var(v) + eps) over the block's H values.
# The cache row of the norms of a step: [xhat of every block | 1/std of every block].
LN_EPS = 1e-5


def _ln_blocks(v, gain, shift, nb):
    """(y, lnc): v (B, nb*H) normalised block by block; lnc (B, nb*H + nb) = [xhat | 1/std]."""
    B = v.shape[0]
    vb = v.reshape(B, nb, -1)
    d = vb - vb.mean(axis=2, keepdims=True)
    rs = 1 / np.sqrt((d * d).mean(axis=2, keepdims=True) + LN_EPS)
    xh = (d * rs).reshape(B, -1)
    return gain * xh + shift, np.concatenate([xh, rs[:, :, 0]], axis=1)


def _ln_blocks_backward(dy, gain, lnc, nb):
    """dv, the gradient w.r.t. v of _ln_blocks, from dy (w.r.t. y):
    dv = (gain dy - mean(gain dy) - xhat mean(gain dy xhat)) / std, block by block."""
    B, n = dy.shape
    xh = lnc[:, :n].reshape(B, nb, -1)
    rs = lnc[:, n:, None]
    g = (gain * dy).reshape(B, nb, -1)
    dv = rs * (g - g.mean(axis=2, keepdims=True) - xh * (g * xh).mean(axis=2, keepdims=True))
    return dv.reshape(B, n)


def _ln_params_grad(dy, lnc):
    """The gains' and shifts' gradients: sums over rows of dy xhat and of dy (dy (..., n))."""
    n = dy.shape[-1]
    dy = dy.reshape(-1, n)
    return (dy * lnc.reshape(-1, lnc.shape[-1])[:, :n]).sum(axis=0), dy.sum(axis=0)


def _biases_grad(dgates_ih, dgates_hh, has_bias):
    """db_ih = sum over rows of dgates_ih, db_hh likewise (two separate arrays) or None."""
    if not has_bias:
        return None, None
    return dgates_ih.sum(axis=0), dgates_hh.sum(axis=0)


def _project(x, w_ih, b_ih):
    """A cell's input projection x W_ih^T + b_ih (x itself when w_ih is None: given)."""
    if w_ih is None:
        return x
    xw = x @ w_ih.T
    if b_ih is not None:
        xw += b_ih
    return xw


def _cell_weight_grads(dg_ih, dg_hh, x, h, w_ih, has_bias):
    """dW_ih = dg_ih^T x, dW_hh = dg_hh^T h and the bias gradients; on an input projection
    (w_ih None) dW_ih and db_ih are None."""
    db_ih, db_hh = _biases_grad(dg_ih, dg_hh, has_bias)
    if w_ih is None:
        return None, dg_hh.T @ h, None, db_hh
    return dg_ih.T @ x, dg_hh.T @ h, db_ih, db_hh


def _input_projection(x, w_ih, b_ih):
    """xw[t] = x[t] W_ih^T + b_ih for all t at once: one (T*B, I) x (I, G*H) GEMM."""
    T, B, I = x.shape
    xw = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, w_ih.shape[0])
    if b_ih is not None:
        xw += b_ih
    return xw


def _real(lengths, t):
    """(B, 1) mask: True where step t of sequence b is real (t < lengths[b]), or None."""
    return None if lengths is None else (t < lengths)[:, None]


def _store_step(lengths, t, ys, h1, *states):
    """A sequence forward's step t: ys[t] = h1 and, for each (seq, new) of states,
    seq[t + 1] = new; at padded rows the output is zero and each state is carried."""
    real = _real(lengths, t)
    ys[t] = h1 if real is None else np.where(real, h1, 0)
    for seq, new in states:
        seq[t + 1] = new if real is None else np.where(real, new, seq[t])


def _deferred_grads(dgi, dgh, x, hs, w_ih, has_bias, need_dx=True):
    """After the time loop: dx = dgi W_ih, dW_ih = dgi^T x, dW_hh = dgh^T h_prev, one GEMM each,
    with the steps stacked as rows: dgi, dgh (T, B, G*H), h_prev = hs[:-1] (T, B, H).
    need_dx False: dx is None (no GEMM)."""
    T, B, I = x.shape
    H = hs.shape[2]
    dgi = dgi.reshape(T * B, -1)
    dgh = dgh.reshape(T * B, -1)
    dx = (dgi @ w_ih).reshape(T, B, I) if need_dx else None
    dw_ih = dgi.T @ x.reshape(T * B, I)
    dw_hh = dgh.T @ hs[:-1].reshape(T * B, H)
    db_ih, db_hh = _biases_grad(dgi, dgh, has_bias)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def _param_out(out, scale, sizes, has_bias, dtype, args):
    """A sequence backward's ``out`` and ``scale`` (_checks_ref._grads_out) for sizes (G*H, I, H),
    checked against the call's arrays ``args`` (tuples opened): the entries and scale as a
    float."""
    GH, I, H = sizes
    inputs = []
    for a in args:
        inputs.extend(a if isinstance(a, (tuple, list)) else [a])
    inputs = [a for a in inputs if isinstance(a, np.ndarray)]
    bias = (GH,) if has_bias else None
    return _grads_out(
        out,
        ("dw_ih", "dw_hh", "db_ih", "db_hh"),
        ((GH, I), (GH, H), bias, bias),
        dtype,
        inputs,
        scale,
    )


# Recurrent dropout and zoneout: every kernel takes masks = None or (drop_h, zone_h, zone_c), each
# None when off (zone_c for the LSTM only). drop_h (B, H) multiplies
# the state entering the recurrent GEMM, the same mask at every step:
# gates = xw + (h * drop_h) W_hh^T + b_hh, so dW_hh = dG^T (h * drop_h) and the GEMM's part of dh
# is (dG W_hh) * drop_h. Zoneout keeps each unit's previous state with weight z (zone_h[t] (B, H);
# for a cell zone_h (B, H)): h1 = z h + (1 - z) h1~, the LSTM's c likewise; the cell's new state
# gets (1 - z) dh1, the previous one z dh1 directly. The RNN's backward takes act' from the
# activation's output, so under zoneout its cache keeps that output h1~ apart from the states.


def _check_masks(masks, nz, lead, B, H, dtype):
    """masks: None or (drop_h, zone_h, zone_c), each None when off: drop_h (B, H); zone_h,
    zone_c lead + (B, H), lead = (T,) for a sequence, () for a cell; zone_c must be None
    unless nz = 2 (nz = 1: RNN and GRU, 2: LSTM). Returns the three."""
    if masks is None:
        return None, None, None
    if not isinstance(masks, tuple) or len(masks) != 3:
        raise ValueError(
            f"masks must be None or a tuple (drop_h, zone_h, zone_c), got {_what(masks)}"
        )
    if nz < 2 and masks[2] is not None:
        raise ValueError("zone_c must be None for this cell (it has no cell state c), got an array")
    drop_h, zone_h, zone_c = masks
    if drop_h is not None:
        _check_shape("drop_h", drop_h, (B, H), dtype)
    for name, z in (("zone_h", zone_h), ("zone_c", zone_c)):
        if z is not None:
            _check_shape(name, z, lead + (B, H), dtype)
    return masks


def _dropped(h, drop_h):
    """The state the recurrent GEMM reads: h * drop_h (h itself without recurrent dropout)."""
    return h if drop_h is None else h * drop_h


def _zoned(new, prev, z):
    """Zoneout: z prev + (1 - z) new, written new + z (prev - new) (new itself when z is None)."""
    return new if z is None else new + z * (prev - new)


def _zone_in(d, z):
    """The part of a zoned state's gradient d that reaches the cell's new state: (1 - z) d."""
    return d if z is None else (1 - z) * d


def _zone_pass(d, z):
    """The part of d that goes straight to the previous state: z d (0 without zoneout)."""
    return 0 if z is None else z * d


def _at(z, t):
    """Step t of per-step zoneout weights (None stays None)."""
    return None if z is None else z[t]


# Each family below: its step function, shared by the cell and the sequence kernels, then those
# kernels. `xw` is the input projection x @ w_ih.T + b_ih of the step, computed by the caller (one
# GEMM per step for a cell, one GEMM for all steps of a sequence).


# ---------------------------------------------------------------------------------------------
# RNN
# ---------------------------------------------------------------------------------------------


def _activate(a, nonlinearity):
    """tanh(a) or relu(a) = max(a, 0)."""
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)


def _activate_backward(dh1, h1, nonlinearity):
    """da = dh1 * act'(a), written with the output: tanh' = 1 - h1**2, relu' = [h1 > 0]."""
    if nonlinearity == "tanh":
        return dh1 * (1 - h1 * h1)
    return dh1 * (h1 > 0)


def _rnn_step(xw, h, w_hh, b_hh, nonlinearity, drop_h=None):
    """h1 = act(xw + (h * drop_h) W_hh^T + b_hh)"""
    a = xw + _dropped(h, drop_h) @ w_hh.T
    if b_hh is not None:
        a += b_hh
    return _activate(a, nonlinearity)


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity, masks=None):
    """h1~ = act(x W_ih^T + b_ih + (h * drop_h) W_hh^T + b_hh);  h1 = zone_h h + (1 - zone_h) h1~
    (h1~ without zoneout);  cache = h1~"""
    B, I, H, dtype = _check_cell(1, x, h, w_ih, w_hh)
    _check_cell_biases(w_ih, b_ih, b_hh, H, dtype)
    _check_nonlinearity(nonlinearity)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (), B, H, dtype)
    h1 = _rnn_step(_project(x, w_ih, b_ih), h, w_hh, b_hh, nonlinearity, drop_h)
    return _zoned(h1, h, zone_h), h1.copy()


def rnn_cell_backward(
    dh1, x, h, w_ih, w_hh, cache, has_bias, nonlinearity, need_dx=True, need_dh=True, masks=None
):
    """da = (1 - zone_h) dh1 act'(a);  dx = da W_ih;  dh = zone_h dh1 + da W_hh;  dW_ih = da^T x;
    dW_hh = da^T h;  db_ih = db_hh = sum_rows(da).  dx (dh) is None, not computed, when need_dx
    (need_dh) is false."""
    B, I, H, dtype = _check_cell(1, x, h, w_ih, w_hh)
    _check_shape("dh1", dh1, (B, H), dtype)
    _check_shape("cache", cache, (B, H), dtype)
    _check_nonlinearity(nonlinearity)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (), B, H, dtype)
    da = _activate_backward(_zone_in(dh1, zone_h), cache, nonlinearity)
    dw_ih, dw_hh, db_ih, db_hh = _cell_weight_grads(da, da, x, _dropped(h, drop_h), w_ih, has_bias)
    dx = (da if w_ih is None else da @ w_ih) if need_dx else None
    dh = _zone_pass(dh1, zone_h) + _dropped(da @ w_hh, drop_h) if need_dh else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def rnn_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, masks=None):
    """ht[t] = act(x[t] W_ih^T + b_ih + (hs[t] * drop_h) W_hh^T + b_hh);  hs[t+1] =
    zone_h[t] hs[t] + (1 - zone_h[t]) ht[t] (ht[t] without zoneout) at real steps, hs[t] at
    padded ones;  ys[t] = hs[t+1] (0 at padded steps);  h_n = hs[T];  cache = (hs,), with
    zoneout (hs, ht)"""
    T, B, I, H, dtype, lengths = _check_sequence(1, x, h0, w_ih, w_hh, lengths)
    _check_biases(b_ih, b_hh, H, dtype)
    _check_nonlinearity(nonlinearity)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (T,), B, H, dtype)
    xw = _input_projection(x, w_ih, b_ih)
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = h0
    ht = np.empty((T, B, H), dtype)
    ys = np.zeros((T, B, H), dtype)
    for t in range(T):
        ht[t] = _rnn_step(xw[t], hs[t], w_hh, b_hh, nonlinearity, drop_h)
        h1 = _zoned(ht[t], hs[t], _at(zone_h, t))
        _store_step(lengths, t, ys, h1, (hs, h1))
    return ys, hs[T].copy(), (hs,) if zone_h is None else (hs, ht)


def rnn_sequence_backward(
    dys,
    dh_n,
    x,
    h0,
    w_ih,
    w_hh,
    cache,
    lengths,
    has_bias,
    nonlinearity,
    need_dx=True,
    need_dh0=True,
    masks=None,
    out=None,
    scale=1.0,
):
    """Backward through time: at step t, dh1 = dh + dys[t], da[t] = dh1 act'(hs[t+1]) and
    dh = da[t] W_hh (padded steps: da[t] = 0 and dh passes through unchanged); with zoneout
    (cache (hs, ht)) da[t] = (1 - zone_h[t]) dh1 act'(ht[t]) and dh = zone_h[t] dh1 + da[t] W_hh;
    then dx, dW_ih,
    dW_hh, db from all da[t] at once (dx None when not need_dx). dys None: no output gradient.
    need_dh0 False: dh0 is None (the compiled kernel skips step 0's dh GEMM).  out: None, or
    (dw_ih, dw_hh, db_ih, db_hh) with entries None or arrays that receive scale times that
    gradient (returned in its place)."""
    T, B, I, H, dtype, lengths = _check_sequence(1, x, h0, w_ih, w_hh, lengths)
    if dys is not None:
        _check_shape("dys", dys, (T, B, H), dtype)
    _check_shape("dh_n", dh_n, (B, H), dtype)
    _check_nonlinearity(nonlinearity)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (T,), B, H, dtype)
    if zone_h is None:
        (hs,) = _check_cache(cache, ("hs",), ((T + 1, B, H),), dtype)
        ht = hs[1:]
    else:
        hs, ht = _check_cache(cache, ("hs", "ht"), ((T + 1, B, H), (T, B, H)), dtype)
    args = (dys, dh_n, x, h0, w_ih, w_hh, cache, masks)
    out, scale = _param_out(out, scale, (H, I, H), has_bias, dtype, args)
    da = np.empty((T, B, H), dtype)
    dh = dh_n.copy()
    for t in reversed(range(T)):
        dh1 = dh if dys is None else dh + dys[t]
        z = _at(zone_h, t)
        da_t = _activate_backward(_zone_in(dh1, z), ht[t], nonlinearity)
        real = _real(lengths, t)
        if real is None:
            dh = _zone_pass(dh1, z) + _dropped(da_t @ w_hh, drop_h)
        else:
            da_t = np.where(real, da_t, 0)
            dh = np.where(real, _zone_pass(dh1, z) + _dropped(da_t @ w_hh, drop_h), dh)
        da[t] = da_t
    dx, dw_ih, dw_hh, db_ih, db_hh = _deferred_grads(
        da, da, x, _dropped(hs, drop_h), w_ih, has_bias, need_dx
    )
    dw_ih, dw_hh, db_ih, db_hh = _write_out((dw_ih, dw_hh, db_ih, db_hh), out, scale)
    return dx, dh if need_dh0 else None, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------------------------


def _lstm_step(xw, h, c, w_hh, b_hh, drop_h=None, zone_h=None, zone_c=None, ln=None):
    """a = xw + (h * drop_h) W_hh^T + b_hh;  c1 = σ(a_f) c + σ(a_i) tanh(a_g);
    h1 = σ(a_o) tanh(c1).  Layer norm (ln = (gain, shift)): a = LN(a) per gate block,
    h1 = σ(a_o) tanh(LN(c1)); the cache is then (cache, lnc), lnc = [xhat_i..o, xhat_c | 1/std
    of the 5 norms].  Last, zoneout: c1 = zone_c c + (1 - zone_c) c1, h1 likewise."""
    H = h.shape[1]
    a = xw + _dropped(h, drop_h) @ w_hh.T
    if b_hh is not None:
        a += b_hh
    if ln is not None:
        a, lnc_a = _ln_blocks(a, ln[0][: 4 * H], ln[1][: 4 * H], 4)
    i = _sigmoid(a[:, 0 * H : 1 * H])
    f = _sigmoid(a[:, 1 * H : 2 * H])
    g = np.tanh(a[:, 2 * H : 3 * H])
    o = _sigmoid(a[:, 3 * H : 4 * H])
    c1 = f * c + i * g
    if ln is None:
        tanh_c1 = np.tanh(c1)
    else:
        y_c, lnc_c = _ln_blocks(c1, ln[0][4 * H :], ln[1][4 * H :], 1)
        tanh_c1 = np.tanh(y_c)
    h1 = o * tanh_c1
    cache = np.concatenate([i, f, g, o, tanh_c1], axis=1)  # (B, 5H)
    if ln is not None:
        n = 4 * H
        lnc = np.concatenate([lnc_a[:, :n], lnc_c[:, :H], lnc_a[:, n:], lnc_c[:, H:]], axis=1)
        cache = (cache, lnc)
    return _zoned(h1, h, zone_h), _zoned(c1, c, zone_c), cache


def _lstm_step_backward(dh1, dc1, c, cache, ln=None):
    """Gate gradients of one LSTM step: returns da (B, 4H), dc = dc_total * f and, with layer
    norm (cache = (cache, lnc)), dy (B, 5H), the gradients w.r.t. the 5 norms' outputs (else
    None)."""
    H = c.shape[1]
    if ln is not None:
        cache, lnc = cache
    i, f, g, o, tanh_c1 = (cache[:, k * H : (k + 1) * H] for k in range(5))
    do = dh1 * tanh_c1  # h1 = o tanh(c1)
    dy_c = dh1 * o * (1 - tanh_c1 * tanh_c1)  # c1 reaches the loss directly and via h1
    if ln is not None:  # ... through LN(c1)
        n = 4 * H
        lnc_c = np.concatenate([lnc[:, n : n + H], lnc[:, n + H + 4 :]], axis=1)
        dc_total = dc1 + _ln_blocks_backward(dy_c, ln[0][n:], lnc_c, 1)
    else:
        dc_total = dc1 + dy_c
    di = dc_total * g  # c1 = f c + i g
    df = dc_total * c
    dg = dc_total * i
    dc = dc_total * f
    da = np.concatenate(
        [
            di * i * (1 - i),  # σ' = σ (1 - σ)
            df * f * (1 - f),
            dg * (1 - g * g),  # tanh' = 1 - tanh²
            do * o * (1 - o),
        ],
        axis=1,
    )
    if ln is None:
        return da, dc, None
    dy = np.concatenate([da, dy_c], axis=1)
    lnc_a = np.concatenate([lnc[:, :n], lnc[:, n + H : n + H + 4]], axis=1)
    return _ln_blocks_backward(da, ln[0][:n], lnc_a, 4), dc, dy


def _lstm_masked_backward(dh1, dc1, c, cache, zone_h, zone_c, ln):
    """_lstm_step_backward under zoneout: (da, the GEMM-free part of dh, dc, dy): the cell gets
    (1 - z) of each state's gradient, the previous state z of it directly."""
    da, dc, dy = _lstm_step_backward(_zone_in(dh1, zone_h), _zone_in(dc1, zone_c), c, cache, ln)
    return da, _zone_pass(dh1, zone_h), dc + _zone_pass(dc1, zone_c), dy


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, masks=None, ln=None):
    """[i f g o] = [σ σ tanh σ](x W_ih^T + b_ih + h W_hh^T + b_hh);  c1 = f c + i g;
    h1 = o tanh(c1);  cache = [i | f | g | o | tanh(c1)].  Layer norm (ln = (gain, shift)):
    each gate block normalised before its σ or tanh, h1 = o tanh(LN(c1)), cache = (that, lnc)"""
    B, I, H, dtype = _check_cell(4, x, h, w_ih, w_hh)
    _check_shape("c", c, (B, H), dtype)
    _check_cell_biases(w_ih, b_ih, b_hh, 4 * H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 2, (), B, H, dtype)
    ln = _check_ln(ln, 5, H, dtype)
    return _lstm_step(_project(x, w_ih, b_ih), h, c, w_hh, b_hh, drop_h, zone_h, zone_c, ln)


def lstm_cell_backward(
    dh1,
    dc1,
    x,
    h,
    c,
    w_ih,
    w_hh,
    cache,
    has_bias,
    need_dx=True,
    need_dh=True,
    masks=None,
    ln=None,
):
    """da from the gates (see _lstm_step_backward);  dx = da W_ih;  dh = da W_hh;
    dc = (dc1 + dh1 o tanh'(c1)) f;  dW_ih = da^T x;  dW_hh = da^T h;  db = sum_rows(da).
    dx is None when need_dx is false, dh and dc when need_dh is.  With ln: cache = (gates, lnc)
    and the gains' and shifts' gradients follow."""
    B, I, H, dtype = _check_cell(4, x, h, w_ih, w_hh)
    _check_shape("c", c, (B, H), dtype)
    _check_shape("dh1", dh1, (B, H), dtype)
    _check_shape("dc1", dc1, (B, H), dtype)
    ln = _check_ln(ln, 5, H, dtype)
    cache = _check_cell_cache(cache, 5, ln, B, H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 2, (), B, H, dtype)
    da, dh_pass, dc, dy = _lstm_masked_backward(dh1, dc1, c, cache, zone_h, zone_c, ln)
    dw_ih, dw_hh, db_ih, db_hh = _cell_weight_grads(da, da, x, _dropped(h, drop_h), w_ih, has_bias)
    dx = (da if w_ih is None else da @ w_ih) if need_dx else None
    dh, dc = (_dropped(da @ w_hh, drop_h) + dh_pass, dc) if need_dh else (None, None)
    dln = () if ln is None else _ln_params_grad(dy, cache[1])
    return (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh) + dln


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, masks=None, ln=None):
    """The LSTM cell at every step (state carried at padded steps);  ys[t] = hs[t+1] (0 at
    padded steps);  cache = (hs, cs, gates) with gates[t] the cell cache of step t; with layer
    norm (ln) cache = (hs, cs, gates, lnc), lnc[t] the step's norm cache"""
    T, B, I, H, dtype, lengths = _check_sequence(4, x, h0, w_ih, w_hh, lengths)
    _check_shape("c0", c0, (B, H), dtype)
    _check_biases(b_ih, b_hh, 4 * H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 2, (T,), B, H, dtype)
    ln = _check_ln(ln, 5, H, dtype)
    xw = _input_projection(x, w_ih, b_ih)
    hs = np.empty((T + 1, B, H), dtype)
    cs = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 5 * H), dtype)
    lnc = None if ln is None else np.empty((T, B, 5 * H + 5), dtype)
    ys = np.zeros((T, B, H), dtype)
    hs[0], cs[0] = h0, c0
    for t in range(T):
        h1, c1, cache_t = _lstm_step(
            xw[t], hs[t], cs[t], w_hh, b_hh, drop_h, _at(zone_h, t), _at(zone_c, t), ln
        )
        if ln is None:
            gates[t] = cache_t
        else:
            gates[t], lnc[t] = cache_t
        _store_step(lengths, t, ys, h1, (hs, h1), (cs, c1))
    return ys, hs[T].copy(), cs[T].copy(), (hs, cs, gates) + (() if ln is None else (lnc,))


def lstm_sequence_backward(
    dys,
    dh_n,
    dc_n,
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    cache,
    lengths,
    has_bias,
    need_dx=True,
    need_dh0=True,
    masks=None,
    ln=None,
    out=None,
    scale=1.0,
):
    """Backward through time with the LSTM step backward; da[t] = 0 and (dh, dc) carried at
    padded steps; then dx, dW_ih, dW_hh, db from all da[t] at once (dx None when not need_dx).
    dys None: no output gradient. need_dh0 False: dh0 and dc0 are None.  With ln: cache =
    (hs, cs, gates, lnc), and the gains' and shifts' gradients follow.  out, scale: as in
    rnn_sequence_backward."""
    T, B, I, H, dtype, lengths = _check_sequence(4, x, h0, w_ih, w_hh, lengths)
    _check_shape("c0", c0, (B, H), dtype)
    if dys is not None:
        _check_shape("dys", dys, (T, B, H), dtype)
    _check_shape("dh_n", dh_n, (B, H), dtype)
    _check_shape("dc_n", dc_n, (B, H), dtype)
    ln = _check_ln(ln, 5, H, dtype)
    names, shapes = ("hs", "cs", "gates"), ((T + 1, B, H), (T + 1, B, H), (T, B, 5 * H))
    if ln is not None:
        names, shapes = names + ("lnc",), shapes + ((T, B, 5 * H + 5),)
    hs, cs, gates, *lnc = _check_cache(cache, names, shapes, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 2, (T,), B, H, dtype)
    args = (dys, dh_n, dc_n, x, h0, c0, w_ih, w_hh, cache, masks, ln)
    out, scale = _param_out(out, scale, (4 * H, I, H), has_bias, dtype, args)
    da = np.empty((T, B, 4 * H), dtype)
    dy = np.zeros((T, B, 5 * H), dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in reversed(range(T)):
        dh1 = dh if dys is None else dh + dys[t]
        cache_t = gates[t] if ln is None else (gates[t], lnc[0][t])
        da_t, dh_pass, dc_prev, dy_t = _lstm_masked_backward(
            dh1, dc, cs[t], cache_t, _at(zone_h, t), _at(zone_c, t), ln
        )
        real = _real(lengths, t)
        if real is None:
            dh, dc = _dropped(da_t @ w_hh, drop_h) + dh_pass, dc_prev
        else:
            da_t = np.where(real, da_t, 0)
            dh = np.where(real, _dropped(da_t @ w_hh, drop_h) + dh_pass, dh)
            dc = np.where(real, dc_prev, dc)
        da[t] = da_t
        if ln is not None:
            dy[t] = dy_t if real is None else np.where(real, dy_t, 0)
    dx, dw_ih, dw_hh, db_ih, db_hh = _deferred_grads(
        da, da, x, _dropped(hs, drop_h), w_ih, has_bias, need_dx
    )
    if not need_dh0:
        dh = dc = None
    dln = () if ln is None else _ln_params_grad(dy, lnc[0])
    dw_ih, dw_hh, db_ih, db_hh = _write_out((dw_ih, dw_hh, db_ih, db_hh), out, scale)
    return (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh) + dln


# ---------------------------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------------------------


def _gru_step(xw, h, w_hh, b_hh, drop_h=None, zone_h=None, ln=None):
    """gh = (h * drop_h) W_hh^T + b_hh;  r = σ(gi_r + gh_r), z = σ(gi_z + gh_z),
    n = tanh(gi_n + r gh_n), h1 = (1 - z) n + z h;  last, zoneout: h1 = zone_h h + (1 - zone_h) h1.
    Layer norm (ln = (gain, shift)): the four pre-activations gi_r + gh_r, gi_z + gh_z, gi_n and
    gh_n are each normalised (then gh_n is LN(gh_n) in n and in the cache); the cache is then
    (cache, lnc), lnc = [xhat_r, xhat_z, xhat_nx, xhat_nh | 1/std of the 4 norms]."""
    H = h.shape[1]
    gh = _dropped(h, drop_h) @ w_hh.T
    if b_hh is not None:
        gh += b_hh
    a = np.concatenate([xw[:, : 2 * H] + gh[:, : 2 * H], xw[:, 2 * H :], gh[:, 2 * H :]], axis=1)
    if ln is not None:
        a, lnc = _ln_blocks(a, ln[0], ln[1], 4)
    r = _sigmoid(a[:, 0 * H : 1 * H])
    z = _sigmoid(a[:, 1 * H : 2 * H])
    gh_n = a[:, 3 * H : 4 * H]
    n = np.tanh(a[:, 2 * H : 3 * H] + r * gh_n)
    h1 = (1 - z) * n + z * h
    cache = np.concatenate([r, z, n, gh_n], axis=1)  # (B, 4H)
    return _zoned(h1, h, zone_h), cache if ln is None else (cache, lnc)


def _gru_step_backward(dh1, h, cache, ln=None):
    """Gate gradients of one GRU step: dgi (B, 3H) for the x side, dgh (B, 3H) for the h side,
    dh_direct = dh1 * z (the part of dh that skips w_hh) and, with layer norm (cache = (cache,
    lnc)), dy (B, 4H), the gradients w.r.t. the 4 norms' outputs (else None)."""
    H = h.shape[1]
    if ln is not None:
        cache, lnc = cache
    r, z, n, gh_n = (cache[:, k * H : (k + 1) * H] for k in range(4))
    dn = dh1 * (1 - z)  # h1 = (1 - z) n + z h
    dz = dh1 * (h - n)
    dh_direct = dh1 * z
    da_n = dn * (1 - n * n)  # n = tanh(gi_n + r gh_n)
    dr = da_n * gh_n
    da_r = dr * r * (1 - r)
    da_z = dz * z * (1 - z)
    if ln is not None:  # the gradients w.r.t. the norms' outputs, taken through the norms
        dy = np.concatenate([da_r, da_z, da_n, da_n * r], axis=1)
        da_r, da_z, da_n, da_nh = np.split(_ln_blocks_backward(dy, ln[0], lnc, 4), 4, axis=1)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)
        return dgi, np.concatenate([da_r, da_z, da_nh], axis=1), dh_direct, dy
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)  # gradient of gi = x W_ih^T + b_ih
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)  # gradient of gh = h W_hh^T + b_hh
    return dgi, dgh, dh_direct, None


def _gru_masked_backward(dh1, h, cache, zone_h, ln):
    """_gru_step_backward under zoneout: the cell gets (1 - z) dh1, the previous state also z dh1
    directly (added to dh_direct)."""
    dgi, dgh, dh_direct, dy = _gru_step_backward(_zone_in(dh1, zone_h), h, cache, ln)
    return dgi, dgh, dh_direct + _zone_pass(dh1, zone_h), dy


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, masks=None, ln=None):
    """gi = x W_ih^T + b_ih;  gh = h W_hh^T + b_hh;  r, z = σ(gi + gh) (r, z blocks);
    n = tanh(gi_n + r gh_n);  h1 = (1 - z) n + z h;  cache = [r | z | n | gh_n].  Layer norm
    (ln): see _gru_step; cache = (that, lnc)"""
    B, I, H, dtype = _check_cell(3, x, h, w_ih, w_hh)
    _check_cell_biases(w_ih, b_ih, b_hh, 3 * H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (), B, H, dtype)
    ln = _check_ln(ln, 4, H, dtype)
    return _gru_step(_project(x, w_ih, b_ih), h, w_hh, b_hh, drop_h, zone_h, ln)


def gru_cell_backward(
    dh1, x, h, w_ih, w_hh, cache, has_bias, need_dx=True, need_dh=True, masks=None, ln=None
):
    """dgi, dgh from the gates (they differ in the n block: dgh_n = dgi_n r);
    dx = dgi W_ih;  dh = dh1 z + dgh W_hh;  dW_ih = dgi^T x;  dW_hh = dgh^T h;
    db_ih = sum_rows(dgi);  db_hh = sum_rows(dgh).  dx (dh) is None when need_dx (need_dh) is
    false.  With ln: cache = (gates, lnc), and the gains' and shifts' gradients follow."""
    B, I, H, dtype = _check_cell(3, x, h, w_ih, w_hh)
    _check_shape("dh1", dh1, (B, H), dtype)
    ln = _check_ln(ln, 4, H, dtype)
    cache = _check_cell_cache(cache, 4, ln, B, H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (), B, H, dtype)
    dgi, dgh, dh_direct, dy = _gru_masked_backward(dh1, h, cache, zone_h, ln)
    dw_ih, dw_hh, db_ih, db_hh = _cell_weight_grads(
        dgi, dgh, x, _dropped(h, drop_h), w_ih, has_bias
    )
    dx = (dgi if w_ih is None else dgi @ w_ih) if need_dx else None
    dh = dh_direct + _dropped(dgh @ w_hh, drop_h) if need_dh else None
    dln = () if ln is None else _ln_params_grad(dy, cache[1])
    return (dx, dh, dw_ih, dw_hh, db_ih, db_hh) + dln


def gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, masks=None, ln=None):
    """The GRU cell at every step (state carried at padded steps);  ys[t] = hs[t+1] (0 at
    padded steps);  cache = (hs, gates) with gates[t] the cell cache of step t; with layer
    norm (ln) cache = (hs, gates, lnc), lnc[t] the step's norm cache"""
    T, B, I, H, dtype, lengths = _check_sequence(3, x, h0, w_ih, w_hh, lengths)
    _check_biases(b_ih, b_hh, 3 * H, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (T,), B, H, dtype)
    ln = _check_ln(ln, 4, H, dtype)
    xw = _input_projection(x, w_ih, b_ih)
    hs = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 4 * H), dtype)
    lnc = None if ln is None else np.empty((T, B, 4 * H + 4), dtype)
    ys = np.zeros((T, B, H), dtype)
    hs[0] = h0
    for t in range(T):
        h1, cache_t = _gru_step(xw[t], hs[t], w_hh, b_hh, drop_h, _at(zone_h, t), ln)
        if ln is None:
            gates[t] = cache_t
        else:
            gates[t], lnc[t] = cache_t
        _store_step(lengths, t, ys, h1, (hs, h1))
    return ys, hs[T].copy(), (hs, gates) + (() if ln is None else (lnc,))


def gru_sequence_backward(
    dys,
    dh_n,
    x,
    h0,
    w_ih,
    w_hh,
    cache,
    lengths,
    has_bias,
    need_dx=True,
    need_dh0=True,
    masks=None,
    ln=None,
    out=None,
    scale=1.0,
):
    """Backward through time with the GRU step backward: dh = dh1 z + dgh[t] W_hh; dgi[t] and
    dgh[t] are 0 and dh is carried at padded steps; then dx = dgi W_ih, dW_ih = dgi^T x,
    dW_hh = dgh^T h_prev, db_ih, db_hh from all steps at once (dx None when not need_dx).
    dys None: no output gradient. need_dh0 False: dh0 is None.  With ln: cache = (hs, gates,
    lnc), and the gains' and shifts' gradients follow.  out, scale: as in
    rnn_sequence_backward."""
    T, B, I, H, dtype, lengths = _check_sequence(3, x, h0, w_ih, w_hh, lengths)
    if dys is not None:
        _check_shape("dys", dys, (T, B, H), dtype)
    _check_shape("dh_n", dh_n, (B, H), dtype)
    ln = _check_ln(ln, 4, H, dtype)
    names, shapes = ("hs", "gates"), ((T + 1, B, H), (T, B, 4 * H))
    if ln is not None:
        names, shapes = names + ("lnc",), shapes + ((T, B, 4 * H + 4),)
    hs, gates, *lnc = _check_cache(cache, names, shapes, dtype)
    drop_h, zone_h, zone_c = _check_masks(masks, 1, (T,), B, H, dtype)
    args = (dys, dh_n, x, h0, w_ih, w_hh, cache, masks, ln)
    out, scale = _param_out(out, scale, (3 * H, I, H), has_bias, dtype, args)
    dgi = np.empty((T, B, 3 * H), dtype)
    dgh = np.empty((T, B, 3 * H), dtype)
    dy = np.zeros((T, B, 4 * H), dtype)
    dh = dh_n.copy()
    for t in reversed(range(T)):
        dh1 = dh if dys is None else dh + dys[t]
        cache_t = gates[t] if ln is None else (gates[t], lnc[0][t])
        dgi_t, dgh_t, dh_direct, dy_t = _gru_masked_backward(
            dh1, hs[t], cache_t, _at(zone_h, t), ln
        )
        real = _real(lengths, t)
        if real is None:
            dh = dh_direct + _dropped(dgh_t @ w_hh, drop_h)
        else:
            dgi_t = np.where(real, dgi_t, 0)
            dgh_t = np.where(real, dgh_t, 0)
            dh = np.where(real, dh_direct + _dropped(dgh_t @ w_hh, drop_h), dh)
        dgi[t], dgh[t] = dgi_t, dgh_t
        if ln is not None:
            dy[t] = dy_t if real is None else np.where(real, dy_t, 0)
    dx, dw_ih, dw_hh, db_ih, db_hh = _deferred_grads(
        dgi, dgh, x, _dropped(hs, drop_h), w_ih, has_bias, need_dx
    )
    dln = () if ln is None else _ln_params_grad(dy, lnc[0])
    dw_ih, dw_hh, db_ih, db_hh = _write_out((dw_ih, dw_hh, db_ih, db_hh), out, scale)
    return (dx, dh if need_dh0 else None, dw_ih, dw_hh, db_ih, db_hh) + dln
