"""minigrad.func against finite differences (always) and torch.func (when installed)."""

import numpy as np
import pytest
from factories import profile_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.functional as F
from minigrad import func

EPS = 1e-6


def f_scalar(x, w):
    """A scalar function of two arguments with a non-trivial Hessian."""
    return (F.tanh(x @ w) ** 2).sum() + (F.softplus(x) * x).sum()


def f_vector(x, w):
    return F.sigmoid(x @ w) * x.sum()


def _fd_jacobian(f, x):
    """d f / d x by central differences: shape f(x).shape + x.shape."""
    y0 = np.asarray(f(x))
    J = np.zeros(y0.shape + x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = EPS
        J[(Ellipsis,) + i] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * EPS)
    return J


def _np_val(fn):
    def run(*arrays):
        with mg.no_grad():
            return fn(*[mg.tensor(a, dtype=np.float64) for a in arrays]).data

    return run


@st.composite
def _xw(draw):
    n = draw(st.integers(1, 3))
    m = draw(st.integers(1, 3))
    x = draw(hnp.arrays(np.float64, (n,), elements=st.floats(-2, 2)))
    w = draw(hnp.arrays(np.float64, (n, m), elements=st.floats(-2, 2)))
    return x, w


_SETTINGS = settings(
    max_examples=profile_examples(), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(_xw())
def test_hessian_matches_finite_differences_of_the_gradient(xw):
    x, w = xw
    H = func.hessian(f_scalar)(x, w)
    assert H.shape == x.shape + x.shape
    g = lambda xx: func.grad(f_scalar)(xx, w).data  # noqa: E731
    np.testing.assert_allclose(H.data, _fd_jacobian(g, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(H.data, H.data.T, atol=1e-10)  # a Hessian is symmetric


@_SETTINGS
@given(_xw(), st.integers(0, 2**31))
def test_jvp_matches_finite_differences(xw, seed):
    x, w = xw
    rng = np.random.default_rng(seed)
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    out, jv = func.jvp(f_vector, (x, w), (tx, tw))
    fv = _np_val(f_vector)
    np.testing.assert_allclose(out.data, fv(x, w))
    fd = (fv(x + EPS * tx, w + EPS * tw) - fv(x - EPS * tx, w - EPS * tw)) / (2 * EPS)
    np.testing.assert_allclose(jv.data, fd, rtol=1e-5, atol=1e-7)


@_SETTINGS
@given(_xw())
def test_jacobian_and_vjp_match_finite_differences(xw):
    x, w = xw
    J = func.jacobian(f_vector)(x, w)
    fd = _fd_jacobian(lambda xx: _np_val(f_vector)(xx, w), x)
    np.testing.assert_allclose(J.data, fd, rtol=1e-5, atol=1e-7)
    Jx, Jw = func.jacobian(f_vector, argnums=(0, 1))(x, w)
    assert Jw.shape == (w.shape[1],) + w.shape
    np.testing.assert_allclose(Jx.data, J.data)
    out, vjp_fn = func.vjp(f_vector, x, w)
    u = np.arange(1.0, out.numel() + 1)
    gx, gw = vjp_fn(u)
    np.testing.assert_allclose(gx.data, u @ J.data.reshape(out.numel(), -1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        gw.data.ravel(), u @ Jw.data.reshape(out.numel(), -1), rtol=1e-10, atol=1e-12
    )


def test_hvp_equals_hessian_times_v():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(3), rng.standard_normal((3, 2))
    v = rng.standard_normal(3)
    val, hv = func.hvp(lambda xx: f_scalar(xx, mg.tensor(w, dtype=np.float64)), x, v)
    H = func.hessian(f_scalar)(x, w)
    np.testing.assert_allclose(hv.data, H.data @ v, rtol=1e-10)
    assert val.item() == pytest.approx(_np_val(f_scalar)(x, w).item())
    _, (h1, h2) = func.hvp(f_scalar, (x, w), (v, np.zeros_like(w)))
    np.testing.assert_allclose(h1.data, H.data @ v, rtol=1e-10)


def test_grad_argnums_has_aux_and_grad_and_value():
    x, w = np.array([0.5, -1.0]), np.array([[1.0], [2.0]])
    gx = func.grad(f_scalar)(x, w)
    gx2, gw = func.grad(f_scalar, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(gx.data, gx2.data)
    gw_only = func.grad(f_scalar, argnums=1)(x, w)
    np.testing.assert_allclose(gw.data, gw_only.data)
    fd = _fd_jacobian(lambda xx: _np_val(f_scalar)(xx, w), x)
    np.testing.assert_allclose(gx.data, fd, rtol=1e-6)

    def with_aux(x, w):
        v = f_scalar(x, w)
        return v, {"v": v.item()}

    g, aux = func.grad(with_aux, has_aux=True)(x, w)
    np.testing.assert_allclose(g.data, gx.data)
    assert aux["v"] == pytest.approx(_np_val(f_scalar)(x, w).item())
    g, (val, aux) = func.grad_and_value(with_aux, has_aux=True)(x, w)
    assert val.item() == pytest.approx(aux["v"])
    g, val = func.grad_and_value(f_scalar)(x, w)
    assert not val.requires_grad


def test_nested_grad_is_the_second_derivative():
    d2 = func.grad(func.grad(lambda x: (x**3).sum() * 1.0))
    x = mg.tensor(2.0, dtype=np.float64)
    # grad of a scalar-input function: grad(f) returns a 0-d tensor, itself a scalar function
    assert d2(x).item() == pytest.approx(12.0)
    d3 = func.grad(func.grad(func.grad(lambda x: x.exp())))
    assert d3(x).item() == pytest.approx(np.exp(2.0))


def test_unused_argument_gets_zeros_and_bad_input_raises():
    g = func.grad(lambda x, y: (x * x).sum(), argnums=(0, 1))(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g[1].data, np.zeros(3))
    with pytest.raises(RuntimeError, match="scalar"):
        func.grad(lambda x: x * 2)(np.ones(2))
    with pytest.raises(ValueError, match="argnums 2 is out of range"):
        func.grad(f_scalar, argnums=2)(np.ones(2), np.ones((2, 1)))
    with pytest.raises(TypeError, match="floating point"):
        func.grad(lambda x: x.sum())(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"has_aux=True\) needs the function to return a pair"):
        func.grad(lambda x: x.sum(), has_aux=True)(np.ones(2))
    with pytest.raises(ValueError, match="one tangent per primal"):
        func.jvp(lambda x: x, (np.ones(2),), (np.ones(2), np.ones(2)))
    with pytest.raises(ValueError, match=r"tangent 0 has shape \(3,\), primal 0 has shape \(2,\)"):
        func.jvp(lambda x: x, (np.ones(2),), (np.ones(3),))
    with pytest.raises(TypeError, match=r"argnums must be an int or a tuple of ints, got 'x'"):
        func.hessian(f_scalar, argnums="x")
    _, vjp_fn = func.vjp(lambda x: x * 2, np.ones(2))
    with pytest.raises(ValueError, match=r"cotangent 0 has shape \(3,\)"):
        vjp_fn(np.ones(3))


def test_transforms_record_even_under_no_grad():
    with mg.no_grad():
        g = func.grad(lambda x: (x * x).sum())(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g.data, [2.0, 4.0])


# ------------------------------------------------------------------ against torch.func
def test_hessian_jvp_jacobian_hvp_match_torch_func():
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("torch.func")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(3), rng.standard_normal((3, 2))
    tx, tw = rng.standard_normal(3), rng.standard_normal((3, 2))

    def t_scalar(x, w):
        return (torch.tanh(x @ w) ** 2).sum() + (torch.nn.functional.softplus(x) * x).sum()

    def t_vector(x, w):
        return torch.sigmoid(x @ w) * x.sum()

    X, W = torch.tensor(x), torch.tensor(w)
    np.testing.assert_allclose(
        func.hessian(f_scalar)(x, w).data,
        tf.hessian(t_scalar)(X, W).numpy(),
        rtol=1e-10,
        atol=1e-12,
    )
    blocks = func.hessian(f_scalar, argnums=(0, 1))(x, w)
    tblocks = tf.hessian(t_scalar, argnums=(0, 1))(X, W)
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(
                blocks[i][j].data,
                tblocks[i][j].numpy(),
                rtol=1e-10,
                atol=1e-12,
                err_msg=f"block {i}{j}",
            )
    _, jv = func.jvp(f_vector, (x, w), (tx, tw))
    _, tjv = tf.jvp(t_vector, (X, W), (torch.tensor(tx), torch.tensor(tw)))
    np.testing.assert_allclose(jv.data, tjv.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        func.jacobian(f_vector, argnums=1)(x, w).data,
        tf.jacrev(t_vector, argnums=1)(X, W).numpy(),
        rtol=1e-10,
        atol=1e-12,
    )
    g2 = func.grad(f_scalar, argnums=(0, 1))(x, w)
    tg2 = tf.grad(t_scalar, argnums=(0, 1))(X, W)
    for a, b in zip(g2, tg2):
        np.testing.assert_allclose(a.data, b.numpy(), rtol=1e-10, atol=1e-12)
    _, hv = func.hvp(lambda xx: f_scalar(xx, mg.tensor(w, dtype=np.float64)), x, tx)
    _, thv = torch.autograd.functional.hvp(lambda xx: t_scalar(xx, W), X, torch.tensor(tx))
    np.testing.assert_allclose(hv.data, thv.numpy(), rtol=1e-10, atol=1e-12)


def test_hessian_blocks_with_tuple_argnums():
    """Tuple argnums: the diagonal blocks are the single-argument Hessians, and the off-diagonal
    blocks are each other's transposes (the Hessian is symmetric)."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(3), rng.standard_normal((3, 2))
    blocks = func.hessian(f_scalar, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(blocks[0][0].data, func.hessian(f_scalar, 0)(x, w).data)
    np.testing.assert_allclose(blocks[1][1].data, func.hessian(f_scalar, 1)(x, w).data)
    assert blocks[0][1].shape == (3, 3, 2) and blocks[1][0].shape == (3, 2, 3)
    np.testing.assert_allclose(
        blocks[0][1].data, np.transpose(blocks[1][0].data, (2, 0, 1)), rtol=1e-10, atol=1e-12
    )
    eps = 1e-6
    g = func.grad(f_scalar, argnums=0)
    fd = np.zeros((3, 3, 2))
    for a in range(3):
        for b in range(2):
            wp, wm = w.copy(), w.copy()
            wp[a, b] += eps
            wm[a, b] -= eps
            fd[:, a, b] = (g(x, wp).data - g(x, wm).data) / (2 * eps)
    np.testing.assert_allclose(blocks[0][1].data, fd, rtol=1e-5, atol=1e-7)
