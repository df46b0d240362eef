"""Recurrent (variational) dropout and zoneout of nn.RNN / nn.LSTM / nn.GRU.

The masks a layer draws are reproduced here from the same generator seed (the documented draw
order: per layer and direction, the input mask (B, I), the recurrent mask (B, H), zoneout's h
weights (T, B, H), the LSTM's c weights (T, B, H)), and a NumPy reference of the cell equations
applies them: one dropout mask per sequence, the same at every step; zoneout per step and unit;
eval without dropout and with zoneout's expectation.  The three implementations' agreement is in
test_impl_equivalence.py, the kernels' (masks argument) in test_kernels.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_recurrent_modules import examples

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

MODES = ("RNN", "LSTM", "GRU")
IMPLS = ("sequence", "step", "composed")


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _act(nonlinearity, a):
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)


def reference(mode, p, x, xm, hm, zh, zc, nonlinearity="tanh"):
    """One layer, one direction, zero initial state, x (T, B, I): the cell equations with the
    input mask xm (B, I), recurrent mask hm (B, H) (None: off), zoneout weights zh, zc
    (T, B, H) (None: off).  p: the layer's parameters by PyTorch name; nonlinearity: the
    RNN's."""
    w_ih, w_hh, b_ih, b_hh = (
        p[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    ys = []
    for t in range(T):
        xt = x[t] if xm is None else x[t] * xm
        hd = h if hm is None else h * hm
        gi = xt @ w_ih.T + b_ih
        gh = hd @ w_hh.T + b_hh
        if mode == "RNN":
            h_new, c_new = _act(nonlinearity, gi + gh), c
        elif mode == "LSTM":
            i, f, g, o = np.split(gi + gh, 4, axis=1)
            c_new = _sig(f) * c + _sig(i) * np.tanh(g)
            h_new = _sig(o) * np.tanh(c_new)
        else:
            r = _sig(gi[:, :H] + gh[:, :H])
            z = _sig(gi[:, H : 2 * H] + gh[:, H : 2 * H])
            n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
            h_new, c_new = (1 - z) * n + z * h, c
        if zh is not None:
            h_new = zh[t] * h + (1 - zh[t]) * h_new
        if zc is not None:
            c_new = zc[t] * c + (1 - zc[t]) * c_new
        h, c = h_new, c_new
        ys.append(h)
    return np.stack(ys)


def draw_like_the_layer(seed, mode, T, B, I, H, pi, pr, pz):
    """The masks of a one-layer, one-direction layer in training, drawn as the layer draws."""
    rng = np.random.default_rng(seed)
    xm = (rng.random((B, I)) >= pi) / (1 - pi) if pi else None
    hm = (rng.random((B, H)) >= pr) / (1 - pr) if pr else None
    zh = (rng.random((T, B, H)) < pz).astype(float) if pz else None
    zc = (rng.random((T, B, H)) < pz).astype(float) if pz and mode == "LSTM" else None
    return xm, hm, zh, zc


def make(mode, impl="sequence", **kw):
    mg.manual_seed(3)
    return getattr(nn, mode)(4, 5, dtype=np.float64, impl=impl, **kw)


def params(layer):
    return {n: p.data for n, p in layer.named_parameters()}


X = np.random.default_rng(0).standard_normal((6, 3, 4))  # T=6, B=3, I=4


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
def test_training_masks_match_a_numpy_reference_with_one_mask_per_sequence(mode, impl):
    pz = 0.3
    layer = make(
        mode,
        impl,
        input_dropout=0.25,
        recurrent_dropout=0.5,
        zoneout=pz,
        generator=np.random.default_rng(11),
    )
    out, _ = layer(mg.tensor(X))
    masks = draw_like_the_layer(11, mode, 6, 3, 4, 5, 0.25, 0.5, pz)
    want = reference(mode, params(layer), X, *masks)
    np.testing.assert_allclose(out.data, want, rtol=1e-10, atol=1e-12)
    # the reference with fresh masks at each step is another function: the test can tell
    xm, hm, zh, zc = masks
    other = reference(mode, params(layer), X, xm, hm[::-1].copy(), zh, zc)
    assert np.abs(other - want).max() > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_dropout_is_absent_in_eval(mode):
    plain = make(mode)
    layer = make(mode, input_dropout=0.4, recurrent_dropout=0.4)
    layer.eval()
    np.testing.assert_array_equal(layer(mg.tensor(X))[0].data, plain(mg.tensor(X))[0].data)
    layer.train()
    assert np.abs(layer(mg.tensor(X))[0].data - plain(mg.tensor(X))[0].data).max() > 1e-3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
def test_zoneout_in_eval_is_the_expectation(mode, impl):
    layer = make(mode, impl, zoneout=0.3, recurrent_dropout=0.5)
    layer.eval()
    out, _ = layer(mg.tensor(X))
    zh = np.full((6, 3, 5), 0.3)
    want = reference(mode, params(layer), X, None, None, zh, zh if mode == "LSTM" else None)
    np.testing.assert_allclose(out.data, want, rtol=1e-10, atol=1e-12)
    plain = reference(mode, params(layer), X, None, None, None, None)
    assert np.abs(plain - want).max() > 1e-3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
def test_rates_of_zero_give_the_plain_layer(mode, impl):
    plain = make(mode, impl)
    layer = make(mode, impl, input_dropout=0.0, recurrent_dropout=0.0, zoneout=0.0)
    for a, b in zip(layer(mg.tensor(X), lengths=[6, 2, 4]), plain(mg.tensor(X), lengths=[6, 2, 4])):
        a, b = (a, b) if mode != "LSTM" or not isinstance(a, tuple) else (a[0], b[0])
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("mode", MODES)
def test_generator_makes_runs_reproducible_and_each_call_draws_anew(mode):
    kw = dict(recurrent_dropout=0.5, input_dropout=0.2, zoneout=0.2)
    a = make(mode, generator=np.random.default_rng(5), **kw)
    b = make(mode, generator=np.random.default_rng(5), **kw)
    c = make(mode, generator=np.random.default_rng(6), **kw)
    ya, yb, yc = (m(mg.tensor(X))[0].data for m in (a, b, c))
    np.testing.assert_array_equal(ya, yb)
    assert np.abs(ya - yc).max() > 1e-3
    assert np.abs(a(mg.tensor(X))[0].data - ya).max() > 1e-3  # a new draw per forward call


def test_each_layer_and_direction_draws_its_own_masks():
    layer = make("LSTM", num_layers=2, bidirectional=True, recurrent_dropout=0.5, zoneout=0.5)
    masks = layer._draw_masks(6, 3, np.float64)
    assert len(masks) == 4
    drops = [m[1][0] for m in masks]
    zones = [m[1][1] for m in masks] + [m[1][2] for m in masks]
    for group in (drops, zones):
        for i in range(len(group)):
            for j in range(i):
                assert not np.array_equal(group[i], group[j])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences_with_fixed_masks(mode, impl):
    """float64: the generator is reset before every call, so each call draws the same masks."""
    kw = dict(input_dropout=0.3, recurrent_dropout=0.4, zoneout=0.3)
    layer = make(mode, impl, num_layers=2, bidirectional=True, **kw)

    def fn(x):
        layer.generator = np.random.default_rng(2)
        return layer(x, lengths=[3, 1])[0]

    x = mg.tensor(np.random.default_rng(1).standard_normal((3, 2, 4)), requires_grad=True)
    assert mg.gradcheck(fn, [x])
    w = layer.weight_hh_l0
    assert mg.gradcheck(
        lambda w_: _with_weight(layer, w, w_, fn, x), [mg.tensor(w.data.copy(), requires_grad=True)]
    )


def _with_weight(layer, param, value, fn, x):
    """fn(x) with param's data taken from the tensor value (its gradient reaches value)."""
    saved = layer._parameters["weight_hh_l0"]
    layer._parameters["weight_hh_l0"] = value
    try:
        return fn(x)
    finally:
        layer._parameters["weight_hh_l0"] = saved


@examples(30)
@given(
    mode=st.sampled_from(MODES),
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    lengths=st.booleans(),
)
def test_padded_steps_carry_the_state_under_zoneout_and_dropout(mode, T, B, seed, lengths):
    """With lengths, h_n is the state after each row's last real step: equal to the output of
    a run on that row alone, cut to its length, with the same masks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, 4))
    ln = rng.integers(1, T + 1, B) if lengths else np.full(B, T)
    layer = make(mode, recurrent_dropout=0.3, zoneout=0.4, generator=np.random.default_rng(seed))
    _, state = layer(mg.tensor(x), lengths=ln)
    h_n = (state[0] if mode == "LSTM" else state).data[0]
    _, hm, zh, zc = draw_like_the_layer(seed, mode, T, B, 4, 5, 0.0, 0.3, 0.4)
    for b in range(B):
        L = int(ln[b])
        sl = (slice(None), slice(b, b + 1))
        want = reference(
            mode,
            params(layer),
            x[:L, b : b + 1],
            None,
            hm[b : b + 1],
            zh[:L][sl],
            None if zc is None else zc[:L][sl],
        )
        np.testing.assert_allclose(h_n[b], want[-1, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (
            {"recurrent_dropout": 1.0},
            ValueError,
            r"recurrent_dropout must be a number in \[0, 1\), got 1.0",
        ),
        ({"input_dropout": -0.1}, ValueError, r"input_dropout must be a number in \[0, 1\)"),
        ({"zoneout": "0.5"}, ValueError, r"zoneout must be a number in \[0, 1\), got '0.5'"),
        ({"zoneout": True}, ValueError, r"zoneout must be a number"),
        ({"generator": 3}, TypeError, r"generator must be a numpy Generator.*got int"),
    ],
)
def test_bad_options_raise(kw, error, match):
    with pytest.raises(error, match=match):
        make("LSTM", **kw)


@pytest.mark.parametrize("impl", IMPLS)
def test_rnn_zoneout_with_relu_in_training_eval_and_gradients(impl):
    """nn.RNN(nonlinearity="relu", zoneout=p): the relu reference with the drawn weights in
    training and p's expectation in eval; float64 gradients match finite differences with
    lengths (the backward takes relu' from the activation's output, not the zoned state)."""
    layer = make("RNN", impl, nonlinearity="relu", zoneout=0.4, generator=np.random.default_rng(4))
    out, _ = layer(mg.tensor(X))
    _, _, zh, _ = draw_like_the_layer(4, "RNN", 6, 3, 4, 5, 0.0, 0.0, 0.4)
    want = reference("RNN", params(layer), X, None, None, zh, None, "relu")
    np.testing.assert_allclose(out.data, want, rtol=1e-10, atol=1e-12)
    tanh = reference("RNN", params(layer), X, None, None, zh, None)
    assert np.abs(tanh - want).max() > 1e-3
    layer.eval()
    want = reference("RNN", params(layer), X, None, None, np.full((6, 3, 5), 0.4), None, "relu")
    np.testing.assert_allclose(layer(mg.tensor(X))[0].data, want, rtol=1e-10, atol=1e-12)
    layer.train()

    def fn(x):
        layer.generator = np.random.default_rng(2)
        return layer(x, lengths=[3, 1])[0]

    x = mg.tensor(np.random.default_rng(1).standard_normal((3, 2, 4)), requires_grad=True)
    assert mg.gradcheck(fn, [x])


@pytest.mark.parametrize("impl", ["step", "composed"])
@pytest.mark.parametrize("mode", MODES)
def test_cell_modules_zoneout_in_training_and_eval(mode, impl):
    """nn.RNNCell / nn.LSTMCell / nn.GRUCell(zoneout=p): one step of the reference with the
    weights drawn as the cell draws them (h's, then c's), in training; p's expectation in eval;
    the plain cell at p = 0."""
    mg.manual_seed(3)
    cell = getattr(nn, mode + "Cell")(
        4, 5, dtype=np.float64, impl=impl, zoneout=0.4, generator=np.random.default_rng(8)
    )
    p = {n + "_l0": a.data for n, a in cell.named_parameters()}
    x, h0 = X[0], np.random.default_rng(9).standard_normal((3, 5))
    c0 = np.random.default_rng(10).standard_normal((3, 5))
    hx = (mg.tensor(h0), mg.tensor(c0)) if mode == "LSTM" else mg.tensor(h0)
    out = cell(mg.tensor(x), hx)
    h1 = (out[0] if mode == "LSTM" else out).data
    rng = np.random.default_rng(8)
    zh = (rng.random((3, 5)) < 0.4).astype(float)
    zc = (rng.random((3, 5)) < 0.4).astype(float) if mode == "LSTM" else None
    plain = _one_step(mode, p, x, h0, c0, None, None)
    want = _one_step(mode, p, x, h0, c0, zh, zc)
    np.testing.assert_allclose(h1, want, rtol=1e-10, atol=1e-12)
    assert np.abs(want - plain).max() > 1e-3
    cell.eval()
    out = cell(mg.tensor(x), hx)
    z = np.full((3, 5), 0.4)
    want = _one_step(mode, p, x, h0, c0, z, z if mode == "LSTM" else None)
    np.testing.assert_allclose((out[0] if mode == "LSTM" else out).data, want, rtol=1e-10)
    cell.zoneout = 0.0
    out = cell(mg.tensor(x), hx)
    np.testing.assert_allclose((out[0] if mode == "LSTM" else out).data, plain, rtol=1e-10)


def _one_step(mode, p, x, h0, c0, zh, zc):
    """One step of the cell equations from the state (h0, c0), zoneout (zh, zc) applied after
    the cell's update (None: off); returns h1."""
    H = h0.shape[1]
    w_ih, w_hh, b_ih, b_hh = (
        p[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    gi, gh = x @ w_ih.T + b_ih, h0 @ w_hh.T + b_hh
    if mode == "RNN":
        h1 = np.tanh(gi + gh)
    elif mode == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=1)
        h1 = _sig(o) * np.tanh(_sig(f) * c0 + _sig(i) * np.tanh(g))
    else:
        r = _sig(gi[:, :H] + gh[:, :H])
        z = _sig(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h1 = (1 - z) * n + z * h0
    return h1 if zh is None else zh * h0 + (1 - zh) * h1


def test_cell_modules_reject_bad_zoneout_and_generator():
    with pytest.raises(ValueError, match=r"zoneout must be a number in \[0, 1\), got 1"):
        nn.LSTMCell(3, 4, zoneout=1)
    with pytest.raises(TypeError, match="GRUCell generator must be a numpy Generator"):
        nn.GRUCell(3, 4, zoneout=0.1, generator="seed")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "mask, text",
    [
        (np.ones(3, dtype=np.float32), r"shape \(2, 3\) and dtype float32, got shape \(3,\)"),
        (np.ones((2, 3)), r"dtype float32, got shape \(2, 3\) and dtype float64"),
    ],
)
def test_composed_cells_refuse_masks_the_kernels_refuse(cell, mask, text):
    """A (H,) mask would broadcast and a float64 one promote the float32 state: refused, as the
    compiled kernels refuse them."""
    rng = np.random.default_rng(0)
    B, I, H = 2, 4, 3
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * H
    x = rng.standard_normal((B, I)).astype(np.float32)
    h = np.zeros((B, H), np.float32)
    w_ih = rng.standard_normal((G, I)).astype(np.float32)
    w_hh = rng.standard_normal((G, H)).astype(np.float32)
    for masks in ((mask, None, None), (None, mask, None)):
        with pytest.raises(ValueError, match=text):
            if cell == "lstm":
                F.lstm_cell_composed(x, h, h, w_ih, w_hh, masks=masks)
            else:
                getattr(F, f"{cell}_cell_composed")(x, h, w_ih, w_hh, masks=masks)
