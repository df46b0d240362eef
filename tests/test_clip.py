"""Gradient clipping and detach_state (minigrad.nn.utils)."""

import collections
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn.utils import clip_grad_norm_, clip_grad_value_, detach_state


def with_grads(*grads, dtype=np.float64):
    out = []
    for g in grads:
        g = np.asarray(g, dtype=dtype)
        p = mg.Tensor(np.zeros(g.shape, dtype=dtype), requires_grad=True)
        p.grad = g.copy()
        out.append(p)
    return out


# ----- clip_grad_norm_ --------------------------------------------------------------------------
def test_norm_clipping_by_hand():
    a, b = with_grads([3.0, 4.0], [[12.0]])  # total 2-norm sqrt(9 + 16 + 144) = 13
    total = clip_grad_norm_([a, b], max_norm=1.3)
    assert float(total) == pytest.approx(13.0, rel=1e-15)
    coef = 1.3 / (13.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3.0 * coef, 4.0 * coef], rtol=1e-15)
    np.testing.assert_allclose(b.grad, [[12.0 * coef]], rtol=1e-15)
    new_total = math.sqrt(np.sum(a.grad**2) + np.sum(b.grad**2))
    assert new_total == pytest.approx(1.3, rel=1e-6)


def test_no_clipping_below_max_norm():
    a, b = with_grads([3.0, 4.0], [0.5])
    ga, gb = a.grad.copy(), b.grad.copy()
    total = clip_grad_norm_([a, b], max_norm=100.0)
    assert float(total) == pytest.approx(math.sqrt(25.25), rel=1e-15)
    np.testing.assert_array_equal(a.grad, ga)
    np.testing.assert_array_equal(b.grad, gb)


@pytest.mark.parametrize("norm_type", [1.0, 3.0, 0.5, math.inf, "inf"])
def test_other_norm_types_by_hand(norm_type):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    params = with_grads(*grads)
    flat = np.abs(np.concatenate([g.ravel() for g in grads]))
    p = float(norm_type)
    expected = flat.max() if p == math.inf else np.sum(flat**p) ** (1 / p)
    total = clip_grad_norm_(params, max_norm=0.1, norm_type=norm_type)
    assert float(total) == pytest.approx(expected, rel=1e-12)
    coef = 0.1 / (expected + 1e-6)
    for prm, g in zip(params, grads):
        np.testing.assert_allclose(prm.grad, g * coef, rtol=1e-12)


def test_inf_norm_is_max_abs():
    a, b = with_grads([1.0, -7.0], [[2.0, 3.0]])
    total = clip_grad_norm_([a, b], max_norm=3.5, norm_type=float("inf"))
    assert float(total) == 7.0
    np.testing.assert_allclose(a.grad, [0.5, -3.5], rtol=1e-6)


def test_single_tensor_generator_and_missing_grads():
    (a,) = with_grads([6.0, 8.0])
    total = clip_grad_norm_(a, max_norm=5.0)
    assert float(total) == pytest.approx(10.0)
    np.testing.assert_allclose(a.grad, [3.0, 4.0], rtol=1e-6)

    b, c = with_grads([0.0, 2.0], [1.0])
    c.grad = None
    total = clip_grad_norm_((p for p in [b, c]), max_norm=1.0)
    assert float(total) == pytest.approx(2.0)
    assert c.grad is None
    np.testing.assert_allclose(b.grad, [0.0, 1.0], rtol=1e-6)

    assert float(clip_grad_norm_([mg.Tensor(np.zeros(2), requires_grad=True)], 1.0)) == 0.0


def test_returned_norm_dtype_and_float32_grads():
    a, b = with_grads([3.0, 4.0], [12.0], dtype=np.float32)
    total = clip_grad_norm_([a, b], max_norm=1.0)
    assert total.dtype == np.float32 and total.item() == pytest.approx(13.0, rel=1e-6)
    assert a.grad.dtype == np.float32
    np.testing.assert_allclose(a.grad, [3 / 13, 4 / 13], rtol=1e-5)


