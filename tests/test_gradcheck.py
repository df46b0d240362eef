"""minigrad.gradcheck and minigrad.numerical_grad: they accept correct gradients, reject wrong
ones with a useful message, and compute central differences correctly."""

import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import Function, Tensor
from minigrad.functional.arithmetic import Mul
from minigrad.gradcheck import GradcheckError


def leaf(a):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


class WrongSquare(Function):
    """y = x^2 with a wrong backward: 3 x dy instead of 2 x dy."""

    def forward(self, x):
        self.saved = x
        return x * x

    def backward(self, g):
        return (3 * self.saved * g,)


class MeanGradient(Function):
    """y = x * c with a backward that replaces each upstream element by the upstream mean:
    right for the upstream sum(y) (all ones), wrong for any other upstream."""

    def __init__(self, c):
        self.c = c

    def forward(self, x):
        return x * self.c

    def backward(self, g):
        return (np.full_like(g, g.mean()) * self.c,)


class WrongSecondInput(Mul):
    """y = a * b with db off by a factor 2."""

    def backward(self, g):
        da, db = super().backward(g)
        return da, 2 * db


class WrongSecondOutput(Function):
    """(y1, y2) = (2 x, x^2) with the contribution of y2 dropped from the backward."""

    def forward(self, x):
        self.saved = x
        return 2 * x, x * x

    def backward(self, g1, g2):
        return (2 * g1 if g1 is not None else np.zeros_like(self.saved),)


def test_gradcheck_passes_correct_functions():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    assert mg.gradcheck(lambda x: F.tanh(x), [leaf(a)]) is True
    assert mg.gradcheck(lambda x, y: x @ y, [leaf(a), leaf(b)]) is True
    assert mg.gradcheck(lambda x: F.unbind(x, 1), [leaf(a)]) is True, "tuple of outputs"
    assert mg.gradcheck(lambda x: (x * 2, (x.exp(), x.sum())), [leaf(a)]) is True, "nested outputs"
    assert mg.gradcheck(lambda x, y: x @ y, [leaf(a), Tensor(b)]) is True, "a constant input"
    assert mg.gradcheck(lambda x: (x * x).sum(), [leaf(2.0)]) is True, "0-d input"


def _numbers(msg, label):
    m = re.search(label + r" (?:np\.float64\()?(-?[\d.e+-]+)", msg)
    assert m, f"no {label} value in {msg!r}"
    return float(m.group(1))


def test_gradcheck_raises_on_wrong_backward_with_index_and_values():
    x = leaf([0.5, -1.0, 2.0])
    with pytest.raises(GradcheckError) as info:
        mg.gradcheck(lambda t: WrongSquare()(t), [x])
    msg = str(info.value)
    assert "input 0" in msg and "index (" in msg, msg
    analytic, numeric = _numbers(msg, "analytic"), _numbers(msg, "numeric")
    # wherever the worst element is, the analytic value is 3/2 of the numeric one
    np.testing.assert_allclose(
        analytic / numeric, 1.5, rtol=1e-6, err_msg=f"analytic/numeric in the message: {msg}"
    )
    assert re.search(r"index \(\d,\): analytic", msg), f"index as plain ints: {msg}"
    assert isinstance(info.value, AssertionError), "GradcheckError is an AssertionError"


def test_gradcheck_worst_index_is_the_largest_error():
    # error = |x_i w_i|: the worst element has the largest |x_i w_i|; make one x dominate
    x = leaf([0.01, 0.02, 50.0, 0.03])
    with pytest.raises(GradcheckError, match=r"index \(2,\)"):
        mg.gradcheck(lambda t: WrongSquare()(t), [x])


def test_gradcheck_random_upstream_catches_what_sum_would_miss():
    x = leaf(np.arange(6.0).reshape(2, 3))
    # with upstream all ones the wrong backward is right:
    y = MeanGradient(3.0)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 3.0), err_msg="sum(y) hides the bug")
    with pytest.raises(GradcheckError):
        mg.gradcheck(lambda t: MeanGradient(3.0)(t), [leaf(np.arange(6.0).reshape(2, 3))])


def test_gradcheck_names_the_wrong_input_and_the_wrong_output_path():
    a, b = leaf([1.0, 2.0]), leaf([3.0, -4.0])
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2,\)\)"):
        mg.gradcheck(lambda p, q: WrongSecondInput()(p, q), [a, b])
    with pytest.raises(GradcheckError, match=r"input 0"):
        mg.gradcheck(lambda t: WrongSecondOutput()(t), [leaf([0.5, 1.5])])


def test_gradcheck_raise_exception_false_returns_false():
    assert mg.gradcheck(lambda t: WrongSquare()(t), [leaf([1.0])], raise_exception=False) is False


def test_gradcheck_rejects_float32_inputs_and_no_grad_inputs():
    x32 = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"float64.*got float32"):
        mg.gradcheck(lambda t: t * 2, [x32])
    with pytest.raises(ValueError, match=r"no input requires grad"):
        mg.gradcheck(lambda t: t * 2, [Tensor(np.ones(2))])


