"""The kernels' GEMM (`_gemm._gemm`, a private hook onto the `gemm` every kernel calls) against
NumPy, on both of its paths: the small-matrix AVX2 kernel and BLAS. Sizes are drawn around the
kernel's block edges (6- and 4-row blocks, 16- and 8-column panels for float32, 8 and 4 for
float64, 8-deep transposes) and with leading dimensions wider than the rows, as the gate
buffers have."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from load_script import load_script

from minigrad import _gemm, _ops

dims = st.integers(1, 41)


def _strided(rng, rows, cols, pad, dtype):
    """A (rows, cols) view with row stride cols + pad; the padding holds NaN, so a read past a
    row's end poisons the result."""
    buf = np.full((rows, cols + pad), np.nan, dtype)
    buf[:, :cols] = rng.standard_normal((rows, cols))
    return buf[:, :cols]


# cheap examples, many edges: at least 200 per path; the fixture only picks the path, so it may
# stay the same across a test's examples
@settings(
    max_examples=max(200, settings.default.max_examples),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    m=dims,
    n=dims,
    k=dims,
    ta=st.booleans(),
    tb=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    pads=st.tuples(*[st.integers(0, 5)] * 3),
    beta=st.sampled_from([0.0, 1.0, -0.5]),
    alpha=st.sampled_from([1.0, 2.0]),
    seed=st.integers(0, 2**16),
    packed=st.booleans(),
)
def test_gemm_matches_numpy(gemm_path, m, n, k, ta, tb, dtype, pads, beta, alpha, seed, packed):
    """packed: op(b) packed once, as the sequence kernels do for their per-step GEMMs (on the BLAS
    path nothing is packed and gemm runs)."""
    rng = np.random.default_rng(seed)
    a = _strided(rng, *((k, m) if ta else (m, k)), pads[0], dtype)
    b = _strided(rng, *((n, k) if tb else (k, n)), pads[1], dtype)
    c = _strided(rng, m, n, pads[2], dtype)
    if beta == 0.0:
        c[...] = np.nan  # beta = 0 must overwrite C, never read it
    c0 = np.array(c, np.float64)
    opa = np.asarray(a, np.float64).T if ta else np.asarray(a, np.float64)
    opb = np.asarray(b, np.float64).T if tb else np.asarray(b, np.float64)
    want = alpha * opa @ opb + (beta * c0 if beta else 0.0)
    out = _gemm._gemm(ta, tb, a, b, c, alpha, beta, packed)
    assert out is c
    tol = (
        dict(rtol=1e-5, atol=1e-5 * k) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12 * k)
    )
    np.testing.assert_allclose(
        c, want, **tol, err_msg=f"{gemm_path} m={m} n={n} k={k} ta={ta} tb={tb}"
    )
    base = c.base
    assert np.isnan(base[:, n:]).all(), "wrote outside C's rows"


