"""Optimizers against their update rules written out here, against hand-computed steps, and
against torch.optim when torch is installed."""

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim

SHAPES = [(3, 4), (5,)]
STEPS = 6


# ----- the update rules, written out (PyTorch's documented algorithms) ------------------------
def _each_parameter(rule):
    """``rule(p, gs, **hyper)``, the parameter ``p`` after the steps on its gradients ``gs``, as
    ``f(params, grads, **hyper)``: the list of each parameter after its steps (inputs unchanged)."""

    def run(params, grads, **hyper):
        return [rule(p.copy(), gs, **hyper) for p, gs in zip(params, grads)]

    return run


@_each_parameter
def ref_sgd(p, gs, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    b = None
    for g in gs:
        g = g + weight_decay * p
        if momentum != 0:
            b = g.copy() if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
    return p


@_each_parameter
def ref_adagrad(
    p, gs, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10
):
    s = np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(gs, start=1):
        clr = lr / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * p
        s = s + g * g
        p = p - clr * g / (np.sqrt(s) + eps)
    return p


@_each_parameter
def ref_rmsprop(
    p, gs, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False
):
    v = np.zeros_like(p)
    b = np.zeros_like(p)
    gave = np.zeros_like(p)
    for g in gs:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        vt = v
        if centered:
            gave = alpha * gave + (1 - alpha) * g
            vt = vt - gave * gave
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(vt) + eps)
            p = p - lr * b
        else:
            p = p - lr * g / (np.sqrt(vt) + eps)
    return p


@_each_parameter
def ref_adam(
    p,
    gs,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    decoupled=False,
):
    b1, b2 = betas
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1**t)
        if amsgrad:
            vmax = np.maximum(vmax, v)
            vhat = vmax / (1 - b2**t)
        else:
            vhat = v / (1 - b2**t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def ref_adamw(params, grads, weight_decay=1e-2, **kw):
    return ref_adam(params, grads, weight_decay=weight_decay, decoupled=True, **kw)


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.02)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.3, eps=1e-6)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1, eps=1e-5)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, eps=1e-4)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, betas=(0.5, 0.9))),
]
REFS = {
    "SGD": ref_sgd,
    "Adagrad": ref_adagrad,
    "RMSprop": ref_rmsprop,
    "Adam": ref_adam,
    "AdamW": ref_adamw,
}
IDS = [f"{name}-{','.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]


def draw(seed, dtype=np.float64, steps=STEPS):
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for _ in range(steps)] for s in SHAPES]
    return p0, grads


def make(name, p0, **kw):
    params = [mg.Tensor(p, requires_grad=True) for p in p0]
    return params, getattr(optim, name)(params, **kw)


def run(opt, params, grads, steps):
    for t in steps:
        for p, gs in zip(params, grads):
            p.grad = gs[t].copy()
        opt.step()


# ----- against the written-out rules ---------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_update_rule_float64(name, kw):
    p0, grads = draw(1)
    params, opt = make(name, p0, **kw)
    run(opt, params, grads, range(STEPS))
    expected = REFS[name](p0, grads, **kw)
    for i, (p, e) in enumerate(zip(params, expected)):
        assert p.data.dtype == np.float64
        np.testing.assert_allclose(
            p.data, e, rtol=1e-12, atol=1e-14, err_msg=f"{name} {kw}: param {i} vs written-out rule"
        )
        assert not np.allclose(p.data, p0[i]), "the optimizer did not move the parameter"


@pytest.mark.parametrize("name,kw", CASES[::3], ids=IDS[::3])
def test_float32_stays_float32(name, kw):
    p0, grads = draw(2, np.float32)
    params, opt = make(name, p0, **kw)
    run(opt, params, grads, range(STEPS))
    p64 = [p.astype(np.float64) for p in p0]
    g64 = [[g.astype(np.float64) for g in gs] for gs in grads]
    expected = REFS[name](p64, g64, **kw)
    for p, e in zip(params, expected):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, e, rtol=2e-5, atol=2e-6)
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32, f"state {k} is {v.dtype}"


