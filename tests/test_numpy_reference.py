"""Tests of benchmarks/numpy_reference.py, the hand-written NumPy BPTT used as an oracle.

* finite differences (float64, random upstream gradients on ys, h_n and c_n) of every gradient
  the reference returns, with and without lengths, biases and initial states;
* the reference agrees with minigrad's sequence twins (minigrad/_ops_ref.py), forward and
  backward, with the same weights: two independently written implementations;
* train_step's SGD update is -lr times the finite-difference gradient of its loss.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import numpy_reference as nr
from minigrad import _ops_ref as ref
from minigrad import numerical_grad

CELLS = ["rnn", "rnn_relu", "lstm", "gru"]
EPS = 1e-6


class Case:
    """Drawn sizes and values: x, h0 (c0) and params of one cell, plus upstream gradients."""

    def __init__(self, cell, T, B, I, H, dtype, bias, lengths, initial_state, seed):
        self.cell, self.T, self.B, self.I, self.H = cell, T, B, I, H
        self.base = cell.split("_")[0]
        self.nonlinearity = "relu" if cell == "rnn_relu" else "tanh"
        self.dtype, self.lengths = dtype, lengths
        rng = np.random.default_rng(seed)
        self.params = nr.init_params(self.base, I, H, bias=bias, dtype=dtype, seed=seed)
        self.x = rng.standard_normal((T, B, I)).astype(dtype)
        self.h0 = rng.uniform(-1, 1, (B, H)).astype(dtype) if initial_state else None
        self.c0 = (
            rng.standard_normal((B, H)).astype(dtype)
            if initial_state and self.base == "lstm"
            else None
        )
        self.dys = rng.standard_normal((T, B, H)).astype(dtype)
        self.dh_n = rng.standard_normal((B, H)).astype(dtype)
        self.dc_n = rng.standard_normal((B, H)).astype(dtype)

    def inputs(self):
        """The differentiable inputs by gradient name (params share their arrays)."""
        out = {"x": self.x}
        if self.h0 is not None:
            out["h0"] = self.h0
        if self.c0 is not None:
            out["c0"] = self.c0
        out.update(self.params)
        return out

    def forward(self):
        """Reference forward: (ys, h_n, c_n or None, cache)."""
        if self.base == "lstm":
            return nr.lstm_forward(self.x, self.h0, self.c0, self.params, self.lengths)
        if self.base == "gru":
            ys, h_n, cache = nr.gru_forward(self.x, self.h0, self.params, self.lengths)
        else:
            ys, h_n, cache = nr.rnn_forward(
                self.x, self.h0, self.params, self.lengths, self.nonlinearity
            )
        return ys, h_n, None, cache

    def backward(self, cache):
        if self.base == "lstm":
            return nr.lstm_backward(self.dys, self.dh_n, self.dc_n, cache)
        if self.base == "gru":
            return nr.gru_backward(self.dys, self.dh_n, cache)
        return nr.rnn_backward(self.dys, self.dh_n, cache)

    def loss(self):
        """sum(ys * dys) + sum(h_n * dh_n) (+ sum(c_n * dc_n)): its gradient is backward's."""
        ys, h_n, c_n, _ = self.forward()
        total = np.sum(ys * self.dys) + np.sum(h_n * self.dh_n)
        if c_n is not None:
            total += np.sum(c_n * self.dc_n)
        return float(total)

    def __repr__(self):
        return (
            f"Case({self.cell}, T={self.T}, B={self.B}, I={self.I}, H={self.H}, "
            f"{np.dtype(self.dtype).name}, bias={'bias_ih_l0' in self.params}, "
            f"h0={self.h0 is not None}, lengths="
            f"{None if self.lengths is None else self.lengths.tolist()})"
        )


