"""RNN / LSTM / GRU modules and the cell modules.

* hypothesis-drawn layers (num_layers 1-3, bidirectional, batch_first, bias, lengths, initial
  states, float64): finite differences of every gradient (all elements for small layers, random
  directions for larger ones); the PyTorch oracle for each of the three implementations
  (outputs, states, every gradient; lengths through pack_padded_sequence); the implementations
  against each other are in test_impl_equivalence.py;
* the module against the hand-written NumPy BPTT of benchmarks/numpy_reference.py;
* lengths semantics against running each sequence alone; Keras-style return conventions;
  inter-layer dropout; the shape of the tape; input validation.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.autograd import no_grad

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def examples(n):
    """n examples, unless a heavier hypothesis profile asks for more."""
    return settings(
        max_examples=max(n, settings.default.max_examples // 10)
        if settings.default.max_examples >= 1000
        else n
    )


# ----------------------------------------------------------------- drawn configurations
class Case:
    def __init__(
        self,
        mode,
        nonlinearity,
        L,
        bi,
        bf,
        bias,
        T,
        B,
        I,
        H,
        lengths,
        init_state,
        seed,
        dtype=np.float64,
    ):
        self.mode, self.nonlinearity, self.L, self.bi, self.bf = mode, nonlinearity, L, bi, bf
        self.bias, self.T, self.B, self.I, self.H = bias, T, B, I, H
        self.lengths, self.init_state, self.seed, self.dtype = lengths, init_state, seed, dtype
        self.D = 2 if bi else 1
        rng = np.random.default_rng(seed)
        shape = (B, T, I) if bf else (T, B, I)
        self.x = rng.standard_normal(shape).astype(dtype)
        sshape = (L * self.D, B, H)
        self.h0 = rng.uniform(-1, 1, sshape).astype(dtype) if init_state else None
        self.c0 = (
            rng.standard_normal(sshape).astype(dtype) if init_state and mode == "LSTM" else None
        )

    def make(self, impl="sequence", **kw):
        mg.manual_seed(self.seed)
        return getattr(nn, self.mode)(
            self.I, self.H, impl=impl, dtype=self.dtype, **self.layer_kwargs(), **kw
        )

    def layer_kwargs(self):
        """The drawn layer options, as keywords of both minigrad's and PyTorch's layer."""
        extra = {"nonlinearity": self.nonlinearity} if self.mode == "RNN" else {}
        return dict(
            num_layers=self.L, bias=self.bias, batch_first=self.bf, bidirectional=self.bi, **extra
        )

    def leaves(self):
        """Fresh input tensors: x, then h0 (and c0) when drawn."""
        out = [mg.tensor(self.x, requires_grad=True)]
        if self.init_state:
            out.append(mg.tensor(self.h0, requires_grad=True))
            if self.mode == "LSTM":
                out.append(mg.tensor(self.c0, requires_grad=True))
        return out

    def call(self, module, leaves):
        """Run the module; returns the flat list of outputs [output, h_n, (c_n)]."""
        x = leaves[0]
        hx = None
        if self.init_state:
            hx = (leaves[1], leaves[2]) if self.mode == "LSTM" else leaves[1]
        out, state = module(x, hx, lengths=self.lengths)
        return [out] + (list(state) if self.mode == "LSTM" else [state])

    def __repr__(self):
        return (
            f"Case({self.mode}/{self.nonlinearity}, L={self.L}, bi={self.bi}, "
            f"bf={self.bf}, bias={self.bias}, T={self.T}, B={self.B}, I={self.I}, "
            f"H={self.H}, lengths={self.lengths}, init_state={self.init_state})"
        )


@st.composite
def cases(draw, max_layers=3, max_T=4, max_B=3, max_size=3, dtypes=(np.float64,)):
    kind = draw(st.sampled_from(["RNN", "RNN_relu", "LSTM", "GRU"]))
    mode = kind.split("_")[0]
    nonlin = "relu" if kind == "RNN_relu" else "tanh"
    T = draw(st.integers(1, max_T))
    B = draw(st.integers(1, max_B))
    lengths = None
    if draw(st.booleans()):
        lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    return Case(
        mode,
        nonlin,
        draw(st.integers(1, max_layers)),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.booleans()),
        T,
        B,
        draw(st.integers(1, max_size)),
        draw(st.integers(1, max_size)),
        lengths,
        draw(st.booleans()),
        draw(st.integers(0, 2**16)),
        draw(st.sampled_from(dtypes)),
    )


def upstream(outputs, seed=123):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(o.shape) for o in outputs]


def grads_of(case, module, weights):
    """Outputs and every gradient (inputs and parameters) of sum(out_i * w_i)."""
    leaves = case.leaves()
    module.zero_grad()
    outs = case.call(module, leaves)
    loss = None
    for o, w in zip(outs, weights):
        term = (o * mg.tensor(w, dtype=o.dtype)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    grads = {"x": leaves[0].grad}
    if case.init_state:
        grads["h0"] = leaves[1].grad
        if case.mode == "LSTM":
            grads["c0"] = leaves[2].grad
    for name, p in module.named_parameters():
        grads[name] = p.grad
    return [o.data for o in outs], grads


# ----------------------------------------------------------------- parameters
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_parameter_names_shapes_and_init(mode):
    I, H, L = 3, 5, 2
    mg.manual_seed(0)
    m = getattr(nn, mode)(I, H, num_layers=L, bidirectional=True)
    G = GATES[mode]
    expected = []
    for k in range(L):
        for sfx in ("", "_reverse"):
            in_k = I if k == 0 else 2 * H
            expected += [
                (f"weight_ih_l{k}{sfx}", (G * H, in_k)),
                (f"weight_hh_l{k}{sfx}", (G * H, H)),
                (f"bias_ih_l{k}{sfx}", (G * H,)),
                (f"bias_hh_l{k}{sfx}", (G * H,)),
            ]
    assert [(n, p.shape) for n, p in m.named_parameters()] == expected
    bound = 1 / math.sqrt(H)
    for n, p in m.named_parameters():
        assert p.dtype == np.float32 and np.abs(p.data).max() <= bound, n
    assert [n for n, _ in getattr(nn, mode)(I, H, bias=False).named_parameters()] == [
        "weight_ih_l0",
        "weight_hh_l0",
    ]
    assert len(m.all_weights) == L * 2 and m.flatten_parameters() is None


def test_parameter_names_match_torch():
    torch = pytest.importorskip("torch")
    for mode in ("RNN", "LSTM", "GRU"):
        ours = getattr(nn, mode)(4, 3, num_layers=3, bidirectional=True, bias=False)
        theirs = getattr(torch.nn, mode)(4, 3, num_layers=3, bidirectional=True, bias=False)
        assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
            (n, tuple(p.shape)) for n, p in theirs.named_parameters()
        ]


# ----------------------------------------------------------------- finite differences
def _directional_check(case, module, n_dirs=6, eps=1e-6):
    leaves = case.leaves()
    params = list(module.parameters())
    targets = leaves + params
    outs = case.call(module, leaves)
    weights = upstream(outs)

    def value():
        with no_grad():
            return sum(
                float(np.sum(o.data * w)) for o, w in zip(case.call(module, leaves), weights)
            )

    loss = None
    for o, w in zip(outs, weights):
        term = (o * mg.tensor(w)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    rng = np.random.default_rng(case.seed)
    for _ in range(n_dirs):
        dirs = [rng.standard_normal(t.shape) for t in targets]
        analytic = sum(float(np.sum(t.grad * d)) for t, d in zip(targets, dirs))
        for t, d in zip(targets, dirs):
            t.data += eps * d
        fp = value()
        for t, d in zip(targets, dirs):
            t.data -= 2 * eps * d
        fm = value()
        for t, d in zip(targets, dirs):
            t.data += eps * d
        numeric = (fp - fm) / (2 * eps)
        assert abs(analytic - numeric) <= 1e-6 + 1e-5 * abs(numeric), (case, analytic, numeric)


@examples(20)
@given(case=cases())
def test_gradients_by_finite_differences(case):
    module = case.make()
    leaves = case.leaves()
    params = list(module.parameters())
    n = sum(t.data.size for t in leaves + params)
    if n <= 150:
        # every element of every input and parameter
        def fn(*args):
            return case.call(module, args[: len(leaves)])

        assert mg.gradcheck(fn, leaves + params, seed=case.seed)
    else:
        _directional_check(case, module)


@examples(4)
@given(case=cases(max_layers=2, max_T=6, max_B=4, max_size=8))
def test_gradients_random_directions_larger_layers(case):
    _directional_check(case, case.make())


# ----------------------------------------------------------------- torch oracle
def _torch_run(torch, case, weights, state_dict):
    tm = getattr(torch.nn, case.mode)(case.I, case.H, dtype=torch.float64, **case.layer_kwargs())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    x = torch.tensor(case.x, requires_grad=True)
    hx = None
    if case.init_state:
        h0 = torch.tensor(case.h0, requires_grad=True)
        hx = (h0, torch.tensor(case.c0, requires_grad=True)) if case.mode == "LSTM" else h0
    if case.lengths is not None:
        rnn = torch.nn.utils.rnn
        packed = rnn.pack_padded_sequence(
            x, torch.tensor(case.lengths), batch_first=case.bf, enforce_sorted=False
        )
        out, state = tm(packed, hx)
        out, _ = rnn.pad_packed_sequence(out, batch_first=case.bf, total_length=case.T)
    else:
        out, state = tm(x, hx)
    outs = [out] + (list(state) if case.mode == "LSTM" else [state])
    loss = sum((o * torch.from_numpy(w)).sum() for o, w in zip(outs, weights))
    loss.backward()
    grads = {"x": x.grad.numpy()}
    if case.init_state:
        if case.mode == "LSTM":
            grads["h0"], grads["c0"] = hx[0].grad.numpy(), hx[1].grad.numpy()
        else:
            grads["h0"] = hx.grad.numpy()
    for name, p in tm.named_parameters():
        grads[name] = p.grad.numpy()
    return [o.detach().numpy() for o in outs], grads


@examples(25)
@given(case=cases(), impl=st.sampled_from(["sequence", "step", "composed"]))
def test_against_torch(case, impl):
    torch = pytest.importorskip("torch")
    module = case.make(impl=impl)
    _assert_module_matches(
        case, module, lambda w, state: _torch_run(torch, case, w, state), "torch"
    )


def _assert_module_matches(case, module, oracle, other):
    """The module's outputs and gradients (every input, state and parameter) under random
    upstream gradients equal ``oracle(weights, state_dict)``'s, computed by ``other``."""
    weights = upstream(case.call(module, case.leaves()))
    outs, grads = grads_of(case, module, weights)
    o_outs, o_grads = oracle(weights, module.state_dict())
    for name, a, b in zip(["output", "h_n", "c_n"], outs, o_outs):
        np.testing.assert_allclose(
            a, b, rtol=1e-10, atol=1e-12, err_msg=f"{name} vs {other}, {case}"
        )
    assert grads.keys() == o_grads.keys()
    for k in grads:
        np.testing.assert_allclose(
            grads[k], o_grads[k], rtol=1e-9, atol=1e-11, err_msg=f"d{k} vs {other}, {case}"
        )