# ----- hand-computed steps (independent of the formulas above) -------------------------------
def test_sgd_momentum_constant_gradient_by_hand():
    p = mg.Tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    for _ in range(3):
        p.grad = np.array([1.0, 2.0])
        opt.step()
    # buffers 1, 1.9, 2.71 times the gradient: total 5.61 * lr * g
    np.testing.assert_allclose(p.data, [1.0 - 0.561, -2.0 - 1.122], rtol=1e-14)


def test_sgd_nesterov_by_hand():
    p = mg.Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.SGD([p], lr=1.0, momentum=0.5, nesterov=True)
    p.grad = np.array([2.0])
    opt.step()  # b = 2, step = 2 + 0.5*2 = 3
    p.grad = np.array([2.0])
    opt.step()  # b = 0.5*2 + 2 = 3, step = 2 + 1.5 = 3.5
    np.testing.assert_allclose(p.data, [-6.5], rtol=1e-15)


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_first_step_moves_lr_against_gradient_sign(cls):
    # m_hat = g and v_hat = g**2 after one step, so the step is lr * g / (|g| + eps)
    g = np.array([3.0, -0.5, 1e-3])
    p = mg.Tensor(np.zeros(3), requires_grad=True)
    opt = cls([p], lr=0.01, eps=1e-8, weight_decay=0)
    p.grad = g
    opt.step()
    np.testing.assert_allclose(p.data, -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adagrad_first_steps_by_hand():
    p = mg.Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.Adagrad([p], lr=0.5, eps=0.0)
    p.grad = np.array([2.0])
    opt.step()  # sum 4: step 0.5 * 2 / 2 = 0.5
    p.grad = np.array([3.0])
    opt.step()  # sum 13: step 0.5 * 3 / sqrt(13)
    np.testing.assert_allclose(p.data, [0.5 - 1.5 / math.sqrt(13)], rtol=1e-15)


def test_rmsprop_first_step_by_hand():
    p = mg.Tensor(np.array([0.0]), requires_grad=True)
    opt = optim.RMSprop([p], lr=0.1, alpha=0.75, eps=0.0)
    p.grad = np.array([2.0])
    opt.step()  # v = 0.25 * 4 = 1: step 0.1 * 2 / 1
    np.testing.assert_allclose(p.data, [-0.2], rtol=1e-15)


def test_adamw_zero_gradient_only_decays():
    p0 = np.array([2.0, -4.0])
    p = mg.Tensor(p0, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.grad = np.zeros(2)
        opt.step()
    np.testing.assert_allclose(p.data, p0 * 0.95**3, rtol=1e-15)


def test_adam_weight_decay_is_l2_not_decoupled():
    # with L2 decay a zero gradient still produces an Adam step of about lr (towards zero)
    p = mg.Tensor(np.array([2.0]), requires_grad=True)
    opt = optim.Adam([p], lr=0.1, weight_decay=0.5)
    p.grad = np.zeros(1)
    opt.step()
    np.testing.assert_allclose(p.data, [1.9], rtol=1e-7)


# ----- semantics -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES[::4], ids=IDS[::4])
def test_updates_in_place(name, kw):
    p0, grads = draw(3)
    params, opt = make(name, p0, **kw)
    data = params[0].data
    view = params[0].data[0]
    before = view.copy()
    run(opt, params, grads, range(2))
    assert params[0].data is data
    assert not np.array_equal(view, before), "a view of p.data did not see the update"


@pytest.mark.parametrize("name,kw", CASES[::2], ids=IDS[::2])
def test_params_without_grad_are_skipped(name, kw):
    p0, grads = draw(4)
    params, opt = make(name, p0, **kw)
    for t in range(3):
        params[0].grad = grads[0][t].copy()
        params[1].grad = None
        opt.step()
    np.testing.assert_array_equal(params[1].data, p0[1])
    assert params[1] not in opt.state
    np.testing.assert_allclose(
        params[0].data, REFS[name]([p0[0]], [grads[0][:3]], **kw)[0], rtol=1e-12, atol=1e-14
    )


def test_step_does_not_modify_grad():
    p0, grads = draw(5)
    for name, kw in CASES:
        params, opt = make(name, p0, **kw)
        for p, gs in zip(params, grads):
            p.grad = gs[0].copy()
        opt.step()
        opt.step()
        for p, gs in zip(params, grads):
            np.testing.assert_array_equal(p.grad, gs[0], err_msg=f"{name} {kw} changed .grad")


def test_param_groups_with_different_lr():
    p0, grads = draw(6)
    a = mg.Tensor(p0[0], requires_grad=True)
    b = mg.Tensor(p0[1], requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    run(opt, [a, b], grads, range(STEPS))
    np.testing.assert_allclose(a.data, ref_sgd([p0[0]], [grads[0]], lr=0.1)[0], rtol=1e-13)
    np.testing.assert_allclose(
        b.data, ref_sgd([p0[1]], [grads[1]], lr=0.5, momentum=0.9)[0], rtol=1e-13
    )


def test_add_param_group_and_changing_lr():
    p0, grads = draw(7)
    a = mg.Tensor(p0[0], requires_grad=True)
    b = mg.Tensor(p0[1], requires_grad=True)
    opt = optim.Adam([a], lr=0.01)
    opt.add_param_group({"params": b, "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    for g in opt.param_groups:
        g["lr"] = 0.02  # what a scheduler does
    run(opt, [a, b], grads, range(STEPS))
    np.testing.assert_allclose(a.data, ref_adam([p0[0]], [grads[0]], lr=0.02)[0], rtol=1e-12)
    np.testing.assert_allclose(
        b.data, ref_adam([p0[1]], [grads[1]], lr=0.02, betas=(0.5, 0.6))[0], rtol=1e-12
    )
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_zero_grad():
    p = mg.Tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    g = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is g and np.array_equal(g, np.zeros(3))
    opt.zero_grad()
    assert p.grad is None
    opt.zero_grad(set_to_none=False)  # None stays None
    assert p.grad is None


def test_step_with_closure_returns_loss():
    w = mg.Tensor(np.array([3.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with mg.no_grad():  # the closure still records: step enables grad for it
        loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_allclose(w.data, [3.0 - 0.25 * 6.0])


def test_trains_a_quadratic_with_autograd():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(4)
    for cls, kw in [
        (optim.SGD, dict(lr=0.1, momentum=0.5)),
        (optim.Adam, dict(lr=0.1)),
        (optim.RMSprop, dict(lr=0.05)),
        (optim.Adagrad, dict(lr=0.5)),
        (optim.AdamW, dict(lr=0.1, weight_decay=0.0)),
    ]:
        w = mg.Tensor(np.zeros(4), requires_grad=True)
        opt = cls([w], **kw)
        for _ in range(300):
            opt.zero_grad()
            ((w - target) * (w - target)).sum().backward()
            opt.step()
        np.testing.assert_allclose(w.data, target, atol=1e-2, err_msg=cls.__name__)


# ----- state dict ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_state_dict_round_trip_continues_identically(name, kw, tmp_path):
    p0, grads = draw(8)
    params, opt = make(name, p0, **kw)
    run(opt, params, grads, range(3))
    path = tmp_path / "opt.npz"
    mg.save({"optim": opt.state_dict(), "params": [p.data for p in params]}, path)

    ck = mg.load(path)
    params2, opt2 = make(name, ck["params"], **kw)  # fresh optimizer over restored params
    opt2.load_state_dict(ck["optim"])
    run(opt, params, grads, range(3, STEPS))
    run(opt2, params2, grads, range(3, STEPS))
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data, err_msg=f"{name} {kw}: resumed run differs")


def test_state_dict_layout_and_copies():
    p0, grads = draw(9)
    params, opt = make("Adam", p0, lr=0.01, amsgrad=True)
    run(opt, params, grads, range(2))
    sd = opt.state_dict()
    assert sd["param_groups"] == [
        dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=True, params=[0, 1])
    ]
    assert sorted(sd["state"]) == [0, 1]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][1]["step"] == 2
    sd["state"][0]["exp_avg"][...] = 1e6  # a copy: the optimizer is unaffected
    assert not np.any(opt.state[params[0]]["exp_avg"] == 1e6)


def _trained(name="Adam", **kw):
    p0, grads = draw(10)
    params, opt = make(name, p0, **kw)
    run(opt, params, grads, range(2))
    return params, opt


def test_load_state_dict_wrong_group_count():
    params, opt = _trained()
    sd = opt.state_dict()
    a = mg.Tensor(np.zeros(SHAPES[0]), requires_grad=True)
    b = mg.Tensor(np.zeros(SHAPES[1]), requires_grad=True)
    other = optim.Adam([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        other.load_state_dict(sd)


def test_load_state_dict_wrong_group_size():
    params, opt = _trained()
    other = optim.Adam([mg.Tensor(np.zeros(SHAPES[0]), requires_grad=True)])
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the loaded state dict, 1"):
        other.load_state_dict(opt.state_dict())


def test_load_state_dict_wrong_shape_leaves_optimizer_unchanged():
    params, opt = _trained()
    sd = opt.state_dict()
    sd["state"][1]["exp_avg"] = np.zeros(7)
    sd["param_groups"][0]["lr"] = 0.5
    before = opt.state_dict()
    with pytest.raises(
        ValueError,
        match=r"'exp_avg' must have the parameter's shape \(5,\), got "
        r"\(7,\)",
    ):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == before["param_groups"][0]["lr"]
    np.testing.assert_array_equal(opt.state[params[1]]["exp_avg"], before["state"][1]["exp_avg"])


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda sd: sd["state"][0].pop("exp_avg_sq"), r"lacks \['exp_avg_sq'\]"),
        (
            lambda sd: sd["state"][0].__setitem__("step", -1),
            "'step' must be a non-negative integer",
        ),
        (
            lambda sd: sd["state"][0].__setitem__("step", 1.5),
            "'step' must be a non-negative integer",
        ),
        (lambda sd: sd["state"].__setitem__(5, {}), "parameter index 5"),
        (lambda sd: sd["state"].__setitem__("0", sd["state"].pop(0)), "must be integers, got '0'"),
        (
            lambda sd: sd["param_groups"][0].__setitem__("betas", (0.9, 1.0)),
            "beta parameter at index 1",
        ),
        (lambda sd: sd["param_groups"][0].__setitem__("maximize", True), "maximize"),
        (lambda sd: sd.pop("state"), "keys 'state' and 'param_groups'"),
    ],
)
def test_load_state_dict_validation(edit, match):
    params, opt = _trained()
    sd = opt.state_dict()
    edit(sd)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)


def test_load_state_dict_casts_to_param_dtype():
    p0, grads = draw(11)
    params, opt = make("RMSprop", p0, momentum=0.9)
    run(opt, params, grads, range(2))
    sd = opt.state_dict()
    p32 = [mg.Tensor(p.astype(np.float32), requires_grad=True) for p in p0]
    opt32 = optim.RMSprop(p32, momentum=0.9)
    opt32.load_state_dict(sd)
    for st in opt32.state.values():
        assert st["square_avg"].dtype == np.float32
        assert st["momentum_buffer"].dtype == np.float32


def test_sgd_state_only_with_momentum():
    params, opt = _trained("SGD", lr=0.1)
    assert opt.state_dict()["state"] == {}
    params, opt = _trained("SGD", lr=0.1, momentum=0.9)
    assert set(opt.state_dict()["state"][0]) == {"momentum_buffer"}


# ----- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,kw,match",
    [
        (optim.SGD, dict(lr=-0.1), "lr: expected a value >= 0, got -0.1"),
        (optim.SGD, dict(lr=float("nan")), "lr"),
        (optim.SGD, dict(lr="0.1"), "lr must be a real number, got '0.1'"),
        (optim.SGD, dict(lr=0.1, momentum=-0.5), "momentum: expected a value >= 0, got -0.5"),
        (optim.SGD, dict(lr=0.1, weight_decay=-1), "weight_decay: expected a value >= 0, got -1"),
        (optim.SGD, dict(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum > 0"),
        (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
        (optim.Adagrad, dict(lr_decay=-1e-3), "lr_decay: expected a value >= 0, got -0.001"),
        (optim.Adagrad, dict(initial_accumulator_value=-1), "initial_accumulator_value"),
        (optim.Adagrad, dict(eps=-1e-10), "eps: expected a value >= 0, got -1e-10"),
        (optim.RMSprop, dict(alpha=1.5), "alpha <= 1, got 1.5"),
        (optim.RMSprop, dict(alpha=-0.1), "got -0.1"),
        (optim.RMSprop, dict(momentum=-1), "momentum"),
        (optim.Adam, dict(betas=(1.0, 0.999)), "index 0: expected 0 <= beta < 1, got 1.0"),
        (optim.Adam, dict(betas=(0.9, -0.1)), "index 1: expected 0 <= beta < 1, got -0.1"),
        (optim.Adam, dict(betas=0.9), "betas must be a pair"),
        (optim.Adam, dict(lr=-1e-3), "lr"),
        (optim.AdamW, dict(weight_decay=-0.01), "weight_decay: expected a value >= 0, got -0.01"),
        (optim.AdamW, dict(eps=-1.0), "eps"),
    ],
)
def test_hyperparameter_validation(cls, kw, match):
    p = mg.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match=match):
        cls([p], **kw)
    with pytest.raises(ValueError, match=match):  # also per group
        cls([{"params": [p], **kw}])


def test_param_validation():
    p = mg.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="parameter 1 of the group is a ndarray"):
        optim.SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="floating point"):
        optim.SGD([mg.Tensor(np.zeros(2, dtype=np.int64))], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="got a dict"):
        optim.SGD({"params": [p]}, lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(3, lr=0.1)


def test_generator_of_params_is_accepted():
    ps = [mg.Tensor(np.zeros(2), requires_grad=True) for _ in range(3)]
    opt = optim.Adam(p for p in ps)
    assert len(opt.param_groups[0]["params"]) == 3


def test_gradient_shape_mismatch_is_an_error():
    p = mg.Tensor(np.zeros(3), requires_grad=True)
    opt = optim.Adam([p])
    p.grad = np.zeros(4)
    with pytest.raises(
        ValueError,
        match=r"gradient of shape \(4,\) for a parameter of shape "
        r"\(3,\)",
    ):
        opt.step()


# ----- torch oracle ----------------------------------------------------------------------------
def _torch_run(torch, name, p0, grads, kw, lr2=None):
    tparams = [torch.tensor(p, requires_grad=True) for p in p0]
    if lr2 is None:
        topt = getattr(torch.optim, name)(tparams, **kw)
    else:
        topt = getattr(torch.optim, name)(
            [{"params": tparams[:1]}, {"params": tparams[1:], "lr": lr2}], **kw
        )
    for t in range(len(grads[0])):
        for p, gs in zip(tparams, grads):
            p.grad = torch.tensor(gs[t])
        topt.step()
    return [p.detach().numpy() for p in tparams], topt


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    p0, grads = draw(12, steps=10)
    params = [mg.Tensor(p, requires_grad=True) for p in p0]
    lr2 = 0.003
    opt = getattr(optim, name)([{"params": params[:1]}, {"params": params[1:], "lr": lr2}], **kw)
    run(opt, params, grads, range(10))
    expected, topt = _torch_run(torch, name, p0, grads, kw, lr2)
    for i, (p, e) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(
            p.data, e, rtol=1e-12, atol=1e-14, err_msg=f"{name} {kw}: param {i} vs torch"
        )
    # same per-parameter state names as torch, so state dicts carry over
    ours = {i: set(st) for i, st in opt.state_dict()["state"].items()}
    theirs = {i: set(st) for i, st in topt.state_dict()["state"].items()}
    assert ours == theirs, f"{name}: state keys differ from torch's"


@pytest.mark.parametrize("name,kw", CASES[::2], ids=IDS[::2])
def test_torch_state_dict_loads_and_continues(name, kw):
    torch = pytest.importorskip("torch")
    p0, grads = draw(13, steps=8)
    first = [gs[:4] for gs in grads]
    mid, topt = _torch_run(torch, name, p0, first, kw)
    tsd = topt.state_dict()
    sd = {
        "state": {
            i: {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
            for i, st in tsd["state"].items()
        },
        "param_groups": tsd["param_groups"],
    }
    params, opt = make(name, mid, **kw)
    opt.load_state_dict(sd)
    run(opt, params, grads, range(4, 8))
    tparams = topt.param_groups[0]["params"]
    with torch.no_grad():
        for t in range(4, 8):
            for p, gs in zip(tparams, grads):
                p.grad = torch.tensor(gs[t])
            topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] != "SGD"][::3])
def test_matches_torch_float32(name, kw):
    torch = pytest.importorskip("torch")
    p0, grads = draw(14, np.float32, steps=5)
    params, opt = make(name, p0, **kw)
    run(opt, params, grads, range(5))
    expected, _ = _torch_run(torch, name, p0, grads, kw)
    for p, e in zip(params, expected):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, e, rtol=1e-5, atol=1e-6)


