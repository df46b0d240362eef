"""The three implementations of each recurrent layer compute the same thing.

``impl="sequence"`` (one compiled node per layer and direction), ``impl="step"`` (one compiled
cell node per time step) and ``impl="composed"`` (the cell in primitive tape ops) must give the
same outputs, final states and gradients (inputs, initial states, every parameter) over layer
types, num_layers, directions, batch_first, bias, lengths, initial states and dtypes: tight in
float64, looser in float32.  Inter-layer dropout, recurrent dropout and zoneout (the same
generator seed draws the same masks in each), the Keras-style return conventions and
``layer_norm=True`` (alone and with the dropouts and zoneout) too.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_recurrent_modules import Case, cases, examples, grads_of, upstream

import minigrad as mg
from minigrad import nn

IMPLS = ("sequence", "step", "composed")
TOL = {
    np.float64: {"out": (1e-11, 1e-13), "grad": (1e-10, 1e-12)},  # (rtol, atol)
    np.float32: {"out": (1e-5, 1e-6), "grad": (1e-4, 1e-5)},
}


def _assert_same(case, results):
    """results: {impl: (outputs, grads)}; each impl against "sequence"."""
    tol = TOL[case.dtype]
    outs_ref, g_ref = results["sequence"]
    for impl in IMPLS[1:]:
        outs, g = results[impl]
        for name, a, b in zip(["output", "h_n", "c_n"], outs, outs_ref):
            assert a.dtype == case.dtype, (impl, name, a.dtype)
            np.testing.assert_allclose(
                a,
                b,
                rtol=tol["out"][0],
                atol=tol["out"][1],
                err_msg=f"{name}: {impl} vs sequence, {case}",
            )
        assert g.keys() == g_ref.keys(), impl
        for k in g_ref:
            assert g[k].dtype == case.dtype, (impl, k, g[k].dtype)
            np.testing.assert_allclose(
                g[k],
                g_ref[k],
                rtol=tol["grad"][0],
                atol=tol["grad"][1],
                err_msg=f"d{k}: {impl} vs sequence, {case}",
            )


@examples(30)
@given(case=cases(dtypes=(np.float64, np.float32)))
def test_the_three_implementations_agree(case):
    modules = {impl: case.make(impl=impl) for impl in IMPLS}
    for impl in IMPLS[1:]:  # the same weights (make seeds them alike; make sure)
        modules[impl].load_state_dict(modules["sequence"].state_dict())
    weights = upstream(case.call(modules["sequence"], case.leaves()))
    _assert_same(case, {impl: grads_of(case, m, weights) for impl, m in modules.items()})


@examples(30)
@given(case=cases(dtypes=(np.float64, np.float32)), seed=st.integers(0, 2**32 - 1))
def test_the_three_agree_with_recurrent_dropout_and_zoneout(case, seed):
    """Input and recurrent dropout and zoneout, masks drawn from generators
    seeded alike: the three compute the same outputs and gradients, in training and eval."""
    modules = {impl: case.make(impl=impl, **_dropout_options(case, seed)) for impl in IMPLS}
    for impl in IMPLS[1:]:
        modules[impl].load_state_dict(modules["sequence"].state_dict())
    _assert_same_in_train_and_eval(case, modules, seed)


def _dropout_options(case, seed):
    """Input and recurrent dropout, zoneout and a seeded generator."""
    return dict(
        input_dropout=0.3,
        recurrent_dropout=0.4,
        zoneout=0.25,
        generator=np.random.default_rng(seed),
    )


def _assert_same_in_train_and_eval(case, modules, seed):
    """The three modules (drawing masks from generators seeded alike) agree in training and in
    eval; returns the sequence impl's (outputs, gradients) in each."""
    weights = upstream(case.call(modules["sequence"], case.leaves()))
    train = {}
    for impl in IMPLS:  # the call above drew masks from one generator: redraw them all alike
        modules[impl].generator = np.random.default_rng(seed)
        train[impl] = grads_of(case, modules[impl], weights)
    _assert_same(case, train)
    for m in modules.values():
        m.eval()
    evals = {impl: grads_of(case, m, weights) for impl, m in modules.items()}
    _assert_same(case, evals)
    return train["sequence"], evals["sequence"]


def _layer_norm_modules(case, seed, **options):
    """The three implementations of the case's layer with layer_norm=True (and options),
    sharing one state whose norm gains and shifts are drawn away from their initial 1 and 0."""
    modules = {impl: case.make(impl=impl, layer_norm=True, **options) for impl in IMPLS}
    rng = np.random.default_rng(seed)
    state = modules["sequence"].state_dict()
    for name, a in state.items():
        if name.startswith("layer_norm_"):
            state[name] = (a + rng.uniform(-0.5, 0.5, a.shape)).astype(a.dtype)
    for m in modules.values():
        m.load_state_dict(state)
    return modules


