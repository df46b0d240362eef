"""minigrad.keras recurrent layers against a NumPy reference written from Keras's documented
cell equations (masks keep the state; go_backwards returns the reversed-order outputs), both
paths (compiled kernel and composed), gradients by finite differences."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import keras
from minigrad.keras import layers


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


ACT = {
    "tanh": np.tanh,
    "sigmoid": _sig,
    "relu": lambda v: np.maximum(v, 0.0),
    "linear": lambda v: v,
}


def reference(
    kind,
    x,
    weights,
    mask=None,
    go_backwards=False,
    activation="tanh",
    recurrent_activation="sigmoid",
    reset_after=True,
    h0=None,
    c0=None,
):
    """(outputs (B, T, H) in processing order, final states) in float64 NumPy."""
    K, U = weights[0].astype(np.float64), weights[1].astype(np.float64)
    b = weights[2].astype(np.float64) if len(weights) > 2 else None
    B, T, _ = x.shape
    H = U.shape[0]
    act, ra = ACT[activation], ACT[recurrent_activation]
    h = np.zeros((B, H)) if h0 is None else h0.astype(np.float64)
    c = np.zeros((B, H)) if c0 is None else c0.astype(np.float64)
    steps = range(T - 1, -1, -1) if go_backwards else range(T)
    outs = []
    for t in steps:
        xt = x[:, t].astype(np.float64)
        if kind == "SimpleRNN":
            hn = act(xt @ K + (0 if b is None else b) + h @ U)
            cn = c
        elif kind == "LSTM":
            z = xt @ K + (0 if b is None else b) + h @ U
            i, f, g, o = np.split(z, 4, axis=1)
            cn = ra(f) * c + ra(i) * act(g)
            hn = ra(o) * act(cn)
        else:
            if reset_after:
                bx = 0 if b is None else b[0]
                bh = 0 if b is None else b[1]
                xz, xr, xh = np.split(xt @ K + bx, 3, axis=1)
                hz, hr, hh = np.split(h @ U + bh, 3, axis=1)
                zg, r = ra(xz + hz), ra(xr + hr)
                cand = act(xh + r * hh)
            else:
                xz, xr, xh = np.split(xt @ K + (0 if b is None else b), 3, axis=1)
                zg = ra(xz + h @ U[:, :H])
                r = ra(xr + h @ U[:, H : 2 * H])
                cand = act(xh + (r * h) @ U[:, 2 * H :])
            hn = zg * h + (1 - zg) * cand
            cn = c
        if mask is not None:
            m = mask[:, t : t + 1]
            hn = np.where(m, hn, h)
            cn = np.where(m, cn, c)
        h, c = hn, cn
        outs.append(h)
    return np.stack(outs, axis=1), (h, c)


def _layer(kind, units, **kw):
    return getattr(layers, kind)(units, **kw)


def _random_weights(layer, rng):
    return [rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in layer.get_weights()]


def _masks(B, T, rng, style):
    if style is None:
        return None
    L = rng.integers(1, T + 1, size=B)
    ar = np.arange(T)[None, :]
    if style == "right":
        return ar < L[:, None]
    if style == "left":
        return ar >= (T - L)[:, None]
    m = rng.random((B, T)) < 0.6
    m[np.arange(B), rng.integers(0, T, size=B)] = True  # at least one step per row
    return m


FORMS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu"}),
    ("SimpleRNN", {"activation": "sigmoid"}),
    ("LSTM", {}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "tanh"}),
    ("LSTM", {"use_bias": False}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False}),
    ("GRU", {"reset_after": False, "use_bias": False}),
]


@pytest.mark.parametrize("kind,kw", FORMS)
@pytest.mark.parametrize("mask_style", [None, "right", "left", "holes"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_matches_reference(kind, kw, mask_style, go_backwards):
    rng = np.random.default_rng(hash((kind, str(kw), mask_style, go_backwards)) % 2**32)
    B, T, I, H = 3, 6, 4, 5
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = _masks(B, T, rng, mask_style)
    layer = _layer(
        kind, H, return_sequences=True, return_state=True, go_backwards=go_backwards, **kw
    )
    layer.build((None, T, I))
    layer.built = True
    w = _random_weights(layer, rng)
    layer.set_weights(w)
    res = layer(x, mask=mask)
    seq, states = res[0], res[1:]
    ref_kw = {k: v for k, v in kw.items() if k != "use_bias"}
    ref, (h, c) = reference(kind, x, w, mask, go_backwards, **ref_kw)
    np.testing.assert_allclose(seq.data, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(states[0].data, h, rtol=1e-4, atol=1e-5)
    if kind == "LSTM":
        np.testing.assert_allclose(states[1].data, c, rtol=1e-4, atol=1e-5)
    # the last output of return_sequences=False is the final state
    layer2 = _layer(kind, H, go_backwards=go_backwards, **kw)
    layer2.build((None, T, I))
    layer2.built = True
    layer2.set_weights(w)
    np.testing.assert_allclose(layer2(x, mask=mask).data, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kind,kw,path",
    [
        ("SimpleRNN", {}, "kernel"),
        ("SimpleRNN", {"activation": "relu"}, "kernel"),
        ("SimpleRNN", {"activation": "sigmoid"}, "composed"),
        ("LSTM", {}, "kernel"),
        ("LSTM", {"recurrent_activation": "hard_sigmoid"}, "composed"),
        ("GRU", {}, "kernel"),
        ("GRU", {"reset_after": False}, "composed"),
    ],
)
def test_path_taken(kind, kw, path):
    layer = _layer(kind, 3, **kw)
    layer(np.zeros((2, 4, 3), np.float32))
    assert layer.last_path == path
    # a row with every step masked cannot go to the kernel (lengths >= 1): composed, state kept
    mask = np.array([[True] * 4, [False] * 4])
    out = layer(np.ones((2, 4, 3), np.float32), mask=mask)
    assert layer.last_path == "composed"
    np.testing.assert_array_equal(out.data[1], 0.0)


def test_weight_shapes_and_counts():
    I, H = 7, 5
    cases = [
        (layers.SimpleRNN(H), [(I, H), (H, H), (H,)], H * I + H * H + H),
        (layers.LSTM(H), [(I, 4 * H), (H, 4 * H), (4 * H,)], 4 * (H * I + H * H + H)),
        (layers.GRU(H), [(I, 3 * H), (H, 3 * H), (2, 3 * H)], 3 * (H * I + H * H + 2 * H)),
        (
            layers.GRU(H, reset_after=False),
            [(I, 3 * H), (H, 3 * H), (3 * H,)],
            3 * (H * I + H * H + H),
        ),
        (layers.LSTM(H, use_bias=False), [(I, 4 * H), (H, 4 * H)], 4 * (H * I + H * H)),
    ]
    for layer, shapes, count in cases:
        layer.build((None, 3, I))
        layer.built = True
        assert [w.shape for w in layer.get_weights()] == shapes
        assert [w.name for w in layer.weights][:2] == ["kernel", "recurrent_kernel"]
        assert layer.count_params() == count


def test_lstm_unit_forget_bias():
    layer = layers.LSTM(3)
    layer.build((None, 2, 4))
    np.testing.assert_array_equal(layer.bias.data, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])


@given(
    kind=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]),
    units=st.integers(1, 4),
    T=st.integers(1, 5),
    B=st.integers(1, 3),
    rs=st.booleans(),
    rst=st.booleans(),
    back=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_shapes_and_masks(kind, units, T, B, rs, rst, back, masked, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, 2)).astype(np.float32)
    mask = rng.random((B, T)) < 0.7 if masked else None
    layer = _layer(kind, units, return_sequences=rs, return_state=rst, go_backwards=back)
    out = layer(x, mask=mask)
    n_states = 2 if kind == "LSTM" else 1
    if rst:
        assert len(out) == 1 + n_states
        assert all(s.shape == (B, units) for s in out[1:])
        out = out[0]
    assert out.shape == ((B, T, units) if rs else (B, units))
    assert layer.compute_output_shape((None, T, 2)) == (
        [(None, T, units) if rs else (None, units)] + [(None, units)] * n_states
        if rst
        else ((None, T, units) if rs else (None, units))
    )
    if masked and rs:
        # a masked step repeats the previous step's output (the state is kept)
        seq = out.data
        m = mask[:, ::-1] if back else mask
        for b in range(B):
            for t in range(1, T):
                if not m[b, t]:
                    np.testing.assert_array_equal(seq[b, t], seq[b, t - 1])
        np.testing.assert_array_equal(keras.backend.get_mask(out), mask)


@pytest.mark.parametrize(
    "kind,kw",
    [
        ("SimpleRNN", {}),
        ("LSTM", {}),
        ("GRU", {}),
        ("GRU", {"reset_after": False}),
        ("SimpleRNN", {"activation": "sigmoid"}),
        ("LSTM", {"go_backwards": True}),
    ],
)
@pytest.mark.parametrize("mask_style", [None, "left", "holes"])
def test_gradients_finite_differences(kind, kw, mask_style):
    """minigrad.gradcheck (float64) of every output (sequence and final states) with respect to
    the input, the initial state and the Keras-named weights: the gradients flow back through
    the layout mapping and the mask gathers."""
    rng = np.random.default_rng(5)
    B, T, I, H = 2, 4, 2, 3
    layer = _layer(kind, H, return_sequences=True, return_state=True, dtype="float64", **kw)
    layer.build((None, T, I))
    layer.set_weights([a.astype(np.float64) for a in _random_weights(layer, rng)])
    mask = _masks(B, T, rng, mask_style)
    x = mg.tensor(rng.standard_normal((B, T, I)), requires_grad=True, dtype="float64")
    h0 = mg.tensor(rng.standard_normal((B, H)), requires_grad=True, dtype="float64")
    states = [h0] + (
        [mg.tensor(rng.standard_normal((B, H)), requires_grad=True, dtype="float64")]
        if kind == "LSTM"
        else []
    )

    def fn(x, *rest):
        return tuple(layer(x, mask=mask, initial_state=list(rest[: len(states)])))

    assert mg.gradcheck(fn, [x, *states, *layer.weights])


def test_initial_state_and_stateful():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = layers.LSTM(3, return_state=True)
    layer.build((None, 4, 3))
    layer.built = True
    w = _random_weights(layer, rng)
    layer.set_weights(w)
    h0 = rng.standard_normal((2, 3)).astype(np.float32)
    c0 = rng.standard_normal((2, 3)).astype(np.float32)
    _, h, c = layer(x, initial_state=[h0, c0])
    _, (rh, rc) = reference("LSTM", x, w, h0=h0, c0=c0)
    np.testing.assert_allclose(h.data, rh, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c.data, rc, rtol=1e-4, atol=1e-5)
    # stateful: two halves carried across calls equal one call on the whole
    s = layers.GRU(3, stateful=True)
    s.build((None, 2, 3))
    s.built = True
    wg = _random_weights(s, rng)
    s.set_weights(wg)
    s(x[:, :2])
    second = s(x[:, 2:])
    _, (rh, _) = reference("GRU", x, wg)
    np.testing.assert_allclose(second.data, rh, rtol=1e-4, atol=1e-5)
    s.reset_states()
    np.testing.assert_allclose(
        s(x[:, :2]).data, reference("GRU", x[:, :2], wg)[1][0], rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="batch size 2"):
        s(x[:1, :2])


def test_dropout_train_vs_inference():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    for kw in ({"dropout": 0.5}, {"recurrent_dropout": 0.5}):
        layer = layers.LSTM(4, **kw)
        a = layer(x).data
        b = layer(x, training=False).data
        np.testing.assert_array_equal(a, b)  # inference: no dropout
        mg.manual_seed(0)
        c = layer(x, training=True).data
        assert not np.allclose(a, c)
        assert layer.last_path == "kernel"  # both dropouts run on the compiled kernel
        # the input dropout mask is the same at every step: dropping a feature of the input
        # everywhere equals the training output under the same draw
        mg.manual_seed(0)
        d = layer(x, training=True).data
        np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("masked", [False, True])
def test_recurrent_dropout_on_the_kernel_equals_the_step_loop(kind, masked):
    """dropout and recurrent_dropout in training: the compiled kernel (its masks argument) and
    the composed step loop, given the same draw, give the same outputs and gradients; and the
    masks did change the result."""
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((3, 5, 2))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], bool) if masked else None
    layer = getattr(layers, kind)(4, dropout=0.3, recurrent_dropout=0.4, return_sequences=True)
    layer(x0)  # build
    results = {}
    for path in ("kernel", "composed", "no dropout"):
        if path == "composed":
            layer._kernel_form = lambda: False  # force the step loop
        x = mg.tensor(x0, requires_grad=True)
        mg.manual_seed(7)
        y = layer(x, mask=mask, training=path != "no dropout")
        if path != "no dropout":
            assert layer.last_path == path
        for w in layer.trainable_weights:
            w.grad = None
        (y * y).sum().backward()
        results[path] = (y.data, x.grad, [w.grad.copy() for w in layer.trainable_weights])
    (yk, dxk, gk), (yc, dxc, gc) = results["kernel"], results["composed"]
    np.testing.assert_allclose(yk, yc, rtol=1e-5, atol=1e-6)  # float32 layers
    np.testing.assert_allclose(dxk, dxc, rtol=1e-4, atol=1e-5)
    for a, b in zip(gk, gc):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(yk - results["no dropout"][0]).max() > 1e-3


def test_bad_inputs():
    layer = layers.SimpleRNN(3)
    with pytest.raises(ValueError, match="rank 3"):
        layer(np.zeros((2, 3), np.float32))
    model = keras.Sequential([layers.SimpleRNN(3, input_shape=(5, 1)), layers.Dense(1)])
    x_batch_first = np.zeros((8, 5, 1), np.float32)  # (batch, time, features)
    time_first = x_batch_first.transpose(1, 0, 2)  # (5, 8, 1)
    model.predict(x_batch_first)
    with pytest.raises(
        ValueError,
        match=r"built for input shape \(None, 5, 1\) but got an "
        r"array of shape \(5, 8, 1\).*time-first",
    ):
        model.predict(time_first)
    with pytest.raises(ValueError, match=r"\(None, 5, 1\).*\(8, 5, 2\)"):
        model.predict(np.zeros((8, 5, 2), np.float32))
    with pytest.raises(ValueError, match="rank 3"):
        model.predict(np.zeros((8, 5), np.float32))
    with pytest.raises(ValueError, match="mask must have shape"):
        layers.GRU(2)(np.zeros((2, 3, 1), np.float32), mask=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="initial state"):
        layers.LSTM(2)(np.zeros((2, 3, 1), np.float32), initial_state=[np.zeros((2, 2))])
    with pytest.raises(ValueError, match="units"):
        layers.LSTM(0)
    with pytest.raises(ValueError, match="unknown activation"):
        layers.GRU(2, activation="nope")
    with pytest.raises(ValueError, match="dropout"):
        layers.GRU(2, dropout=1.5)


@given(
    units=st.integers(1, 4),
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    merge=st.sampled_from(["concat", "sum", "mul", "ave", None]),
    rs=st.booleans(),
    rst=st.booleans(),
    kind=st.sampled_from(["SimpleRNN", "LSTM", "GRU"]),
)
def test_bidirectional_shapes_and_counts(units, T, B, merge, rs, rst, kind):
    bi = layers.Bidirectional(
        _layer(kind, units, return_sequences=rs, return_state=rst), merge_mode=merge
    )
    x = np.random.default_rng(0).standard_normal((B, T, 2)).astype(np.float32)
    out = bi(x)
    want = bi.compute_output_shape((None, T, 2))
    outs = out if isinstance(out, list) else [out]
    wants = want if isinstance(want, list) else [want]
    assert [tuple(o.shape) for o in outs] == [(B,) + tuple(w[1:]) for w in wants]
    G = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[kind]
    nb = 2 * units if kind == "GRU" else units
    assert bi.count_params() == 2 * G * (2 * units + units * units) + 2 * G * nb


@given(
    units=st.integers(1, 5),
    lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    feat=st.integers(1, 4),
    bias=st.booleans(),
)
def test_dense_shapes_counts_and_values(units, lead, feat, bias):
    d = layers.Dense(units, use_bias=bias, activation="tanh")
    x = np.random.default_rng(1).standard_normal(tuple(lead) + (feat,)).astype(np.float32)
    y = d(x)
    assert y.shape == tuple(lead) + (units,)
    assert d.count_params() == feat * units + (units if bias else 0)
    w = d.get_weights()
    ref = x @ w[0] + (w[1] if bias else 0)
    np.testing.assert_allclose(y.data, np.tanh(ref), rtol=1e-5, atol=1e-6)