# ----------------------------------------------------------------- NumPy reference BPTT
def _reference_stack(nr, case, params, weights):
    """The module's computation written with benchmarks/numpy_reference.py: each layer and
    direction is one reference call, the reverse direction reverses each sequence within its
    length by hand, and backward chains the reference's dx between layers."""
    base = case.mode.lower()
    T, B, H, D, L = case.T, case.B, case.H, case.D, case.L
    x = np.swapaxes(case.x, 0, 1) if case.bf else case.x
    lengths = case.lengths
    ln = np.full(B, T) if lengths is None else np.asarray(lengths)
    idx = np.array([[ln[b] - 1 - t if t < ln[b] else t for b in range(B)] for t in range(T)])
    cols = np.arange(B)[None, :]

    def rev(a):
        return a[idx, cols]

    def states(arr, i):
        return None if arr is None else arr[i]

    fwd = {"rnn": nr.rnn_forward, "lstm": nr.lstm_forward, "gru": nr.gru_forward}[base]
    caches, inp, hns, cns = [], x, [], []
    for k in range(L):
        ys_dirs = []
        for d in range(D):
            i = k * D + d
            sfx = f"_l{k}" + ("_reverse" if d else "")
            p = {
                name.replace(sfx, "_l0"): v
                for name, v in params.items()
                if name.endswith(sfx) and (d or not name.endswith("_reverse"))
            }
            src = rev(inp) if d else inp
            if base == "lstm":
                ys, hn, cn, cache = fwd(src, states(case.h0, i), states(case.c0, i), p, lengths)
                cns.append(cn)
            elif base == "rnn":
                ys, hn, cache = fwd(src, states(case.h0, i), p, lengths, case.nonlinearity)
            else:
                ys, hn, cache = fwd(src, states(case.h0, i), p, lengths)
            hns.append(hn)
            caches.append((sfx, cache))
            ys_dirs.append(rev(ys) if d else ys)
        inp = np.concatenate(ys_dirs, axis=2)
    out = np.swapaxes(inp, 0, 1) if case.bf else inp
    outs = [out, np.stack(hns)] + ([np.stack(cns)] if base == "lstm" else [])

    # backward, layer by layer from the top
    w_out = np.swapaxes(weights[0], 0, 1) if case.bf else weights[0]
    w_h = weights[1]
    w_c = weights[2] if base == "lstm" else None
    bwd = {"rnn": nr.rnn_backward, "lstm": nr.lstm_backward, "gru": nr.gru_backward}[base]
    grads, dinp = {}, w_out
    for k in reversed(range(L)):
        dnext = None
        for d in range(D):
            i = k * D + d
            sfx, cache = caches[i]
            dys = dinp[:, :, d * H : (d + 1) * H]
            if d:
                dys = rev(dys)
            if base == "lstm":
                g = bwd(dys, w_h[i], w_c[i], cache)
            else:
                g = bwd(dys, w_h[i], cache)
            dx = rev(g["x"]) if d else g["x"]
            dnext = dx if dnext is None else dnext + dx
            for name, v in g.items():
                if name.endswith("_l0"):
                    grads[name.replace("_l0", sfx)] = v
            for s in ("h0", "c0"):
                if s in g:
                    grads.setdefault(s, np.zeros((L * D, B, H)))[i] = g[s]
        dinp = dnext
    grads["x"] = np.swapaxes(dinp, 0, 1) if case.bf else dinp
    if not case.init_state:
        grads.pop("h0", None)
        grads.pop("c0", None)
    return outs, grads


