"""kernels.matmul: np.matmul's products on the kernels' own GEMM and threads.

The compiled kernel must give np.matmul's result (shape, dtype, values within float tolerance)
for every operand layout it takes without copying (row-major, transposed views, strided rows,
broadcast batch axes, negative batch strides) and every one it copies; hand everything that is
not a product of two float32 or float64 arrays of one dtype to np.matmul itself (same result, same
error); give the same result on n threads as on one; and be what F.matmul runs, forward and
backward, so that no float product of the tape wakes NumPy's BLAS threads.
"""

import contextlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import _gemm, _gemm_ref, _pool, kernels

KERNELS = [_gemm.matmul, _gemm_ref.matmul]


@contextlib.contextmanager
def every_product_on_the_kernel():
    """Tiny products too on the GEMM kernel (otherwise np.matmul's: _gemm.TINY_PRODUCT)."""
    before = _gemm.TINY_PRODUCT
    _gemm.TINY_PRODUCT = 0
    try:
        yield
    finally:
        _gemm.TINY_PRODUCT = before


TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def layout(rng, x, kind):
    """x's values in another memory layout of the same shape."""
    if kind == "c" or x.ndim < 2:
        return x
    if kind == "t":  # a transposed view: the matrices stored column-major
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2)
    if kind == "pad":  # rows with a leading dimension larger than the row
        big = np.zeros(x.shape[:-1] + (x.shape[-1] + 3,), x.dtype)
        big[..., : x.shape[-1]] = x
        return big[..., : x.shape[-1]]
    if kind == "step":  # every other column: no BLAS layout, copied
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    if kind == "flip" and x.ndim > 2:  # negative batch stride
        return np.flip(np.ascontiguousarray(np.flip(x, 0)), 0)
    return x


@st.composite
def products(draw):
    """Two operands np.matmul accepts: 1-D to 4-D, batch axes that broadcast (1s, equal sizes,
    missing axes, zero-size axes), a dtype, and each operand's layout."""
    m, k, n = (draw(st.integers(0 if i == 1 else 1, 9)) for i in range(3))
    batch = draw(st.lists(st.integers(0, 3), max_size=2))
    nda = draw(st.integers(1, 2 + len(batch)))
    ndb = draw(st.integers(1, 2 + len(batch)))

    def shape(nd, core):
        if nd == 1:
            return (core[0] if core is a_core else core[1],)
        lead = batch[len(batch) - (nd - 2) :] if nd > 2 else []
        lead = [d if draw(st.booleans()) else 1 for d in lead]
        return tuple(lead) + core

    a_core, b_core = (m, k), (k, n)
    sa = (k,) if nda == 1 else shape(nda, a_core)
    sb = (k,) if ndb == 1 else shape(ndb, b_core)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kinds = st.sampled_from(["c", "t", "pad", "step", "flip"])
    return sa, sb, dtype, draw(kinds), draw(kinds), draw(st.integers(0, 2**31))


@given(products())
def test_the_kernel_gives_np_matmul_result_in_every_layout(case):
    sa, sb, dtype, ka, kb, seed = case
    rng = np.random.default_rng(seed)
    a = layout(rng, rng.standard_normal(sa).astype(dtype), ka)
    b = layout(rng, rng.standard_normal(sb).astype(dtype), kb)
    a0, b0 = a.copy(), b.copy()
    want = np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))
    for fn in KERNELS:
        with every_product_on_the_kernel():
            got = fn(a, b)
        assert type(got) is type(want) and np.shape(got) == want.shape
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])
    np.testing.assert_array_equal(a, a0)  # inputs untouched
    np.testing.assert_array_equal(b, b0)


