"""Module and Parameter: registration, traversal, state_dict round trips and errors, repr,
train/eval, dtype conversion, hooks."""

import copy
import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import Module, Parameter


class Block(Module):
    def __init__(self):
        super().__init__()
        self.b = Parameter(np.zeros(2, dtype=np.float32))
        self.inner = nn.Linear(2, 3)
        self.a = Parameter(np.ones((3, 2), dtype=np.float32))
        self.not_a_param = np.zeros(4)  # plain attributes are not registered

    def forward(self, x):
        return self.inner(x) + (self.a @ self.b).sum()


class Net(Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.scale = Parameter(np.array([2.0], dtype=np.float32))
        self.second = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))

    def forward(self, x):
        return self.second(self.first(x)) * self.scale


# ----------------------------------------------------------------- Parameter
def test_parameter_is_a_leaf_tensor_requiring_grad():
    p = Parameter(np.arange(3.0))
    assert isinstance(p, mg.Tensor)
    assert p.requires_grad and p.is_leaf
    assert p.dtype == np.float64
    assert Parameter([1.0, 2.0]).dtype == np.float32
    assert not Parameter(np.zeros(2), requires_grad=False).requires_grad
    with pytest.raises(TypeError, match="floating point"):
        Parameter(np.arange(3))


def test_parameter_copies_its_data():
    a = np.zeros(3)
    p = Parameter(a)
    a[0] = 5
    assert p.data[0] == 0


def test_parameter_repr():
    text = repr(Parameter(np.array([1.0, 2.0], dtype=np.float32)))
    assert text.startswith("Parameter containing:\n")
    assert "requires_grad=True" in text


def test_operations_on_parameters_give_plain_tensors_and_gradients():
    p = Parameter(np.array([1.0, -2.0]))
    y = (p * p).sum()
    assert type(y) is mg.Tensor
    y.backward()
    np.testing.assert_allclose(p.grad, [2.0, -4.0])


# ----------------------------------------------------------------- registration
def test_named_parameters_dotted_in_registration_order():
    # PyTorch's order: a module's own parameters, then each child's, depth first
    names = [n for n, _ in Net().named_parameters()]
    assert names == [
        "scale",
        "first.b",
        "first.a",
        "first.inner.weight",
        "first.inner.bias",
        "second.0.weight",
        "second.0.bias",
        "second.2.weight",
        "second.2.bias",
    ]


def test_direct_parameters_before_submodules_and_recurse_false():
    net = Net()
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert [p for p in net.parameters(recurse=False)] == [net.scale]
    assert len(list(net.parameters())) == 9


def test_children_and_modules():
    net = Net()
    assert [n for n, _ in net.named_children()] == ["first", "second"]
    assert list(net.children()) == [net.first, net.second]
    names = [n for n, _ in net.named_modules()]
    assert names == ["", "first", "first.inner", "second", "second.0", "second.1", "second.2"]
    assert next(iter(net.modules())) is net


def test_shared_parameter_and_module_are_listed_once():
    class Tied(Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 4)
            self.dec = self.enc
            self.w = self.enc.weight

    t = Tied()
    assert len(list(t.parameters())) == 2
    assert [n for n, _ in t.named_modules()] == ["", "enc"]


def test_attribute_access_and_reassignment():
    blk = Block()
    assert isinstance(blk.a, Parameter) and blk.a is blk._parameters["a"]
    new = Parameter(np.zeros((3, 2), dtype=np.float32))
    blk.a = new
    assert blk.a is new
    with pytest.raises(TypeError, match="Parameter or None expected"):
        blk.a = mg.tensor(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="Module or None expected"):
        blk.inner = 3
    blk.a = None
    assert "a" not in [n for n, _ in blk.named_parameters()]
    del blk.inner
    assert "inner" not in dict(blk.named_children())
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        blk.missing


def test_assigning_before_init_is_an_error():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_register_helpers_check_their_arguments():
    m = Module()
    m.register_parameter("p", Parameter(np.zeros(2)))
    m.add_module("lin", nn.Linear(2, 2))
    m.register_buffer("running", np.ones(3))
    assert [n for n, _ in m.named_parameters()] == ["p", "lin.weight", "lin.bias"]
    with pytest.raises(TypeError, match="Parameter or None expected"):
        m.register_parameter("q", np.zeros(2))
    with pytest.raises(KeyError, match="without '.'"):
        m.add_module("a.b", nn.ReLU())
    with pytest.raises(TypeError, match="is not a Module"):
        m.add_module("x", 3)