def test_gemm_sums_in_order_like_a_dot_product(gemm_path):
    """A sum of exactly representable products whose partial sums are exact in every order the
    kernels use (one FMA chain per C element in the blocks; lanes summed pairwise for a narrow
    last panel, as here with n = 1): the result is exact on both paths."""
    a = np.array([[2.0**20, 1.0, -(2.0**20)]], np.float32)
    b = np.ones((3, 1), np.float32)
    c = np.zeros((1, 1), np.float32)
    _gemm._gemm(False, False, a, b, c)
    assert c[0, 0] in (0.0, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "ta,tb,m,n,k",
    [
        (True, False, 50, 50, 640),  # the weight gradients at H = 50: 2 columns left of 3 panels
        (False, True, 32, 50, 50),  # a step's h @ W_hh.T
        (False, False, 32, 50, 200),  # a step's dG @ W_hh (LSTM)
        (True, False, 41, 3, 13),  # two row chunks, the second partial; k % 8 != 0
        (True, False, 5, 2, 9),  # fewer rows than a vector (row stride < 8)
        (False, True, 7, 4, 1100),  # k beyond the stack copy of the columns: blocks instead
        (False, False, 3, 1, 3),
    ],
)
@pytest.mark.parametrize("beta", [0.0, 0.5])
@pytest.mark.parametrize("packed", [False, True])
def test_gemm_narrow_last_panel(gemm_path, dtype, ta, tb, m, n, k, beta, packed):
    """n % 16 in 1..4 (float32; n % 8 in 1..2 for float64): the last columns take mg_tail, which
    reads whole vectors of a transposed A past its last row (the next row of storage) on every
    step but the last; NaN after each row makes any such read that reached C visible."""
    rng = np.random.default_rng(m * n * k)
    a = _strided(rng, *((k, m) if ta else (m, k)), 3, dtype)
    b = _strided(rng, *((n, k) if tb else (k, n)), 1, dtype)
    c = _strided(rng, m, n, 2, dtype)
    if beta == 0.0:
        c[...] = np.nan
    c0 = np.array(c, np.float64)
    opa = np.asarray(a, np.float64).T if ta else np.asarray(a, np.float64)
    opb = np.asarray(b, np.float64).T if tb else np.asarray(b, np.float64)
    want = opa @ opb + (beta * c0 if beta else 0.0)
    _gemm._gemm(ta, tb, a, b, c, 1.0, beta, packed)
    tol = (
        dict(rtol=1e-5, atol=1e-5 * k) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12 * k)
    )
    np.testing.assert_allclose(c, want, **tol)
    assert np.isnan(c.base[:, n:]).all(), "wrote outside C's rows"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m,n,k",
    [
        (50, 50, 640),  # the RNN's weight gradients at 32x20x50x50: five whole chunks
        (13, 37, 129),  # one step past a chunk
        (7, 16, 300),  # a partial last chunk; one full panel, no narrow tail
        (61, 301, 1100),  # panels beyond 256 KiB: rows in chunks inside each k chunk
    ],
)
@pytest.mark.parametrize("beta", [0.0, -0.5])
@pytest.mark.parametrize("packed", [False, True])
def test_gemm_transposed_a_runs_k_in_chunks(gemm_path, dtype, m, n, k, beta, packed):
    """With A transposed and k > 128 the blocks run k in chunks of 128 (MG_TA_KC): the first
    chunk applies beta (beta = 0: C holds NaN and must be overwritten), the later ones add to C;
    alpha = 2 scales every chunk. NaN past each row of A, B and C shows a read or write
    outside them."""
    rng = np.random.default_rng(m + n + k)
    a = _strided(rng, k, m, 3, dtype)
    b = _strided(rng, k, n, 1, dtype)
    c = _strided(rng, m, n, 2, dtype)
    if beta == 0.0:
        c[...] = np.nan
    c0 = np.array(c, np.float64)
    want = 2.0 * np.asarray(a, np.float64).T @ np.asarray(b, np.float64) + (
        beta * c0 if beta else 0.0
    )
    _gemm._gemm(True, False, a, b, c, 2.0, beta, packed)
    tol = (
        dict(rtol=1e-5, atol=1e-5 * k) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12 * k)
    )
    np.testing.assert_allclose(c, want, **tol)
    assert np.isnan(c.base[:, n:]).all(), "wrote outside C's rows"


@pytest.mark.parametrize(
    "bad, msg",
    [
        (dict(a=np.zeros((3, 4), np.int64)), "float32 or float64"),
        (dict(b=np.zeros((4, 5), np.float64)), "a's dtype"),
        (dict(c=np.zeros((3, 6), np.float32)), "do not chain"),
        (dict(b=np.zeros((5, 4), np.float32).T), "contiguous rows"),
    ],
)
def test_gemm_rejects_bad_arguments(bad, msg):
    args = dict(
        a=np.zeros((3, 4), np.float32),
        b=np.zeros((4, 5), np.float32),
        c=np.zeros((3, 5), np.float32),
    )
    args.update(bad)
    with pytest.raises(ValueError, match=msg):
        _gemm._gemm(False, False, args["a"], args["b"], args["c"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, True), (False, False), (True, False), (True, True)])
