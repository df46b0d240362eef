"""The tape engine: backward order, accumulation, grad mode, retain_graph, hooks, multi-output
nodes, aliasing, and Tensor basics."""

import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import Function, Tensor


def leaf(a, dtype=np.float64):
    return Tensor(np.asarray(a, dtype=dtype), requires_grad=True)


# ==========================================================================================
# Order: long chains, reuse, accumulation
# ==========================================================================================


def _frame_depth():
    f, n = sys._getframe(), 0
    while f is not None:
        f, n = f.f_back, n + 1
    return n


def test_chain_of_100000_ops_backpropagates_without_recursion():
    n = 100_000
    c = 1.00001
    x = leaf(0.5)
    y = x
    for _ in range(n):
        y = y * c
    # A recursive walk would need ~n frames: allow only a few hundred above the current depth.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_frame_depth() + 300)
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(old)
    np.testing.assert_allclose(x.grad, c**n, rtol=1e-9, err_msg="d(x * c^n)/dx after 1e5 ops")
    np.testing.assert_allclose(y.data, 0.5 * c**n, rtol=1e-9, err_msg="forward of the chain")
    del y  # tearing down the 1e5-node chain must not recurse either


def test_diamond_reuse_x_times_x_plus_x():
    a = np.array([0.5, -2.0, 3.0])
    x = leaf(a)
    (x * x + x).backward(np.ones(3))
    np.testing.assert_allclose(x.grad, 2 * a + 1, err_msg="d(x*x + x)/dx = 2x + 1")


def test_intermediate_used_many_times_waits_for_all_consumers():
    a = np.array([0.3, -0.7])
    x = leaf(a)
    h = x.tanh()
    y = h * h + 3 * h + h.exp()  # h reached by 4 edges; its node must run after all of them
    y.sum().backward()
    t = np.tanh(a)
    np.testing.assert_allclose(
        x.grad, (2 * t + 3 + np.exp(t)) * (1 - t**2), rtol=1e-12, err_msg="reuse of an intermediate"
    )


def test_weight_used_in_50_steps_gets_the_sum_of_contributions():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((50, 3))
    w0 = rng.standard_normal(3) * 0.5
    w = leaf(w0)
    # 1. Plain reuse: loss = sum_t sum(w * x_t): dw = sum_t x_t
    loss = None
    for t in range(50):
        term = (w * xs[t]).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    np.testing.assert_allclose(w.grad, xs.sum(axis=0), rtol=1e-12, err_msg="sum over 50 uses")
    # 2. Recurrent reuse: h_{t+1} = tanh(w * h_t + x_t), loss = sum(h_50); hand-written BPTT
    w.grad = None
    h = Tensor(np.zeros(3))
    for t in range(50):
        h = F.tanh(w * h + xs[t])
    h.sum().backward()
    hs = [np.zeros(3)]
    for t in range(50):
        hs.append(np.tanh(w0 * hs[-1] + xs[t]))
    dh, dw = np.ones(3), np.zeros(3)
    for t in reversed(range(50)):
        da = dh * (1 - hs[t + 1] ** 2)
        dw += da * hs[t]
        dh = da * w0
    np.testing.assert_allclose(w.grad, dw, rtol=1e-10, atol=1e-14, err_msg="BPTT over 50 steps")


def test_leaf_grads_accumulate_across_backward_calls_and_zero_grad_resets():
    a = np.array([1.0, 2.0])
    x = leaf(a)
    (x * 3).sum().backward()
    first = x.grad
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 + 2 * a, err_msg="second backward adds to .grad")
    np.testing.assert_allclose(first, [3.0, 3.0], err_msg="earlier .grad array left unchanged")
    x.zero_grad()
    assert x.grad is None, "zero_grad() leaves .grad None"
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0], err_msg="after zero_grad")
    x.grad = None
    x.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, 1.0], err_msg="after grad = None")


def test_backward_on_a_leaf_itself():
    x = leaf([1.0, 2.0])
    up = np.array([3.0, 4.0])
    x.backward(up)
    np.testing.assert_array_equal(x.grad, up, err_msg="leaf.backward(g) sets grad = g")
    assert not np.shares_memory(x.grad, up), "leaf grad shares memory with the upstream gradient"


def test_only_tensors_requiring_grad_get_gradients():
    x, c = leaf([1.0, 2.0]), Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None, "a tensor without requires_grad got a gradient"
    np.testing.assert_array_equal(x.grad, [3.0, 4.0], err_msg="dx of sum(x * c)")