def test_forward_not_implemented_and_call_runs_forward():
    with pytest.raises(NotImplementedError, match="forward"):
        Module()(1)

    class Twice(Module):
        def forward(self, x, k=2):
            return x * k

    assert Twice()(3, k=5) == 15


def test_forward_hook_sees_output_and_can_be_removed():
    lin = nn.Linear(2, 3)
    seen = []
    handle = lin.register_forward_hook(lambda mod, args, out: seen.append((mod, out.shape)))
    lin(np.ones((4, 2), dtype=np.float32))
    assert seen == [(lin, (4, 3))]
    handle.remove()
    lin(np.ones((4, 2), dtype=np.float32))
    assert len(seen) == 1


# ----------------------------------------------------------------- train / eval / zero_grad
def test_train_eval_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.second.train()
    assert net.second[1].training and not net.first.training
    with pytest.raises(ValueError, match="bool"):
        net.train("yes")


def test_zero_grad_to_none_or_zeros():
    net = Net()
    out = net(mg.tensor(np.ones((2, 2), dtype=np.float32)))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    grads = [p.grad for p in net.parameters()]
    net.zero_grad(set_to_none=False)
    for p, g in zip(net.parameters(), grads):
        assert p.grad is g and not g.any()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_requires_grad_flag_for_all_parameters():
    net = Net().requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


# ----------------------------------------------------------------- state_dict
def test_state_dict_is_ordered_copy():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == [n for n, _ in net.named_parameters()]
    for (name, p), arr in zip(net.named_parameters(), sd.values()):
        assert type(arr) is np.ndarray
        np.testing.assert_array_equal(arr, p.data, err_msg=name)
        assert not np.shares_memory(arr, p.data)
    sd["scale"][0] = 99
    assert net.scale.data[0] == 2.0


def test_state_dict_round_trip_in_place():
    mg.manual_seed(1)
    a = Net()
    mg.manual_seed(2)
    b = Net()
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32))
    assert not np.allclose(a(x).data, b(x).data)
    arrays_before = [p.data for p in b.parameters()]
    params_before = list(b.parameters())
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(a(x).data, b(x).data)
    # in place: the same Parameter objects and the same arrays (an optimizer keeps working)
    assert all(p is q for p, q in zip(b.parameters(), params_before))
    assert all(p.data is arr for p, arr in zip(b.parameters(), arrays_before))


def test_load_state_dict_accepts_tensors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict({k: mg.tensor(v) for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_load_state_dict_strict_lists_every_problem_and_copies_nothing():
    net = Net()
    before = net.state_dict()
    sd = net.state_dict()
    del sd["first.a"]
    del sd["second.2.bias"]
    sd["bogus.weight"] = np.zeros(3, dtype=np.float32)
    sd["scale"] = np.zeros((2,), dtype=np.float32)  # wrong shape
    sd["first.b"] = np.zeros(2, dtype=np.float64)  # wrong dtype
    sd["second.0.weight"] = sd["second.0.weight"] + 1  # a valid change
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    for needle in [
        "'first.a'",
        "'second.2.bias'",
        "'bogus.weight'",
        "missing",
        "unexpected",
        "'scale': shape mismatch, expected (1,), got (2,)",
        "'first.b': dtype mismatch, expected float32, got float64",
    ]:
        assert needle in msg, (needle, msg)
    after = net.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=f"{k} changed by a failed load")


def test_load_state_dict_non_strict_reports_keys_but_checks_shapes():
    net = Net()
    src = Net()
    sd = src.state_dict()
    del sd["scale"]
    sd["extra"] = np.zeros(1)
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["scale"] and res.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(net.first.a.data, src.first.a.data)
    sd["first.a"] = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape("'first.a': shape mismatch")):
        net.load_state_dict(sd, strict=False)


def test_load_state_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        nn.Linear(2, 2).load_state_dict([("weight", np.zeros((2, 2)))])


