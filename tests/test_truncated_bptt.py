"""Truncated BPTT: carrying the state across chunks with detach_state.

Two properties: a truncation length equal to the sequence length gives exactly full BPTT's
gradients; a shorter one gives exactly the gradient of the truncated graph, which is computed here
independently: each chunk is rebuilt as its own graph starting from the (constant) state the
full forward reached at the chunk boundary, and the chunk gradients are summed."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.nn.utils import detach_state

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
IMPLS = ["sequence", "step", "composed"]


def _model(kind, I, H, layers, impl, seed):
    mg.manual_seed(seed)
    return CELLS[kind](I, H, num_layers=layers, impl=impl, dtype=np.float64)


def _chunk_loss(out, w):
    return (out * mg.tensor(w, dtype=np.float64)).sum()


def _grads(model):
    return {k: p.grad.copy() for k, p in model.named_parameters()}


def tbptt_grads(model, x, w, k):
    """The training-loop way: state carried between chunks and detached."""
    model.zero_grad()
    state = None
    for s in range(0, x.shape[0], k):
        out, state = model(mg.tensor(x[s : s + k], dtype=np.float64), state)
        _chunk_loss(out, w[s : s + k]).backward()
        state = detach_state(state)
    return _grads(model)


def truncated_graph_grads(model, x, w, k):
    """The same gradient built another way: boundary states from a no-grad forward, then one
    independent graph per chunk from a constant initial state."""
    T = x.shape[0]
    boundaries = {}
    state = None
    with mg.no_grad():
        for s in range(0, T, k):
            boundaries[s] = state
            _, state = model(mg.tensor(x[s : s + k], dtype=np.float64), state)
    total = {name: np.zeros_like(p.data) for name, p in model.named_parameters()}
    for s in range(0, T, k):
        model.zero_grad()
        st0 = boundaries[s]
        if st0 is not None:  # fresh leaves that do not require grad: the graph starts here
            st0 = (
                tuple(mg.tensor(t.data.copy(), dtype=np.float64) for t in st0)
                if isinstance(st0, tuple)
                else mg.tensor(st0.data.copy(), dtype=np.float64)
            )
        out, _ = model(mg.tensor(x[s : s + k], dtype=np.float64), st0)
        _chunk_loss(out, w[s : s + k]).backward()
        for name, p in model.named_parameters():
            total[name] += p.grad
    return total


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(sorted(CELLS)),
    T=st.integers(2, 9),
    k=st.integers(1, 8),
    layers=st.integers(1, 2),
    impl=st.sampled_from(IMPLS),
    seed=st.integers(0, 10_000),
)
def test_truncated_bptt_is_the_gradient_of_the_truncated_graph(kind, T, k, layers, impl, seed):
    B, I, H = 2, 3, 4
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    w = rng.standard_normal((T, B, H))
    model = _model(kind, I, H, layers, impl, seed)
    got = tbptt_grads(model, x, w, k)
    want = truncated_graph_grads(model, x, w, k)
    for name in want:
        np.testing.assert_allclose(
            got[name],
            want[name],
            rtol=1e-10,
            atol=1e-12,
            err_msg=f"{kind} {impl} T={T} k={k}: d{name} truncated BPTT vs truncated graph",
        )


@settings(max_examples=8, deadline=None)
@given(
    kind=st.sampled_from(sorted(CELLS)),
    T=st.integers(1, 8),
    impl=st.sampled_from(IMPLS),
    seed=st.integers(0, 10_000),
)
def test_truncation_length_T_equals_full_bptt(kind, T, impl, seed):
    B, I, H = 2, 3, 4
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    w = rng.standard_normal((T, B, H))
    model = _model(kind, I, H, 1, impl, seed)
    got = tbptt_grads(model, x, w, T)
    model.zero_grad()
    out, _ = model(mg.tensor(x, dtype=np.float64))
    _chunk_loss(out, w).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(
            got[name],
            p.grad,
            rtol=1e-12,
            atol=1e-14,
            err_msg=f"{kind} {impl}: d{name} with k=T vs full BPTT",
        )


def test_shorter_truncation_changes_the_gradient():
    """The detach really cuts: with k < T the gradient differs from full BPTT."""
    rng = np.random.default_rng(0)
    T, B, I, H = 8, 2, 3, 4
    x = rng.standard_normal((T, B, I))
    w = rng.standard_normal((T, B, H))
    model = _model("lstm", I, H, 1, "sequence", 0)
    trunc = tbptt_grads(model, x, w, 2)
    full = tbptt_grads(model, x, w, T)
    diff = max(np.abs(trunc[n] - full[n]).max() for n in full)
    assert diff > 1e-6, (
        f"truncated and full BPTT gradients agree ({diff}): the state was not detached"
    )