@st.composite
def cases(draw, cell, max_size=5, max_T=5, dtypes=(np.float64,)):
    T = draw(st.integers(1, max_T))
    B, I, H = (draw(st.integers(1, max_size)) for _ in range(3))
    lengths = None
    if draw(st.booleans()):
        lengths = np.array(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    return Case(
        cell,
        T,
        B,
        I,
        H,
        draw(st.sampled_from(dtypes)),
        draw(st.booleans()),
        lengths,
        draw(st.booleans()),
        draw(st.integers(0, 2**32 - 1)),
    )


# ---------------------------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_reference_backward_matches_finite_differences(cell, data):
    case = data.draw(cases(cell), label="case")
    grads = case.backward(case.forward()[-1])
    expected = set(case.inputs()) | {"h0"} | ({"c0"} if case.base == "lstm" else set())
    assert set(grads) == expected, (
        f"gradient names: expected {sorted(expected)}, got {sorted(grads)}"
    )
    for name, a in case.inputs().items():
        np.testing.assert_allclose(
            grads[name],
            numerical_grad(case.loss, a, EPS),
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"d{name}: reference backward vs finite differences ({case})",
        )


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padded_steps_output_zero_and_keep_the_state(cell):
    """lengths: ys is 0 after each sequence's end and h_n is the state at its last real step,
    which is what running that sequence alone, unpadded, gives."""
    case = Case(cell, 5, 3, 2, 4, np.float64, True, np.array([5, 2, 3]), True, seed=5)
    ys, h_n, c_n, _ = case.forward()
    for b, n in enumerate(case.lengths):
        np.testing.assert_array_equal(ys[n:, b], 0, err_msg=f"ys[{n}:, {b}]: padded output")
        alone = Case(cell, n, 1, 2, 4, np.float64, True, None, True, seed=5)
        alone.params = case.params
        alone.x = case.x[:n, b : b + 1].copy()
        alone.h0 = case.h0[b : b + 1]
        alone.c0 = None if case.c0 is None else case.c0[b : b + 1]
        ys1, h1, c1, _ = alone.forward()
        same = [(f"ys[:{n}, {b}]", ys[:n, b], ys1[:, 0]), (f"h_n[{b}]", h_n[b], h1[0])]
        if c_n is not None:
            same.append((f"c_n[{b}]", c_n[b], c1[0]))
        for what, batched, one in same:
            np.testing.assert_allclose(
                batched,
                one,
                rtol=1e-14,
                atol=1e-14,
                err_msg=f"{what}: padded batch vs sequence alone",
            )


# ---------------------------------------------------------------------------------------------
# Agreement with the kernel twins (minigrad/_ops_ref.py)
# ---------------------------------------------------------------------------------------------


def twin_run(case):
    """The same problem through minigrad's sequence twins: outputs and gradients by name."""
    p = case.params
    H, dtype = case.H, case.dtype
    h0 = np.zeros((case.B, H), dtype) if case.h0 is None else case.h0
    c0 = np.zeros((case.B, H), dtype) if case.c0 is None else case.c0
    w_ih, w_hh = p["weight_ih_l0"], p["weight_hh_l0"]
    b_ih, b_hh = p.get("bias_ih_l0"), p.get("bias_hh_l0")
    has_bias = b_ih is not None
    if case.base == "lstm":
        ys, h_n, c_n, cache = ref.lstm_sequence_forward(
            case.x, h0, c0, w_ih, w_hh, b_ih, b_hh, case.lengths
        )
        g = ref.lstm_sequence_backward(
            case.dys,
            case.dh_n,
            case.dc_n,
            case.x,
            h0,
            c0,
            w_ih,
            w_hh,
            cache,
            case.lengths,
            has_bias,
        )
        names = ["x", "h0", "c0"]
    elif case.base == "gru":
        ys, h_n, cache = ref.gru_sequence_forward(case.x, h0, w_ih, w_hh, b_ih, b_hh, case.lengths)
        c_n = None
        g = ref.gru_sequence_backward(
            case.dys, case.dh_n, case.x, h0, w_ih, w_hh, cache, case.lengths, has_bias
        )
        names = ["x", "h0"]
    else:
        ys, h_n, cache = ref.rnn_sequence_forward(
            case.x, h0, w_ih, w_hh, b_ih, b_hh, case.lengths, case.nonlinearity
        )
        c_n = None
        g = ref.rnn_sequence_backward(
            case.dys,
            case.dh_n,
            case.x,
            h0,
            w_ih,
            w_hh,
            cache,
            case.lengths,
            has_bias,
            case.nonlinearity,
        )
        names = ["x", "h0"]
    names += ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    grads = {n: a for n, a in zip(names, g) if a is not None}
    return ys, h_n, c_n, grads


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_reference_agrees_with_kernel_twins(cell, data):
    case = data.draw(
        cases(cell, max_size=9, max_T=8, dtypes=(np.float32, np.float64)), label="case"
    )
    tol = dict(rtol=2e-5, atol=2e-6) if case.dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    ys, h_n, c_n, cache = case.forward()
    grads = case.backward(cache)
    t_ys, t_h_n, t_c_n, t_grads = twin_run(case)
    np.testing.assert_allclose(ys, t_ys, **tol, err_msg=f"ys: reference vs twin ({case})")
    np.testing.assert_allclose(h_n, t_h_n, **tol, err_msg=f"h_n: reference vs twin ({case})")
    if case.base == "lstm":
        np.testing.assert_allclose(c_n, t_c_n, **tol, err_msg=f"c_n: reference vs twin ({case})")
    for name, a in grads.items():
        assert a.dtype == case.dtype, f"d{name}: dtype {a.dtype}, expected {case.dtype}"
    for name, a in t_grads.items():
        np.testing.assert_allclose(
            grads[name], a, **tol, err_msg=f"d{name}: reference vs twin ({case})"
        )


# ---------------------------------------------------------------------------------------------
# train_step
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_train_step_is_sgd_on_the_documented_loss(cell, with_lengths):
    """params_after = params_before - lr * dL/dparams, with L = mean((h_n W^T + b - target)^2)
    differentiated numerically; the returned loss is L before the update."""
    T, B, I, H, O, lr = 4, 3, 2, 3, 2, 0.1
    rng = np.random.default_rng(9)
    params = nr.init_params(cell, I, H, output_size=O, dtype=np.float64, seed=9)
    x = rng.standard_normal((T, B, I))
    target = rng.standard_normal((B, O))
    lengths = np.array([4, 1, 3]) if with_lengths else None

    def loss():
        if cell == "lstm":
            _, h_n, _, _ = nr.lstm_forward(x, None, None, params, lengths)
        elif cell == "gru":
            _, h_n, _ = nr.gru_forward(x, None, params, lengths)
        else:
            _, h_n, _ = nr.rnn_forward(x, None, params, lengths)
        return float(np.mean((h_n @ params["fc.weight"].T + params["fc.bias"] - target) ** 2))

    expected_loss = loss()
    numeric = {name: numerical_grad(loss, p, EPS) for name, p in params.items()}
    before = {name: p.copy() for name, p in params.items()}
    got_loss = nr.train_step(cell, params, x, target, lr, lengths)
    np.testing.assert_allclose(got_loss, expected_loss, rtol=1e-12, err_msg="loss")
    for name, p in params.items():
        np.testing.assert_allclose(
            (before[name] - p) / lr,
            numeric[name],
            rtol=1e-5,
            atol=1e-7,
            err_msg=f"{name}: SGD step vs -lr * numerical gradient",
        )
