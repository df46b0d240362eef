"""`need_dx=False` and `need_dh0=False` of the sequence backwards (docs/kernels.md): dx (dh0, and
the LSTM's dc0) is None, its GEMM is skipped, and every other output is exactly the one computed
with the flag True; the tape passes the flags when x (the initial state) needs no gradient."""

import re

import numpy as np
import pytest
from factories import assert_outputs_close

import minigrad as mg
from minigrad import _gemm, _gemm_ref, _ops, _ops_ref, kernels, nn
from minigrad.functional import recurrent as R

MODULES = {"cython": _ops, "twin": _ops_ref}
G = {"rnn": 1, "lstm": 4, "gru": 3}


def _problem(kind, dtype, with_lengths, bias, T=6, B=5, I=7, H=9, seed=0):
    rng = np.random.default_rng(seed + 17 * G[kind])
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    p = dict(
        x=f(T, B, I),
        h0=f(B, H),
        c0=f(B, H),
        w_ih=f(G[kind] * H, I),
        w_hh=f(G[kind] * H, H),
        b_ih=f(G[kind] * H) if bias else None,
        b_hh=f(G[kind] * H) if bias else None,
        dys=f(T, B, H),
        dh_n=f(B, H),
        dc_n=f(B, H),
        has_bias=bias,
        lengths=rng.integers(1, T + 1, size=B) if with_lengths else None,
    )
    if with_lengths:
        p["lengths"][0] = T
    return p


def _call(m, kind, fname, names, p, cache=None, **kw):
    """Call the kernel ``{kind}_{fname}`` with the named values of ``p`` in signature order: the
    LSTM alone takes the c state (c0, dc_n; c, dc1), the RNN alone its nonlinearity (tanh)."""
    values = dict(p, cache=cache, nonlinearity="tanh")
    skip = {"c0", "dc_n", "c", "dc1"} if kind != "lstm" else set()
    if kind != "rnn":
        skip.add("nonlinearity")
    args = [values[n] for n in names.split() if n not in skip]
    return getattr(m, f"{kind}_{fname}")(*args, **kw)


def _forward(m, kind, p):
    names = "x h0 c0 w_ih w_hh b_ih b_hh lengths nonlinearity"
    *_, cache = _call(m, kind, "sequence_forward", names, p)
    return cache


def _backward(m, kind, p, cache, **kw):
    names = "dys dh_n dc_n x h0 c0 w_ih w_hh cache lengths has_bias nonlinearity"
    return _call(m, kind, "sequence_backward", names, p, cache, **kw)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_need_dx_false_skips_dx_only(gemm_path, kind, dtype, with_lengths, bias):
    p = _problem(kind, dtype, with_lengths, bias)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    results = {}
    for name, m in MODULES.items():
        cache = _forward(m, kind, p)
        full = _backward(m, kind, p, cache)
        default = _backward(m, kind, p, cache, need_dx=True)
        skip = _backward(m, kind, p, cache, need_dx=False)
        assert len(skip) == len(full)
        assert skip[0] is None
        assert full[0] is not None and full[0].shape == p["x"].shape
        for i, (a, b, c) in enumerate(zip(full, default, skip)):
            if i == 0:
                np.testing.assert_array_equal(a, b)
                continue
            if a is None:
                assert b is None and c is None and not bias
                continue
            assert c.dtype == a.dtype and c.shape == a.shape
            np.testing.assert_array_equal(c, a, err_msg=f"{name} {kind}: output {i}")
            np.testing.assert_array_equal(b, a, err_msg=f"{name} {kind}: output {i}")
        results[name] = skip
    assert_outputs_close(results["cython"], results["twin"], f"{kind} cython vs twin", **tol)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_need_dx_false_still_validates(module, kind):
    """Bad arguments raise as before with need_dx=False (dx is what is skipped, not the checks)."""
    m = MODULES[module]
    p = _problem(kind, np.float64, True, True)
    cache = _forward(m, kind, p)
    bad = [
        ("x", p["x"].astype(np.float32), r"x.*float"),
        ("x", p["x"][:, :, :-1].copy(), r"w_ih.*got"),
        ("w_ih", p["w_ih"][:, :-1].copy(), r"w_ih.*got"),
        ("dys", p["dys"][:-1], r"dys.*got"),
        ("h0", np.asfortranarray(p["h0"]), r"h0.*contiguous"),
        ("lengths", np.full(p["x"].shape[1], p["x"].shape[0] + 1), r"lengths.*got"),
    ]
    for name, value, rx in bad:
        q = dict(p, **{name: value})
        with pytest.raises(ValueError, match=re.compile(rx, re.I | re.S)):
            _backward(m, kind, q, cache, need_dx=False)
    with pytest.raises((ValueError, TypeError), match="cache"):
        _backward(m, kind, p, cache[:-1], need_dx=False)


