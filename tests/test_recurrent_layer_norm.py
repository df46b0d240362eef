"""Layer-normalised LSTM and GRU (``layer_norm=True``).

* the layers against a NumPy reference of the equations written out here (Ba et al. 2016 for
  the LSTM; the GRU placement of nn/recurrent.py's docstring), every ``impl``, with lengths;
* finite differences (float64, ``minigrad.gradcheck``) through the cell, cell-step and sequence
  nodes and the modules, on hypothesis-drawn shapes; second derivatives through the composed
  cells;
* the parameters: names, shapes, initial gain 1 and shift 0, no biases, counts, repr; the
  option's validation; ``layer_norm=False`` leaves the layer as it was; to_torch refuses it.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import functional as F
from minigrad import nn
from minigrad.gradcheck import gradgradcheck

IMPLS = ("sequence", "step", "composed")
EPS = 1e-5


# ----------------------------------------------------------------- the reference equations
def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _ln(v, gain, shift):
    """LN over the last axis: (v - mean) / sqrt(biased var + eps) * gain + shift."""
    mu = v.mean(axis=-1, keepdims=True)
    var = ((v - mu) ** 2).mean(axis=-1, keepdims=True)
    return (v - mu) / np.sqrt(var + EPS) * gain + shift


def _block(a, k, H):
    return a[..., k * H : (k + 1) * H]


def lstm_ln_reference(x, h, c, w_ih, w_hh, gain, shift, lengths):
    """x (T, B, I): h' = o tanh(LN_c(c')), every gate LN(x W_ih^T + h W_hh^T) per block;
    padded steps (t >= lengths[b]) output 0 and keep the state."""
    T, B, _ = x.shape
    H = h.shape[1]
    ys = np.zeros((T, B, H))
    for t in range(T):
        a = x[t] @ w_ih.T + h @ w_hh.T
        i, f, g, o = (
            _ln(_block(a, k, H), _block(gain, k, H), _block(shift, k, H)) for k in range(4)
        )
        c1 = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h1 = _sigmoid(o) * np.tanh(_ln(c1, _block(gain, 4, H), _block(shift, 4, H)))
        real = (t < np.asarray(lengths))[:, None]
        h, c = np.where(real, h1, h), np.where(real, c1, c)
        ys[t] = np.where(real, h1, 0)
    return ys, h, c


def gru_ln_reference(x, h, w_ih, w_hh, gain, shift, lengths):
    """r = σ(LN_r(x_r + h_r)), z = σ(LN_z(x_z + h_z)), n = tanh(LN_nx(x_n) + r LN_nh(h_n)),
    h' = (1 - z) n + z h; padded steps as above."""
    T, B, _ = x.shape
    H = h.shape[1]
    ys = np.zeros((T, B, H))
    for t in range(T):
        gx, gh = x[t] @ w_ih.T, h @ w_hh.T
        pre = [_block(gx, 0, H) + _block(gh, 0, H), _block(gx, 1, H) + _block(gh, 1, H)]
        pre += [_block(gx, 2, H), _block(gh, 2, H)]
        r, z, nx, nh = (_ln(p, _block(gain, k, H), _block(shift, k, H)) for k, p in enumerate(pre))
        r, z = _sigmoid(r), _sigmoid(z)
        n = np.tanh(nx + r * nh)
        h1 = (1 - z) * n + z * h
        real = (t < np.asarray(lengths))[:, None]
        h = np.where(real, h1, h)
        ys[t] = np.where(real, h1, 0)
    return ys, h


def _randomise(module, rng):
    """Every parameter drawn anew (norm gains around 1), so no term hides behind 0 or 1."""
    for name, p in module.named_parameters():
        base = 1.0 if name.startswith("layer_norm_weight") else 0.0
        p.data[...] = base + rng.uniform(-0.5, 0.5, p.shape)


