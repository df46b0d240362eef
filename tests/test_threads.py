"""Threads: what minigrad promises when two threads share a model (see docs/testing.md,
"Threads"): concurrent backward passes into the same leaves lose no gradient, and a run that
gives each thread its own dropout generator is reproducible."""

import sys
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.functional import dropout


@pytest.fixture
def busy_switching():
    """Switch threads as often as the interpreter allows, to expose races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def run_threads(n, fn):
    """Run fn(0) .. fn(n - 1) in n threads at once; re-raise the first exception any raised."""
    errors = []

    def wrapped(i):
        try:
            fn(i)
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_concurrent_backward_into_shared_leaves_loses_nothing(busy_switching):
    """Integer-valued data: every sum is exact, so the threaded total must equal the
    sequential one bit for bit, whatever the order."""
    layer = nn.Linear(400, 300).double()  # large: numpy adds it with the GIL released
    x = mg.Tensor(np.ones((4, 400)))
    rounds = 100

    def work(_):
        for _ in range(rounds):
            (layer(x) * 2.0).sum().backward()

    run_threads(2, work)
    threaded_w, threaded_b = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.zero_grad()
    work(0)
    work(1)
    np.testing.assert_array_equal(threaded_w, layer.weight.grad)
    np.testing.assert_array_equal(threaded_b, layer.bias.grad)
    assert threaded_w[0, 0] == 2 * rounds * 4 * 2


def test_dropout_module_takes_a_generator():
    x = mg.Tensor(np.ones((6, 8), dtype=np.float32))
    a = nn.Dropout(0.5, generator=np.random.default_rng(3))(x)
    b = nn.Dropout(0.5, generator=np.random.default_rng(3))(x)
    np.testing.assert_array_equal(a.data, b.data)
    assert 0 < (a.data == 0).sum() < a.data.size
    np.testing.assert_array_equal(dropout(x, 0.5, rng=np.random.default_rng(3)).data, a.data)
    with pytest.raises(TypeError, match="numpy Generator"):
        nn.Dropout(0.5, generator=3)


def test_use_generator_is_per_thread(busy_switching):
    """Each thread draws from its own generator inside `use_generator`, so a threaded run
    repeats a sequential one exactly even though dropout calls interleave."""
    x = mg.Tensor(np.ones((5, 7), dtype=np.float32))

    def masks(seed, out):
        with mg.random.use_generator(np.random.default_rng(seed)):
            for _ in range(50):
                out.append(dropout(x, 0.3).data)

    seq = {0: [], 1: []}
    masks(10, seq[0])
    masks(11, seq[1])
    thr = {0: [], 1: []}
    run_threads(2, lambda i: masks(10 + i, thr[i]))
    for i in (0, 1):
        for a, b in zip(seq[i], thr[i]):
            np.testing.assert_array_equal(a, b)
    mg.manual_seed(5)
    first = dropout(x, 0.3).data
    mg.manual_seed(5)
    with mg.random.use_generator(np.random.default_rng(0)):
        dropout(x, 0.3)
    np.testing.assert_array_equal(dropout(x, 0.3).data, first)  # the global one was not used


def test_two_threads_training_their_own_models_match_sequential_runs(busy_switching):
    def train(seed):
        gen = np.random.default_rng(seed)
        with mg.random.use_generator(gen):
            model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
            opt = mg.optim.Adam(model.parameters(), lr=1e-2)
            x = mg.Tensor(gen.standard_normal((32, 6)).astype(np.float32))
            y = mg.Tensor(gen.standard_normal((32, 1)).astype(np.float32))
            for _ in range(30):
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                opt.step()
        return [p.data.copy() for p in model.parameters()]

    seq = [train(1), train(2)]
    thr = [None, None]

    def work(i):
        thr[i] = train(i + 1)

    run_threads(2, work)
    for a, b in zip(seq, thr):
        for p, q in zip(a, b):
            np.testing.assert_array_equal(p, q)
