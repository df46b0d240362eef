"""Learning-rate schedulers: each against its formula written out here, resume through a saved
state dict, bad arguments, and step for step against torch when it is installed."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.optim import lr_scheduler as S


def make_opt(kind="sgd", lrs=(0.1,)):
    groups = [{"params": [mg.tensor(np.ones(2), requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "adam":
        return mg.optim.Adam(groups)
    return mg.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def run(sched, opt, n):
    """The rate before each of n optimizer steps (the first is the constructor's)."""
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# The formulas, written from PyTorch's documentation, as functions of the step t.
FORMULAS = {
    "StepLR": (dict(step_size=3, gamma=0.5), lambda b, t: b * 0.5 ** (t // 3)),
    "MultiStepLR": (
        dict(milestones=[2, 5, 5], gamma=0.1),
        lambda b, t: b * 0.1 ** ((t >= 2) + 2 * (t >= 5)),
    ),
    "ExponentialLR": (dict(gamma=0.9), lambda b, t: b * 0.9**t),
    "CosineAnnealingLR": (
        dict(T_max=7, eta_min=0.01),
        lambda b, t: 0.01 + (b - 0.01) * (1 + math.cos(math.pi * t / 7)) / 2,
    ),
    "LinearLR": (
        dict(start_factor=0.25, end_factor=1.0, total_iters=4),
        lambda b, t: b * (0.25 + 0.75 * min(t, 4) / 4),
    ),
    "LambdaLR": (dict(lr_lambda=lambda t: 1 / (1 + t)), lambda b, t: b / (1 + t)),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_schedule_follows_formula(name):
    kwargs, f = FORMULAS[name]
    opt = make_opt()
    sched = getattr(S, name)(opt, **kwargs)
    got = run(sched, opt, 25)
    want = [f(0.1, t) for t in range(25)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=name)
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def test_cosine_continues_past_t_max_as_a_cosine():
    opt = make_opt()
    sched = S.CosineAnnealingLR(opt, T_max=4)
    got = run(sched, opt, 17)
    want = [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(17)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_step_with_epoch_uses_closed_form():
    opt = make_opt()
    sched = S.StepLR(opt, step_size=2, gamma=0.5)
    sched.step(7)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_one_cycle_phases_and_momentum():
    opt = make_opt("sgd")
    T = 20
    sched = S.OneCycleLR(opt, max_lr=1.0, total_steps=T, pct_start=0.25)
    lrs, moms = [], []
    for _ in range(T):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step() if len(lrs) < T else None
    up = 0.25 * T - 1
    init, lo = 1.0 / 25, 1.0 / 25 / 1e4

    def cos_anneal(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)

    for t in range(T):
        if t <= up:
            want, wm = cos_anneal(init, 1.0, t / up), cos_anneal(0.95, 0.85, t / up)
        else:
            pct = (t - up) / (T - 1 - up)
            want, wm = cos_anneal(1.0, lo, pct), cos_anneal(0.85, 0.95, pct)
        assert lrs[t] == pytest.approx(want, rel=1e-12), t
        assert moms[t] == pytest.approx(wm, rel=1e-12), t
    assert max(lrs) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total_steps is 20"):
        sched.step()
        sched.step()


def test_one_cycle_cycles_adam_beta1():
    opt = make_opt("adam")
    S.OneCycleLR(opt, max_lr=0.01, total_steps=10)
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.95)
    assert opt.param_groups[0]["betas"][1] == pytest.approx(0.999)


def test_sequential_warmup_then_cosine():
    opt = make_opt()
    warm = S.LinearLR(opt, start_factor=0.1, total_iters=3)
    cos = S.CosineAnnealingLR(opt, T_max=5)
    sched = S.SequentialLR(opt, [warm, cos], milestones=[3])
    got = run(sched, opt, 10)
    want = [0.1 * (0.1 + 0.9 * t / 3) for t in range(3)]
    want += [0.1 * (1 + math.cos(math.pi * (t - 3) / 5)) / 2 for t in range(3, 10)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_reduce_on_plateau():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    lrs = []
    for metric in [1.0] + [0.9] * 16:
        sched.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    # best 0.9 at step 2; bad steps 3, 4, 5 -> halve at step 5; step 6 is the cooldown (its bad
    # step does not count); bad 7, 8, 9 -> halve at 9; cooldown 10; bad 11-13 -> 0.0125 is
    # under min_lr, so 0.02 at 13; at 17 the floor leaves nothing to reduce.
    assert lrs == [0.1] * 4 + [0.05] * 4 + [0.025] * 4 + [0.02] * 5
    assert sched.get_last_lr() == [lrs[-1]]


def test_reduce_on_plateau_counts_exactly():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    seen = []
    for metric in [3.0, 3.0, 3.0, 2.0, 2.0, 2.0]:
        sched.step(metric)
        seen.append(opt.param_groups[0]["lr"])
    # 3.0 best; bad at steps 2 and 3 (> patience 1 at the 2nd bad) -> halve at step 3;
    # 2.0 at step 4 is better; bad at 5 and 6 -> halve at step 6.
    assert seen == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025]


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_resume_from_saved_state(name, tmp_path):
    kwargs, _ = FORMULAS[name]
    opt = make_opt()
    sched = getattr(S, name)(opt, **kwargs)
    run(sched, opt, 6)
    path = tmp_path / "ckpt.npz"
    mg.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, path)
    rest = run(sched, opt, 8)

    opt2 = make_opt()
    ck = mg.load(path)
    opt2.load_state_dict(ck["opt"])
    sched2 = getattr(S, name)(opt2, **kwargs)
    sched2.load_state_dict(ck["sched"])
    opt2.param_groups[0]["lr"] = ck["opt"]["param_groups"][0]["lr"]
    np.testing.assert_allclose(run(sched2, opt2, 8), rest, rtol=1e-12, err_msg=name)


def test_sequential_state_round_trip():
    opt = make_opt()

    def mk(o):
        return S.SequentialLR(
            o, [S.LinearLR(o, total_iters=2), S.ExponentialLR(o, 0.5)], milestones=[2]
        )

    sched = mk(opt)
    run(sched, opt, 4)
    state = sched.state_dict()
    rest = run(sched, opt, 4)
    opt2 = make_opt()
    opt2.load_state_dict(opt.state_dict())
    sched2 = mk(opt2)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = state["_last_lr"][0]
    np.testing.assert_allclose(run(sched2, opt2, 4), rest, rtol=1e-12)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda o: S.StepLR(o, step_size=0), "step_size must be a positive integer, got 0"),
        (lambda o: S.CosineAnnealingLR(o, T_max=2.5), "T_max must be a positive integer"),
        (lambda o: S.LinearLR(o, start_factor=0), r"start_factor must be in \(0, 1\]"),
        (lambda o: S.ExponentialLR(o, gamma=float("nan")), "gamma must be finite"),
        (lambda o: S.MultiStepLR(o, milestones=[-1]), "milestones must be non-negative"),
        (lambda o: S.OneCycleLR(o, max_lr=0.1), "needs total_steps"),
        (
            lambda o: S.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=5),
            "expected 1 values for max_lr",
        ),
        (lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=5, pct_start=2.0), "pct_start"),
        (lambda o: S.ReduceLROnPlateau(o, factor=1.5), "factor must be < 1.0"),
        (lambda o: S.ReduceLROnPlateau(o, mode="up"), "mode must be 'min' or 'max', got 'up'"),
        (lambda o: S.LambdaLR(o, lr_lambda=3), "lr_lambda must be callable"),
        (lambda o: S.SequentialLR(o, [S.StepLR(o, 2)], milestones=[1]), "one milestone fewer"),
        (lambda o: S.StepLR(o, 2, last_epoch=4), "initial_lr"),
        (lambda o: S.StepLR(object(), 2), "expected a minigrad.optim Optimizer, got object"),
    ],
)
def test_bad_arguments(make, match):
    opt = make_opt()
    before = dict(opt.param_groups[0])
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        make(opt)
    if "initial_lr" not in before:  # a refused constructor wrote nothing into the groups
        assert opt.param_groups[0]["lr"] == before["lr"]