@examples(15)
@given(case=cases(max_layers=2))
def test_against_numpy_reference(case):
    from benchmarks import numpy_reference as nr

    _assert_module_matches(
        case, case.make(), lambda w, state: _reference_stack(nr, case, state, w), "numpy reference"
    )


# ----------------------------------------------------------------- lengths semantics
@examples(15)
@given(case=cases(max_T=5))
def test_lengths_equal_running_each_sequence_alone(case):
    if case.lengths is None:
        case.lengths = [max(1, case.T - b) for b in range(case.B)]
    module = case.make()
    with no_grad():
        outs = case.call(module, case.leaves())
    out, h_n = outs[0].data, outs[1].data
    t_axis, b_axis = (1, 0) if case.bf else (0, 1)
    for b, n in enumerate(case.lengths):
        xb = np.take(case.x, [b], axis=b_axis)
        xb = np.take(xb, np.arange(n), axis=t_axis)
        hx = None
        if case.init_state:
            h0 = mg.tensor(case.h0[:, b : b + 1])
            hx = (h0, mg.tensor(case.c0[:, b : b + 1])) if case.mode == "LSTM" else h0
        with no_grad():
            ob, sb = module(mg.tensor(xb), hx)
        hb = sb[0] if case.mode == "LSTM" else sb
        real = np.take(np.take(out, [b], axis=b_axis), np.arange(n), axis=t_axis)
        np.testing.assert_allclose(real, ob.data, rtol=1e-12, atol=1e-14, err_msg=f"seq {b}")
        pad = np.take(np.take(out, [b], axis=b_axis), np.arange(n, case.T), axis=t_axis)
        assert not pad.any(), "padded steps must output zeros"
        np.testing.assert_allclose(h_n[:, b : b + 1], hb.data, rtol=1e-12, atol=1e-14)
        if case.mode == "LSTM":
            np.testing.assert_allclose(
                outs[2].data[:, b : b + 1], sb[1].data, rtol=1e-12, atol=1e-14
            )


