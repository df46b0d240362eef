"""Higher-order derivatives: create_graph, autograd.grad, chains of ops, recurrent cells, the
compiled kernels' error, dropout, and print_tape of a second-order graph."""

import re

import numpy as np
import pytest
from factories import profile_examples, shapes_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_recurrent_ops import make_params

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd

composed_rnn_cell = F.rnn_cell_composed
composed_lstm_cell = F.lstm_cell_composed
composed_gru_cell = F.gru_cell_composed


def _t(a, rg=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg, dtype=np.float64)


# ------------------------------------------------------------------ create_graph basics
def test_second_and_third_derivative_of_a_polynomial():
    x = _t(1.5)
    y = x**4 - 3 * x**2
    (d1,) = autograd.grad(y, x, create_graph=True)
    (d2,) = autograd.grad(d1, x, create_graph=True)
    (d3,) = autograd.grad(d2, x)
    assert d1.item() == pytest.approx(4 * 1.5**3 - 6 * 1.5)
    assert d2.item() == pytest.approx(12 * 1.5**2 - 6)
    assert d3.item() == pytest.approx(24 * 1.5)
    assert d1.requires_grad and d2.requires_grad and not d3.requires_grad


def test_backward_create_graph_fills_grad_and_grad_tensor():
    x = _t([0.5, -1.0])
    y = (x**3).sum()
    y.backward(create_graph=True)
    np.testing.assert_allclose(x.grad, 3 * x.data**2)
    assert isinstance(x.grad, np.ndarray)
    gt = x.grad_tensor
    assert gt is not None and gt.requires_grad
    np.testing.assert_array_equal(gt.data, x.grad)
    assert not np.shares_memory(gt.data, x.grad)  # an optimizer may scale .grad in place
    (h,) = autograd.grad(gt.sum(), x)
    np.testing.assert_allclose(h.data, 6 * x.data)
    # the graph was retained by default: a second backward through y works
    y.backward()
    np.testing.assert_allclose(x.grad, 6 * x.data**2)
    assert x.grad_tensor is None  # a plain backward replaced .grad: the Tensor is stale
    x.zero_grad()
    assert x.grad is None and x.grad_tensor is None


def test_create_graph_backward_accumulates_grad_tensor():
    x = _t([1.0, 2.0])
    (x * x).sum().backward(create_graph=True)
    (x * x * x).sum().backward(create_graph=True)
    np.testing.assert_allclose(x.grad, 2 * x.data + 3 * x.data**2)
    (h,) = autograd.grad(x.grad_tensor.sum(), x)
    np.testing.assert_allclose(h.data, 2 + 6 * x.data)


def test_first_order_backward_records_nothing_and_frees_the_graph():
    x = _t([1.0, 2.0])
    y = (x.tanh() * x).sum()
    y.backward()
    assert x.grad_tensor is None
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_create_graph_false_after_create_graph_retains_by_default():
    x = _t([1.0, 2.0])
    y = (x.exp()).sum()
    (g,) = autograd.grad(y, x, create_graph=True)
    (g2,) = autograd.grad(y, x)  # retain_graph defaulted to True above
    np.testing.assert_allclose(g.data, g2.data)
    with pytest.raises(RuntimeError, match="second time"):
        autograd.grad(y, x)


# ------------------------------------------------------------------ autograd.grad semantics
def test_grad_returns_a_tuple_and_leaves_grad_alone():
    x, w = _t([1.0, 2.0]), _t([3.0, 4.0])
    res = autograd.grad((x * w).sum(), [x, w])
    assert isinstance(res, tuple) and len(res) == 2
    np.testing.assert_array_equal(res[0].data, w.data)
    np.testing.assert_array_equal(res[1].data, x.data)
    assert x.grad is None and w.grad is None


def test_grad_of_a_non_leaf_input_and_several_outputs():
    x = _t([1.0, -2.0])
    h = x * 3
    a, b = (h * h).sum(), h.sum()
    (gh,) = autograd.grad([a, b], h, retain_graph=True)
    np.testing.assert_allclose(gh.data, 2 * h.data + 1)
    (gx,) = autograd.grad([a, b], [x], grad_outputs=[_t(2.0, False), None])
    np.testing.assert_allclose(gx.data, 3 * (2 * 2 * h.data + 1))


