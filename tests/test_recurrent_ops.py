"""The recurrent ops on the tape: compiled cells vs the same cells built from primitive ops
(``F.*_cell_composed``), whole-sequence ops vs the cell unrolled step by step, finite
differences, and torch as an oracle.
Every test runs on both kernel backends (the Cython kernels and their NumPy twins)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@pytest.fixture(params=["cython", "numpy"], scope="module")
def backend(request):
    old = kernels.backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(old)


def _t(a):
    return mg.tensor(a, requires_grad=True, dtype=np.float64)


def make_params(rng, cell, I, H, bias=True, scale=0.5):
    G = GATES[cell]
    p = {
        "w_ih": rng.uniform(-scale, scale, (G * H, I)),
        "w_hh": rng.uniform(-scale, scale, (G * H, H)),
    }
    if bias:
        p["b_ih"] = rng.uniform(-scale, scale, G * H)
        p["b_hh"] = rng.uniform(-scale, scale, G * H)
    return {k: _t(v) for k, v in p.items()}


def unrolled(cell, x, params, h0, c0=None, lengths=None, nonlinearity="tanh"):
    """The sequence as T cell nodes on the tape (generic BPTT), lengths by masking."""
    T, B = x.shape[:2]
    xs = F.unbind(x, 0)
    h, c = h0, c0
    ys = []
    for t in range(T):
        if cell == "lstm":
            h1, c1 = F.lstm_cell(xs[t], h, c, **params)
        elif cell == "gru":
            h1 = F.gru_cell(xs[t], h, **params)
        else:
            h1 = F.rnn_cell(xs[t], h, nonlinearity=nonlinearity, **params)
        if lengths is None:
            h = h1
            c = c1 if cell == "lstm" else None
            ys.append(h)
        else:
            m = (t < np.asarray(lengths))[:, None]
            h = F.where(m, h1, h)
            if cell == "lstm":
                c = F.where(m, c1, c)
            ys.append(F.where(m, h, np.zeros((), np.float64)))
    return F.stack(ys, 0), h, c


def _grads(tensors):
    return [None if t.grad is None else t.grad.copy() for t in tensors]


def _backward_weighted(outs, rng):
    total = None
    for o in outs:
        w = mg.tensor(rng.standard_normal(o.shape), dtype=np.float64)
        term = (o * w).sum()
        total = term if total is None else total + term
    total.backward()


def _compare(name, outs_a, outs_b, leaves_a, leaves_b, rtol=1e-10, atol=1e-12):
    for k, (a, b) in enumerate(zip(outs_a, outs_b)):
        np.testing.assert_allclose(
            a.data, b.data, rtol=rtol, atol=atol, err_msg=f"{name}: output {k}"
        )
    for k, (a, b) in enumerate(zip(_grads(leaves_a), _grads(leaves_b))):
        assert (a is None) == (b is None), f"{name}: gradient {k} present in only one"
        if a is not None:
            np.testing.assert_allclose(
                a, b, rtol=rtol, atol=atol, err_msg=f"{name}: gradient of input {k}"
            )


CELL_OPS = {
    "compiled": {"rnn": F.rnn_cell, "lstm": F.lstm_cell, "gru": F.gru_cell},
    "composed": {
        "rnn": F.rnn_cell_composed,
        "lstm": F.lstm_cell_composed,
        "gru": F.gru_cell_composed,
    },
}


def _run_cell(op, kind, x, h, c, params, nonlinearity="tanh"):
    """The cell ``op`` of ``kind`` (compiled or composed) on x and the state as the kind takes
    them: the LSTM with c, the RNN with its nonlinearity. Always a tuple of outputs."""
    if kind == "lstm":
        return op(x, h, c, **params)
    if kind == "gru":
        return (op(x, h, **params),)
    return (op(x, h, nonlinearity=nonlinearity, **params),)


def _compare_runs(name, kind, seed, build, run_a, run_b):
    """Run ``run_a`` and ``run_b`` on two identical copies ``(x, h, c, params)`` from ``build``,
    backpropagate the same random weighting of their outputs, and compare the outputs and the
    gradients of every leaf (c only for the LSTM)."""
    a, b = build(), build()
    outs_a, outs_b = run_a(*a), run_b(*b)
    _backward_weighted(outs_a, np.random.default_rng(seed))
    _backward_weighted(outs_b, np.random.default_rng(seed))

    def leaves(x, h, c, params):
        return [x, h, *([c] if kind == "lstm" else []), *params.values()]

    _compare(name, outs_a, outs_b, leaves(*a), leaves(*b))


sizes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 7))


# ------------------------------------------------------------------ cells vs composition
@settings(max_examples=15)
@given(
    sizes=sizes,
    bias=st.booleans(),
    cell=st.sampled_from(["rnn-tanh", "rnn-relu", "lstm", "gru"]),
    seed=st.integers(0, 2**31),
)
def test_compiled_cell_equals_composed_cell(backend, sizes, bias, cell, seed):
    B, I, H = sizes
    kind, _, nl = cell.partition("-")

    def build():
        r = np.random.default_rng(seed + 1)
        x, h, c = (
            _t(r.standard_normal((B, I))),
            _t(r.standard_normal((B, H))),
            _t(r.standard_normal((B, H))),
        )
        return x, h, c, make_params(np.random.default_rng(seed + 2), kind, I, H, bias)

    def cell_op(which):
        return lambda x, h, c, p: _run_cell(CELL_OPS[which][kind], kind, x, h, c, p, nl)

    name = f"{cell} compiled vs composed"
    _compare_runs(name, kind, seed, build, cell_op("compiled"), cell_op("composed"))


# ------------------------------------------------------------------ sequences vs unrolled cells
@settings(max_examples=15)
@given(
    sizes=sizes,
    T=st.integers(1, 7),
    bias=st.booleans(),
    use_lengths=st.booleans(),
    given_state=st.booleans(),
    cell=st.sampled_from(["rnn-tanh", "rnn-relu", "lstm", "gru"]),
    seed=st.integers(0, 2**31),
)
def test_sequence_op_equals_unrolled_cells(
    backend, sizes, T, bias, use_lengths, given_state, cell, seed
):
    B, I, H = sizes
    kind, _, nl = cell.partition("-")
    nl = nl or "tanh"
    lengths = np.random.default_rng(seed).integers(1, T + 1, size=B) if use_lengths else None

    def build():
        r = np.random.default_rng(seed + 1)
        x = _t(r.standard_normal((T, B, I)))
        h0 = (
            _t(r.standard_normal((B, H)))
            if given_state
            else mg.tensor(np.zeros((B, H)), dtype=np.float64)
        )
        c0 = (
            _t(r.standard_normal((B, H)))
            if given_state
            else mg.tensor(np.zeros((B, H)), dtype=np.float64)
        )
        return x, h0, c0, make_params(np.random.default_rng(seed + 2), kind, I, H, bias)

    def sequence(x, h0, c0, p):
        if kind == "lstm":
            ys, (hn, cn) = F.lstm_sequence(x, h0=h0, c0=c0, lengths=lengths, **p)
            return ys, hn, cn
        if kind == "gru":
            return F.gru_sequence(x, h0=h0, lengths=lengths, **p)
        return F.rnn_sequence(x, h0=h0, lengths=lengths, nonlinearity=nl, **p)

    def cells(x, h0, c0, p):
        if kind == "lstm":
            return unrolled("lstm", x, p, h0, c0, lengths)
        return unrolled(kind, x, p, h0, None, lengths, nl)[:2]

    _compare_runs(f"{cell} sequence vs unrolled", kind, seed, build, sequence, cells)


# ------------------------------------------------------------------ finite differences
@settings(max_examples=8)
@given(
    sizes=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    T=st.integers(1, 4),
    bias=st.booleans(),
    use_lengths=st.booleans(),
    op=st.sampled_from(
        [
            "rnn_cell",
            "lstm_cell",
            "gru_cell",
            "rnn_sequence",
            "lstm_sequence",
            "gru_sequence",
            "rnn_relu_sequence",
            "rnn_cell_composed",
            "lstm_cell_composed",
            "gru_cell_composed",
        ]
    ),
    seed=st.integers(0, 2**31),
)
def test_recurrent_ops_gradcheck(backend, sizes, T, bias, use_lengths, op, seed):
    B, I, H = sizes
    rng = np.random.default_rng(seed)
    kind = op.split("_")[0]
    p = make_params(rng, kind, I, H, bias)
    names = list(p)
    h = _t(rng.standard_normal((B, H)) * 0.5)
    c = _t(rng.standard_normal((B, H)) * 0.5)
    if "_cell" in op:
        x = _t(rng.standard_normal((B, I)))
        cell_op = CELL_OPS["composed" if op.endswith("composed") else "compiled"][kind]

        def fn(x, h, c, *w):
            return _run_cell(cell_op, kind, x, h, c, dict(zip(names, w)))
    else:
        x = _t(rng.standard_normal((T, B, I)))
        lengths = rng.integers(1, T + 1, size=B) if use_lengths else None
        if kind == "lstm":

            def fn(x, h, c, *w):
                ys, (hn, cn) = F.lstm_sequence(
                    x, h0=h, c0=c, lengths=lengths, **dict(zip(names, w))
                )
                return ys, hn, cn
        elif kind == "gru":

            def fn(x, h, c, *w):
                return F.gru_sequence(x, h0=h, lengths=lengths, **dict(zip(names, w)))
        else:
            nl = "relu" if "relu" in op else "tanh"

            def fn(x, h, c, *w):
                return F.rnn_sequence(
                    x, h0=h, lengths=lengths, nonlinearity=nl, **dict(zip(names, w))
                )

    inputs = [x, h, c, *p.values()]
    if kind != "lstm":
        c.requires_grad = False
    assert mg.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------ argument checks on the tape
def test_recurrent_ops_reject_bad_input(backend):
    rng = np.random.default_rng(0)
    p = make_params(rng, "lstm", 3, 4)
    x = _t(rng.standard_normal((5, 2, 3)))
    with pytest.raises(ValueError, match=r"\(T, B, I\)"):
        F.lstm_sequence(x[0], **p)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        F.lstm_sequence(x, lengths=[1, 2, 3], **p)
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        F.lstm_sequence(x, lengths=[0, 2], **p)
    with pytest.raises(ValueError, match="both"):
        F.lstm_sequence(x, p["w_ih"], p["w_hh"], p["b_ih"], None)
    with pytest.raises(ValueError):  # wrong input width: the kernel names expected and got
        F.lstm_cell(_t(rng.standard_normal((2, 5))), None, None, **p)
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_sequence(x, **make_params(rng, "rnn", 3, 4), nonlinearity="sigmoid")


def test_composed_cells_reject_bad_input():
    rng = np.random.default_rng(0)
    p = make_params(rng, "lstm", 3, 4)
    x = _t(rng.standard_normal((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"lstm_cell_composed: h must have shape \(2, 4\) "
        r"\(batch, hidden\), got \(2, 5\)",
    ):
        F.lstm_cell_composed(x, np.zeros((2, 5)), None, **p)
    with pytest.raises(ValueError, match=r"c must have shape \(2, 4\).*got \(4,\)"):
        F.lstm_cell_composed(x, None, np.zeros(4), **p)
    with pytest.raises(ValueError, match=r"x must have shape \(B, I\), got \(5, 2, 3\)"):
        F.lstm_cell_composed(_t(rng.standard_normal((5, 2, 3))), None, None, **p)
    g = make_params(rng, "gru", 3, 4)
    with pytest.raises(ValueError, match="both"):
        F.gru_cell_composed(x, None, g["w_ih"], g["w_hh"], g["b_ih"], None)
    with pytest.raises(ValueError, match=r"last dimension 3 \(in_features\), got shape \(2, 5\)"):
        F.rnn_cell_composed(_t(rng.standard_normal((2, 5))), None, **make_params(rng, "rnn", 3, 4))
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_cell_composed(x, None, **make_params(rng, "rnn", 3, 4), nonlinearity="sigmoid")


def test_float32_sequence_matches_float64(backend):
    rng = np.random.default_rng(3)
    p64 = make_params(rng, "lstm", 5, 6)
    x = rng.standard_normal((4, 3, 5))
    ys64, _ = F.lstm_sequence(mg.tensor(x, dtype=np.float64), **p64)
    p32 = {k: mg.tensor(v.data, dtype=np.float32) for k, v in p64.items()}
    ys32, _ = F.lstm_sequence(mg.tensor(x, dtype=np.float32), **p32)
    assert ys32.dtype == np.float32
    np.testing.assert_allclose(
        ys32.data, ys64.data, rtol=1e-4, atol=1e-5, err_msg="float32 vs float64"
    )


# ------------------------------------------------------------------ torch oracle
@pytest.mark.parametrize("composed", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cells_match_torch(backend, kind, composed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    B, I, H = 3, 5, 4
    p = make_params(rng, kind, I, H)
    x, h, c = (_t(rng.standard_normal((B, n))) for n in (I, H, H))
    tcell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](
        I, H
    ).double()
    with torch.no_grad():
        for name, t in p.items():
            getattr(tcell, name.replace("w_", "weight_").replace("b_", "bias_")).copy_(
                torch.from_numpy(t.data)
            )
    tx, th, tc = (torch.tensor(a.data, requires_grad=True) for a in (x, h, c))
    w = rng.standard_normal((B, H))
    if kind == "lstm":
        oh, oc = (F.lstm_cell_composed if composed else F.lstm_cell)(x, h, c, **p)
        th1, tc1 = tcell(tx, (th, tc))
        ((oh + oc) * w).sum().backward()
        ((th1 + tc1) * torch.from_numpy(w)).sum().backward()
        np.testing.assert_allclose(oc.data, tc1.detach().numpy(), rtol=1e-10, err_msg="c1 vs torch")
    else:
        cells = {"gru": (F.gru_cell, F.gru_cell_composed), "rnn": (F.rnn_cell, F.rnn_cell_composed)}
        oh = cells[kind][composed](x, h, **p)
        th1 = tcell(tx, th)
        (oh * w).sum().backward()
        (th1 * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(oh.data, th1.detach().numpy(), rtol=1e-10, err_msg="h1 vs torch")
    np.testing.assert_allclose(
        x.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="dx vs torch"
    )
    np.testing.assert_allclose(
        h.grad, th.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="dh vs torch"
    )
    for name, t in p.items():
        tp = getattr(tcell, name.replace("w_", "weight_").replace("b_", "bias_"))
        np.testing.assert_allclose(
            t.grad, tp.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"d{name} vs torch"
        )


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequences_match_torch(backend, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    T, B, I, H = 6, 3, 4, 5
    p = make_params(rng, kind, I, H)
    x = _t(rng.standard_normal((T, B, I)))
    h0 = _t(rng.standard_normal((B, H)))
    c0 = _t(rng.standard_normal((B, H)))
    tmod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H).double()
    with torch.no_grad():
        for name, t in p.items():
            getattr(tmod, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(
                torch.from_numpy(t.data)
            )
    tx, th, tc = (torch.tensor(a.data, requires_grad=True) for a in (x, h0, c0))
    w = rng.standard_normal((T, B, H))
    if kind == "lstm":
        ys, (hn, cn) = F.lstm_sequence(x, h0=h0, c0=c0, **p)
        tys, (thn, tcn) = tmod(tx, (th[None], tc[None]))
        ((ys * w).sum() + (cn * w[0]).sum()).backward()
        ((tys * torch.from_numpy(w)).sum() + (tcn[0] * torch.from_numpy(w[0])).sum()).backward()
        np.testing.assert_allclose(
            c0.grad, tc.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="dc0 vs torch"
        )
    else:
        fn = F.gru_sequence if kind == "gru" else F.rnn_sequence
        ys, hn = fn(x, h0=h0, **p)
        tys, thn = tmod(tx, th[None])
        (ys * w).sum().backward()
        (tys * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(
        ys.data, tys.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg="ys vs torch"
    )
    np.testing.assert_allclose(
        hn.data, thn[0].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg="h_n vs torch"
    )
    np.testing.assert_allclose(
        x.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="dx vs torch"
    )
    np.testing.assert_allclose(
        h0.grad, th.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="dh0 vs torch"
    )
    for name, t in p.items():
        tp = getattr(tmod, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0")
        np.testing.assert_allclose(
            t.grad, tp.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=f"d{name} vs torch"
        )


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unused_output_sequence_gets_zero_gradient(backend, kind):
    """Only h_n used: the op's backward substitutes a zero dys (a shared read-only buffer); the
    result must equal backpropagating an explicit zero through ys, on repeated calls too."""
    rng = np.random.default_rng(5)
    T, B, I, H = 5, 3, 4, 6
    fn = {"rnn": F.rnn_sequence, "lstm": F.lstm_sequence, "gru": F.gru_sequence}[kind]
    grads = []
    for explicit in (False, True, False):
        p = make_params(np.random.default_rng(1), kind, I, H)
        x = _t(np.random.default_rng(2).standard_normal((T, B, I)))
        ys, state = fn(x, **p)
        hn = state[0] if kind == "lstm" else state
        loss = (hn * mg.tensor(rng.standard_normal((B, H)) * 0 + 1.5, dtype=np.float64)).sum()
        if explicit:
            loss = loss + (ys * 0.0).sum()
        loss.backward()
        grads.append([x.grad.copy()] + [t.grad.copy() for t in p.values()])
    for k, (a, b, c) in enumerate(zip(*grads)):
        np.testing.assert_allclose(
            a, b, rtol=1e-12, atol=1e-14, err_msg=f"{kind}: grad {k}, implicit vs explicit zero dys"
        )
        np.testing.assert_array_equal(a, c, err_msg=f"{kind}: grad {k} changed between calls")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_ops_keep_a_leading_state_axis_of_one(backend, kind):
    """h0 (and c0) given as (1, B, H), a one-layer module's layout: the op runs them as (B, H) and
    returns h_n (c_n) and the states' gradients as (1, B, H), with the values of the 2-D call."""
    rng = np.random.default_rng(11)
    T, B, I, H = 4, 3, 2, 5
    fn = {"rnn": F.rnn_sequence, "lstm": F.lstm_sequence, "gru": F.gru_sequence}[kind]
    names = ("h0", "c0") if kind == "lstm" else ("h0",)
    s0 = {n: rng.standard_normal((B, H)) for n in names}
    x0 = rng.standard_normal((T, B, I))
    up = [rng.standard_normal((T, B, H))] + [rng.standard_normal((B, H)) for _ in names]

    def run(layered):
        p = make_params(np.random.default_rng(3), kind, I, H)
        states = {n: _t(v[None] if layered else v) for n, v in s0.items()}
        x = _t(x0)
        ys, st_ = fn(x, **p, **states)
        finals = list(st_) if kind == "lstm" else [st_]
        loss = (ys * mg.tensor(up[0], dtype=np.float64)).sum()
        for f, u in zip(finals, up[1:]):
            loss = loss + (f * mg.tensor(u[None] if layered else u, dtype=np.float64)).sum()
        loss.backward()
        return ys, finals, states, x, p

    ys2, fin2, st2, x2, p2 = run(False)
    ys3, fin3, st3, x3, p3 = run(True)
    np.testing.assert_array_equal(ys3.data, ys2.data)
    for a, b in zip(fin3, fin2):
        assert a.shape == (1, B, H)
        np.testing.assert_array_equal(a.data, b.data[None])
    for n in names:
        assert st3[n].grad.shape == (1, B, H), n
        np.testing.assert_array_equal(st3[n].grad, st2[n].grad[None], err_msg=n)
    np.testing.assert_array_equal(x3.grad, x2.grad)
    for n in p2:
        np.testing.assert_array_equal(p3[n].grad, p2[n].grad, err_msg=n)