# ----- the compiled update kernels ------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_compiled_and_numpy_backends_agree(name, kw):
    """Every optimizer steps through its kernel (kernels.sgd_update, adagrad_update,
    rmsprop_update, adam_update): the compiled kernel and its NumPy twin give the same float32
    trajectory up to an ulp or two per step."""
    from minigrad import kernels

    p0, grads = draw(21, np.float32)
    before = kernels.backend()
    out = {}
    try:
        for backend in ("cython", "numpy"):
            kernels.set_backend(backend)
            params, opt = make(name, p0, **kw)
            run(opt, params, grads, range(STEPS))
            out[backend] = [p.data.copy() for p in params]
    finally:
        kernels.set_backend(before)
    for a, b in zip(out["cython"], out["numpy"]):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name,kw", CASES[::2], ids=IDS[::2])
def test_strided_parameter_and_other_dtype_gradient(name, kw):
    """A parameter whose .data is not C-contiguous (set by hand) is updated in place through a
    contiguous copy, and a float64 gradient of a float32 parameter is rounded first: the same
    values as the plain case."""
    p0, grads = draw(5, np.float32)
    plain, opt = make(name, p0, **kw)
    run(opt, plain, grads, range(3))
    strided, opt = make(name, p0, **kw)
    for p in strided:
        p.data = np.asfortranarray(p.data) if p.data.ndim > 1 else p.data
    datas = [p.data for p in strided]
    for t in range(3):
        for p, gs in zip(strided, grads):
            p.grad = gs[t].astype(np.float64)
        opt.step()
    for p, q, d in zip(strided, plain, datas):
        assert p.data is d and p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, q.data)
    assert not strided[0].data.flags.c_contiguous  # the case under test did happen


