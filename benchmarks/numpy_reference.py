"""RNN, LSTM and GRU training steps in plain NumPy, with hand-written backpropagation through time.

This is how a NumPy user writes recurrent networks (in the style of cs231n's assignments or
"Deep Learning from Scratch 2"): a forward loop that keeps what backward needs, a backward loop
that walks the steps in reverse.  It does not import minigrad: it is the NumPy contender of the
benchmarks and an independent oracle for minigrad's tests.

Conventions (the same as minigrad and PyTorch, so weights move between the three):

* time-major data: ``x`` has shape (T, B, I) (T steps, batch B, I input features), the outputs
  ``ys`` (T, B, H); this is PyTorch's default ``batch_first=False`` layout;
* ``params`` is a dict with PyTorch's names: ``weight_ih_l0`` (G*H, I), ``weight_hh_l0``
  (G*H, H), and optionally ``bias_ih_l0``, ``bias_hh_l0`` (G*H,).  G = 1 for the RNN, 4 for the
  LSTM (gates i, f, g, o), 3 for the GRU (gates r, z, n);
* GRU: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``;
* ``h0`` (and ``c0``) may be None (zeros);
* ``lengths`` (optional, shape (B,), values in [1, T]) gives variable-length sequences: step t of
  sequence b is real when t < lengths[b].  At padded steps the state is carried unchanged and
  the output is zero, so ``h_n`` is each sequence's state after its last real step.

Each ``*_backward(dys, dh_n, [dc_n,] cache)`` takes the gradients of the loss with respect to
the outputs (None means zero) and returns a dict of gradients keyed like ``params``, plus
``'x'``, ``'h0'`` (and ``'c0'``).

The input projection ``x @ W_ih^T`` is computed for all steps at once (one GEMM) before the
loop, and backward stacks the per-step gate gradients to compute ``dx``, ``dW_ih`` and
``dW_hh`` with one GEMM each after the loop.

``train_step(cell, params, x, target, lr)`` does one SGD step of a small regression model: the
recurrent layer, then a linear readout of the final hidden state ``h_n`` (params ``fc.weight``
(O, H), ``fc.bias`` (O,)), loss = mean squared error over the (B, O) predictions.
"""

import numpy as np

__all__ = [
    "init_params",
    "sigmoid",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "train_step",
]

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def init_params(
    cell, input_size, hidden_size, output_size=None, bias=True, dtype=np.float32, seed=0
):
    """PyTorch's initialisation: every recurrent weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)).

    With ``output_size``, also a readout layer ``fc.weight`` (O, H), ``fc.bias`` (O,) drawn
    from U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's nn.Linear default bounds)."""
    rng = np.random.default_rng(seed)
    G, H, I = GATES[cell], hidden_size, input_size
    k = 1 / np.sqrt(H)
    shapes = {"weight_ih_l0": (G * H, I), "weight_hh_l0": (G * H, H)}
    if bias:
        shapes.update(bias_ih_l0=(G * H,), bias_hh_l0=(G * H,))
    if output_size is not None:
        shapes.update({"fc.weight": (output_size, H), "fc.bias": (output_size,)})
    return {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in shapes.items()}