def test_unreachable_branch_and_unused_leaf():
    x, z = leaf([1.0]), leaf([2.0])
    _ = z * 2  # z's graph is not part of the loss
    (x * 2).sum().backward()
    assert z.grad is None, "a leaf outside the loss graph got a gradient"


# ==========================================================================================
# Grad mode
# ==========================================================================================


def test_no_grad_records_nothing_and_enable_grad_reenables():
    x = leaf([1.0, 2.0])
    assert mg.is_grad_enabled()
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = x * 2
        with mg.enable_grad():
            assert mg.is_grad_enabled()
            z = x * 2
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None, "op under no_grad was recorded"
    assert z.requires_grad and z.grad_fn is not None, "op under enable_grad was not recorded"
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_set_grad_enabled_context_restores_on_exception():
    with pytest.raises(KeyError):
        with mg.set_grad_enabled(False):
            assert not mg.is_grad_enabled()
            raise KeyError("boom")
    assert mg.is_grad_enabled(), "grad mode not restored after an exception"
    with mg.set_grad_enabled(True):
        assert mg.is_grad_enabled()


def test_grad_mode_decorators():
    x = leaf([1.0])

    @mg.no_grad()
    def f(t):
        return t * 2, mg.is_grad_enabled()

    @mg.set_grad_enabled(False)
    def g(t):
        return t * 2

    assert mg.is_grad_enabled(), "decorating a function changed the grad mode"
    y, mode = f(x)
    assert mode is False and not y.requires_grad, "@no_grad() function recorded"
    assert not g(x).requires_grad, "@set_grad_enabled(False) function recorded"
    assert mg.is_grad_enabled(), "grad mode not restored after the decorated call"

    @mg.enable_grad()
    def h(t):
        return t * 2

    with mg.no_grad():
        assert h(x).requires_grad, "@enable_grad() inside no_grad did not record"
        assert not mg.is_grad_enabled()
    assert f.__name__ == "f", "decorator lost the function name"


def test_ops_on_tensors_without_grad_are_not_recorded():
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2))
    y = a * b + 1
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf


def test_detach_cuts_the_tape_and_shares_data():
    x = leaf([1.0, 2.0])
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.data, y.data), "detach() should share the data"
    (d * x).sum().backward()  # only the direct x path counts
    np.testing.assert_array_equal(x.grad, [3.0, 6.0], err_msg="no gradient through detach()")
    with pytest.raises(RuntimeError, match="does not require grad"):
        d.sum().backward()
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


# ==========================================================================================
# retain_graph and freed graphs
# ==========================================================================================


