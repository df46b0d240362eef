"""Cells on a precomputed input projection: the cell kernels with w_ih None (x is then
x_in @ W_ih^T + b_ih, (B, G*H)), and the tape's step ops F.*_cell_step built on them, which the
unrolled modules (impl="step") run after one hoisted linear node (docs/kernels.md)."""

import re

import numpy as np
import pytest
from factories import assert_outputs_close
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import _ops, _ops_ref
from minigrad import functional as F
from minigrad.gradcheck import gradcheck

MODULES = {"cython": _ops, "twin": _ops_ref}
G = {"rnn": 1, "lstm": 4, "gru": 3}


def _draw(kind, dtype, B, I, H, seed, bias=True):
    rng = np.random.default_rng(seed)
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    GH = G[kind] * H
    return dict(
        x=f(B, I),
        h=f(B, H),
        c=f(B, H),
        w_ih=f(GH, I),
        w_hh=f(GH, H),
        b_ih=f(GH) if bias else None,
        b_hh=f(GH) if bias else None,
        dh1=f(B, H),
        dc1=f(B, H),
    )


def _fwd(m, kind, p, x, w_ih, b_ih):
    if kind == "lstm":
        return m.lstm_cell_forward(x, p["h"], p["c"], w_ih, p["w_hh"], b_ih, p["b_hh"])
    if kind == "gru":
        return m.gru_cell_forward(x, p["h"], w_ih, p["w_hh"], b_ih, p["b_hh"])
    return m.rnn_cell_forward(x, p["h"], w_ih, p["w_hh"], b_ih, p["b_hh"], "tanh")


def _bwd(m, kind, p, x, w_ih, cache, has_bias):
    if kind == "lstm":
        return m.lstm_cell_backward(
            p["dh1"], p["dc1"], x, p["h"], p["c"], w_ih, p["w_hh"], cache, has_bias
        )
    if kind == "gru":
        return m.gru_cell_backward(p["dh1"], x, p["h"], w_ih, p["w_hh"], cache, has_bias)
    return m.rnn_cell_backward(p["dh1"], x, p["h"], w_ih, p["w_hh"], cache, has_bias, "tanh")


@settings(max_examples=60)
@given(
    kind=st.sampled_from(["rnn", "lstm", "gru"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    B=st.integers(1, 9),
    I=st.integers(1, 9),
    H=st.integers(1, 19),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cell_on_its_projection_equals_the_cell(kind, dtype, B, I, H, bias, seed):
    """Forward: the same outputs and cache as the cell given x and W_ih. Backward: the same dh
    (dc), dW_hh and db_hh; dxw is the gradient w.r.t. the projection, so dx = dxw W_ih,
    dW_ih = dxw^T x and db_ih = the column sums of dxw; dW_ih and db_ih are None."""
    p = _draw(kind, dtype, B, I, H, seed, bias)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)
    x64 = p["x"].astype(np.float64)
    xw = x64 @ p["w_ih"].astype(np.float64).T
    if bias:
        xw += p["b_ih"]
    xw = xw.astype(dtype)
    results = {}
    for name, m in MODULES.items():
        full_f = _fwd(m, kind, p, p["x"], p["w_ih"], p["b_ih"])
        proj_f = _fwd(m, kind, p, xw, None, None)
        for a, b in zip(full_f, proj_f):
            np.testing.assert_allclose(b, a, **tol, err_msg=f"{name} {kind} forward")
        cache = full_f[-1]
        full_b = _bwd(m, kind, p, p["x"], p["w_ih"], cache, bias)
        proj_b = _bwd(m, kind, p, xw, None, cache, bias)
        n_state = 2 if kind == "lstm" else 1  # dh (, dc)
        dxw = proj_b[0]
        assert dxw.shape == xw.shape and dxw.dtype == dtype
        np.testing.assert_allclose(dxw.astype(np.float64) @ p["w_ih"], full_b[0], **tol)
        for i in range(1, 1 + n_state):
            np.testing.assert_allclose(proj_b[i], full_b[i], **tol, err_msg=f"{name} state {i}")
        dw_ih, dw_hh, db_ih, db_hh = proj_b[1 + n_state :]
        assert dw_ih is None and db_ih is None
        np.testing.assert_allclose(dw_hh, full_b[2 + n_state], **tol)
        np.testing.assert_allclose(dxw.T.astype(np.float64) @ p["x"], full_b[1 + n_state], **tol)
        if bias:
            np.testing.assert_allclose(db_hh, full_b[4 + n_state], **tol)
            np.testing.assert_allclose(dxw.sum(0), full_b[3 + n_state], **tol)
        else:
            assert db_hh is None
        results[name] = (proj_f, proj_b)
    assert_outputs_close(
        results["cython"][0] + results["cython"][1],
        results["twin"][0] + results["twin"][1],
        f"{kind} cython vs twin",
        **tol,
    )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_projection_mode_names_what_it_expected(module, kind):
    m = MODULES[module]
    p = _draw(kind, np.float32, 3, 5, 4, 0)
    with pytest.raises(
        ValueError,
        match=re.escape(f"x must have shape (3, {G[kind] * 4}) when w_ih is None")
        + ".*got \\(3, 5\\)",
    ):
        _fwd(m, kind, p, p["x"], None, None)
    xw = np.zeros((3, G[kind] * 4), np.float32)
    with pytest.raises(ValueError, match="b_ih must be None when w_ih is None"):
        _fwd(m, kind, p, xw, None, p["b_ih"])
    bad = dict(p, b_hh=p["b_hh"][:-1])
    with pytest.raises(ValueError, match="b_hh"):
        _fwd(m, kind, bad, xw, None, None)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequences_still_need_w_ih(kind):
    x = np.zeros((2, 3, 4 * G[kind]), np.float32)
    h = np.zeros((3, 4), np.float32)
    w_hh = np.zeros((4 * G[kind], 4), np.float32)
    with pytest.raises((ValueError, TypeError), match="w_ih"):
        if kind == "lstm":
            _ops.lstm_sequence_forward(x, h, h, None, w_hh, None, None, None)
        elif kind == "gru":
            _ops.gru_sequence_forward(x, h, None, w_hh, None, None, None)
        else:
            _ops.rnn_sequence_forward(x, h, None, w_hh, None, None, None, "tanh")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_step_ops_pass_gradcheck(backend, kind, bias):
    rng = np.random.default_rng(7)
    B, H = 3, 5
    t = lambda *s: mg.tensor(rng.standard_normal(s) * 0.5, requires_grad=True)  # noqa: E731
    xw, h, c, w_hh = t(B, G[kind] * H), t(B, H), t(B, H), t(G[kind] * H, H)
    b_hh = t(G[kind] * H) if bias else None
    if kind == "lstm":
        fn = lambda xw, h, c, w, *b: F.lstm_cell_step(xw, h, c, w, *b)  # noqa: E731
        inputs = [xw, h, c, w_hh] + ([b_hh] if bias else [])
    elif kind == "gru":
        fn = lambda xw, h, w, *b: F.gru_cell_step(xw, h, w, *b)  # noqa: E731
        inputs = [xw, h, w_hh] + ([b_hh] if bias else [])
    else:
        fn = lambda xw, h, w, *b: F.rnn_cell_step(xw, h, w, *b)  # noqa: E731
        inputs = [xw, h, w_hh] + ([b_hh] if bias else [])
    assert gradcheck(fn, inputs)


def test_rnn_cell_step_rejects_an_unknown_nonlinearity():
    z = mg.tensor(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        F.rnn_cell_step(z, z, mg.tensor(np.zeros((2, 2))), nonlinearity="gelu")
