"""Gradients written where the caller says: the backward kernels' ``out``/``scale`` arguments
(compiled and NumPy twin alike), the engine's offers (``autograd.set_grad_destination``), and
DistributedDataParallel's buckets filled by backward itself."""

import importlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, kernels, nn

# the compiled kernel modules and their NumPy twins (minigrad._ops, minigrad._ops_ref, ...)
IMPLS = {
    impl: {
        m: importlib.import_module(f"minigrad._{m}{suffix}") for m in ("ops", "gemm", "embedding")
    }
    for impl, suffix in (("cython", ""), ("twin", "_ref"))
}
SCALES = (1.0, 0.5, 0.25, 1 / 3, -2.0, 0.0)


# ----------------------------------------------------------------------------- the kernels
def _case(kind, mods, rng, dtype, bias=True, T=4, B=3, I=5, H=6):
    """(call(out, scale) -> the kernel's result, positions of the parameter gradients in it,
    their shapes, the call's input arrays) for one backward kernel."""

    def f(*shape):
        return rng.standard_normal(shape).astype(dtype)

    ops, gemm, emb = mods["ops"], mods["gemm"], mods["embedding"]
    if kind == "linear":
        x, w, dy = f(B * T, I), f(H, I), f(B * T, H)
        shapes = ((H, I), (H,) if bias else None)

        def call(out=None, scale=1.0):
            return gemm.linear_backward(dy, x, w, bias, out=out, scale=scale)

        return call, (1, 2), shapes, (x, w, dy)
    if kind == "embedding":
        dy = f(B * T, I)
        idx = rng.integers(0, 7, B * T).astype(np.int64)

        def call(out=None, scale=1.0):
            return (emb.embedding_backward(dy, idx, 7, 2, out=out, scale=scale),)

        return call, (0,), ((7, I),), (dy, idx)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    x, h0, c0 = f(T, B, I), f(B, H), f(B, H)
    w_ih, w_hh = f(G * H, I), f(G * H, H)
    b_ih, b_hh = (f(G * H), f(G * H)) if bias else (None, None)
    dys, dh, dc = f(T, B, H), f(B, H), f(B, H)
    shapes = ((G * H, I), (G * H, H), (G * H,) if bias else None, (G * H,) if bias else None)
    if kind == "lstm":
        _, _, _, cache = ops.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None)

        def call(out=None, scale=1.0):
            return ops.lstm_sequence_backward(
                dys, dh, dc, x, h0, c0, w_ih, w_hh, cache, None, bias, out=out, scale=scale
            )

        return call, (3, 4, 5, 6), shapes, (x, h0, c0, w_ih, w_hh, dys, dh, dc) + cache
    if kind == "gru":
        _, _, cache = ops.gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, None)

        def call(out=None, scale=1.0):
            return ops.gru_sequence_backward(
                dys, dh, x, h0, w_ih, w_hh, cache, None, bias, out=out, scale=scale
            )

        return call, (2, 3, 4, 5), shapes, (x, h0, w_ih, w_hh, dys, dh) + cache
    _, _, cache = ops.rnn_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, None, "tanh")

    def call(out=None, scale=1.0):
        return ops.rnn_sequence_backward(
            dys, dh, x, h0, w_ih, w_hh, cache, None, bias, "tanh", out=out, scale=scale
        )

    return call, (2, 3, 4, 5), shapes, (x, h0, w_ih, w_hh, dys, dh) + cache


