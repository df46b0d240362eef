"""The version counter: a backward that needs a tensor modified since the forward pass raises,
naming the tensor, the op and the modification; reading is free."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd

MESSAGE = (
    r"one of the variables needed for gradient computation has been modified by an "
    r"inplace operation: \[Tensor of shape \(2,\)\] \(input 0 of Mul\) is at version 1; "
    r"expected version 0 instead \(last modified by {}\)"
)


def _setup():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    x = mg.tensor([3.0, 4.0])
    return w, x, (w * x).sum()


def _modify_with_optimizer(name):
    def modify(w):
        w.grad = np.ones(2, dtype=np.float32)
        getattr(mg.optim, name)([w], lr=0.1).step()

    return modify


WAYS = {
    "add_": lambda w: w.add_(1.0),
    "sub_": lambda w: w.sub_(1.0),
    "mul_": lambda w: w.mul_(2.0),
    "div_": lambda w: w.div_(2.0),
    "copy_": lambda w: w.copy_(np.array([5.0, 6.0])),
    "fill_": lambda w: w.fill_(0.5),
    "zero_": lambda w: w.zero_(),
    "clamp_": lambda w: w.clamp_(0.0, 1.5),
    "assignment to .data": lambda w: setattr(w, "data", np.array([100.0, 100.0], np.float32)),
    "SGD.step": _modify_with_optimizer("SGD"),
    "Adam.step": _modify_with_optimizer("Adam"),
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_each_way_of_modifying_a_saved_tensor_makes_backward_raise(way):
    w, x, y = _setup()
    with mg.no_grad():
        WAYS[way](w)
    assert w.version == 1
    with pytest.raises(RuntimeError, match=MESSAGE.format(way.replace(".", r"\."))):
        y.backward()


def test_the_issue_example_no_longer_gives_a_silent_wrong_gradient():
    w, x, y = _setup()
    w.data = np.array([100.0, 100.0], np.float32)
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
        y.backward()
    assert w.grad is None  # nothing half-written


def test_a_modification_after_backward_or_before_forward_is_fine():
    w, x, y = _setup()
    with mg.no_grad():
        w.add_(1.0)
    y2 = (w * x).sum()  # recorded after the modification
    y2.backward()
    np.testing.assert_array_equal(w.grad, x.data)
    w.grad = None
    opt = mg.optim.SGD([w], lr=0.5)
    (w * w).sum().backward()
    opt.step()  # after backward: nothing to check
    assert w.version == 2


def test_reading_is_free_and_ops_that_do_not_save_the_tensor_do_not_raise():
    w, x, _ = _setup()
    y = (w + x).sum()  # add keeps only shapes: its backward does not need w's value
    _ = w.data.sum(), w.numpy(), w.tolist(), w * 2
    with mg.no_grad():
        w.mul_(3.0)
    y.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])


def test_several_modifications_count_and_name_the_last():
    w, x, y = _setup()
    with mg.no_grad():
        w.add_(1.0)
        w.mul_(2.0)
    with pytest.raises(
        RuntimeError,
        match=r"at version 2; expected version 0 instead "
        r"\(last modified by mul_\)",
    ):
        y.backward()


def test_modified_tensor_is_checked_in_create_graph_and_grad_too():
    w, x, y = _setup()
    with mg.no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        autograd.grad(y, w, create_graph=True)


def test_inplace_methods_validate_before_writing():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*no_grad"):
        w.add_(1.0)
    y = w * 2
    with pytest.raises(RuntimeError, match="in-place operations on a tensor with history"):
        y.add_(1.0)
    c = mg.tensor([1.0, 2.0])
    with pytest.raises(
        ValueError, match=r"shape \(3,\) does not broadcast to the tensor's shape \(2,\)"
    ):
        c.add_(np.ones(3))
    i = mg.tensor([1, 2])
    with pytest.raises(TypeError, match="cannot write floating point values"):
        i.add_(0.5)
    np.testing.assert_array_equal(w.data, [1.0, 2.0])
    np.testing.assert_array_equal(c.data, [1.0, 2.0])
    assert w.version == 0 and c.version == 0
    c.add_(1.0).mul_(2.0)
    np.testing.assert_array_equal(c.data, [4.0, 6.0])
    assert c.version == 2