def test_buffers_are_in_state_dict_and_converted():
    m = Module()
    m.register_buffer("stat", np.arange(3, dtype=np.float32))
    m.w = Parameter(np.zeros(2, dtype=np.float32))
    assert list(m.state_dict()) == ["w", "stat"]
    m.double()
    assert m.stat.dtype == np.float64
    m.load_state_dict({"w": np.ones(2), "stat": np.full(3, 7.0)})
    np.testing.assert_array_equal(m.stat, [7.0, 7.0, 7.0])


def test_deepcopy_gives_independent_parameters():
    net = Net()
    twin = copy.deepcopy(net)
    twin.scale.data[0] = -1
    assert net.scale.data[0] == 2.0
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in net.named_parameters()]


# ----------------------------------------------------------------- dtype
def test_to_double_and_back_keeps_parameter_objects():
    net = Net()
    params = list(net.parameters())
    x = np.ones((2, 2))
    net(mg.tensor(x, dtype=np.float32)).sum().backward()
    assert net.double() is net
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(p.grad.dtype == np.float64 for p in net.parameters())
    assert all(p is q for p, q in zip(net.parameters(), params))
    assert net(mg.tensor(x, dtype=np.float64)).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    net.to(dtype="float64")
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.to("cpu") is net


def test_to_rejects_non_float_dtypes():
    with pytest.raises(ValueError, match="float32 or float64, got int64"):
        nn.Linear(2, 2).to(np.int64)
    with pytest.raises(ValueError, match="float32 or float64, got float16"):
        nn.Linear(2, 2).to(np.float16)


# ----------------------------------------------------------------- repr
def test_repr_nested_like_pytorch():
    model = nn.Sequential(
        nn.Embedding(10, 4, padding_idx=0),
        nn.LSTM(4, 8, batch_first=True, return_sequences=False),
        nn.Sequential(nn.Linear(8, 2), nn.ReLU()),
        nn.Dropout(0.25),
    )
    expected = "\n".join(
        [
            "Sequential(",
            "  (0): Embedding(10, 4, padding_idx=0)",
            "  (1): LSTM(4, 8, batch_first=True, return_sequences=False)",
            "  (2): Sequential(",
            "    (0): Linear(in_features=8, out_features=2, bias=True)",
            "    (1): ReLU()",
            "  )",
            "  (3): Dropout(p=0.25)",
            ")",
        ]
    )
    assert repr(model) == expected


def test_repr_multiline_extra_repr():
    class Custom(Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1, bias=False)

        def extra_repr(self):
            return "alpha=1\nbeta=2"

    assert repr(Custom()) == (
        "Custom(\n  alpha=1\n  beta=2\n"
        "  (lin): Linear(in_features=1, out_features=1, bias=False)\n)"
    )


# ----- all or nothing -------------------------------------------------------------------------
def _model():
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _inject(kind, sd, key, net):
    """Make entry `key` of the load fail in one way; returns what to undo afterwards."""
    target = dict(net.named_parameters())[key]
    if kind == "read-only target":
        target.data.flags.writeable = False
        return lambda: setattr(target.data.flags, "writeable", True)
    if kind == "shape":
        sd[key] = np.zeros(sd[key].shape + (1,), sd[key].dtype)
    elif kind == "dtype":
        sd[key] = sd[key].astype(np.float64)
    elif kind == "object":
        sd[key] = object()
    return lambda: None


@pytest.mark.parametrize("kind", ["read-only target", "shape", "dtype", "object"])
def test_load_state_dict_failing_at_any_position_changes_nothing(kind):
    keys = list(_model().state_dict())
    for pos, key in enumerate(keys):
        net = _model()
        before = {k: v.copy() for k, v in net.state_dict().items()}
        sd = {k: v + 1 for k, v in before.items()}  # different values for every entry
        undo = _inject(kind, sd, key, net)
        try:
            with pytest.raises(ValueError, match=re.escape(repr(key))):
                net.load_state_dict(sd)
        finally:
            undo()
        after = net.state_dict()
        for k in keys:
            np.testing.assert_array_equal(after[k], before[k], err_msg=f"{kind} at {pos}: {k}")