def sigmoid(a):
    """σ(a) = 1 / (1 + exp(-a)) = (1 + tanh(a / 2)) / 2: the tanh form never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * a))


# ---------------------------------------------------------------------------------------------
# Helpers shared by the three cells
# ---------------------------------------------------------------------------------------------


def _setup(x, params, h0, c0=None, lengths=None):
    """Transposed weights (so a step is `h @ Wh`), the hidden bias, initial states, the padding
    masks (_masks) and the projected inputs (_project_inputs): what every forward starts from."""
    T, B, _ = x.shape
    Wx = params["weight_ih_l0"].T  # (I, G*H)
    Wh = params["weight_hh_l0"].T  # (H, G*H)
    H = Wh.shape[0]
    b_ih = params.get("bias_ih_l0")
    b_hh = params.get("bias_hh_l0")
    h0 = np.zeros((B, H), x.dtype) if h0 is None else h0
    c0 = np.zeros((B, H), x.dtype) if c0 is None else c0
    masks = _masks(lengths, T, B, x.dtype)
    xw = _project_inputs(x, Wx, b_ih)
    return Wx, Wh, b_hh, h0, c0, masks, xw


def _masks(lengths, T, B, dtype):
    """masks[t] (B, 1): 1.0 where step t of the sequence is real, 0.0 where it is padding."""
    if lengths is None:
        return np.ones((T, B, 1), dtype)
    steps = np.arange(T)[:, None]  # (T, 1)
    return (steps < np.asarray(lengths)[None, :]).astype(dtype)[:, :, None]


def _project_inputs(x, Wx, b):
    """x[t] @ Wx + b for every step t: one (T*B, I) @ (I, G*H) matrix product."""
    T, B, I = x.shape
    xw = (x.reshape(T * B, I) @ Wx).reshape(T, B, -1)
    if b is not None:
        xw += b
    return xw


def _weight_grads(x, h_prevs, dgates_x, dgates_h, Wx, params):
    """Gradients of the weights from the stacked gate gradients of all steps (one GEMM each).

    dgates_x (T, B, G*H) is the gradient of x @ Wx + b_ih, dgates_h that of h @ Wh + b_hh
    (they are the same array except for the GRU)."""
    T, B, I = x.shape
    dx_flat = dgates_x.reshape(T * B, -1)
    dh_flat = dgates_h.reshape(T * B, -1)
    grads = {
        "x": (dx_flat @ Wx.T).reshape(T, B, I),
        "weight_ih_l0": dx_flat.T @ x.reshape(T * B, I),
        "weight_hh_l0": dh_flat.T @ h_prevs.reshape(T * B, -1),
    }
    if "bias_ih_l0" in params:
        grads["bias_ih_l0"] = dx_flat.sum(axis=0)
        grads["bias_hh_l0"] = dh_flat.sum(axis=0)
    return grads


def _zeros_if_none(a, like):
    return np.zeros_like(like) if a is None else a


# ---------------------------------------------------------------------------------------------
# Vanilla RNN:  h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)   (or relu)
# ---------------------------------------------------------------------------------------------


def rnn_forward(x, h0, params, lengths=None, nonlinearity="tanh"):
    """Returns ys (T, B, H), h_n (B, H) and the cache for rnn_backward."""
    T, B, _ = x.shape
    Wx, Wh, b_hh, h, _, masks, xw = _setup(x, params, h0, lengths=lengths)
    ys = np.empty((T, B, Wh.shape[0]), x.dtype)
    h_prevs, h_news = [], []
    for t in range(T):
        a = xw[t] + h @ Wh
        if b_hh is not None:
            a += b_hh
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
        m = masks[t]
        h_prevs.append(h)
        h_news.append(h_new)
        ys[t] = m * h_new
        h = m * h_new + (1 - m) * h  # padded steps keep the old state
    cache = (x, params, masks, np.stack(h_prevs), h_news, nonlinearity, Wx, Wh)
    return ys, h, cache


def rnn_backward(dys, dh_n, cache):
    """Gradients of x, h0 and every parameter, given dL/dys and dL/dh_n."""
    x, params, masks, h_prevs, h_news, nonlinearity, Wx, Wh = cache
    T = x.shape[0]
    dh = _zeros_if_none(dh_n, h_prevs[0]).copy()
    das = np.empty((T,) + h_prevs.shape[1:], x.dtype)
    for t in reversed(range(T)):
        m = masks[t]
        dh_new = m * (dh + (0 if dys is None else dys[t]))  # h_new reaches ys[t] and h_t
        if nonlinearity == "tanh":
            da = dh_new * (1 - h_news[t] ** 2)
        else:
            da = dh_new * (h_news[t] > 0)
        das[t] = da
        dh = (1 - m) * dh + da @ Wh.T  # carried part + through the recurrence
    grads = _weight_grads(x, h_prevs, das, das, Wx, params)
    grads["h0"] = dh
    return grads


# ---------------------------------------------------------------------------------------------
# LSTM:  [i f g o] = [σ σ tanh σ](x_t W_ih^T + b_ih + h W_hh^T + b_hh)
#        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
# ---------------------------------------------------------------------------------------------


def lstm_forward(x, h0, c0, params, lengths=None):
    """Returns ys (T, B, H), h_n, c_n (B, H) and the cache for lstm_backward."""
    T, B, _ = x.shape
    Wx, Wh, b_hh, h, c, masks, xw = _setup(x, params, h0, c0, lengths)
    H = Wh.shape[0]
    ys = np.empty((T, B, H), x.dtype)
    h_prevs, steps = [], []
    for t in range(T):
        a = xw[t] + h @ Wh
        if b_hh is not None:
            a += b_hh
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = sigmoid(a[:, 3 * H :])
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        h_new = o * tanh_c
        h_prevs.append(h)
        steps.append((i, f, g, o, c, tanh_c))
        m = masks[t]
        ys[t] = m * h_new
        h = m * h_new + (1 - m) * h
        c = m * c_new + (1 - m) * c
    cache = (x, params, masks, np.stack(h_prevs), steps, Wx, Wh)
    return ys, h, c, cache


def lstm_backward(dys, dh_n, dc_n, cache):
    """Gradients of x, h0, c0 and every parameter, given dL/dys, dL/dh_n and dL/dc_n."""
    x, params, masks, h_prevs, steps, Wx, Wh = cache
    T = x.shape[0]
    dh = _zeros_if_none(dh_n, h_prevs[0]).copy()
    dc = _zeros_if_none(dc_n, h_prevs[0]).copy()
    das = np.empty((T,) + h_prevs.shape[1:2] + (Wh.shape[1],), x.dtype)
    for t in reversed(range(T)):
        i, f, g, o, c_prev, tanh_c = steps[t]
        m = masks[t]
        dh_new = m * (dh + (0 if dys is None else dys[t]))
        dc_new = m * dc + dh_new * o * (1 - tanh_c**2)  # c_t feeds h_t = o tanh(c_t)
        do = dh_new * tanh_c
        di = dc_new * g
        df = dc_new * c_prev
        dg = dc_new * i
        da = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
        )
        das[t] = da
        dh = (1 - m) * dh + da @ Wh.T
        dc = (1 - m) * dc + dc_new * f
    grads = _weight_grads(x, h_prevs, das, das, Wx, params)
    grads["h0"] = dh
    grads["c0"] = dc
    return grads


# ---------------------------------------------------------------------------------------------
# GRU:  r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
#       n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),   h_t = (1 - z) * n + z * h_{t-1}
# ---------------------------------------------------------------------------------------------


def gru_forward(x, h0, params, lengths=None):
    """Returns ys (T, B, H), h_n (B, H) and the cache for gru_backward."""
    T, B, _ = x.shape
    Wx, Wh, b_hh, h, _, masks, xw = _setup(x, params, h0, lengths=lengths)
    H = Wh.shape[0]
    ys = np.empty((T, B, H), x.dtype)
    h_prevs, steps = [], []
    for t in range(T):
        hw = h @ Wh
        if b_hh is not None:
            hw += b_hh
        r = sigmoid(xw[t, :, :H] + hw[:, :H])
        z = sigmoid(xw[t, :, H : 2 * H] + hw[:, H : 2 * H])
        hw_n = hw[:, 2 * H :]
        n = np.tanh(xw[t, :, 2 * H :] + r * hw_n)
        h_new = (1 - z) * n + z * h
        h_prevs.append(h)
        steps.append((r, z, n, hw_n))
        m = masks[t]
        ys[t] = m * h_new
        h = m * h_new + (1 - m) * h
    cache = (x, params, masks, np.stack(h_prevs), steps, Wx, Wh)
    return ys, h, cache


def gru_backward(dys, dh_n, cache):
    """Gradients of x, h0 and every parameter, given dL/dys and dL/dh_n."""
    x, params, masks, h_prevs, steps, Wx, Wh = cache
    T = x.shape[0]
    dh = _zeros_if_none(dh_n, h_prevs[0]).copy()
    shape = h_prevs.shape[1:2] + (Wh.shape[1],)
    dxws = np.empty((T,) + shape, x.dtype)  # gradient of the x-side pre-activations
    dhws = np.empty((T,) + shape, x.dtype)  # gradient of the h-side pre-activations
    for t in reversed(range(T)):
        r, z, n, hw_n = steps[t]
        h_prev = h_prevs[t]
        m = masks[t]
        dh_new = m * (dh + (0 if dys is None else dys[t]))
        dn = dh_new * (1 - z)
        dz = dh_new * (h_prev - n)
        dn_pre = dn * (1 - n**2)
        dr = dn_pre * hw_n
        dr_pre = dr * r * (1 - r)
        dz_pre = dz * z * (1 - z)
        dxws[t] = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        dhws[t] = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)  # r scales W_hn h + b_hn
        dh = (1 - m) * dh + dh_new * z + dhws[t] @ Wh.T
    grads = _weight_grads(x, h_prevs, dxws, dhws, Wx, params)
    grads["h0"] = dh
    return grads


# ---------------------------------------------------------------------------------------------
# One training step
# ---------------------------------------------------------------------------------------------


def train_step(cell, params, x, target, lr, lengths=None):
    """Forward, loss, backward and an SGD update (in place) of a recurrent regression model.

    Model: the recurrent layer ``cell`` ('rnn' (tanh), 'lstm' or 'gru') from zero initial
    states, then ``pred = h_n @ fc.weight^T + fc.bias`` on the final hidden state (each
    sequence's last real step when ``lengths`` is given).  Loss: ``mean((pred - target)**2)``
    over all B*O entries of target (B, O).  Every entry of ``params`` is updated as
    ``p -= lr * grad``.  Returns the loss before the update."""
    if cell == "lstm":
        _, h_n, _, cache = lstm_forward(x, None, None, params, lengths)
    elif cell == "gru":
        _, h_n, cache = gru_forward(x, None, params, lengths)
    else:
        _, h_n, cache = rnn_forward(x, None, params, lengths)
    W, b = params["fc.weight"], params["fc.bias"]
    pred = h_n @ W.T + b
    err = pred - target
    loss = float(np.mean(err**2))

    dpred = (2 / err.size) * err
    dh_n = dpred @ W
    if cell == "lstm":
        grads = lstm_backward(None, dh_n, None, cache)
    elif cell == "gru":
        grads = gru_backward(None, dh_n, cache)
    else:
        grads = rnn_backward(None, dh_n, cache)
    grads["fc.weight"] = dpred.T @ h_n
    grads["fc.bias"] = dpred.sum(axis=0)

    for name, p in params.items():
        p -= lr * grads[name].astype(p.dtype, copy=False)
    return loss