@examples(30)
@given(
    case=cases(dtypes=(np.float64,)).filter(lambda c: c.mode != "RNN"),
    seed=st.integers(0, 2**16),
)
def test_the_three_implementations_agree_with_layer_norm(case, seed):
    """layer_norm=True: the sequence and cell kernels (norms in their row passes) and the
    composed cell (F.layer_norm nodes) agree, norm gains and shifts included. float64 here:
    these blocks are 1 to 3 units wide, and a norm over 2 or 3 values closer than sqrt(eps)
    magnifies float32 rounding 300-fold; the larger case below checks float32."""
    modules = _layer_norm_modules(case, seed)
    weights = upstream(case.call(modules["sequence"], case.leaves()))
    results = {impl: grads_of(case, m, weights) for impl, m in modules.items()}
    assert any(k.startswith("layer_norm_weight") for k in results["sequence"][1])
    _assert_same(case, results)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_the_three_agree_with_layer_norm_on_a_larger_layer(mode, dtype):
    case = Case(mode, "tanh", 2, True, True, False, 6, 4, 5, 7, [6, 2, 4, 1], True, 9, dtype=dtype)
    modules = _layer_norm_modules(case, 3)
    weights = upstream(case.call(modules["sequence"], case.leaves()))
    _assert_same(case, {impl: grads_of(case, m, weights) for impl, m in modules.items()})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_the_three_agree_with_layer_norm_dropout_and_zoneout(mode, dtype):
    """layer_norm=True with input_dropout, recurrent_dropout and zoneout through the layer API:
    two layers, both directions, ragged lengths; the three agree in training and eval, and the
    norms' gains and shifts get their gradients."""
    case = Case(mode, "tanh", 2, True, True, False, 6, 4, 5, 7, [6, 2, 4, 1], True, 9, dtype=dtype)
    modules = _layer_norm_modules(case, 4, **_dropout_options(case, 4))
    assert all(m.layer_norm and m.zoneout and m.recurrent_dropout for m in modules.values())
    train, evals = _assert_same_in_train_and_eval(case, modules, 4)
    assert not np.allclose(train[0][0], evals[0][0]), "training's masks must change the output"
    for results in (train, evals):
        assert any(
            k.startswith("layer_norm_bias") and np.abs(g).max() > 0 for k, g in results[1].items()
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_the_three_agree_on_a_larger_layer_with_everything_on(mode, dtype):
    """Three layers, both directions, batch_first, ragged lengths, given states: the drawn
    cases above stay small, this one is the size where a misplaced index shows."""
    case = Case(mode, "tanh", 3, True, True, True, 7, 4, 5, 6, [7, 3, 5, 1], True, 5, dtype=dtype)
    modules = {impl: case.make(impl=impl) for impl in IMPLS}
    weights = upstream(case.call(modules["sequence"], case.leaves()))
    _assert_same(case, {impl: grads_of(case, m, weights) for impl, m in modules.items()})


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_the_three_agree_with_dropout_between_layers(mode):
    """Dropout draws one mask per layer boundary from minigrad's generator, in the same order
    in every implementation: reseeded alike, the three agree (and dropout did change the
    output, so the masks were really applied)."""
    I, H, T, B = 3, 4, 5, 2
    x0 = np.random.default_rng(0).standard_normal((T, B, I))
    results = {}
    for impl in IMPLS + ("no-dropout",):
        mg.manual_seed(1)
        m = getattr(nn, mode)(
            I,
            H,
            num_layers=3,
            dropout=0.5,
            dtype=np.float64,
            impl="sequence" if impl == "no-dropout" else impl,
        )
        if impl == "no-dropout":
            m.eval()
        x = mg.tensor(x0, requires_grad=True)
        mg.manual_seed(2)
        out, _ = m(x)
        (out * out).sum().backward()
        results[impl] = (out.data, x.grad, {n: p.grad for n, p in m.named_parameters()})
    ref_out, ref_dx, ref_g = results["sequence"]
    assert np.abs(ref_out - results["no-dropout"][0]).max() > 1e-3
    for impl in IMPLS[1:]:
        out, dx, g = results[impl]
        np.testing.assert_allclose(out, ref_out, rtol=1e-11, atol=1e-13, err_msg=f"{impl}: output")
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12, err_msg=f"{impl}: dx")
        for n in ref_g:
            np.testing.assert_allclose(
                g[n], ref_g[n], rtol=1e-10, atol=1e-12, err_msg=f"{impl}: d{n}"
            )


@pytest.mark.parametrize(
    "return_sequences, return_state", [(True, False), (False, False), (False, True), (True, True)]
)
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_the_three_agree_on_every_return_convention(mode, return_sequences, return_state):
    I, H, T, B = 2, 3, 4, 3
    x0 = np.random.default_rng(3).standard_normal((B, T, I))
    lengths = [4, 1, 2]
    results = {}
    for impl in IMPLS:
        mg.manual_seed(4)
        m = getattr(nn, mode)(
            I,
            H,
            num_layers=2,
            bidirectional=True,
            batch_first=True,
            return_sequences=return_sequences,
            return_state=return_state,
            dtype=np.float64,
            impl=impl,
        )
        x = mg.tensor(x0, requires_grad=True)
        res = m(x, lengths=lengths)
        flat = []
        stack = [res]
        while stack:  # (out, (h_n, c_n)) etc. -> [out, h_n, c_n]
            r = stack.pop(0)
            if isinstance(r, tuple):
                stack = list(r) + stack
            else:
                flat.append(r)
        sum((t * t).sum() for t in flat).backward()
        results[impl] = ([t.data for t in flat], x.grad)
    ref, ref_dx = results["sequence"]
    for impl in IMPLS[1:]:
        got, dx = results[impl]
        assert [a.shape for a in got] == [b.shape for b in ref], impl
        for k, (a, b) in enumerate(zip(got, ref)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f"{impl}: result {k}")
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12, err_msg=f"{impl}: dx")