def test_retain_graph_allows_a_second_backward():
    a = np.array([0.5, -1.0])
    x = leaf(a)
    y = (x.tanh() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    t = np.tanh(a)
    np.testing.assert_allclose(
        x.grad,
        2 * ((1 - t**2) * a + t),
        rtol=1e-12,
        err_msg="two backward passes through a retained graph add up",
    )


def test_second_backward_through_a_freed_graph_raises():
    x = leaf([0.5, -1.0])
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()
    # a graph sharing the freed part fails the same way
    with pytest.raises(RuntimeError, match=r"second time"):
        (y * 2).backward()


# ==========================================================================================
# Hooks and retain_grad
# ==========================================================================================


def test_leaf_hook_observes_and_replaces_gradient():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    x.register_hook(lambda g: g * 10)
    (x * x).sum().backward()
    np.testing.assert_array_equal(seen[0], [2.0, 4.0], err_msg="leaf hook saw the gradient")
    np.testing.assert_array_equal(x.grad, [20.0, 40.0], err_msg="hook return value replaces grad")


def test_non_leaf_hook_observes_and_replaces_gradient_flowing_on():
    x = leaf([1.0, 2.0])
    h = x * 3
    seen = []
    h.register_hook(lambda g: seen.append(np.array(g.data)))
    h.register_hook(lambda g: np.zeros_like(g.data) + 1.0)
    (h * h).sum().backward()
    np.testing.assert_array_equal(seen[0], [6.0, 12.0], err_msg="non-leaf hook saw d(h*h)/dh")
    np.testing.assert_array_equal(x.grad, [3.0, 3.0], err_msg="replaced gradient flows to x")
    assert h.grad is None, "a non-leaf keeps no .grad without retain_grad()"


def test_hook_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).register_hook(lambda g: g)
    x = leaf([1.0, 2.0])
    h = x * 2
    h.register_hook(lambda g: np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        h.sum().backward()


def test_retain_grad_keeps_non_leaf_gradient():
    x = leaf([1.0, -2.0])
    h = (x * 2).retain_grad()
    k = h * h
    k.sum().backward()
    np.testing.assert_array_equal(h.grad, [4.0, -8.0], err_msg="retained d(sum h^2)/dh = 2h")
    assert k.grad is None
    np.testing.assert_array_equal(x.grad, [8.0, -16.0], err_msg="dx")


# ==========================================================================================
# Multi-output nodes
# ==========================================================================================


def test_unbind_pieces_used_partly():
    a = np.arange(12.0).reshape(3, 4)
    x = leaf(a)
    p0, p1, p2 = x.unbind(0)
    assert p0.grad_fn is p2.grad_fn, "unbind should be one tape node"
    (p0 * 2 + p2 * p2).sum().backward()
    expected = np.zeros((3, 4))
    expected[0] = 2.0
    expected[2] = 2 * a[2]
    np.testing.assert_array_equal(x.grad, expected, err_msg="unused piece gets zero gradient")
    y = leaf(a)
    pieces = y.split(3, axis=1)
    (pieces[1] * 5).sum().backward()
    expected = np.zeros((3, 4))
    expected[:, 3] = 5.0
    np.testing.assert_array_equal(y.grad, expected, err_msg="split: only the last piece used")


class TwoStates(Function):
    """An LSTM-like node: (h, c) = (tanh(x) * w, x * w); counts its backward calls."""

    calls = []

    def forward(self, x, w):
        t = np.tanh(x)
        self.saved = (x, w, t)
        return t * w, x * w

    def backward(self, gh, gc):
        TwoStates.calls.append((gh is None, gc is None))
        x, w, t = self.saved
        dx = np.zeros_like(x)
        dw = np.zeros_like(w)
        if gh is not None:
            dx = dx + gh * w * (1 - t * t)
            dw = dw + gh * t
        if gc is not None:
            dx = dx + gc * w
            dw = dw + gc * x
        return dx, dw


def test_two_output_function_where_only_one_output_gets_a_gradient():
    a, b = np.array([0.3, -0.4]), np.array([2.0, 3.0])
    TwoStates.calls = []
    x, w = leaf(a), leaf(b)
    h, c = TwoStates()(x, w)
    (h * h).sum().backward()
    assert TwoStates.calls == [(False, True)], (
        f"backward should run once with gc=None, got calls {TwoStates.calls}"
    )
    t = np.tanh(a)
    np.testing.assert_allclose(
        x.grad, 2 * t * b * b * (1 - t**2), rtol=1e-12, err_msg="dx via h only"
    )
    np.testing.assert_allclose(w.grad, 2 * t * b * t, rtol=1e-12, err_msg="dw via h only")

    TwoStates.calls = []
    x, w = leaf(a), leaf(b)
    h, c = TwoStates()(x, w)
    (h.sum() + (c * 3).sum()).backward()  # both outputs, reached by different paths
    assert TwoStates.calls == [(False, False)], (
        f"one backward with both grads, got {TwoStates.calls}"
    )
    np.testing.assert_allclose(x.grad, b * (1 - t**2) + 3 * b, rtol=1e-12, err_msg="dx via h and c")
    assert mg.gradcheck(lambda p, q: TwoStates()(p, q), [leaf(a), leaf(b)])


def test_multi_output_node_in_a_chain_with_state_reused():
    # c feeds the next step, h the loss: like an LSTM unrolled over 3 steps
    a, b = np.array([0.2, 0.1]), np.array([0.9, 1.1])
    x, w = leaf(a), leaf(b)

    def run(x, w):
        hs, c = [], x
        for _ in range(3):
            h, c = TwoStates()(c, w)
            hs.append(h)
        return F.stack(hs)

    assert mg.gradcheck(run, [x, w])


# ==========================================================================================
# Errors from backward()
# ==========================================================================================


def test_backward_on_non_scalar_without_grad_raises():
    x = leaf([[1.0, 2.0]])
    with pytest.raises(RuntimeError, match=r"scalar.*got shape \(1, 2\)"):
        (x * 2).backward()


def test_backward_grad_shape_mismatch_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_accepts_tensor_grad_and_casts_its_dtype():
    x = leaf([1.0, 2.0], dtype=np.float32)
    (x * 2).backward(Tensor(np.array([1.0, 3.0])))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 6.0], err_msg="upstream given as a float64 Tensor")


# ==========================================================================================
# Aliasing: a gradient array belongs to one tensor
# ==========================================================================================


def _assert_distinct(*arrays):
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert not np.shares_memory(arrays[i], arrays[j]), (
                f"gradient {i} shares memory with {j}"
            )