@pytest.mark.parametrize(
    "name,kw",
    [
        ("SGD", dict(lr=0.1, momentum=0.9)),
        ("Adam", dict(lr=0.1)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.5)),
    ],
)
def test_a_refused_step_leaves_the_state_as_it_was(name, kw):
    """The update kernel refuses a read-only parameter before writing anything; the optimizer
    keeps no half-made state (a momentum buffer never filled, a step counted but not taken)."""
    p = mg.Tensor(np.ones(4), requires_grad=True)
    opt = getattr(optim, name)([p], **kw)
    p.grad = np.ones(4)
    p.data.flags.writeable = False
    with pytest.raises(ValueError, match="p must be writeable"):
        opt.step()
    p.data.flags.writeable = True
    st = opt.state.get(p, {})
    assert "momentum_buffer" not in st and st.get("step", 0) == 0
    params, ref = make(name, [np.ones(4)], **kw)
    params[0].grad = np.ones(4)
    ref.step()
    opt.step()
    np.testing.assert_array_equal(p.data, params[0].data)


# ----- all or nothing -------------------------------------------------------------------------
ALL_OR_NOTHING = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.1, momentum=0.5, centered=True)),
]


def _snapshot(params, opt):
    import copy

    return (
        [p.data.copy() for p in params],
        {i: copy.deepcopy(opt.state.get(p)) for i, p in enumerate(params)},
    )