def test_lstm_sequence_rejects_states_of_different_shapes(backend):
    rng = np.random.default_rng(0)
    p = make_params(rng, "lstm", 2, 3)
    x = rng.standard_normal((4, 2, 2))
    with pytest.raises(
        ValueError,
        match=r"h0 and c0 must have the same shape, got \(1, 2, 3\) "
        r"and \(2, 3\)",
    ):
        F.lstm_sequence(x, **p, h0=np.zeros((1, 2, 3)), c0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"h0"):
        F.lstm_sequence(x, **p, h0=np.zeros((2, 2, 3)), c0=np.zeros((2, 2, 3)))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(2, 2, 3), (1, 3, 3), (3,), (1, 1, 2, 3)])
def test_sequence_ops_name_both_state_layouts_on_a_bad_state(backend, kind, shape):
    """A state that is neither (B, H) nor (1, B, H): the message names both layouts, x's batch
    size and the shape given (a 2-D state of the wrong size is the kernel's to refuse)."""
    rng = np.random.default_rng(0)
    p = make_params(rng, kind, 2, 3)
    x = rng.standard_normal((4, 2, 2))
    fn = {"rnn": F.rnn_sequence, "lstm": F.lstm_sequence, "gru": F.gru_sequence}[kind]
    states = {"h0": np.zeros(shape)}
    if kind == "lstm":
        states["c0"] = np.zeros(shape)
    msg = re.escape(
        f"h0 must have shape (B, H) or (1, B, H) with B = 2 (x's batch size), got {shape}"
    )
    with pytest.raises(ValueError, match=msg):
        fn(x, **p, **states)