KINDS = ("linear", "embedding", "rnn", "lstm", "gru")


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("kind", KINDS)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    bias=st.booleans(),
    scale=st.sampled_from(SCALES),
    chosen=st.lists(st.booleans(), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_out_receives_scale_times_the_gradient(impl, kind, dtype, bias, scale, chosen, seed):
    """Each gradient given an ``out`` array is written there times ``scale`` and that array is
    returned in its place; every other result is what the call without ``out`` gives."""
    call, pos, shapes, _ = _case(kind, IMPLS[impl], np.random.default_rng(seed), dtype, bias)
    ref = call()
    out = tuple(
        np.full(s, np.nan, dtype) if s is not None and c else None for s, c in zip(shapes, chosen)
    )
    got = call(out, scale)
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for i, (r, g) in enumerate(zip(ref, got)):
        k = pos.index(i) if i in pos else None
        if k is not None and out[k] is not None:
            assert g is out[k]
            np.testing.assert_allclose(g, scale * r, **tol, err_msg=f"result {i}")
        elif r is None:
            assert g is None
        else:  # not written into out: the unscaled result, the same as without out
            np.testing.assert_array_equal(g, r, err_msg=f"result {i}")


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("kind", KINDS)
def test_out_with_a_power_of_two_scale_is_exact(impl, kind):
    """Scaling by 1/2 (two ranks' average) is exact: the same bits as halving the result."""
    call, pos, shapes, _ = _case(kind, IMPLS[impl], np.random.default_rng(0), np.float32)
    ref = call()
    out = tuple(None if s is None else np.empty(s, np.float32) for s in shapes)
    got = call(out, 0.5)
    for i in pos:
        np.testing.assert_array_equal(got[i], ref[i] * np.float32(0.5))


def _bad_outs(shapes, inputs, dtype):
    """(out, message) pairs that must be refused."""
    first = next(i for i, s in enumerate(shapes) if s is not None)
    shape = shapes[first]
    n = len(shapes)

    def at(k, arr):
        return tuple(arr if j == k else None for j in range(n))

    wide = np.empty(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2] if len(shape) == 2 else None
    cases = [
        (at(first, np.empty(shape + (1,), dtype)), "must have shape"),
        (at(first, np.empty(shape, np.float32 if dtype == np.float64 else np.float64)), "dtype"),
        ([None] * n, f"out must be None or a tuple of {n} entries"),
        ((None,) * (n + 1), f"out must be None or a tuple of {n} entries"),
        (at(first, [0.0]), "must be a numpy.ndarray or None"),
    ]
    ro = np.empty(shape, dtype)
    ro.flags.writeable = False
    cases.append((at(first, ro), "must be writeable"))
    if wide is not None:
        cases.append((at(first, wide), "C-contiguous"))
    same = next((a for a in inputs if a.shape == shape and a.dtype == dtype), None)
    if same is not None:
        cases.append((at(first, same), "must not share memory with the kernel's input"))
    if n > 1 and shapes[1] is not None:
        big = np.empty(max(int(np.prod(shape)), int(np.prod(shapes[1]))) + 1, dtype)
        a = big[: int(np.prod(shape))].reshape(shape)
        b = big[1 : 1 + int(np.prod(shapes[1]))].reshape(shapes[1])
        cases.append(((a, b) + (None,) * (n - 2), r"must not share memory with out\[0\]"))
    missing = [k for k, s in enumerate(shapes) if s is None]
    if missing:
        cases.append((at(missing[0], np.empty(3, dtype)), "must be None: this call computes no"))
    return cases


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize(
    "kind, bias", [(k, b) for k in KINDS for b in (True, False) if k != "embedding" or b]
)
def test_bad_out_is_refused_before_anything_is_written(impl, kind, bias):
    dtype = np.float64
    call, _, shapes, inputs = _case(kind, IMPLS[impl], np.random.default_rng(1), dtype, bias)
    for out, text in _bad_outs(shapes, inputs, dtype):
        with pytest.raises(ValueError, match=text):
            call(out, 0.5)
    for scale in (float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(ValueError, match="scale must be a finite number"):
            call(None, scale)
    # a valid entry before a bad one: refused as a whole, the valid array not written
    good = np.full(shapes[0] or shapes[1], 7.0)
    if shapes[0] is None:
        return
    bad = (good,) + (np.empty((1,), dtype),) + (None,) * (len(shapes) - 2)
    if len(shapes) > 1:
        with pytest.raises(ValueError):
            call(bad, 0.5)
        assert (good == 7.0).all()


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_embedding_index_error_leaves_out_unwritten(impl):
    dy = np.ones((3, 2))
    out = np.full((4, 2), 7.0)
    with pytest.raises(IndexError, match="out of range"):
        IMPLS[impl]["embedding"].embedding_backward(
            dy, np.array([0, 5, 1], dtype=np.int64), 4, out=(out,)
        )
    assert (out == 7.0).all()


# ----------------------------------------------------------------------------- the engine
def _leaf(shape, seed, dtype=np.float64):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), True)