def _same_snapshot(a, b):
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    for i in a[1]:
        sa, sb = a[1][i], b[1][i]
        assert (sa is None) == (sb is None), i
        if sa is not None:
            assert sorted(sa) == sorted(sb), i
            for k in sa:
                np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"param {i} state {k}")


def _break(kind, p, opt):
    if kind == "read-only parameter":
        p.data.flags.writeable = False
    elif kind == "grad shape":
        p.grad = np.ones(p.data.shape + (1,))
    elif kind == "complex grad":
        p.grad = p.grad.astype(np.complex128)
    elif kind == "state dtype":
        st = opt.state[p]
        k = next(k for k, v in st.items() if isinstance(v, np.ndarray))
        st[k] = st[k].astype(np.float32)
    elif kind == "state not an array":
        st = opt.state[p]
        k = next(k for k, v in st.items() if isinstance(v, np.ndarray))
        st[k] = 0.0
    elif kind == "read-only state":
        st = opt.state[p]
        k = next(k for k, v in st.items() if isinstance(v, np.ndarray))
        st[k].flags.writeable = False


@pytest.mark.parametrize(
    "kind",
    [
        "read-only parameter",
        "grad shape",
        "complex grad",
        "state dtype",
        "state not an array",
        "read-only state",
    ],
)
@pytest.mark.parametrize("name,kw", ALL_OR_NOTHING, ids=[n for n, _ in ALL_OR_NOTHING])
def test_a_step_failing_at_any_parameter_changes_nothing(name, kw, kind):
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (4,), (2, 2), (5,)]
    for pos in range(len(shapes)):
        params, opt = make(name, [rng.standard_normal(s) for s in shapes], **kw)
        for p in params:
            p.grad = rng.standard_normal(p.data.shape)
        opt.step()  # every parameter has state now
        for p in params:
            p.grad = rng.standard_normal(p.data.shape)
        _break(kind, params[pos], opt)
        before = _snapshot(params, opt)
        with pytest.raises((ValueError, TypeError), match=f"parameter {pos}"):
            opt.step()
        _same_snapshot(before, _snapshot(params, opt))


def test_load_state_dict_refuses_a_number_where_an_array_belongs():
    params, opt = make("Adam", [np.ones(3)], lr=0.1)
    params[0].grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = 0.0
    with pytest.raises(ValueError, match=r"'exp_avg'.*array.*float"):
        opt.load_state_dict(sd)
    sd["state"][0]["exp_avg"] = np.ones(3, dtype=np.complex128)
    with pytest.raises(ValueError, match=r"'exp_avg'.*complex128"):
        opt.load_state_dict(sd)
    params[0].grad = np.ones(3)
    opt.step()  # still usable