def test_broadcast_and_zero_size_batches():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 1, 3, 4)).astype(np.float32)
    b = np.broadcast_to(rng.standard_normal((4, 5)).astype(np.float32), (5, 4, 5))  # stride 0
    with every_product_on_the_kernel():
        np.testing.assert_allclose(_gemm.matmul(a, b), np.matmul(a, b), **TOL[np.float32])
    for sa, sb in [((0, 3, 4), (4, 5)), ((2, 3, 0), (0, 5)), ((3, 0), (0,)), ((0,), (0,))]:
        a, b = np.ones(sa), np.ones(sb)
        got, want = _gemm.matmul(a, b), np.matmul(a, b)
        assert type(got) is type(want) and np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "a, b",
    [
        (np.arange(6).reshape(2, 3), np.arange(3)),  # integers: no BLAS
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float64)),  # mixed dtypes
        (np.ones((2, 3), np.float16), np.ones((3, 2), np.float16)),
        (np.ones((2, 3), np.complex64), np.ones((3, 2), np.complex64)),
        (np.ones((2, 3), ">f8"), np.ones((3, 2), ">f8")),  # not native byte order
        ([[1.0, 2.0]], [[3.0], [4.0]]),  # not arrays
        (np.ones((2, 3), bool), np.ones((3, 2), bool)),
    ],
)
def test_anything_else_is_np_matmul_own_result(a, b):
    got, want = _gemm.matmul(a, b), np.matmul(a, b)
    assert type(got) is type(want) and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "sa, sb",
    [((2, 3), (4, 5)), ((3,), (4,)), ((2, 2, 3), (3, 3, 4)), ((), (3,)), ((3,), ())],
)
def test_shapes_np_matmul_refuses_raise_its_error(sa, sb):
    a, b = np.ones(sa, np.float32), np.ones(sb, np.float32)
    with pytest.raises(ValueError) as want:
        np.matmul(a, b)
    for fn in KERNELS:
        with pytest.raises(ValueError) as got:
            fn(a, b)
        assert str(got.value) == str(want.value)