def test_full_lengths_equal_no_lengths():
    case = Case("GRU", "tanh", 2, True, False, True, 4, 3, 2, 3, None, False, 1)
    m = case.make()
    a = case.call(m, case.leaves())
    case.lengths = [4, 4, 4]
    b = case.call(m, case.leaves())
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.data, v.data)


# ----------------------------------------------------------------- Keras-style returns
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("bf", [False, True])
@pytest.mark.parametrize("impl", ["sequence", "step", "composed"])
def test_return_sequences_and_return_state(mode, bi, bf, impl):
    T, B, I, H, L = 5, 3, 2, 4, 2
    D = 2 if bi else 1
    lengths = [5, 2, 4]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I) if bf else (T, B, I))

    def make(**kw):
        mg.manual_seed(7)
        return getattr(nn, mode)(
            I, H, num_layers=L, bidirectional=bi, batch_first=bf, dtype=np.float64, impl=impl, **kw
        )

    full_out, full_state = make()(x, lengths=lengths)
    h_n = full_state[0] if mode == "LSTM" else full_state
    seq_shape = (B, T, D * H) if bf else (T, B, D * H)
    assert full_out.shape == seq_shape and h_n.shape == (L * D, B, H)

    seq = make(return_sequences=True)(x, lengths=lengths)
    assert isinstance(seq, mg.Tensor)
    np.testing.assert_array_equal(seq.data, full_out.data)

    last = make(return_sequences=False)(x, lengths=lengths)
    assert isinstance(last, mg.Tensor) and last.shape == (B, D * H)
    o = np.swapaxes(full_out.data, 0, 1) if bf else full_out.data  # (T, B, D*H)
    for b, n in enumerate(lengths):
        # forward direction: its output at the sequence's last real step
        np.testing.assert_array_equal(last.data[b, :H], o[n - 1, b, :H])
        if bi:  # reverse direction: its final state, the output at t = 0 (Keras Bidirectional)
            np.testing.assert_array_equal(last.data[b, H:], o[0, b, H:])
    np.testing.assert_array_equal(last.data[:, :H], h_n.data[-D])

    out, state = make(return_sequences=False, return_state=True)(x, lengths=lengths)
    np.testing.assert_array_equal(out.data, last.data)
    if mode == "LSTM":
        assert isinstance(state, tuple) and len(state) == 2
        np.testing.assert_array_equal(state[1].data, full_state[1].data)
        state = state[0]
    np.testing.assert_array_equal(state.data, h_n.data)
    out, state = make(return_sequences=True, return_state=True)(x, lengths=lengths)
    np.testing.assert_array_equal(out.data, full_out.data)