@pytest.mark.parametrize(
    "build",
    [
        lambda a, b: a + b,  # Add hands the same g to both inputs
        lambda a, b: a - b,
        lambda a, b: F.stack([a, b]),  # views of one upstream array
        lambda a, b: F.concatenate([a, b]),
        lambda a, b: F.where(np.array([True, False, True]), a, b),
        lambda a, b: (a.reshape(3, 1) + b.reshape(3, 1)).reshape(3),
    ],
)
def test_no_gradient_shared_between_tensors_or_with_upstream(build):
    a, b = leaf([1.0, 2.0, 3.0]), leaf([4.0, 5.0, 6.0])
    y = build(a, b)
    up = np.random.default_rng(0).standard_normal(y.shape)
    up_copy = up.copy()
    y.backward(up)
    _assert_distinct(a.grad, b.grad, up, a.data, b.data, y.data)
    np.testing.assert_array_equal(up, up_copy, err_msg="backward mutated the caller's upstream")
    a.grad += 1.0  # in-place edit of one gradient must not leak into the other or the upstream
    np.testing.assert_array_equal(up, up_copy, err_msg="editing a.grad changed the upstream")


def test_same_leaf_twice_and_retained_grads_are_own_arrays():
    x = leaf([1.0, 2.0])
    h = (x + 0).retain_grad()
    up = np.array([1.0, 1.0])
    (h + x).backward(up)
    _assert_distinct(x.grad, h.grad, up)
    np.testing.assert_array_equal(x.grad, [2.0, 2.0], err_msg="x via two paths")


class _Fresh(Function):
    """A node declaring fresh_grads; backward hands out what `make` returns for (a, b)."""

    fresh_grads = True

    def __init__(self, make):
        self.make = make

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return self.make(g)


def test_fresh_gradient_is_kept_without_a_copy():
    """A node that declares fresh_grads hands its new arrays to the leaves as they are."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    made = []

    def make(g):
        made.extend([g * 2, g * 3])
        return tuple(made)

    _Fresh(make)(a, b).backward(np.ones(2))
    assert a.grad is made[0] and b.grad is made[1], "fresh gradients were copied"
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])


def test_fresh_gradient_reshaped_is_kept_without_a_copy():
    """A reshape of all of a new array (a kernel's 2-D output given back the input's shape)
    counts as that array: the leaf keeps it, as PyTorch's leaves keep a gradient nothing else
    holds."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    made = []

    def make(g):
        made.extend([(g * 2).reshape(1, 2).copy().reshape(2), g * 3])
        return tuple(made)

    _Fresh(make)(a, b).backward(np.ones(2))
    assert made[0].base is not None, "the test must hand out a view"
    assert a.grad is made[0] and b.grad is made[1], "a reshaped fresh gradient was copied"
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])


