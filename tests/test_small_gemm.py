"""The kernels' two GEMM paths: the small-matrix kernel (used below a size limit when the CPU has
AVX2+FMA) and BLAS. Both must agree with the NumPy twins, so each path is forced in turn."""

import numpy as np
import pytest

from minigrad import _gemm, _gemm_ref, _ops, _ops_ref


def _args(kind, T, B, I, H, dtype, rng):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    f = lambda *s: rng.standard_normal(s).astype(dtype) * 0.5  # noqa: E731
    return f(T, B, I), f(B, H), f(B, H), f(G * H, I), f(G * H, H), f(G * H), f(G * H)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("size", [(3, 1, 1, 1), (4, 5, 19, 23), (3, 33, 40, 17), (2, 7, 64, 70)])
def test_sequence_kernels_match_twin_on_both_gemm_paths(gemm_path, dtype, kind, size):
    T, B, I, H = size
    rng = np.random.default_rng(sum(size))
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _args(kind, T, B, I, H, dtype, rng)
    lengths = rng.integers(1, T + 1, size=B)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    outs = []
    for m in (_ops, _ops_ref):
        if kind == "lstm":
            ys, hn, cn, cache = m.lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
            dys = np.ones_like(ys)
            grads = m.lstm_sequence_backward(
                dys, hn, cn, x, h0, c0, w_ih, w_hh, cache, lengths, True
            )
            outs.append((ys, hn, cn) + tuple(grads))
        elif kind == "gru":
            ys, hn, cache = m.gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
            grads = m.gru_sequence_backward(
                np.ones_like(ys), hn, x, h0, w_ih, w_hh, cache, lengths, True
            )
            outs.append((ys, hn) + tuple(grads))
        else:
            ys, hn, cache = m.rnn_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, "tanh")
            grads = m.rnn_sequence_backward(
                np.ones_like(ys), hn, x, h0, w_ih, w_hh, cache, lengths, True, "tanh"
            )
            outs.append((ys, hn) + tuple(grads))
    for k, (a, b) in enumerate(zip(*outs)):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"{kind} {size} {gemm_path}: output {k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_matches_twin_on_both_gemm_paths(gemm_path, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 29)).astype(dtype)
    w = rng.standard_normal((41, 29)).astype(dtype)
    b = rng.standard_normal(41).astype(dtype)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        _gemm.linear_forward(x, w, b),
        _gemm_ref.linear_forward(x, w, b),
        **tol,
        err_msg=f"linear_forward {gemm_path}",
    )
    dy = rng.standard_normal((37, 41)).astype(dtype)
    got, want = _gemm.linear_backward(dy, x, w, True), _gemm_ref.linear_backward(dy, x, w, True)
    for k, (a, c) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, c, **tol, err_msg=f"linear_backward {gemm_path}: output {k}")