# ------------------------------------------------------------------------------ the tape
def _spy(monkeypatch, kind, flag="need_dx"):
    """Record the `flag` (need_dx or need_dh0) each sequence backward gets (through the kernels
    module)."""
    calls = []
    name = f"{kind}_sequence_backward"
    real = getattr(kernels, name)

    def spy(*args, **kw):
        calls.append(kw.get(flag, True))
        return real(*args, **kw)

    monkeypatch.setattr(kernels, name, spy)
    return calls


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_functional_sequence_passes_need_dx(backend, monkeypatch, kind, with_lengths):
    p = _problem(kind, np.float64, with_lengths, True)
    fn = getattr(R, f"{kind}_sequence")
    grads = {}
    for x_grad in (True, False):
        calls = _spy(monkeypatch, kind)
        x = mg.tensor(p["x"], requires_grad=x_grad)
        ws = [mg.tensor(p[n], requires_grad=True) for n in ("w_ih", "w_hh", "b_ih", "b_hh")]
        ys, state = fn(x, *ws, lengths=p["lengths"])
        h_n = state[0] if kind == "lstm" else state
        ((ys * mg.tensor(p["dys"])).sum() + (h_n * h_n).sum()).backward()
        assert calls == [x_grad]
        assert (x.grad is not None) == x_grad
        grads[x_grad] = [w.grad for w in ws]
        monkeypatch.undo()
    for a, b in zip(grads[True], grads[False]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_module_parameter_grads_do_not_depend_on_input_requiring_grad(backend, kind):
    """A 2-layer bidirectional module: only layer 0's nodes see an input without grad; its
    parameter gradients are identical to those of the same step with x requiring grad."""
    rng = np.random.default_rng(3)
    xd = rng.standard_normal((6, 4, 5)).astype(np.float32)
    lengths = [6, 3, 5, 1]
    layer = getattr(nn, kind)(5, 8, num_layers=2, bidirectional=True)
    grads = {}
    for x_grad in (True, False):
        layer.zero_grad()
        x = mg.tensor(xd, requires_grad=x_grad)
        out = layer(x, lengths=lengths)
        ys = out[0]
        (ys * ys).sum().backward()
        assert (x.grad is not None) == x_grad
        grads[x_grad] = {n: q.grad.copy() for n, q in layer.named_parameters()}
    assert grads[True].keys() == grads[False].keys()
    for n in grads[True]:
        np.testing.assert_array_equal(grads[True][n], grads[False][n], err_msg=n)


# ------------------------------------------------------------------------------ need_dh0
@pytest.mark.parametrize("T", [1, 6])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_need_dh0_false_skips_the_state_gradients_only(gemm_path, kind, dtype, with_lengths, T):
    p = _problem(kind, dtype, with_lengths, True, T=T)
    states = (1, 2) if kind == "lstm" else (1,)  # dh0 (and dc0) in the outputs
    results = {}
    for name, m in MODULES.items():
        cache = _forward(m, kind, p)
        full = _backward(m, kind, p, cache)
        skip = _backward(m, kind, p, cache, need_dh0=False, need_dx=False)
        assert len(skip) == len(full)
        for i, (a, c) in enumerate(zip(full, skip)):
            if i in states or i == 0:
                assert c is None and a is not None, (name, i)
            else:
                np.testing.assert_array_equal(c, a, err_msg=f"{name} {kind}: output {i}")
        results[name] = skip
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for i, (a, b) in enumerate(zip(results["cython"], results["twin"])):
        if a is not None:
            np.testing.assert_allclose(a, b, **tol, err_msg=f"{kind} cython vs twin: output {i}")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_op_asks_for_dh0_only_when_a_state_needs_it(backend, monkeypatch, kind):
    p = _problem(kind, np.float64, False, True)
    fn = getattr(R, f"{kind}_sequence")
    names = ("h0", "c0") if kind == "lstm" else ("h0",)
    grads = {}
    # no state given (zeros), states without grad, each state alone with grad
    for which in [None, ()] + [(n,) for n in names]:
        calls = _spy(monkeypatch, kind, "need_dh0")
        ws = [mg.tensor(p[n], requires_grad=True) for n in ("w_ih", "w_hh", "b_ih", "b_hh")]
        st = {} if which is None else {n: mg.tensor(p[n], requires_grad=n in which) for n in names}
        ys, state = fn(mg.tensor(p["x"]), *ws, **st)
        h_n = state[0] if kind == "lstm" else state
        ((ys * mg.tensor(p["dys"])).sum() + (h_n * h_n).sum()).backward()
        assert calls == [bool(which)], which
        for n in names:
            if which:
                assert (st[n].grad is not None) == (n in which), (which, n)
        grads[which] = [w.grad for w in ws]
        monkeypatch.undo()
    for which, g in grads.items():  # the same states (given ones) give the same weights' grads
        if which is not None:
            for a, b in zip(g, grads[()]):
                np.testing.assert_array_equal(a, b, err_msg=str(which))


# ------------------------------------------------------------------------------ the cells
def _cell_problem(kind, dtype, B=5, I=7, H=9, seed=0):
    p = _problem(kind, dtype, False, True, T=1, B=B, I=I, H=H, seed=seed)
    return dict(p, x=p["x"][0], h=p["h0"], c=p["c0"], dh1=p["dh_n"], dc1=p["dc_n"])


def _cell_run(m, kind, p, **kw):
    *_, cache = _call(m, kind, "cell_forward", "x h c w_ih w_hh b_ih b_hh nonlinearity", p)
    names = "dh1 dc1 x h c w_ih w_hh cache has_bias nonlinearity"
    return _call(m, kind, "cell_backward", names, p, cache, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_need_flags_skip_only_their_outputs(gemm_path, kind, dtype):
    """need_dx=False: dx is None; need_dh=False: dh (and the LSTM's dc) is None, its GEMM
    skipped; every other output is exactly the one computed with both flags True."""
    p = _cell_problem(kind, dtype)
    states = (1, 2) if kind == "lstm" else (1,)
    results = {}
    for name, m in MODULES.items():
        full = _cell_run(m, kind, p)
        assert all(a is not None for a in full)
        for need_dx, need_dh in [(False, True), (True, False), (False, False)]:
            got = _cell_run(m, kind, p, need_dx=need_dx, need_dh=need_dh)
            assert len(got) == len(full)
            for i, (a, c) in enumerate(zip(full, got)):
                if (i == 0 and not need_dx) or (i in states and not need_dh):
                    assert c is None, (name, need_dx, need_dh, i)
                else:
                    np.testing.assert_array_equal(c, a, err_msg=f"{name} {kind}: output {i}")
        results[name] = full
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for i, (a, b) in enumerate(zip(results["cython"], results["twin"])):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"{kind} cython vs twin: output {i}")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_need_flags_still_validate(module, kind):
    m = MODULES[module]
    p = _cell_problem(kind, np.float64)
    for name, value, rx in [
        ("dh1", p["dh1"][:, :-1].copy(), r"dh1.*got"),
        ("x", p["x"].astype(np.float32), r"x.*float"),
        ("h", np.asfortranarray(p["h"]), r"h.*contiguous"),
    ]:
        with pytest.raises(ValueError, match=re.compile(rx, re.I | re.S)):
            _cell_run(m, kind, dict(p, **{name: value}), need_dx=False, need_dh=False)


def _cell_spy(monkeypatch, kind):
    """Record (need_dx, need_dh) of every cell backward (through the kernels module)."""
    calls = []
    name = f"{kind}_cell_backward"
    real = getattr(kernels, name)

    def spy(*args, **kw):
        calls.append((kw.get("need_dx", True), kw.get("need_dh", True)))
        return real(*args, **kw)

    monkeypatch.setattr(kernels, name, spy)
    return calls


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unrolled_module_asks_only_for_the_gradients_it_needs(backend, monkeypatch, kind):
    """impl="step": T cell-step nodes on slices of the hoisted input projection, which needs a
    gradient at every step (it leads to W_ih). The zero initial state: step 0 asks for no dh;
    with the initial state requiring grad every step asks for it. The parameters' gradients
    are the same either way."""
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 3, 5, 6
    xd = rng.standard_normal((T, B, I)).astype(np.float32)
    layer = getattr(nn, kind)(I, H, impl="step")
    shape = (1, B, H)
    grads = {}
    for need in (False, True):
        calls = _cell_spy(monkeypatch, kind.lower())
        layer.zero_grad()
        x = mg.tensor(xd, requires_grad=need)
        if need:
            h0 = mg.tensor(np.zeros(shape, np.float32), requires_grad=True)
            hx = (
                (h0, mg.tensor(np.zeros(shape, np.float32), requires_grad=True))
                if kind == "LSTM"
                else h0
            )
        else:
            hx = None
        out, _ = layer(x, hx)
        (out * out).sum().backward()
        want = [(True, need or t > 0) for t in range(T - 1, -1, -1)]
        assert calls == want, (need, calls)
        assert (x.grad is not None) == need
        grads[need] = {n: q.grad.copy() for n, q in layer.named_parameters()}
        monkeypatch.undo()
    for n in grads[True]:
        np.testing.assert_array_equal(grads[True][n], grads[False][n], err_msg=n)


# ------------------------------------------------------------------------------ linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_need_dx_false_skips_dx_only(gemm_path, dtype, bias):
    rng = np.random.default_rng(11)
    x, w, dy = (rng.standard_normal(s).astype(dtype) for s in [(7, 5), (3, 5), (7, 3)])
    for name, m in {"cython": _gemm, "twin": _gemm_ref}.items():
        full = m.linear_backward(dy, x, w, bias)
        skip = m.linear_backward(dy, x, w, bias, need_dx=False)
        assert full[0] is not None and full[0].shape == x.shape and skip[0] is None
        for a, c in zip(full[1:], skip[1:]):
            if a is None:
                assert c is None and not bias
            else:
                np.testing.assert_array_equal(c, a, err_msg=name)


def test_linear_node_asks_for_dx_only_when_its_input_needs_it(backend, monkeypatch):
    calls = []
    real = kernels.linear_backward

    def spy(*args, **kw):
        calls.append(kw.get("need_dx", True))
        return real(*args, **kw)

    monkeypatch.setattr(kernels, "linear_backward", spy)
    rng = np.random.default_rng(12)
    w = mg.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    b = mg.tensor(rng.standard_normal(3), requires_grad=True)
    grads = []
    for x_grad in (False, True):
        w.grad = b.grad = None
        x = mg.tensor(rng.standard_normal((2, 4, 5)) * 0 + 1.0, requires_grad=x_grad)
        (mg.functional.linear(x, w, b) ** 2).sum().backward()
        assert (x.grad is not None) == x_grad
        grads.append((w.grad.copy(), b.grad.copy()))
    assert calls == [False, True]
    for a, c in zip(*grads):
        np.testing.assert_array_equal(a, c)