@pytest.mark.parametrize(
    "case",
    [
        "same array twice",
        "views of one array",
        "two reshapes of one array",
        "upstream itself",
        "upstream reshaped",
    ],
)
def test_fresh_gradients_that_alias_are_still_copied(case):
    """fresh_grads is a promise the engine checks where it is cheap: the same array for two
    leaves, a view, or the caller's upstream array each get a copy, so no two tensors share."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    if case == "same array twice":
        make = lambda g: (g * 2,) * 2  # noqa: E731
    elif case == "views of one array":
        make = lambda g: tuple(np.stack([g * 2, g * 3]))  # noqa: E731
    elif case == "two reshapes of one array":  # two view objects, one buffer
        make = lambda g: (lambda w: (w.reshape(2), w.reshape(2)))((g * 2).reshape(1, 2).copy())  # noqa: E731
    elif case == "upstream reshaped":
        make = lambda g: (g.reshape(1, 2).reshape(2), g * 3)  # noqa: E731
    else:
        make = lambda g: (g, g * 3)  # noqa: E731
    up = np.ones(2)
    _Fresh(make)(a, b).backward(up)
    _assert_distinct(a.grad, b.grad, up)
    a.grad += 1.0
    np.testing.assert_array_equal(up, np.ones(2), err_msg="editing a.grad changed the upstream")


def test_hook_result_on_a_fresh_gradient_is_copied():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    mine = np.array([7.0, 8.0])
    a.register_hook(lambda g: mine)
    _Fresh(lambda g: (g * 2, g * 3))(a, b).backward(np.ones(2))
    np.testing.assert_array_equal(a.grad, mine)
    assert not np.shares_memory(a.grad, mine), "leaf grad shares memory with the hook's array"


# ==========================================================================================
# Tensor basics
# ==========================================================================================


def test_dtype_defaults():
    assert mg.tensor(1.5).dtype == np.float32, "Python float -> float32"
    assert mg.tensor([1.0, 2.0]).dtype == np.float32, "list of floats -> float32"
    assert mg.tensor(np.ones(2)).dtype == np.float64, "float64 array kept"
    assert mg.tensor(np.ones(2, dtype=np.float32)).dtype == np.float32
    assert mg.tensor(np.ones(2, dtype=np.float16)).dtype == np.float32, "float16 -> float32"
    assert mg.tensor([1, 2]).dtype == np.array([1, 2]).dtype, "ints kept as NumPy's int"
    assert mg.tensor(np.array([1, 2], dtype=np.int32)).dtype == np.int32
    assert mg.tensor([1, 2], dtype=np.float64).dtype == np.float64, "explicit dtype wins"
    assert mg.tensor([True]).dtype == np.bool_
    with pytest.raises(TypeError, match="numeric"):
        mg.tensor(["a", "b"])


def test_tensor_copies_its_input_and_exposes_numpy():
    src = np.array([1.0, 2.0])
    t = mg.tensor(src)
    src[0] = 99.0
    assert t.data[0] == 1.0, "tensor() must copy its input array"
    assert t.numpy() is t.data
    assert Tensor(t).data is not t.data, "Tensor(tensor) copies"


def test_item_array_len_shape_T():
    t = mg.tensor(np.arange(6.0).reshape(2, 3))
    assert (t.shape, t.ndim, t.numel(), t.size(), t.size(1), len(t)) == ((2, 3), 2, 6, (2, 3), 3, 2)
    assert mg.tensor([[2.5]]).item() == 2.5 and isinstance(mg.tensor([[2.5]]).item(), float)
    with pytest.raises(ValueError, match=r"one-element.*\(2, 3\)"):
        t.item()
    with pytest.raises(TypeError, match="0-d"):
        len(mg.tensor(1.0))
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64
    np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3), err_msg="__array__")
    np.testing.assert_array_equal(np.array(t, dtype=np.float32), a.astype(np.float32))
    np.testing.assert_array_equal(t.T.data, np.arange(6.0).reshape(2, 3).T, err_msg=".T")
    assert float(mg.tensor([3.0])) == 3.0 and int(mg.tensor(4)) == 4


def test_repr():
    r = repr(mg.tensor([1.0, 2.0]))
    assert r.startswith("tensor(") and "1." in r and "2." in r, r
    assert "requires_grad=True" in repr(leaf([1.0])), repr(leaf([1.0]))
    assert "dtype=float64" in repr(leaf([1.0]))
    assert "grad_fn=<Mul>" in repr(leaf([1.0]) * 2), repr(leaf([1.0]) * 2)


def test_leaf_and_grad_fn_attributes():
    x = leaf([1.0])
    y = x * 2
    assert x.is_leaf and x.grad_fn is None
    assert not y.is_leaf and y.grad_fn is not None and y.requires_grad


def test_creating_no_grad_or_enable_grad_changes_nothing_until_entered():
    ctx = mg.no_grad()
    assert mg.is_grad_enabled(), "no_grad() disabled grad mode before being entered"
    with ctx:
        assert not mg.is_grad_enabled()
        inner = mg.enable_grad()
        assert not mg.is_grad_enabled(), "enable_grad() changed the mode before being entered"
        with inner:
            assert mg.is_grad_enabled()
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    mg.set_grad_enabled(False)  # as a plain call it takes effect at once (PyTorch's behaviour)
    try:
        assert not mg.is_grad_enabled()
    finally:
        mg.set_grad_enabled(True)
    assert mg.is_grad_enabled()


def test_backward_returning_too_few_gradients_is_an_error():
    class Bad(mg.Function):
        def forward(self, a, b):
            return a + b

        def backward(self, g):
            return (g,)  # one gradient for two inputs

    a = mg.tensor([1.0], requires_grad=True)
    b = mg.tensor([2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"returned 1 gradient\(s\) for 2 input\(s\)"):
        Bad()(a, b).sum().backward()


# ------------------------------------------------------------------ backward's signature
def test_backward_takes_gradient_positionally_or_by_either_name():
    for call in (
        lambda y, g: y.backward(g),
        lambda y, g: y.backward(gradient=g),
        lambda y, g: y.backward(grad=g),
    ):
        x = mg.tensor([1.0, 2.0], requires_grad=True)
        call(x * 3, np.array([1.0, 10.0]))
        np.testing.assert_array_equal(x.grad, [3.0, 30.0])
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="both gradient and grad"):
        (x * 3).backward(np.ones(2), grad=np.ones(2))
    assert x.grad is None