def test_returned_state_feeds_the_next_call():
    enc = nn.LSTM(3, 4, num_layers=2, return_sequences=False, return_state=True)
    dec = nn.LSTM(3, 4, num_layers=2)
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    _, state = enc(x)
    out, (h, c) = dec(x, state)
    (out.sum() + h.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_seeds_keras_style_model_trains_one_step():
    mg.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(10000, 50),
        nn.LSTM(50, 50, batch_first=True, return_sequences=False),
        nn.Linear(50, 32),
        nn.ReLU(),
        nn.Linear(32, 1),
    )
    tokens = np.random.default_rng(0).integers(0, 10000, size=(4, 20))
    y = model(tokens)
    assert y.shape == (4, 1) and y.dtype == np.float32
    y.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        if name != "0.weight":
            assert np.abs(p.grad).sum() > 0, name


def test_stacked_keras_style_sequential():
    model = nn.Sequential(
        nn.RNN(1, 3, batch_first=True, return_sequences=True),
        nn.RNN(3, 3, batch_first=True, return_sequences=False),
        nn.Linear(3, 1),
    )
    assert model(np.zeros((2, 5, 1), dtype=np.float32)).shape == (2, 1)
    with pytest.raises(TypeError, match="return_sequences"):
        nn.Sequential(nn.GRU(1, 3), nn.Linear(3, 1))(np.zeros((5, 2, 1), dtype=np.float32))


