"""Recycled forward caches: a sequence node hands its cache arrays back to the compiled kernels
after its backward, and the next forward of the same shape reuses them. Reuse must never
change a result nor write into an array something else still refers to."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels, nn

_checks = pytest.importorskip("minigrad._checks")
RECYCLES = not _checks.DEBUG_BUILD  # the debug build's arrays carry guard bytes: it keeps none


@pytest.fixture(autouse=True)
def _compiled_and_empty():
    before = kernels.backend()
    kernels.set_backend("cython")  # recycling is part of the compiled kernels
    _checks.clear_recycled()
    yield
    _checks.clear_recycled()
    kernels.set_backend(before)


def _model(cls, **kw):
    mg.manual_seed(0)
    return cls(6, 8, num_layers=2, **kw)


def _x(seed=1, T=5, B=3):
    return mg.Tensor(np.random.default_rng(seed).standard_normal((T, B, 6)).astype(np.float32))


def _train(model, steps, retain_graph=False):
    opt = mg.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for s in range(steps):
        ys, _ = model(_x(s))
        loss = (ys * ys).mean()
        opt.zero_grad()
        loss.backward(retain_graph=retain_graph)
        opt.step()
        losses.append(loss.item())
    return losses, [p.data.copy() for p in model.parameters()]


@pytest.mark.parametrize(
    "cls,kw",
    [
        (nn.LSTM, {}),
        (nn.LSTM, {"layer_norm": True}),
        (nn.GRU, {}),
        (nn.GRU, {"layer_norm": True}),
        (nn.RNN, {"zoneout": 0.2}),
    ],
)
def test_training_with_recycled_caches_equals_training_without(cls, kw):
    # retain_graph=True keeps every cache with its node, so nothing is recycled there
    losses_a, params_a = _train(_model(cls, **kw), 4)
    assert (_checks.recycled_bytes() > 0) == RECYCLES
    _checks.clear_recycled()
    losses_b, params_b = _train(_model(cls, **kw), 4, retain_graph=True)
    assert _checks.recycled_bytes() == 0
    assert losses_a == losses_b
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a, b)


def test_steady_state_reuses_instead_of_growing():
    model = _model(nn.LSTM, layer_norm=True)
    _train(model, 1)
    first = _checks.recycled_bytes()
    _train(model, 5)
    assert _checks.recycled_bytes() == first  # taken by each forward, given back after backward


def test_an_output_still_held_is_never_overwritten():
    model = _model(nn.LSTM, layer_norm=True)
    ys, _ = model(_x(0))
    (ys * ys).mean().backward()
    kept = ys.data.copy()  # ys is a view of the states cache: that cache must stay out
    for s in range(1, 4):
        out, _ = model(_x(s))
        (out * out).mean().backward()
    np.testing.assert_array_equal(ys.data, kept)


def test_saved_arrays_held_elsewhere_are_not_recycled():
    mg.manual_seed(0)
    model = nn.GRU(6, 8)  # one layer: one sequence node
    ys, _ = model(_x(0))
    saved = ys._ctx.saved  # a second reference to the saved tuple
    cache = next(v for v in saved if type(v) is tuple)
    before = [a.copy() for a in cache]
    (ys * ys).mean().backward()
    assert _checks.recycled_bytes() == 0
    for s in range(1, 3):
        out, _ = model(_x(s))
        (out * out).mean().backward()
    for a, b in zip(cache, before):
        np.testing.assert_array_equal(a, b)


def test_recycle_keeps_only_unreferenced_float_arrays():
    owned = np.ones((4, 5), np.float32)
    arrays = [owned]
    del owned
    assert _checks.recycle(arrays) == int(RECYCLES)
    if not RECYCLES:
        return
    assert arrays == []  # the list lets go of what it held
    assert _checks.recycled_bytes() == 4 * 5 * 4
    held = np.ones((4, 5), np.float32)
    assert _checks.recycle([held]) == 0  # `held` refers to it too
    base = np.ones((4, 6), np.float32)
    assert _checks.recycle([base[:, :5]]) == 0  # a view: not its own memory
    ints = [np.ones((4, 5), np.int32)]
    assert _checks.recycle(ints) == 0
    view_owner = np.ones(10, np.float64)
    view = view_owner[2:]  # noqa: F841 - keeps a reference to view_owner alive
    arrays = [view_owner]
    del view_owner
    assert _checks.recycle(arrays) == 0  # the view refers to it
    assert _checks.recycled_bytes() == 4 * 5 * 4
    _checks.clear_recycled()
    assert _checks.recycled_bytes() == 0


def test_numpy_twins_recycle_nothing():
    kernels.set_backend("numpy")
    try:
        _train(_model(nn.LSTM, layer_norm=True), 2)
        assert _checks.recycled_bytes() == 0
    finally:
        kernels.set_backend("cython")


def _owned(shape):
    arrays = [np.ones(shape, np.float32)]
    return arrays  # the list holds the only reference


def test_a_full_pool_drops_the_least_recently_used_shapes_first():
    if not RECYCLES:
        return
    before = _checks._set_recycle_max(3 * 400)
    try:
        assert _checks.recycle(_owned((10, 10))) == 1  # 400 bytes each
        assert _checks.recycle(_owned((10, 10))) == 1
        assert _checks.recycle(_owned((20, 5))) == 1
        assert _checks.recycled_bytes() == 1200
        # a new shape: the (10, 10) arrays, least recently used, make room for it
        assert _checks.recycle(_owned((5, 20))) == 1
        assert _checks.recycled_bytes() == 800
        # more of the most recent shape while the rest is full of it: room from (20, 5)
        assert _checks.recycle(_owned((5, 20))) == 1
        assert _checks.recycle(_owned((5, 20))) == 1
        assert _checks.recycled_bytes() == 1200
        assert _checks.recycle(_owned((5, 20))) == 0  # full of its own shape: not kept
        assert _checks.recycle(_owned((40, 40))) == 0  # larger than the whole pool
        assert _checks.recycled_bytes() == 1200
    finally:
        _checks._set_recycle_max(before)
    with pytest.raises(ValueError, match="recycle limit must be >= 0 bytes, got -1"):
        _checks._set_recycle_max(-1)


def test_training_with_changing_shapes_keeps_the_pool_within_its_limit():
    if not RECYCLES:
        return
    before = _checks._set_recycle_max(200_000)
    try:
        model = _model(nn.LSTM, layer_norm=True)
        opt = mg.optim.SGD(model.parameters(), lr=0.1)
        for T in range(3, 30):  # a new sequence length every step
            ys, _ = model(_x(T, T=T))
            loss = (ys * ys).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert _checks.recycled_bytes() <= 200_000
        assert _checks.recycled_bytes() > 0
    finally:
        _checks._set_recycle_max(before)