def _destination(t, scale=0.5):
    """A NaN-filled array offered as t's gradient destination (with a post-accumulate hook,
    which offers need); returns the array and the list of offers the provider answered."""
    arr = np.full(t.shape, np.nan, t.dtype)
    asked = []

    def provider():
        asked.append(1)
        return (arr, scale)

    autograd.set_grad_destination(t, provider)
    t.register_post_accumulate_grad_hook(lambda p: None)
    return arr, asked


def _reference_grads(loss_fn, leaves):
    copies = [mg.tensor(t.data.copy(), True) for t in leaves]
    loss_fn(*copies).backward()
    return [c.grad for c in copies]


def _lm(w_emb, w_ih, w_hh, b_ih, b_hh, w_out, b_out):
    ids = np.array([[1, 2, 3, 0], [3, 3, 1, 2]])
    x = F.transpose(F.embedding(ids, w_emb), (1, 0, 2))
    ys, _ = F.lstm_sequence(x, w_ih, w_hh, b_ih, b_hh)
    return F.linear(ys, w_out, b_out).sum() * 0.1


LM_SHAPES = ((5, 3), (8, 3), (8, 2), (8,), (8,), (4, 2), (4,))


@pytest.mark.parametrize("backend_name", ["cython", "numpy"])
def test_a_leaf_made_by_one_node_gets_its_gradient_written_into_its_destination(backend_name):
    before = kernels.backend()
    kernels.set_backend(backend_name)
    try:
        leaves = [_leaf(s, i) for i, s in enumerate(LM_SHAPES)]
        ref = _reference_grads(_lm, leaves)
        dests = [_destination(t, 0.25) for t in leaves]
        _lm(*leaves).backward()
        for t, (arr, asked), r in zip(leaves, dests, ref):
            assert t.grad is arr and asked == [1]
            np.testing.assert_allclose(arr, 0.25 * r, rtol=1e-13, atol=1e-15)
    finally:
        kernels.set_backend(before)


def _linear_loss(w, x=None):
    x = np.ones((2, 3)) if x is None else x
    return F.linear(mg.tensor(x), w).sum()


def test_no_offer_when_the_gradient_is_not_one_nodes_alone():
    # the weight used by two nodes: their sum is the gradient
    w = _leaf((2, 3), 0)
    arr, asked = _destination(w)
    (_linear_loss(w) + _linear_loss(w, np.full((2, 3), 2.0))).backward()
    assert w.grad is not arr and np.isnan(arr).all() and asked == []
    np.testing.assert_allclose(w.grad, np.full((2, 3), 6.0))


def test_no_offer_with_a_tensor_hook_or_an_earlier_grad_or_none_from_the_provider():
    w = _leaf((2, 3), 0)
    arr, asked = _destination(w)
    w.register_hook(lambda g: g * 3)  # the hook must see the true gradient
    _linear_loss(w).backward()
    assert w.grad is not arr and np.isnan(arr).all() and asked == []
    np.testing.assert_allclose(w.grad, np.full((2, 3), 6.0))

    w = _leaf((2, 3), 0)
    arr, asked = _destination(w)
    w.grad = np.ones((2, 3))  # accumulation: backward adds to it
    _linear_loss(w).backward()
    assert w.grad is not arr and np.isnan(arr).all() and asked == []
    np.testing.assert_allclose(w.grad, np.full((2, 3), 3.0))

    w = _leaf((2, 3), 0)
    autograd.set_grad_destination(w, lambda: None)
    w.register_post_accumulate_grad_hook(lambda p: None)
    _linear_loss(w).backward()
    np.testing.assert_allclose(w.grad, np.full((2, 3), 2.0))