# ----------------------------------------------------------------- batch_first / dropout
def test_batch_first_is_a_transpose():
    mg.manual_seed(4)
    a = nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    b = nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=np.float64)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    oa, ha = a(x, lengths=[5, 3])
    ob, hb = b(np.swapaxes(x, 0, 1), lengths=[5, 3])
    np.testing.assert_array_equal(oa.data, np.swapaxes(ob.data, 0, 1))
    np.testing.assert_array_equal(ha.data, hb.data)


def test_dropout_between_layers_only_in_training():
    mg.manual_seed(2)
    drop = nn.LSTM(3, 4, num_layers=2, dropout=1.0, dtype=np.float64)
    plain = nn.LSTM(3, 4, num_layers=2, dtype=np.float64)
    plain.load_state_dict(drop.state_dict())
    top = nn.LSTM(4, 4, dtype=np.float64)
    top.load_state_dict(
        {k.replace("_l1", "_l0"): v for k, v in drop.state_dict().items() if "_l1" in k}
    )
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, _ = drop(x)
    # dropout p=1 zeroes layer 0's output: layer 1 sees zeros
    expected, _ = top(np.zeros((5, 2, 4)))
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-12)
    assert np.all(out.data != 0), "no dropout after the last layer"
    drop.eval()
    np.testing.assert_array_equal(drop(x)[0].data, plain(x)[0].data)


def test_dropout_warning_for_one_layer():
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.RNN(2, 2, dropout=0.5)


# ----------------------------------------------------------------- the tape
def _nodes(t):
    seen, stack, out = set(), [t._ctx], []
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        out.append(type(n).__name__)
        stack.extend(i._ctx for i in n.inputs if i is not None)
    return out


@pytest.mark.parametrize("impl", ["sequence", "step", "composed"])
def test_tape_shape(impl):
    T, L, D = 9, 2, 2
    m = nn.LSTM(3, 4, num_layers=L, bidirectional=True, impl=impl)
    x = mg.tensor(np.zeros((T, 2, 3), dtype=np.float32), requires_grad=True)
    out, _ = m(x)
    names = _nodes(out)
    if impl == "sequence":
        assert names.count("LSTMSequence") == L * D and "LSTMCellStep" not in names
    elif impl == "composed":
        # per layer, direction and step: two Linear nodes (x and h), one Split into the four
        # gates, three Sigmoid and two Tanh; no compiled recurrent node anywhere
        assert not any(n.startswith("LSTM") for n in names)
        assert names.count("Linear") == 2 * T * L * D
        assert names.count("Sigmoid") == 3 * T * L * D and names.count("Tanh") == 2 * T * L * D
        assert names.count("Stack") == L * D
    else:
        # per layer and direction: the input projection of all steps hoisted into one linear
        # node, one unbind (Split), T cell-step nodes, one stack: O(T)
        assert names.count("LSTMCellStep") == T * L * D and "LSTMCell" not in names
        assert names.count("Linear") == L * D
        assert names.count("Split") == L * D and names.count("Stack") == L * D


