"""The embedding-gradient and softmax cross-entropy kernels: compiled (minigrad._embedding,
_cross_entropy) against their NumPy twins and against plain references, and the ops built on
them (F.embedding, F.cross_entropy, F.softmax_cross_entropy) checked against central
differences in float64 on both kernel backends."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import _cross_entropy, _cross_entropy_ref, _embedding, _embedding_ref, kernels
from minigrad.gradcheck import gradcheck

IMPLS = {"cython": (_embedding, _cross_entropy), "twin": (_embedding_ref, _cross_entropy_ref)}
DTYPES = (np.float32, np.float64)
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


BACKENDS = pytest.mark.parametrize("backend", ["cython", "numpy"])


@contextlib.contextmanager
def on(backend):
    """minigrad.kernels bound to `backend` inside the block, restored after it."""
    before = kernels.backend()
    kernels.set_backend(backend)
    try:
        yield
    finally:
        kernels.set_backend(before)


# ------------------------------------------------------------------------------ embedding
def scatter_reference(dy, idx, rows, pad):
    """The gradient written as the definition: a float64 sum per row, loop by loop."""
    dw = np.zeros((rows, dy.shape[1]))
    for i, k in enumerate(idx):
        dw[k] += dy[i]
    if pad is not None:
        dw[pad] = 0
    return dw


@given(
    n=st.integers(0, 40),
    d=st.integers(1, 6),
    rows=st.integers(1, 9),
    dtype=st.sampled_from(DTYPES),
    data=st.data(),
)
def test_embedding_backward_compiled_equals_twin_and_the_definition(n, d, rows, dtype, data):
    rng = np.random.default_rng(n * 100 + d * 10 + rows)
    idx = rng.integers(0, rows, n).astype(np.int64)
    dy = rng.standard_normal((n, d)).astype(dtype)
    pad = data.draw(st.one_of(st.none(), st.integers(0, rows - 1)))
    want = scatter_reference(dy, idx, rows, pad)
    got = {k: m.embedding_backward(dy, idx, rows, pad) for k, (m, _) in IMPLS.items()}
    for k, dw in got.items():
        assert dw.dtype == dtype and dw.shape == (rows, d), k
        np.testing.assert_allclose(dw, want, **TOL[dtype], err_msg=k)
    np.testing.assert_allclose(got["cython"], got["twin"], **TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m, dy, i: m.embedding_backward(dy, np.array([0, 5], np.int64), 5),
            IndexError,
            r"idx\[1\] = 5 is out of range \[0, 5\)",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy, np.array([-1, 0], np.int64), 5),
            IndexError,
            r"idx\[0\] = -1 is out of range \[0, 5\)",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy, i.astype(np.int32), 5),
            ValueError,
            "idx must have dtype int64, got int32",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy, i[:1], 5),
            ValueError,
            r"idx must have shape \(2,\)",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy.astype(np.int64), i, 5),
            ValueError,
            "dy must have dtype float32 or float64, got int64",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy[:, ::2], i, 5),
            ValueError,
            "dy must be C-contiguous",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy, i, 0),
            ValueError,
            "num_embeddings must be an int >= 1, got 0",
        ),
        (
            lambda m, dy, i: m.embedding_backward(dy, i, 5, 5),
            ValueError,
            r"padding_idx must be None or an int in \[0, 5\), got 5",
        ),
    ],
)
def test_embedding_backward_refuses_bad_arguments_alike(impl, call, error, message):
    dy = np.ones((2, 4), np.float32)
    with pytest.raises(error, match=message):
        call(IMPLS[impl][0], dy, np.array([0, 1], np.int64))


@BACKENDS
@given(v=st.integers(1, 5), d=st.integers(1, 3), shape=st.sampled_from([(3,), (2, 3), (1, 2, 2)]))
def test_embedding_gradient_matches_central_differences(backend, v, d, shape):
    rng = np.random.default_rng(v * 10 + d)
    w = mg.tensor(rng.standard_normal((v, d)), requires_grad=True)
    idx = rng.integers(0, v, shape)
    with on(backend):
        assert gradcheck(lambda w: F.embedding(idx, w), [w])


# ------------------------------------------------------------------------- cross-entropy
def ce_reference(x, t, ignore):
    """loss per row and softmax in float64, from log-sum-exp written out."""
    x = x.astype(np.float64)
    z = x - x.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = np.array([0.0 if ti == ignore else -np.log(p[i, ti]) for i, ti in enumerate(t)])
    return loss, p


@given(
    n=st.integers(1, 30),
    c=st.integers(1, 40),  # the compiled rows keep 8 partial maxima and sums: 0 to 5 blocks
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([0.1, 3.0, 40.0]),
)
def test_softmax_ce_kernels_compiled_equal_twin_and_the_definition(n, c, dtype, scale):
    rng = np.random.default_rng(n * 100 + c)
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    t = rng.integers(0, c, n).astype(np.int64)
    t[rng.random(n) < 0.2] = -100  # ignored rows
    dy = rng.standard_normal(n).astype(dtype)
    want_loss, want_p = ce_reference(x, t, -100)
    onehot = np.zeros((n, c))
    keep = t != -100
    onehot[np.flatnonzero(keep), t[keep]] = 1
    want_dx = (want_p - onehot) * np.where(keep, dy, 0)[:, None]
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    out = {}
    for k, (_, m) in IMPLS.items():
        loss, p = m.softmax_cross_entropy_forward(x, t, -100)
        dx = m.softmax_cross_entropy_backward(p, t, -100, dy)
        assert loss.dtype == p.dtype == dx.dtype == dtype, k
        np.testing.assert_allclose(loss, want_loss, **tol, err_msg=f"{k} loss")
        np.testing.assert_allclose(p, want_p, **tol, err_msg=f"{k} probs")
        np.testing.assert_allclose(dx, want_dx, **tol, err_msg=f"{k} dlogits")
        out[k] = (loss, p, dx)
    for a, b in zip(out["cython"], out["twin"]):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_ce_kernels_refuse_bad_arguments_alike(impl):
    m = IMPLS[impl][1]
    x = np.zeros((3, 4), np.float32)
    t = np.array([0, 3, -100], np.int64)
    with pytest.raises(IndexError, match=r"target\[1\] = 4 is out of range \[0, 4\)"):
        m.softmax_cross_entropy_forward(x, np.array([0, 4, 1], np.int64), -100)
    with pytest.raises(ValueError, match="target must have dtype int64, got int32"):
        m.softmax_cross_entropy_forward(x, t.astype(np.int32), -100)
    with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
        m.softmax_cross_entropy_forward(x, t[:2], -100)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        m.softmax_cross_entropy_forward(x.ravel(), t, -100)
    with pytest.raises(ValueError, match="logits must be C-contiguous"):
        m.softmax_cross_entropy_forward(np.zeros((3, 8), np.float32)[:, ::2], t, -100)
    _, p = m.softmax_cross_entropy_forward(x, t, -100)
    with pytest.raises(ValueError, match="dy must .*float32"):
        m.softmax_cross_entropy_backward(p, t, -100, np.ones(3))
    with pytest.raises(ValueError, match=r"dy must have shape \(3,\)"):
        m.softmax_cross_entropy_backward(p, t, -100, np.ones(2, np.float32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("c", "col"), [(3, 1), (20, 0), (20, 7), (20, 12), (20, 19)])
def test_a_nan_logit_makes_its_row_nan_and_no_other(impl, c, col):
    """Wherever the NaN sits: the first logit, a block of partial maxima, the columns after."""
    m = IMPLS[impl][1]
    x = np.zeros((2, c), np.float32)
    x[0, col] = np.nan
    loss, p = m.softmax_cross_entropy_forward(x, np.array([0, 2], np.int64), -100)
    assert np.isnan(loss[0]) and np.isnan(p[0]).all()
    np.testing.assert_allclose(loss[1], np.log(c), rtol=1e-6)


@BACKENDS
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(n=st.integers(1, 4), c=st.integers(1, 5), t_len=st.integers(1, 3), data=st.data())
def test_cross_entropy_gradients_match_central_differences(backend, reduction, n, c, t_len, data):
    rng = np.random.default_rng(n * 100 + c * 10 + t_len)
    ignore_some = data.draw(st.booleans())
    # classes last (N, T, C) through softmax_cross_entropy; PyTorch's (N, C, T) through
    # cross_entropy
    x = mg.tensor(rng.standard_normal((n, t_len, c)) * 2, requires_grad=True)
    t = rng.integers(0, c, (n, t_len))
    if ignore_some and t.size > 1:  # all ignored: a NaN mean, as PyTorch (tested in test_ops)
        t[0, 0] = -100
    xt = mg.tensor(rng.standard_normal((n, c, t_len)), requires_grad=True)
    with on(backend):
        assert gradcheck(lambda x: F.softmax_cross_entropy(x, t, reduction=reduction), [x])
        assert gradcheck(lambda x: F.cross_entropy(x, t, reduction=reduction), [xt])


@BACKENDS
def test_cross_entropy_value_and_gradient_unchanged_on_both_backends(backend):
    """The loss and dlogits of the (N, T, C) classes-last and (N, C) PyTorch forms against the
    float64 definition, as before the kernels: mean over the targets not ignored."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 7)).astype(np.float32)
    t = rng.integers(0, 7, (4, 5))
    t[1, 2] = -100
    loss, p = ce_reference(x.reshape(-1, 7), t.ravel(), -100)
    keep = t.ravel() != -100
    onehot = np.zeros((20, 7))
    onehot[np.flatnonzero(keep), t.ravel()[keep]] = 1
    want_grad = ((p - onehot) * keep[:, None] / keep.sum()).reshape(4, 5, 7)
    for fn in (
        lambda a: F.softmax_cross_entropy(a, t),
        lambda a: F.cross_entropy(a.reshape(-1, 7), t.reshape(-1)),
    ):
        a = mg.tensor(x, requires_grad=True)
        with on(backend):
            out = fn(a)
            out.backward()
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.item(), loss.sum() / keep.sum(), rtol=1e-5)
        np.testing.assert_allclose(a.grad, want_grad, rtol=1e-4, atol=1e-6)