def test_no_offer_without_a_post_accumulate_hook_or_from_other_ops():
    w = _leaf((2, 3), 0)
    arr = np.full((2, 3), np.nan)
    autograd.set_grad_destination(w, lambda: (arr, 0.5))
    _linear_loss(w).backward()  # no post-accumulate hook: the engine does not track the leaf
    assert w.grad is not arr and np.isnan(arr).all()

    w = _leaf((3, 2), 0)
    arr, asked = _destination(w)
    F.matmul(mg.tensor(np.ones((2, 3))), w).sum().backward()  # matmul writes new arrays only
    assert w.grad is not arr and np.isnan(arr).all()
    np.testing.assert_allclose(w.grad, np.full((3, 2), 2.0))


def test_removing_a_destination_and_bad_arguments():
    w = _leaf((2, 3), 0)
    arr, _ = _destination(w)
    autograd.set_grad_destination(w, None)
    _linear_loss(w).backward()
    assert w.grad is not arr and np.isnan(arr).all()
    with pytest.raises(TypeError, match="leaf tensor that requires grad"):
        autograd.set_grad_destination(w * 2, lambda: None)
    with pytest.raises(TypeError, match="leaf tensor that requires grad"):
        autograd.set_grad_destination(np.ones(2), lambda: None)
    with pytest.raises(TypeError, match="provider must be callable or None"):
        autograd.set_grad_destination(w, (arr, 1.0))


def test_a_destination_of_the_wrong_shape_is_refused_by_the_kernel():
    w = _leaf((2, 3), 0)
    autograd.set_grad_destination(w, lambda: (np.empty((3, 2)), 1.0))
    w.register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(ValueError, match=r"out\[0\] \(dw\) must have shape \(2, 3\)"):
        _linear_loss(w).backward()


# ----------------------------------------------------------------------------- DDP, one rank
def _char_lm(cell):
    mg.manual_seed(0)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(11, 4)
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](4, 6, batch_first=True)
            self.head = nn.Linear(6, 11)

        def forward(self, ids):
            return self.head(self.rnn(self.embed(ids))[0])

    return LM()


def _lm_loss(net, step):
    ids = np.random.default_rng(step).integers(0, 11, size=(3, 5))
    return F.cross_entropy(net(ids).reshape(-1, 11), ids.reshape(-1))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_ddp_buckets_are_filled_by_backward(cell):
    dist = pytest.importorskip("minigrad.distributed")
    pytest.importorskip("mpi4py")
    dist.init()
    ref, model = _char_lm(cell), _char_lm(cell)
    ddp = dist.DistributedDataParallel(model)
    opt_ref = mg.optim.Adam(ref.parameters(), lr=0.01)
    opt = mg.optim.Adam(model.parameters(), lr=0.01)
    views = {id(v) for b in ddp._buckets for v in b.views}
    for step in range(3):
        for net, o in ((ref, opt_ref), (ddp, opt)):
            o.zero_grad()
            _lm_loss(net, step).backward()
            o.step()
        assert ddp.copied_grads == 0
        assert all(id(p.grad) in views for p in model.parameters())
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    # kept gradients (zero_grad(set_to_none=False)): backward adds, DDP copies; same values
    opt.zero_grad(set_to_none=False)
    opt_ref.zero_grad(set_to_none=False)
    _lm_loss(ddp, 9).backward()
    _lm_loss(ref, 9).backward()
    assert ddp.copied_grads == len(list(model.parameters()))
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)