def test_transposed_operands_are_read_in_place_not_copied():
    a = np.ones((1500, 1000), np.float32).T  # (1000, 1500), column-major, 6 MB
    b = np.ones((1500, 8), np.float32)
    tracemalloc.start()
    try:
        _gemm.matmul(a, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < a.nbytes // 4, peak  # the (1000, 8) result, no copy of a


@contextlib.contextmanager
def split_everything(gemm):
    """Every product on the kernel, split as far as its rows or columns allow (work threshold
    1), on the GEMM path `gemm` ('small': the C kernel, 'blas'); the settings restored after."""
    before, work = mg.get_num_threads(), _pool._set_min_part_work(1)
    small = _gemm._set_small_gemm(1 << 40 if gemm == "small" else 0)
    try:
        with every_product_on_the_kernel():
            yield
    finally:
        mg.set_num_threads(before)
        _pool._set_min_part_work(work)
        _gemm._set_small_gemm(small)


@pytest.mark.parametrize("gemm", ["small", "blas"])
@pytest.mark.parametrize(
    "sa, sb",
    [((64, 40), (40, 24)), ((7, 9, 33), (33, 5)), ((3, 20, 4), (4,)), ((7, 9, 33), (7, 33, 5))],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_threads_give_the_one_thread_result(gemm, sa, sb, dtype):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    with split_everything(gemm):
        mg.set_num_threads(1)
        one = _gemm.matmul(a, b)
        mg.set_num_threads(3)
        many = _gemm.matmul(a, b)
    if gemm == "small" or len(sb) > 2:  # the C kernel, or each product on one thread: same sums
        np.testing.assert_array_equal(many, one)
    else:  # OpenBLAS may sum a product of fewer rows in another order
        np.testing.assert_allclose(many, one, **TOL[dtype])


@pytest.mark.parametrize("gemm", ["small", "blas"])
@pytest.mark.parametrize(
    "sa, sb, ta, tb",
    [
        ((5, 70), (70, 83), False, False),  # C narrower than wide: split by columns
        ((70, 9), (70, 40), True, False),  # a weight gradient dY^T X: A read transposed
        ((3, 20), (100, 20), False, True),  # B read transposed: its rows are C's columns
        ((31, 17), (17, 32), False, False),  # two column blocks exactly
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_column_split_gives_the_one_thread_result(gemm, sa, sb, ta, tb, dtype):
    """Products with fewer rows than columns (at least two column blocks) are split by columns
    at multiples of 16, each part reading all of op(A): same values as on one thread."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)  # transposed views, read in place
    m, n = a.shape[0], b.shape[1]
    with split_everything(gemm):
        mg.set_num_threads(1)
        one = _gemm.matmul(a, b)
        for threads in (2, 3, 7):
            _pool._set_threads(threads)  # the kernels' pool alone: no NumPy BLAS threads
            how, parts = _gemm._pgemm_split(m, n, a.shape[1])
            assert how == "columns" and parts == min(threads, (n + 15) // 16)
            many = _gemm.matmul(a, b)
            if gemm == "small":
                np.testing.assert_array_equal(many, one)
            else:
                np.testing.assert_allclose(many, one, **TOL[dtype])
    np.testing.assert_allclose(one, a.astype(np.float64) @ b, **TOL[dtype])


def test_narrow_float32_weight_gradients_run_on_the_small_kernel_and_agree_with_blas():
    """dY^T h with a small C (m*n <= 20480 floats, any k) runs on the C kernel, whose time for
    the LM head's 65 x 256 over 2,048 rows is 0.8-0.9 of OpenBLAS's; float64, a wider C and
    products without a transposed A keep their rules."""
    small_kernel = "small" if _gemm._set_small_gemm() != 0 else "blas"  # without AVX2+FMA: BLAS
    kernel = _gemm._gemm_kernel
    assert kernel(True, 65, 256, 2048, 4) == small_kernel
    assert kernel(True, 65, 256, 1 << 16, 4) == small_kernel
    assert kernel(True, 65, 256, 2048, 8) == "blas"  # float64: OpenBLAS was faster
    assert kernel(True, 128, 256, 2048, 4) == "blas"  # a C of 32768 floats
    assert kernel(True, 1024, 256, 2048, 4) == "blas"  # the LSTM's dW_hh
    rng = np.random.default_rng(5)
    dy = rng.standard_normal((2048, 65)).astype(np.float32)
    h = rng.standard_normal((2048, 256)).astype(np.float32)
    small = np.zeros((65, 256), np.float32)
    blas = np.zeros((65, 256), np.float32)
    _gemm._gemm(True, False, dy, h, small)
    old = _gemm._set_small_gemm(0)
    try:
        _gemm._gemm(True, False, dy, h, blas)
    finally:
        _gemm._set_small_gemm(old)
    want = dy.T.astype(np.float64) @ h
    np.testing.assert_allclose(small, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(blas, want, rtol=1e-4, atol=1e-3)


def test_pgemm_splits_rows_unless_c_has_fewer_rows_than_columns():
    before = mg.get_num_threads()
    mg.set_num_threads(2)
    try:
        assert _gemm._pgemm_split(65, 256, 2048) == ("columns", 2)  # the LM head's dW
        assert _gemm._pgemm_split(2048, 65, 256) == ("rows", 2)  # its logits
        assert _gemm._pgemm_split(512, 512, 6400) == ("rows", 2)
        assert _gemm._pgemm_split(8, 20, 1 << 20) == ("rows", 2)  # under two column blocks
        assert _gemm._pgemm_split(8, 8, 8)[1] == 1  # too little work for a second thread
    finally:
        mg.set_num_threads(before)


def test_f_matmul_runs_its_float_products_on_the_kernel(monkeypatch, backend):
    """Forward and backward of F.matmul call kernels.matmul, never np.matmul, for float32
    operands on the compiled backend (on the twins, np.matmul is the kernel)."""
    calls = []
    real = np.matmul

    def spy(*args, **kw):
        calls.append(args[0].shape)
        return real(*args, **kw)

    monkeypatch.setattr(np, "matmul", spy)
    rng = np.random.default_rng(3)
    a = mg.tensor(rng.standard_normal((4, 60, 50)).astype(np.float32), requires_grad=True)
    w = mg.tensor(rng.standard_normal((50, 30)).astype(np.float32), requires_grad=True)
    F.matmul(a, w).sum().backward()  # each product 60 x 50 x 30 multiply-adds: not tiny
    np.testing.assert_allclose(w.grad, a.data.reshape(-1, 50).sum(0)[:, None] * np.ones(30), 1e-4)
    np.testing.assert_allclose(a.grad, np.broadcast_to(w.data.sum(1), (4, 60, 50)), 1e-4)
    assert (calls == []) == (backend == "cython"), calls
    assert kernels.matmul is (_gemm.matmul if backend == "cython" else _gemm_ref.matmul)


def test_tiny_products_go_to_np_matmul_whatever_the_threads(monkeypatch):
    """Products of at most TINY_PRODUCT multiply-adds, too little work together for a second
    thread, are np.matmul's at every thread setting (the choice depends on the shapes alone);
    a bigger product, or enough tiny ones together, are the kernel's."""
    calls = []
    real = np.matmul

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(np, "matmul", spy)
    cases = [
        ((32, 1, 128), (32, 128, 20), True),  # 2,560 multiply-adds each, 81,920 in all
        ((64, 64), (64, 16), True),  # 65,536: the limit
        ((64, 64), (64, 17), False),
        ((1024, 32, 16), (1024, 16, 32), False),  # 16,384 each, 16.8M in all
    ]
    before = mg.get_num_threads()
    try:
        for n in (1, 2):
            mg.set_num_threads(n)
            for sa, sb, tiny in cases:
                a, b = np.ones(sa, np.float32), np.ones(sb, np.float32)
                calls.clear()
                got = _gemm.matmul(a, b)
                assert bool(calls) == tiny, (n, sa, sb)
                np.testing.assert_array_equal(got, real(a, b))
    finally:
        mg.set_num_threads(before)
