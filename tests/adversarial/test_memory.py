"""Kept tensors must not keep their graphs: after a backward without retain_graph, a loss kept
for logging holds its own few bytes, not the forward activations behind it."""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn

from .conftest import FULL


def test_a_kept_loss_does_not_keep_the_activations_alive():
    rng = np.random.default_rng(0)
    w = mg.Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    x = mg.Tensor(rng.standard_normal((3, 5)))
    h = (x @ w).tanh()
    hidden = weakref.ref(h)
    loss = (h * h).sum()
    del h
    gc.collect()
    assert hidden() is not None  # the graph holds it until backward
    loss.backward()
    gc.collect()
    assert hidden() is None, "the activation outlived backward through the kept loss"
    assert w.grad is not None and loss.item() > 0
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_keeps_them_and_a_second_backward_works():
    w = mg.Tensor(np.ones((2, 2)), requires_grad=True)
    h = w.tanh()
    hidden = weakref.ref(h)
    loss = (h * h).sum()
    del h
    loss.backward(retain_graph=True)
    gc.collect()
    assert hidden() is not None
    first = w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(w.grad, 2 * first)


def test_a_shared_subgraph_freed_by_one_backward_gives_the_clear_error_to_the_other():
    w = mg.Tensor(np.ones(3), requires_grad=True)
    y = w.exp()
    a, b = (y * 2).sum(), (y * 3).sum()
    a.backward()
    with pytest.raises(RuntimeError, match="second time"):
        b.backward()


def test_memory_stays_flat_over_many_steps_with_every_loss_kept():
    """An LSTM step with B*T*H = 8*20*32 floats of activations per gate: kept losses must cost
    bytes per step, not the ~100 KB of activations each step's graph holds."""
    steps = 3000 if FULL else 400
    mg.manual_seed(0)
    model = nn.LSTM(16, 32, batch_first=True)
    head = nn.Linear(32, 1)
    opt = mg.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=1e-3)
    x = mg.Tensor(np.random.default_rng(0).standard_normal((8, 20, 16)).astype(np.float32))
    kept = []

    def step():
        opt.zero_grad()
        out, _ = model(x)
        loss = head(out).mean()
        loss.backward()
        opt.step()
        kept.append(loss)

    for _ in range(20):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(steps):
            step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    per_step = grown / steps
    activations = 8 * 20 * 32 * 4 * 4  # the four gates' outputs alone, float32
    assert per_step < activations / 20, f"{per_step:.0f} bytes kept per step"