@given(
    mode=st.sampled_from(["LSTM", "GRU"]),
    impl=st.sampled_from(IMPLS),
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    I=st.integers(1, 4),
    H=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    ragged=st.booleans(),
)
def test_layer_matches_the_written_out_equations(mode, impl, T, B, I, H, seed, ragged):
    rng = np.random.default_rng(seed)
    m = getattr(nn, mode)(I, H, layer_norm=True, impl=impl, dtype=np.float64)
    _randomise(m, rng)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((1, B, H))
    c0 = rng.standard_normal((1, B, H))
    lengths = rng.integers(1, T + 1, B) if ragged else np.full(B, T)
    p = {n: t.data for n, t in m.named_parameters()}
    w = (p["weight_ih_l0"], p["weight_hh_l0"], p["layer_norm_weight_l0"], p["layer_norm_bias_l0"])
    if mode == "LSTM":
        out, (h_n, c_n) = m(mg.tensor(x), (mg.tensor(h0), mg.tensor(c0)), lengths=lengths)
        ys, h, c = lstm_ln_reference(x, h0[0], c0[0], *w, lengths)
        np.testing.assert_allclose(c_n.data[0], c, rtol=1e-10, atol=1e-12)
    else:
        out, h_n = m(mg.tensor(x), mg.tensor(h0), lengths=lengths)
        ys, h = gru_ln_reference(x, h0[0], *w, lengths)
    np.testing.assert_allclose(out.data, ys, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n.data[0], h, rtol=1e-10, atol=1e-12)


