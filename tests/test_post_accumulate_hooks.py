"""The engine's hooks for work during a backward pass: post-accumulate grad hooks on leaves and
``autograd.queue_callback``; and what minigrad.distributed does without mpi4py."""

import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd, nn


def _chain():
    """x -> tanh(w1 x) -> w2 . : w2's gradient is complete before w1's."""
    w1 = mg.tensor(np.array([[0.5, -1.0], [2.0, 0.3]]), requires_grad=True)
    w2 = mg.tensor(np.array([1.5, -0.5]), requires_grad=True)
    x = mg.tensor(np.array([1.0, 2.0]))
    return w1, w2, lambda: ((w1 @ x).tanh() * w2).sum()


def test_hooks_fire_as_each_leaf_completes_with_grad_stored():
    w1, w2, loss = _chain()
    events = []
    w1.register_post_accumulate_grad_hook(lambda t: events.append(("w1", t.grad.copy())))
    w2.register_post_accumulate_grad_hook(lambda t: events.append(("w2", t.grad.copy())))
    loss().backward()
    assert [n for n, _ in events] == ["w2", "w1"]  # the output side completes first
    np.testing.assert_array_equal(events[0][1], w2.grad)
    np.testing.assert_array_equal(events[1][1], w1.grad)
    # the gradients are those of a backward without hooks
    v1, v2, loss2 = _chain()
    loss2().backward()
    np.testing.assert_array_equal(w1.grad, v1.grad)
    np.testing.assert_array_equal(w2.grad, v2.grad)


def test_hook_runs_before_the_rest_of_the_tape():
    """w2's hook runs while w1's gradient is not yet stored."""
    w1, w2, loss = _chain()
    seen = []
    w2.register_post_accumulate_grad_hook(lambda t: seen.append(w1.grad is None))
    loss().backward()
    assert seen == [True] and w1.grad is not None


def test_leaf_used_twice_fires_once_with_the_sum():
    w = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.copy()))
    (w * w + w.exp()).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], 2 * w.data + np.exp(w.data))


def test_hook_sees_accumulated_grad_and_can_be_removed():
    w = mg.tensor(np.array([3.0]), requires_grad=True)
    calls = []
    h = w.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad.copy()))
    (2 * w).sum().backward()
    (2 * w).sum().backward()
    assert [c.tolist() for c in calls] == [[2.0], [4.0]]
    h.remove()
    (2 * w).sum().backward()
    assert len(calls) == 2
    assert id(w) not in autograd._post_live


def test_not_called_by_autograd_grad_and_called_with_create_graph():
    w = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    calls = []
    h = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    autograd.grad((w * w).sum(), w)
    assert calls == []
    (w * w).sum().backward(create_graph=True)
    assert calls == [1]
    h.remove()


def test_bad_registrations():
    w = mg.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensors that require grad"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="leaf tensors that require grad"):
        mg.tensor(np.ones(2)).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="must be callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_once_after_every_grad_is_stored():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    params = list(model.parameters())
    order = []

    def at_end():
        order.append(("end", all(p.grad is not None for p in params)))

    def hook(t):
        order.append("hook")
        if len(order) == 1:
            autograd.queue_callback(at_end)

    handles = [p.register_post_accumulate_grad_hook(hook) for p in params]
    model(mg.tensor(np.ones((2, 3), dtype=np.float32))).sum().backward()
    assert order == ["hook"] * len(params) + [("end", True)]
    for h in handles:
        h.remove()


def test_queue_callback_outside_backward_raises():
    with pytest.raises(RuntimeError, match="only valid during backward"):
        autograd.queue_callback(lambda: None)
    with pytest.raises(TypeError, match="callable"):
        autograd.queue_callback(None)


def _output_of(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout


def test_distributed_without_mpi4py_names_the_extra():
    out = _output_of(
        "import sys; sys.modules['mpi4py'] = None\n"
        "import minigrad, minigrad.distributed as d\n"
        "try:\n    d.init()\nexcept ImportError as e:\n    print(e)\n"
    )
    assert 'pip install "minigrad[distributed]"' in out


def test_calls_before_init_raise():
    out = _output_of(
        "import minigrad.distributed as d\n"
        "try:\n    d.rank()\nexcept RuntimeError as e:\n    print(e)\n"
    )
    assert "call minigrad.distributed.init() first" in out