@pytest.mark.parametrize("packed", [False, True])
def test_gemm_with_panels_beyond_the_stack_buffer(gemm_path, dtype, ta, tb, packed):
    """Panels above 64 KiB go to the heap (here 19 panels x 300 rows); packed, the rows of op(a)
    run in chunks whose slice fits 128 KiB (here 26 rows of float32, 13 of float64; m = 61)."""
    rng = np.random.default_rng(7)
    m, n, k = 61, 301, 1260
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    _gemm._gemm(ta, tb, a, b, c, packed=packed)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    tol = dict(rtol=1e-4, atol=3e-3) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(c, want, **tol)


@pytest.mark.parametrize("packed", [False, True])
def test_gemm_repeat_runs_the_gemm_that_many_times(gemm_path, packed):
    """repeat (for benchmarks) reruns the same call: with beta = 1 the products accumulate."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((7, 9)), rng.standard_normal((9, 11))
    c = np.ones((7, 11))
    _gemm._gemm(False, False, a, b, c, 1.0, 1.0, packed, 3)
    np.testing.assert_allclose(c, 1 + 3 * (a @ b), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="repeat"):
        _gemm._gemm(False, False, a, b, c, repeat=0)


def test_bench_kernels_cell_gemms_computes_the_cell_products():
    """benchmarks/bench_kernels.py's floor measurement times the six GEMMs of a cell step: check
    they compute them (g accumulates the recurrent product `repeat` times, beta = 1)."""
    bk = load_script("benchmarks/bench_kernels.py")
    v = bk.cell_gemms("lstm", 3, 5, 2)()
    f = {k: a.astype(np.float64) for k, a in v.items()}
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v["g"], f["x"] @ f["w_ih"].T + 2 * f["h"] @ f["w_hh"].T, **tol)
    np.testing.assert_allclose(v["dh"], f["dG"] @ f["w_hh"], **tol)
    np.testing.assert_allclose(v["dx"], f["dG"] @ f["w_ih"], **tol)
    np.testing.assert_allclose(v["dw_ih"], f["dG"].T @ f["x"], **tol)
    np.testing.assert_allclose(v["dw_hh"], f["dG"].T @ f["h"], **tol)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bench_kernels_closures_call_the_kernels_with_the_problem(kind):
    """bench_kernels.py binds the kernels and their arguments before its timed closures: each
    closure returns what the twin computes when called directly on the problem's arrays."""
    from minigrad import _ops_ref as ref

    bk = load_script("benchmarks/bench_kernels.py")
    v = bk.make_inputs(kind, 3, 4, 5)
    w = (v["w_ih"], v["w_hh"], v["b_ih"], v["b_hh"])
    if kind == "rnn":
        _, cache = ref.rnn_cell_forward(v["x1"], v["h"], *w, "tanh")
        cell = ref.rnn_cell_backward(v["dh"], v["x1"], v["h"], *w[:2], cache, True, "tanh")
        _, _, cache = ref.rnn_sequence_forward(v["x"], v["h"], *w, None, "tanh")
        seq = ref.rnn_sequence_backward(
            v["dys"], v["dh"], v["x"], v["h"], *w[:2], cache, None, True, "tanh"
        )
    elif kind == "lstm":
        _, _, cache = ref.lstm_cell_forward(v["x1"], v["h"], v["c"], *w)
        cell = ref.lstm_cell_backward(
            v["dh"], v["dc"], v["x1"], v["h"], v["c"], *w[:2], cache, True
        )
        _, _, _, cache = ref.lstm_sequence_forward(v["x"], v["h"], v["c"], *w, None)
        seq = ref.lstm_sequence_backward(
            v["dys"], v["dh"], v["dc"], v["x"], v["h"], v["c"], *w[:2], cache, None, True
        )
    else:
        _, cache = ref.gru_cell_forward(v["x1"], v["h"], *w)
        cell = ref.gru_cell_backward(v["dh"], v["x1"], v["h"], *w[:2], cache, True)
        _, _, cache = ref.gru_sequence_forward(v["x"], v["h"], *w, None)
        seq = ref.gru_sequence_backward(
            v["dys"], v["dh"], v["x"], v["h"], *w[:2], cache, None, True
        )
    for module in (ref, _ops):
        for got, want in (
            (bk.cell_step(module, kind, v)(), cell),
            (bk.sequence(module, kind, v)(), seq),
        ):
            assert len(got) == len(want)
            for g, e in zip(got, want):
                np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