def test_nonfinite_total():
    a, b = with_grads([1.0, np.nan], [2.0])
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm_([a, b], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(b.grad, [2.0])  # untouched when it raises
    total = clip_grad_norm_([a, b], 1.0)  # as torch: a nan norm spreads to every gradient
    assert np.isnan(float(total)) and np.all(np.isnan(b.grad))

    (c,) = with_grads([1.0, np.inf])
    with pytest.raises(RuntimeError, match="inf"):
        clip_grad_norm_(c, 1.0, error_if_nonfinite=True)
    (d,) = with_grads([1.0, np.inf])
    with pytest.raises(RuntimeError, match="inf"):
        clip_grad_norm_(d, 1.0, norm_type="inf", error_if_nonfinite=True)


def test_clip_norm_bad_input():
    (a,) = with_grads([1.0])
    with pytest.raises(ValueError, match="max_norm must be >= 0, got -1.0"):
        clip_grad_norm_(a, -1.0)
    with pytest.raises(TypeError, match="max_norm must be a real number"):
        clip_grad_norm_(a, "1")
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(a, 1.0, norm_type="fro")
    with pytest.raises(TypeError, match="item 1 is a ndarray"):
        clip_grad_norm_([a, np.ones(2)], 1.0)
    with pytest.raises(TypeError, match="iterable of Tensors, got int"):
        clip_grad_norm_(3, 1.0)


# ----- clip_grad_value_ -------------------------------------------------------------------------
def test_value_clipping():
    a, b = with_grads([-3.0, 0.5, 2.0], [[0.1, -0.2]])
    ga = a.grad
    c = mg.Tensor(np.ones(2), requires_grad=True)
    clip_grad_value_([a, b, c], 1.0)
    assert a.grad is ga  # in place
    np.testing.assert_array_equal(a.grad, [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(b.grad, [[0.1, -0.2]])
    assert c.grad is None
    clip_grad_value_(b, 0.15)
    np.testing.assert_array_equal(b.grad, [[0.1, -0.15]])
    with pytest.raises(ValueError, match="clip_value must be >= 0, got -1.0"):
        clip_grad_value_(a, -1)


# ----- torch oracle -----------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) for s in [(6, 5), (5,), (1,)]]
    params = with_grads(*grads)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert float(total) == pytest.approx(ttotal.item(), rel=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-13)


def test_clip_value_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    g = rng.standard_normal((7, 3)) * 2
    (p,) = with_grads(g)
    clip_grad_value_(p, 0.7)
    tp = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
    tp.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([tp], 0.7)
    np.testing.assert_array_equal(p.grad, tp.grad.numpy())


# ----- detach_state ------------------------------------------------------------------------------
State = collections.namedtuple("State", "h c")


def test_detach_state_structure():
    w = mg.Tensor(np.ones(3), requires_grad=True)
    h, c = w * 2, w * 3
    assert detach_state(None) is None
    for state in [h, (h, c), [h, None], [(h, c), (c, h)], State(h, c), {"h": h, "c": [c]}]:
        out = detach_state(state)
        assert type(out) is type(state)
        leaves_in, leaves_out = [], []

        def walk(s, acc):
            if isinstance(s, dict):
                for v in s.values():
                    walk(v, acc)
            elif isinstance(s, (tuple, list)):
                for v in s:
                    walk(v, acc)
            else:
                acc.append(s)

        walk(state, leaves_in)
        walk(out, leaves_out)
        assert len(leaves_in) == len(leaves_out)
        for a, b in zip(leaves_in, leaves_out):
            if a is None:
                assert b is None
                continue
            assert b is not a and not b.requires_grad and b.is_leaf
            assert np.shares_memory(a.data, b.data)
        if isinstance(state, State):
            assert out.h is leaves_out[0]
    assert h.requires_grad and not h.is_leaf  # inputs untouched


def test_detach_state_cuts_the_gradient_path():
    w = mg.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = w * 3.0
    (hd,) = detach_state((h,))
    (hd * w).sum().backward()
    # through the detached state only the direct use of w counts: d/dw (hd * w) = hd
    np.testing.assert_array_equal(w.grad, [3.0, 6.0])


def test_detach_state_bad_type():
    with pytest.raises(TypeError, match="got ndarray"):
        detach_state(np.ones(2))


def test_clip_grad_norm_returns_a_0d_tensor_like_torch():
    a, b = with_grads([3.0, 4.0], [[12.0]])
    total = clip_grad_norm_([a, b], max_norm=1.0)
    assert isinstance(total, mg.Tensor) and total.shape == () and total.dtype == np.float64
    assert not total.requires_grad
    none = clip_grad_norm_([mg.Tensor(np.zeros(2), requires_grad=True)], 1.0)
    assert isinstance(none, mg.Tensor) and none.shape == () and float(none) == 0.0