def test_gradcheck_detects_non_finite_gradient():
    class NaNGrad(Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, g):
            return (g * np.nan,)

    with pytest.raises(GradcheckError):
        mg.gradcheck(lambda t: NaNGrad()(t), [leaf([1.0, 2.0])])


def test_gradcheck_tolerances_are_used():
    # analytic 1.5x the truth: fails at rtol 1e-3, passes when rtol allows 50 %
    x = leaf([0.5, -1.0, 2.0])
    with pytest.raises(GradcheckError, match=r"rtol 0.001"):
        mg.gradcheck(lambda t: WrongSquare()(t), [x])
    assert mg.gradcheck(lambda t: WrongSquare()(t), [x], rtol=0.51, atol=1e-9)


def test_numerical_grad_of_known_derivative_and_restores_input():
    x = np.array([[0.3, -1.2, 2.0], [0.0, 1.0, -0.5]])
    before = x.copy()
    g = mg.numerical_grad(lambda: float(np.sum(np.sin(x) * x)), x, eps=1e-6)
    np.testing.assert_allclose(
        g,
        np.cos(x) * x + np.sin(x),
        rtol=1e-8,
        atol=1e-9,
        err_msg="d/dx sum(sin(x) x) = cos(x) x + sin(x)",
    )
    np.testing.assert_array_equal(x, before, err_msg="numerical_grad must restore its input")
    assert g.dtype == np.float64 and g.shape == x.shape


def test_numerical_grad_is_central_difference():
    # for a cubic, central differences have error eps^2 exactly: (x+e)^3 - (x-e)^3 / 2e = 3x^2 + e^2
    x = np.array([2.0])
    eps = 1e-2
    g = mg.numerical_grad(lambda: float(x[0] ** 3), x, eps=eps)
    np.testing.assert_allclose(g, [3 * 4.0 + eps**2], rtol=1e-10, err_msg="central difference")


def test_gradcheck_leaves_input_data_unchanged():
    a = np.array([0.25, -0.75])
    x = leaf(a)
    mg.gradcheck(lambda t: t.exp(), [x])
    np.testing.assert_array_equal(x.data, a, err_msg="gradcheck must restore the inputs")


# ------------------------------------------------------------------ gradgradcheck
def test_gradgradcheck_passes_on_ops_with_true_second_derivatives():
    rng = np.random.default_rng(0)
    a = mg.tensor(rng.standard_normal((2, 3)), requires_grad=True, dtype=np.float64)
    b = mg.tensor(rng.standard_normal((3, 2)), requires_grad=True, dtype=np.float64)
    assert mg.gradgradcheck(lambda a, b: F.tanh(a @ b) * F.sigmoid(a).sum(), [a, b])
    go = [mg.tensor(rng.standard_normal((2, 2)), requires_grad=True, dtype=np.float64)]
    assert mg.gradgradcheck(lambda a, b: F.softmax(a @ b, -1), [a, b], grad_outputs=go)


class _CubeWrongSecondOrder(mg.Function):
    """y = x**3 whose recorded backward treats 3 x**2 as a constant (wrong second order)."""

    def forward(self, x):
        self.saved = x
        return x**3

    def backward(self, g):
        return (3 * self.saved**2 * g,)

    def backward_graph(self, g):
        return (g * (3 * self.saved**2),)


def test_gradgradcheck_catches_a_wrong_second_derivative_but_gradcheck_does_not():
    x = mg.tensor([0.5, -1.5], requires_grad=True, dtype=np.float64)
    assert mg.gradcheck(lambda t: _CubeWrongSecondOrder()(t), [x])
    with pytest.raises(GradcheckError, match="gradcheck failed for input 0"):
        mg.gradgradcheck(lambda t: _CubeWrongSecondOrder()(t), [x])
    assert (
        mg.gradgradcheck(lambda t: _CubeWrongSecondOrder()(t), [x], raise_exception=False) is False
    )


def test_gradgradcheck_rejects_bad_input():
    x32 = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="float64"):
        mg.gradgradcheck(lambda t: t * t, [x32])
    x = mg.tensor([1.0, 2.0], requires_grad=True, dtype=np.float64)
    with pytest.raises(ValueError, match="no input requires grad"):
        mg.gradgradcheck(lambda t: t * t, [mg.tensor([1.0], dtype=np.float64)])
    with pytest.raises(
        ValueError, match=r"grad_output of shape \(3,\) for an output of shape \(2,\)"
    ):
        mg.gradgradcheck(lambda t: t * t, [x], grad_outputs=[np.ones(3)])
    with pytest.raises(ValueError, match="2 grad_outputs for 1"):
        mg.gradgradcheck(lambda t: t * t, [x], grad_outputs=[np.ones(2), np.ones(2)])