def test_grad_only_runs_the_part_of_the_tape_it_needs():
    """d loss / d h needs nothing below h: a compiled recurrent node there is never reached."""
    rng = np.random.default_rng(0)
    p = make_params(rng, "lstm", 3, 2)
    x, h0, c0 = _t(rng.standard_normal((2, 3))), _t(np.zeros((2, 2))), _t(np.zeros((2, 2)))
    h, c = F.lstm_cell(x, h0, c0, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    loss = (h.tanh() ** 2).sum()
    (gh,) = autograd.grad(loss, h, create_graph=True)
    (hh,) = autograd.grad(gh.sum(), h)
    t = np.tanh(h.data)
    np.testing.assert_allclose(hh.data, 2 * (1 - t**2) ** 2 - 4 * t * t * (1 - t**2))


def test_grad_errors_as_pytorch():
    x, z = _t([1.0, 2.0]), _t([5.0])
    y = (x * 2).sum()
    with pytest.raises(
        RuntimeError, match="appears to not have been used in the graph.*allow_unused=True"
    ):
        autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = autograd.grad(y, [x, z], allow_unused=True, retain_graph=True)
    assert gz is None
    np.testing.assert_array_equal(gx.data, [2.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        autograd.grad(_t([1.0], False).sum(), x)
    with pytest.raises(RuntimeError, match="does not require grad"):
        autograd.grad(y, _t([1.0], False))
    with pytest.raises(RuntimeError, match="scalar"):
        autograd.grad(x * 2, x)
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\)"):
        autograd.grad(x * 2, x, grad_outputs=np.ones(3))
    with pytest.raises(RuntimeError, match="1 element.*2 output"):
        autograd.grad([y, y], x, grad_outputs=[None])
    with pytest.raises(TypeError, match="must be a Tensor"):
        autograd.grad(y, [np.ones(2)])


def test_hooks_see_and_may_replace_recorded_gradients():
    x = _t([1.0, 2.0])
    h = x * x
    seen = []
    h.register_hook(lambda g: (seen.append(g.requires_grad), g * 2)[1])
    (gx,) = autograd.grad(h.sum(), x, create_graph=True)
    assert seen == [False]  # the seed gradient of sum is a constant
    (hx,) = autograd.grad(gx.sum(), x)
    np.testing.assert_allclose(hx.data, [4.0, 4.0])  # d/dx (2 * 2x) summed


# ------------------------------------------------------------------ chains of ops, 2nd order
_UNARY = {
    "tanh": F.tanh,
    "sigmoid": F.sigmoid,
    "exp_scaled": lambda t: F.exp(t * 0.3),
    "softplus": F.softplus,
    "square": lambda t: t * t,
    "sqrt_pos": lambda t: F.sqrt(t * t + 1),
    "log_pos": lambda t: F.log(t * t + 0.5),
    "neg": F.neg,
    "softmax": lambda t: F.softmax(t, -1),
    "log_softmax": lambda t: F.log_softmax(t, -1),
    "sum_keep": lambda t: t.sum(-1, keepdims=True),
    "mean_keep": lambda t: t.mean(0, keepdims=True),
    "transpose": lambda t: t.T,
    "var_keep": lambda t: t.var(-1, keepdims=True) if t.shape[-1] > 1 else t,
    "div": lambda t: t / (t * t + 1),
    "pow": lambda t: (t * t + 1) ** 1.5,
}
_BINARY = {
    "add": F.add,
    "sub": F.sub,
    "mul": F.mul,
    "maximum_sm": lambda a, b: F.softplus(a - b) + b,
}


@settings(
    max_examples=profile_examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_chains_of_ops_have_right_second_derivatives(data):
    shp = data.draw(shapes_for(2, min_dims=2, max_dims=2, max_side=3), label="shapes")
    arrays = [
        data.draw(hnp.arrays(np.float64, s, elements=st.floats(-2, 2)), label=f"x{i}")
        for i, s in enumerate(shp)
    ]
    steps = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(_UNARY)),
                st.sampled_from(sorted(_BINARY)).map(lambda n: "2:" + n),
            ),
            min_size=1,
            max_size=5,
        ),
        label="ops",
    )

    def fits(b, y):
        try:
            return np.broadcast_shapes(b.shape, y.shape) == y.shape
        except ValueError:
            return False

    def chain(a, b):
        y = a
        for s in steps:
            if s.startswith("2:"):  # b itself where it broadcasts to y (after a transpose it
                # may not), else its sum
                y = _BINARY[s[2:]](y, b if fits(b, y) else b.sum())
            else:
                y = _UNARY[s](y)
        return y * y if y.numel() else y

    ins = [_t(a) for a in arrays]
    assert mg.gradgradcheck(chain, ins)
    # the second derivative is not merely consistent: it agrees with a direct hessian-vector
    # product by finite differences of the first derivative
    ins = [_t(a) for a in arrays]
    v = np.random.default_rng(0).standard_normal(ins[0].shape)
    _, hv = mg.func.hvp(lambda a: chain(a, ins[1]).sum(), ins[0].data, v)
    eps = 1e-6

    def g_at(a):
        xa = _t(a)
        (g,) = autograd.grad(chain(xa, ins[1]).sum(), xa, allow_unused=True)
        return np.zeros_like(a) if g is None else g.data

    fd = (g_at(ins[0].data + eps * v) - g_at(ins[0].data - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.data, fd, rtol=1e-4, atol=1e-5)


def test_dropout_second_order():
    mg.manual_seed(3)
    x = _t(np.random.default_rng(1).standard_normal((3, 4)))
    mask_fn = lambda t: F.dropout(t, 0.4)  # noqa: E731
    mg.manual_seed(5)
    y = mask_fn(x)
    mask = y.data / np.where(x.data == 0, 1, x.data)

    def f(t):
        from minigrad.functional.layers import Dropout

        return F.tanh(Dropout(mask)(t))

    assert mg.gradgradcheck(f, [x])


def test_embedding_and_linear_second_order():
    rng = np.random.default_rng(2)
    w = _t(rng.standard_normal((4, 3)))
    lw, lb = _t(rng.standard_normal((2, 3))), _t(rng.standard_normal(2))
    idx = np.array([[0, 1], [1, 3]])

    def f(w, lw, lb):
        return F.tanh(F.linear(F.embedding(idx, w), lw, lb))

    assert mg.gradgradcheck(f, [w, lw, lb])


def test_embedding_padding_row_gets_no_gradient_at_any_order():
    """As PyTorch: the padding row is treated as fixed, so its recorded gradient is zero."""
    w = _t(np.random.default_rng(2).standard_normal((4, 3)))
    idx = np.array([0, 1, 1, 3])
    y = (F.embedding(idx, w, padding_idx=1) ** 3).sum()
    (g,) = autograd.grad(y, w, create_graph=True)
    assert g.requires_grad
    np.testing.assert_array_equal(g.data[1], 0)
    (h,) = autograd.grad((g * g).sum(), w)
    np.testing.assert_array_equal(h.data[1], 0)
    np.testing.assert_allclose(h.data[0], 2 * 3 * w.data[0] ** 2 * 6 * w.data[0])


# ------------------------------------------------------------------ recurrent cells
def _composed_loss(cell, T=3, B=2, I=3, H=2, seed=0):
    rng = np.random.default_rng(seed)
    params = make_params(rng, cell, I, H)
    xs = rng.standard_normal((T, B, I))
    names = ["w_ih", "w_hh", "b_ih", "b_hh"]

    def loss(*ps):
        h = _t(np.zeros((B, H)), False)
        c = _t(np.zeros((B, H)), False)
        for t in range(T):
            x = _t(xs[t], False)
            if cell == "lstm":
                h, c = composed_lstm_cell(x, h, c, *ps)
            elif cell == "gru":
                h = composed_gru_cell(x, h, *ps)
            else:
                h = composed_rnn_cell(x, h, *ps)
        return (h * h).sum() + h.sum()

    return loss, [params[n] for n in names]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_composed_recurrent_hvp_matches_finite_differences_of_the_gradient(cell):
    loss, params = _composed_loss(cell)
    rng = np.random.default_rng(7)
    vs = [rng.standard_normal(p.shape) for p in params]
    _, hv = mg.func.hvp(loss, tuple(p.data for p in params), tuple(vs))
    eps = 1e-6

    def grads_at(sign):
        ps = [_t(p.data + sign * eps * v) for p, v in zip(params, vs)]
        return [g.data for g in autograd.grad(loss(*ps), ps)]

    plus, minus = grads_at(1), grads_at(-1)
    for h, gp, gm in zip(hv, plus, minus):
        np.testing.assert_allclose(h.data, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_composed_recurrent_cells_pass_gradgradcheck(cell):
    loss, params = _composed_loss(cell, T=2, I=2, H=2)
    assert mg.gradgradcheck(loss, params)


_COMPOSED = 'impl="composed"'


@pytest.mark.parametrize("kind", ["rnn_cell", "lstm_cell", "gru_cell"])
def test_compiled_cells_raise_naming_composed_under_create_graph(kind):
    rng = np.random.default_rng(0)
    cell = kind.split("_")[0]
    p = make_params(rng, cell, 3, 2)
    x, h = _t(rng.standard_normal((2, 3))), _t(np.zeros((2, 2)))
    args = (x, h, _t(np.zeros((2, 2)))) if cell == "lstm" else (x, h)
    out = getattr(F, kind)(*args, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    h1 = out[0] if isinstance(out, tuple) else out
    loss = (h1**2).sum()
    g = autograd.grad(loss, [p["w_ih"]], retain_graph=True)  # first order: fine
    assert g[0].shape == p["w_ih"].shape
    with pytest.raises(RuntimeError, match=re.escape(_COMPOSED)) as e:
        autograd.grad(loss, [p["w_ih"]], create_graph=True)
    assert "cannot be differentiated twice" in str(e.value)
    assert "Cell" in str(e.value)
    with pytest.raises(RuntimeError, match=re.escape(_COMPOSED)):
        loss.backward(create_graph=True)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_on_compiled_kernels_raise_under_create_graph(cls):
    mg.manual_seed(0)
    layer = getattr(mg.nn, cls)(3, 2)
    x = mg.randn(4, 2, 3)
    out = layer(x)
    y = out[0] if isinstance(out, tuple) else out
    loss = (y**2).sum()
    with pytest.raises(RuntimeError, match=re.escape(_COMPOSED)):
        loss.backward(create_graph=True)


# ------------------------------------------------------------------ print_tape
def test_print_tape_shows_a_second_order_graph(capsys):
    from minigrad.viz import print_tape

    x = _t([0.5, 1.0])
    (g,) = autograd.grad((x.tanh() * x).sum(), x, create_graph=True)
    print_tape(g.sum())
    out = capsys.readouterr().out
    assert "Tanh" in out and "Mul" in out and "Sum" in out
    assert len(out.strip().splitlines()) > 5


def test_every_compiled_recurrent_node_names_composed():
    from minigrad.functional import recurrent as R

    classes = [
        c
        for c in vars(R).values()
        if isinstance(c, type)
        and issubclass(c, mg.Function)
        and c is not mg.Function
        and not c.__name__.startswith("_")
    ]
    assert len(classes) == 9
    for c in classes:
        node = c.__new__(c)
        with pytest.raises(RuntimeError, match=re.escape(_COMPOSED)):
            node.backward_graph(None)


def test_every_functional_op_has_a_backward_graph():
    """A new op without one would make create_graph raise: the factory's gradgradcheck tests
    each op, and this lists the classes so none is forgotten."""
    from minigrad.functional import (
        arithmetic,
        elementwise,
        layers,
        loss,
        recurrent,
        reduction,
        shape,
    )

    missing = []
    for mod in (arithmetic, elementwise, layers, loss, reduction, shape):
        for c in vars(mod).values():
            if (
                isinstance(c, type)
                and issubclass(c, mg.Function)
                and c.__module__ == mod.__name__
                and c.backward_graph is mg.Function.backward_graph
                and not c.__name__.startswith("_")
            ):
                missing.append(c.__name__)
    assert missing == []
    assert recurrent.LSTMSequence.backward_graph is mg.Function.backward_graph  # raises instead


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_composed_layer_hvp_matches_finite_differences_of_the_gradient(kind):
    """nn.RNN/LSTM/GRU(impl="composed") (two layers, bidirectional, lengths): the
    Hessian-vector product of a loss in the weights equals the central difference of the
    gradient along the same direction."""
    mg.manual_seed(0)
    layer = getattr(mg.nn, kind)(
        3, 2, num_layers=2, bidirectional=True, batch_first=True, impl="composed"
    ).double()
    params = list(layer.parameters())
    rng = np.random.default_rng(1)
    x = _t(rng.standard_normal((2, 4, 3)), False)
    lengths = np.array([4, 2])

    def grads(ws):
        for p, w in zip(params, ws):
            p.data = w
            p.grad = None
        out, _ = layer(x, lengths=lengths)
        (out * out).sum().backward()
        return [p.grad.copy() for p in params]

    ws = [p.data.copy() for p in params]
    vs = [rng.standard_normal(w.shape) for w in ws]
    out, _ = layer(x, lengths=lengths)
    g = autograd.grad((out * out).sum(), params, create_graph=True)
    dot = sum((gi * _t(v, False)).sum() for gi, v in zip(g, vs))
    hv = autograd.grad(dot, params)
    eps = 1e-6
    gp = grads([w + eps * v for w, v in zip(ws, vs)])
    gm = grads([w - eps * v for w, v in zip(ws, vs)])
    for h, a, b in zip(hv, gp, gm):
        np.testing.assert_allclose(h.data, (a - b) / (2 * eps), rtol=1e-4, atol=1e-6)