@BACKENDS
def test_cross_entropy_backward_twice_with_retain_graph_gives_the_same_gradient(backend):
    """The softmax kept from forward is read, not overwritten, by backward."""
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((6, 4)).astype(np.float32), requires_grad=True)
    with on(backend):
        loss = F.cross_entropy(x, rng.integers(0, 4, 6))
        loss.backward(retain_graph=True)
        first = x.grad.copy()
        x.grad = None
        loss.backward()
    np.testing.assert_array_equal(x.grad, first)


@BACKENDS
@pytest.mark.parametrize("reduction, want", [("mean", np.nan), ("sum", 0.0)])
@pytest.mark.parametrize(
    "shape, target",
    [((0, 5), []), ((2, 0), [-100, -100])],  # no rows; no classes, every target ignored
)
def test_cross_entropy_of_no_rows_is_nan_mean_or_zero_sum_with_a_zero_gradient(
    backend, reduction, want, shape, target
):
    x = mg.tensor(np.zeros(shape, np.float32), requires_grad=True)
    with on(backend):
        loss = F.cross_entropy(x, np.array(target, np.int64), reduction=reduction)
        loss.backward()
    np.testing.assert_equal(loss.item(), want)
    assert x.grad.shape == shape


@BACKENDS
@pytest.mark.parametrize("ignore_index", [2, np.int32(2), 2.0, -100, 2**70, 1.5])
def test_ignore_index_of_any_integer_or_float_form_ignores_exactly_its_targets(
    backend, ignore_index
):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3))
    t = np.array([0, 2, 1, 2, 0])
    ignored = t == ignore_index
    loss, _ = ce_reference(x, np.where(ignored, -1, t), -1)
    with on(backend):
        got = F.cross_entropy(mg.tensor(x), t, ignore_index=ignore_index)
    np.testing.assert_allclose(got.item(), loss.sum() / (~ignored).sum(), rtol=1e-12)