def test_load_state_dict_refuses_foreign_keys():
    opt = make_opt()
    cos = S.CosineAnnealingLR(opt, T_max=3)
    step = S.StepLR(make_opt(), step_size=2)
    with pytest.raises(ValueError, match="keys it does not have"):
        cos.load_state_dict(step.state_dict())


@given(st.lists(st.integers(1, 30), min_size=1, max_size=4), st.floats(0.05, 0.99))
def test_multistep_is_piecewise_constant(milestones, gamma):
    opt = make_opt()
    sched = S.MultiStepLR(opt, milestones, gamma=gamma)
    got = run(sched, opt, 35)
    for t, lr in enumerate(got):
        k = sum(m <= t for m in milestones)
        assert lr == pytest.approx(0.1 * gamma**k, rel=1e-9)


# ----- torch as an oracle (optional) -------------------------------------------------------

TORCH_CASES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[2, 5, 5], gamma=0.1)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("LinearLR", dict(start_factor=0.25, total_iters=4)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=30, pct_start=0.3)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=30, three_phase=True, anneal_strategy="linear")),
]


@pytest.mark.parametrize("name, kwargs", TORCH_CASES)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_matches_torch(name, kwargs, kind):
    torch = pytest.importorskip("torch")
    w = torch.zeros(2, requires_grad=True)
    topt = (
        torch.optim.Adam([w], lr=0.1)
        if kind == "adam"
        else torch.optim.SGD([w], lr=0.1, momentum=0.9)
    )
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    opt = make_opt(kind)
    sched = getattr(S, name)(opt, **kwargs)
    n = 29 if name == "OneCycleLR" else 25
    for t in range(n):
        assert opt.param_groups[0]["lr"] == pytest.approx(
            topt.param_groups[0]["lr"], rel=1e-12, abs=1e-18
        ), (name, t)
        if name == "OneCycleLR":
            key = "betas" if kind == "adam" else "momentum"
            np.testing.assert_allclose(
                opt.param_groups[0][key], topt.param_groups[0][key], rtol=1e-12
            )
        topt.step()
        tsched.step()
        opt.step()
        sched.step()


def test_sequential_and_plateau_match_torch():
    torch = pytest.importorskip("torch")
    w = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.1)
    tl = torch.optim.lr_scheduler
    tsched = tl.SequentialLR(
        topt,
        [tl.LinearLR(topt, 0.1, total_iters=3), tl.CosineAnnealingLR(topt, T_max=6)],
        milestones=[3],
    )
    opt = make_opt()
    sched = S.SequentialLR(
        opt,
        [S.LinearLR(opt, 0.1, total_iters=3), S.CosineAnnealingLR(opt, T_max=6)],
        milestones=[3],
    )
    for t in range(15):
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12), t
        topt.step()
        tsched.step()
        opt.step()
        sched.step()  # noqa: E702

    topt = torch.optim.SGD([w], lr=0.1)
    tp = tl.ReduceLROnPlateau(topt, factor=0.5, patience=2, cooldown=1, threshold=0.01)
    opt = make_opt()
    p = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, threshold=0.01)
    rng = np.random.default_rng(0)
    for metric in rng.uniform(0.5, 1.0, size=40):
        tp.step(float(metric))
        p.step(float(metric))
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
