"""Layer norm together with recurrent dropout and zoneout, on fixed masks: the layer-normalised
LSTM and GRU kernels given both ``masks=`` and ``ln=`` against their NumPy twins, the twins and
the compiled nodes against finite differences (float64), and the three ways to run a sequence
(one sequence node, step nodes on the hoisted projection, composed cells) against each other.
The layer API (``nn.LSTM(layer_norm=True, recurrent_dropout=, zoneout=)``) is in
test_impl_equivalence.py."""

import numpy as np
import pytest
from test_kernels import (
    Problem,
    check_kernel_matches_twin,
    check_twin_backward_matches_finite_differences,
    forward,
    with_layer_norm,
)

import minigrad as mg
from minigrad import _ops_ref as ref
from minigrad import functional as F
from minigrad import nn

KINDS = ["lstm_cell", "gru_cell", "lstm_sequence", "gru_sequence"]
# (kind, ragged): the sequences with and without lengths, the cells without
SHAPES = [(k, False) for k in KINDS] + [(k, True) for k in KINDS if k.endswith("sequence")]


def _problem(kind, dtype, ragged, seed, B=3, I=3, H=5):
    """A problem with masks (drop_h of 0 and 1/0.7, zoneout weights of 0, 1 and 0.3) and layer
    norm (gains and shifts away from 1 and 0)."""
    seq = kind.endswith("sequence")
    T = 4 if seq else 1
    lengths = np.array([4, 2, 3][:B]) if seq and ragged else None
    problem = Problem(kind, T, B, I, H, dtype, True, lengths, None, seed, masked=True)
    return with_layer_norm(problem, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,ragged", SHAPES)
def test_kernel_matches_twin_with_masks_and_layer_norm(kind, ragged, dtype):
    check_kernel_matches_twin(kind, _problem(kind, dtype, ragged, seed=7))


@pytest.mark.parametrize("kind", KINDS)
def test_masks_and_layer_norm_both_change_the_output(kind):
    """Each option is applied when the other is on: dropping either changes the result."""
    problem = _problem(kind, np.float64, False, seed=3)
    out = forward(ref, problem)["h_n" if kind.endswith("sequence") else "h1"]
    for name in ("masks", "ln"):
        kept = problem.values[name]
        problem.values[name] = None
        other = forward(ref, problem)["h_n" if kind.endswith("sequence") else "h1"]
        problem.values[name] = kept
        assert not np.allclose(out, other), f"{kind}: {name} had no effect"


@pytest.mark.parametrize("kind,ragged", SHAPES)
def test_twin_backward_matches_finite_differences_with_masks_and_layer_norm(kind, ragged):
    problem = _problem(kind, np.float64, ragged, seed=11, B=3, I=2, H=4)
    check_twin_backward_matches_finite_differences(kind, problem)


def _weights(mode, rng, I, H):
    G, nb = (4, 5) if mode == "lstm" else (3, 4)
    k = 1 / np.sqrt(H)
    return [
        mg.tensor(a, requires_grad=True)
        for a in (
            rng.uniform(-k, k, (G * H, I)),
            rng.uniform(-k, k, (G * H, H)),
            rng.uniform(-k, k, (G * H,)),
            rng.uniform(-k, k, (G * H,)),
            rng.uniform(0.5, 1.5, (nb * H,)),
            rng.uniform(-0.5, 0.5, (nb * H,)),
        )
    ]


def _masks(mode, rng, T, B, H):
    """Fixed masks for a sequence: drop_h (B, H), zone_h (and the LSTM's zone_c) (T, B, H)."""
    drop_h = (rng.random((B, H)) >= 0.3) / 0.7

    def zone():
        return rng.choice(np.array([0.0, 1.0, 0.3]), (T, B, H))

    return drop_h, zone(), zone() if mode == "lstm" else None


def _run(mode, impl, x, h0, c0, ws, masks):
    """(ys, h_n[, c_n]) of one implementation on the same weights and fixed masks."""
    w_ih, w_hh, b_ih, b_hh, ln_w, ln_b = ws
    drop_h, zone_h, zone_c = masks
    if impl == "sequence":
        if mode == "lstm":
            ys, (h, c) = F.lstm_sequence(
                x, w_ih, w_hh, b_ih, b_hh, h0, c0, masks=masks, ln_w=ln_w, ln_b=ln_b
            )
            return ys, h, c
        return F.gru_sequence(x, w_ih, w_hh, b_ih, b_hh, h0, masks=masks, ln_w=ln_w, ln_b=ln_b)
    xs = F.unbind(F.linear(x, w_ih, b_ih) if impl == "step" else x, 0)
    h, c, ys = h0, c0, []
    for t, x_t in enumerate(xs):
        m = (drop_h, zone_h[t], None if zone_c is None else zone_c[t])
        lnk = dict(masks=m, ln_w=ln_w, ln_b=ln_b)
        if impl == "step" and mode == "lstm":
            h, c = F.lstm_cell_step(x_t, h, c, w_hh, b_hh, **lnk)
        elif impl == "step":
            h = F.gru_cell_step(x_t, h, w_hh, b_hh, **lnk)
        elif mode == "lstm":
            h, c = F.lstm_cell_composed(x_t, h, c, w_ih, w_hh, b_ih, b_hh, **lnk)
        else:
            h = F.gru_cell_composed(x_t, h, w_ih, w_hh, b_ih, b_hh, **lnk)
        ys.append(h)
    return (F.stack(ys, 0), h) + ((c,) if mode == "lstm" else ())


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_sequence_step_and_composed_agree_with_masks_and_layer_norm(mode):
    """The same LN cell with the same fixed masks as one sequence node, as T step nodes and as
    T composed cells: outputs and every gradient (gains and shifts included) agree."""
    T, B, I, H = 4, 3, 3, 5
    rng = np.random.default_rng(2)
    x = mg.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    h0 = mg.tensor(rng.uniform(-1, 1, (B, H)), requires_grad=True)
    c0 = mg.tensor(rng.uniform(-1, 1, (B, H)), requires_grad=True) if mode == "lstm" else None
    ws = _weights(mode, rng, I, H)
    masks = _masks(mode, rng, T, B, H)
    leaves = [x, h0] + ([c0] if c0 is not None else []) + ws
    results = {}
    for impl in ("sequence", "step", "composed"):
        for leaf in leaves:
            leaf.grad = None
        outs = _run(mode, impl, x, h0, c0, ws, masks)
        up = [np.random.default_rng(9 + i).standard_normal(o.shape) for i, o in enumerate(outs)]
        sum((o * mg.tensor(u)).sum() for o, u in zip(outs, up)).backward()
        results[impl] = ([o.data.copy() for o in outs], [leaf.grad.copy() for leaf in leaves])
    for impl in ("step", "composed"):
        for got, want in zip(results[impl][0] + results[impl][1], sum(results["sequence"], [])):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=impl)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_sequence_node_gradients_match_finite_differences_with_masks_and_layer_norm(mode):
    """The compiled sequence node (masks and ln in its kernels) against central differences."""
    T, B, I, H = 3, 2, 2, 4
    rng = np.random.default_rng(4)
    x = mg.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    h0 = mg.tensor(rng.uniform(-1, 1, (B, H)), requires_grad=True)
    c0 = mg.tensor(rng.uniform(-1, 1, (B, H)), requires_grad=True)
    ws = _weights(mode, rng, I, H)
    masks = _masks(mode, rng, T, B, H)
    lengths = np.array([3, 2])
    if mode == "lstm":

        def fn(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_w, ln_b):
            ys, (h, c) = F.lstm_sequence(
                x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, masks=masks, ln_w=ln_w, ln_b=ln_b
            )
            return ys, h, c

        assert mg.gradcheck(fn, [x, h0, c0] + ws)
    else:

        def fn(x, h0, w_ih, w_hh, b_ih, b_hh, ln_w, ln_b):
            return F.gru_sequence(
                x, w_ih, w_hh, b_ih, b_hh, h0, lengths, masks=masks, ln_w=ln_w, ln_b=ln_b
            )

        assert mg.gradcheck(fn, [x, h0] + ws)


@pytest.mark.parametrize("mode", ["LSTMCell", "GRUCell"])
def test_cell_modules_with_layer_norm_and_zoneout_agree_across_impls(mode):
    """nn.LSTMCell/GRUCell(layer_norm=True, zoneout=p): the compiled cell and the composed one,
    drawing zoneout's weights from generators seeded alike, agree in training and eval, and
    training's draw differs from eval's expectation."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4))
    cells = {
        impl: getattr(nn, mode)(4, 5, impl=impl, layer_norm=True, zoneout=0.4, dtype=np.float64)
        for impl in ("step", "composed")
    }
    cells["composed"].load_state_dict(cells["step"].state_dict())
    h0 = rng.standard_normal((3, 5))
    hx = (h0, rng.standard_normal((3, 5))) if mode == "LSTMCell" else h0
    outs = {}
    for training in (True, False):
        for impl, cell in cells.items():
            cell.train(training)
            cell.generator = np.random.default_rng(1)
            out = cell(x, hx)
            outs[impl, training] = (out[0] if mode == "LSTMCell" else out).data
        np.testing.assert_allclose(outs["composed", training], outs["step", training], rtol=1e-12)
    assert not np.allclose(outs["step", True], outs["step", False])