def test_the_reference_tells_layer_norm_from_none():
    """Guards the test above: with the norms at gain 1, shift 0 the layer still differs from the
    same weights without layer norm, and the reference sees it."""
    rng = np.random.default_rng(0)
    m = nn.LSTM(3, 4, layer_norm=True, dtype=np.float64)
    plain = nn.LSTM(3, 4, bias=False, dtype=np.float64)
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if k.startswith("weight")})
    x = rng.standard_normal((3, 2, 3))
    out_ln, _ = m(mg.tensor(x))
    out_plain, _ = plain(mg.tensor(x))
    assert np.abs(out_ln.data - out_plain.data).max() > 1e-2
    p = m.state_dict()
    ys, _, _ = lstm_ln_reference(
        x,
        np.zeros((2, 4)),
        np.zeros((2, 4)),
        p["weight_ih_l0"],
        p["weight_hh_l0"],
        p["layer_norm_weight_l0"],
        p["layer_norm_bias_l0"],
        [3, 3],
    )
    np.testing.assert_allclose(out_ln.data, ys, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- finite differences
def _tensors(rng, *shapes, base=None):
    out = []
    for k, s in enumerate(shapes):
        b = 0.0 if base is None else base[k]
        out.append(mg.tensor(b + rng.uniform(-0.8, 0.8, s), requires_grad=True))
    return out


@given(
    mode=st.sampled_from(["lstm", "gru"]),
    T=st.integers(1, 3),
    B=st.integers(1, 3),
    I=st.integers(1, 3),
    H=st.integers(2, 4),
    bias=st.booleans(),
    ragged=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sequence_node_gradients_match_finite_differences(mode, T, B, I, H, bias, ragged, seed):
    """The compiled sequence node (both backends' kernel via kernels.*), with and without
    biases, lengths: every input's gradient, the norms' gains and shifts included."""
    rng = np.random.default_rng(seed)
    G, nb = (4, 5) if mode == "lstm" else (3, 4)
    x, h0, c0, w_ih, w_hh = _tensors(rng, (T, B, I), (B, H), (B, H), (G * H, I), (G * H, H))
    ln_w, ln_b = _tensors(rng, (nb * H,), (nb * H,), base=(1.0, 0.0))
    b_ih, b_hh = _tensors(rng, (G * H,), (G * H,)) if bias else (None, None)
    lengths = rng.integers(1, T + 1, B) if ragged else None
    inputs = [x, h0, w_ih, w_hh, ln_w, ln_b] + ([b_ih, b_hh] if bias else [])
    if mode == "lstm":
        inputs.append(c0)

        def fn(x, h0, w_ih, w_hh, ln_w, ln_b, *rest):
            b = rest[:2] if bias else (None, None)
            ys, (h, c) = F.lstm_sequence(
                x, w_ih, w_hh, *b, h0, rest[-1], lengths, ln_w=ln_w, ln_b=ln_b
            )
            return ys, h, c
    else:

        def fn(x, h0, w_ih, w_hh, ln_w, ln_b, *rest):
            b = rest[:2] if bias else (None, None)
            ys, h = F.gru_sequence(x, w_ih, w_hh, *b, h0, lengths, ln_w=ln_w, ln_b=ln_b)
            return ys, h

    assert mg.gradcheck(fn, inputs)


@given(
    mode=st.sampled_from(["LSTMCell", "GRUCell"]),
    impl=st.sampled_from(["step", "composed"]),
    B=st.integers(1, 3),
    I=st.integers(1, 3),
    H=st.integers(2, 4),
    seed=st.integers(0, 2**16),
)
def test_cell_gradients_match_finite_differences(mode, impl, B, I, H, seed):
    rng = np.random.default_rng(seed)
    cell = getattr(nn, mode)(I, H, layer_norm=True, impl=impl, dtype=np.float64)
    _randomise(cell, rng)
    params = list(cell.parameters())
    x, h, c = _tensors(rng, (B, I), (B, H), (B, H))
    # through the module: gradients w.r.t. x and the states; the parameters' below
    if mode == "LSTMCell":
        assert mg.gradcheck(lambda x, h, c: cell(x, (h, c)), [x, h, c])
    else:
        assert mg.gradcheck(cell, [x, h])
    G = 4 if mode == "LSTMCell" else 3
    w_ih, w_hh = (mg.tensor(p.data.copy(), requires_grad=True) for p in params[:2])
    ln_w, ln_b = (mg.tensor(p.data.copy(), requires_grad=True) for p in params[2:])
    assert w_ih.shape == (G * H, I)
    if mode == "LSTMCell":
        cell_fn = F.lstm_cell if impl == "step" else F.lstm_cell_composed
        assert mg.gradcheck(
            lambda *a: cell_fn(*a[:5], ln_w=a[5], ln_b=a[6]),
            [x, h, c, w_ih, w_hh, ln_w, ln_b],
        )
    else:
        cell_fn = F.gru_cell if impl == "step" else F.gru_cell_composed
        assert mg.gradcheck(
            lambda *a: cell_fn(*a[:4], ln_w=a[4], ln_b=a[5]),
            [x, h, w_ih, w_hh, ln_w, ln_b],
        )


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_cell_step_gradients_match_finite_differences(mode):
    """The step node (impl="step"'s cell on a precomputed input projection), with b_hh."""
    rng = np.random.default_rng(5)
    B, H = 3, 4
    G, nb = (4, 5) if mode == "lstm" else (3, 4)
    xw, h, c, w_hh, b_hh = _tensors(rng, (B, G * H), (B, H), (B, H), (G * H, H), (G * H,))
    ln_w, ln_b = _tensors(rng, (nb * H,), (nb * H,), base=(1.0, 0.0))
    if mode == "lstm":
        fn = lambda *a: F.lstm_cell_step(*a[:5], ln_w=a[5], ln_b=a[6])  # noqa: E731
        assert mg.gradcheck(fn, [xw, h, c, w_hh, b_hh, ln_w, ln_b])
    else:
        fn = lambda *a: F.gru_cell_step(*a[:4], ln_w=a[4], ln_b=a[5])  # noqa: E731
        assert mg.gradcheck(fn, [xw, h, w_hh, b_hh, ln_w, ln_b])


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_composed_cells_have_second_derivatives(mode):
    """impl="composed" is made of differentiable ops: second derivatives through the norms."""
    rng = np.random.default_rng(6)
    B, I, H = 2, 2, 3
    G, nb = (4, 5) if mode == "lstm" else (3, 4)
    x, h, c, w_ih, w_hh = _tensors(rng, (B, I), (B, H), (B, H), (G * H, I), (G * H, H))
    ln_w, ln_b = _tensors(rng, (nb * H,), (nb * H,), base=(1.0, 0.0))
    if mode == "lstm":

        def fn(x, h, w_hh, ln_w):
            return F.lstm_cell_composed(x, h, c, w_ih, w_hh, ln_w=ln_w, ln_b=ln_b)[0]
    else:

        def fn(x, h, w_hh, ln_w):
            return F.gru_cell_composed(x, h, w_ih, w_hh, ln_w=ln_w, ln_b=ln_b)

    assert gradgradcheck(fn, [x, h, w_hh, ln_w])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_compiled_layers_refuse_second_derivatives_naming_composed(mode):
    m = getattr(nn, mode)(2, 3, layer_norm=True, dtype=np.float64)
    x = mg.tensor(np.ones((2, 1, 2)), requires_grad=True)
    out, _ = m(x)
    with pytest.raises(RuntimeError, match='impl="composed"'):
        mg.autograd.grad(out.sum(), [x], create_graph=True)


# ----------------------------------------------------------------- parameters and options
@pytest.mark.parametrize("mode,nb", [("LSTM", 5), ("GRU", 4)])
def test_parameters_names_init_and_count(mode, nb):
    I, H, L = 3, 4, 2
    m = getattr(nn, mode)(I, H, num_layers=L, bidirectional=True, layer_norm=True)
    state = m.state_dict()
    G = 4 if mode == "LSTM" else 3
    want = {}
    for k in range(L):
        for sfx in ("", "_reverse"):
            s = f"_l{k}{sfx}"
            want["weight_ih" + s] = (G * H, I if k == 0 else 2 * H)
            want["weight_hh" + s] = (G * H, H)
            want["layer_norm_weight" + s] = (nb * H,)
            want["layer_norm_bias" + s] = (nb * H,)
    assert {k: v.shape for k, v in state.items()} == want
    for k, v in state.items():
        if k.startswith("layer_norm_weight"):
            np.testing.assert_array_equal(v, 1)
        elif k.startswith("layer_norm_bias"):
            np.testing.assert_array_equal(v, 0)
    assert sum(p.numel() for p in m.parameters()) == sum(int(np.prod(s)) for s in want.values())
    assert "layer_norm=True" in repr(m)
    assert len(m.all_weights[0]) == 4


@pytest.mark.parametrize("mode,nb", [("LSTMCell", 5), ("GRUCell", 4)])
def test_cell_parameters_and_repr(mode, nb):
    cell = getattr(nn, mode)(3, 4, layer_norm=True)
    assert [n for n, _ in cell.named_parameters()] == [
        "weight_ih",
        "weight_hh",
        "layer_norm_weight",
        "layer_norm_bias",
    ]
    assert cell.layer_norm_weight.shape == (nb * 4,)
    assert repr(cell) == f"{mode}(3, 4, layer_norm=True)"


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_layer_norm_false_leaves_the_layer_as_it_was(mode):
    mg.manual_seed(3)
    a = getattr(nn, mode)(3, 4)
    mg.manual_seed(3)
    b = getattr(nn, mode)(3, 4, layer_norm=False)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert not any("layer_norm" in k for k in a.state_dict())
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    assert repr(a) == repr(b) and "layer_norm" not in repr(b)
    shape = (2, 3) if "Cell" in mode else (2, 2, 3)
    x = mg.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    ra, rb = a(x), b(x)
    fa = ra[0] if isinstance(ra, tuple) else ra
    fb = rb[0] if isinstance(rb, tuple) else rb
    np.testing.assert_array_equal(fa.data, fb.data)


def test_bad_layer_norm_option_raises():
    with pytest.raises(ValueError, match="layer_norm must be True or False, got 'yes'"):
        nn.LSTM(2, 3, layer_norm="yes")
    with pytest.raises(ValueError, match="layer_norm must be True or False"):
        nn.GRUCell(2, 3, layer_norm=1)
    with pytest.raises(ValueError, match="ln_w and ln_b must both be given or both be None"):
        F.lstm_cell(
            np.ones((1, 2)), None, None, np.ones((12, 2)), np.ones((12, 3)), ln_w=np.ones(15)
        )


def test_to_torch_refuses_a_layer_norm_layer():
    torch = pytest.importorskip("torch")
    from minigrad import interop

    with pytest.raises(TypeError, match="layer_norm=True"):
        interop.to_torch(nn.LSTM(2, 3, layer_norm=True))
    with pytest.raises(TypeError, match="layer_norm=True"):
        interop.to_torch(nn.GRU(2, 3, layer_norm=True), into=torch.nn.GRU(2, 3))