# ----------------------------------------------------------------- cells
@pytest.mark.parametrize("impl", ["step", "composed"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_cells_equal_one_step_of_the_layer(mode, impl):
    mg.manual_seed(0)
    layer = getattr(nn, mode)(3, 4, dtype=np.float64)
    cell = getattr(nn, mode + "Cell")(3, 4, dtype=np.float64, impl=impl)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    h = rng.standard_normal((2, 4))
    c = rng.standard_normal((2, 4))
    if mode == "LSTM":
        out, (h_n, c_n) = layer(x[None], (h[None], c[None]))
        h1, c1 = cell(x, (h, c))
        np.testing.assert_allclose(c1.data, c_n.data[0], rtol=1e-12)
        ub = cell(x[0], (h[0], c[0]))
        np.testing.assert_allclose(ub[0].data, h1.data[0], rtol=1e-12)
        assert ub[0].shape == (4,)
    else:
        out, h_n = layer(x[None], h[None])
        h1 = cell(x, h)
        np.testing.assert_allclose(cell(x[0], h[0]).data, h1.data[0], rtol=1e-12)
    np.testing.assert_allclose(h1.data, out.data[0], rtol=1e-12)


@pytest.mark.parametrize("impl", ["step", "composed"])
@pytest.mark.parametrize("cell_cls", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_cell_gradients(cell_cls, impl):
    mg.manual_seed(0)
    cell = cell_cls(3, 2, dtype=np.float64, impl=impl)
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h = mg.tensor(rng.standard_normal((2, 2)), requires_grad=True)
    if cell_cls is nn.LSTMCell:
        c = mg.tensor(rng.standard_normal((2, 2)), requires_grad=True)
        assert mg.gradcheck(lambda x, h, c, *ps: cell(x, (h, c)), [x, h, c, *cell.parameters()])
    else:
        assert mg.gradcheck(lambda x, h, *ps: cell(x, h), [x, h, *cell.parameters()])
    out = cell(x)  # hx=None: zeros
    assert (out[0] if cell_cls is nn.LSTMCell else out).shape == (2, 2)


@pytest.mark.parametrize("impl", ["step", "composed"])
def test_cell_against_torch(impl):
    torch = pytest.importorskip("torch")
    for name in ("RNNCell", "LSTMCell", "GRUCell"):
        ours = getattr(nn, name)(3, 4, dtype=np.float64, impl=impl)
        theirs = getattr(torch.nn, name)(3, 4, dtype=torch.float64)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
        x = np.random.default_rng(0).standard_normal((2, 3))
        a = ours(x)
        b = theirs(torch.from_numpy(x))
        a = a[1] if name == "LSTMCell" else a
        b = b[1] if name == "LSTMCell" else b
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12, err_msg=name)


def test_cell_validation():
    cell = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 3\)"):
        cell(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 4\), got \(2, 3\)"):
        cell(np.zeros((2, 3), dtype=np.float32), (np.zeros((2, 3), np.float32), None))
    with pytest.raises(ValueError, match="tuple"):
        cell(np.zeros((2, 3), dtype=np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(2, 2, nonlinearity="sigmoid")


# ----------------------------------------------------------------- validation
def test_input_validation_messages():
    m = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x = np.zeros((2, 5, 3), dtype=np.float32)
    cases = [
        (lambda: m(np.zeros((5, 3), np.float32)), r"3-D \(batch, time, 3\), got shape \(5, 3\)"),
        (lambda: m(np.zeros((2, 5, 4), np.float32)), r"got shape \(2, 5, 4\)"),
        (lambda: m(x.astype(np.float64)), "dtype float32 .* got float64"),
        (lambda: m(x, np.zeros((2, 2, 4), np.float32)), r"hx must be a tuple \(h_0, c_0\)"),
        (
            lambda: m(x, (np.zeros((1, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32))),
            r"h_0 must have shape \(2, 2, 4\), got \(1, 2, 4\)",
        ),
        (
            lambda: m(x, (np.zeros((2, 2, 4), np.float32), np.zeros((2, 2, 4)))),
            "c_0 must have dtype float32",
        ),
        (lambda: m(x, lengths=[5]), r"lengths must have shape \(2,\)"),
        (lambda: m(x, lengths=[5, 6]), r"lengths must lie in \[1, 5\].*max 6"),
        (lambda: m(x, lengths=[0, 2]), r"lengths must lie in \[1, 5\].*min 0"),
        (lambda: m(x, lengths=[2.0, 3.0]), "lengths must be integers, got dtype float64"),
        (lambda: m(np.zeros((0, 5, 3), np.float32)), "at least one time step and one sequence"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    g = nn.GRU(3, 4)
    with pytest.raises(ValueError, match="one Tensor"):
        g(np.zeros((5, 2, 3), np.float32), (np.zeros((1, 2, 4), np.float32),))


def test_constructor_validation():
    with pytest.raises(ValueError, match="return_sequences must be None, True or False"):
        nn.LSTM(2, 2, return_sequences="last")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        nn.GRU(2, 2, num_layers=2, dropout=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(2, 2, nonlinearity="gelu")
    with pytest.raises(ValueError, match="hidden_size must be > 0"):
        nn.LSTM(2, 0)
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        nn.LSTM(2, 2, dtype=np.int32)
    with pytest.raises(
        ValueError, match="impl must be one of 'sequence', 'step', 'composed', got 'fused'"
    ):
        nn.GRU(2, 2, impl="fused")
    with pytest.raises(ValueError, match="impl must be one of 'step', 'composed', got 'sequence'"):
        nn.LSTMCell(2, 2, impl="sequence")


def test_repr_of_recurrent_layers():
    assert (
        repr(nn.RNN(3, 4, 2, "relu", bias=False, bidirectional=True, dropout=0.1))
        == "RNN(3, 4, num_layers=2, nonlinearity='relu', bias=False, dropout=0.1, "
        "bidirectional=True)"
    )
    assert (
        repr(nn.GRU(3, 4, return_state=True, impl="step"))
        == "GRU(3, 4, return_state=True, impl='step')"
    )
    assert repr(nn.LSTM(3, 4, impl="composed")) == "LSTM(3, 4, impl='composed')"
    assert repr(nn.GRUCell(3, 4, impl="composed")) == "GRUCell(3, 4, impl='composed')"
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("given_state", [False, True])
def test_one_sequence_layer_has_no_reshape_nodes(mode, given_state):
    """One layer, one direction, impl="sequence": the sequence node takes hx and returns h_n (c_n)
    in the (1, B, H) layout itself, so the tape is that node alone (a multi-layer module
    stacks)."""
    T, B, I, H = 5, 2, 3, 4
    rng = np.random.default_rng(0)
    m = getattr(nn, mode)(I, H, dtype=np.float64)
    x = mg.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    hx = None
    if given_state:
        hs = [
            mg.tensor(rng.standard_normal((1, B, H)), requires_grad=True)
            for _ in range(2 if mode == "LSTM" else 1)
        ]
        hx = tuple(hs) if mode == "LSTM" else hs[0]
    out, state = m(x, hx)
    finals = list(state) if mode == "LSTM" else [state]
    node = out._ctx
    assert type(node).__name__ == f"{mode}Sequence"
    for f in finals:
        assert f.shape == (1, B, H) and f._ctx is node
        assert _nodes(f) == [f"{mode}Sequence"]
    if given_state:
        assert all(t is s for t, s in zip(node.inputs[1:], hs))  # hx goes in as given
    # the values and gradients are those of the unrolled path, which does reshape
    ref = getattr(nn, mode)(I, H, dtype=np.float64, impl="step")
    ref.load_state_dict(m.state_dict())
    x2 = mg.tensor(x.data, requires_grad=True)
    hx2 = None
    if given_state:
        hs2 = [mg.tensor(h.data, requires_grad=True) for h in hs]
        hx2 = tuple(hs2) if mode == "LSTM" else hs2[0]
    out2, state2 = ref(x2, hx2)
    finals2 = list(state2) if mode == "LSTM" else [state2]
    w = [rng.standard_normal(t.shape) for t in [out] + finals]
    for outs in ([out] + finals, [out2] + finals2):
        sum((o * mg.tensor(wi)).sum() for o, wi in zip(outs, w)).backward()
    for a, b in zip([out] + finals, [out2] + finals2):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x.grad, x2.grad, rtol=1e-10, atol=1e-12)
    if given_state:
        for h, h2 in zip(hs, hs2):
            assert h.grad.shape == (1, B, H)
            np.testing.assert_allclose(h.grad, h2.grad, rtol=1e-10, atol=1e-12)
