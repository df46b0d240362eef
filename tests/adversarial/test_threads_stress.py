"""Two threads on one model, compared bit for bit with a sequential run: backward passes into
shared parameters (the same input each time, so every pass adds the same gradient and the
order of the additions cannot change the sum), and training two models at once with dropout
drawn from per-thread generators."""

import sys

import numpy as np
import pytest
from test_threads import run_threads

import minigrad as mg
from minigrad import nn

from .conftest import FULL


@pytest.fixture(autouse=True)
def busy_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("impl", ["sequence", "step", "composed"])
def test_two_thread_backward_on_one_lstm_matches_sequential(impl):
    rounds = 150 if FULL else 15
    mg.manual_seed(0)
    lstm = nn.LSTM(5, 6, num_layers=2, impl=impl)
    head = nn.Linear(6, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    x = mg.Tensor(np.random.default_rng(1).standard_normal((4, 3, 5)).astype(np.float32))

    def work():
        for _ in range(rounds):
            out, _ = lstm(x)
            head(out).sum().backward()

    run_threads(2, lambda _: work())
    threaded = [p.grad.copy() for p in params]
    for p in params:
        p.grad = None
    work()
    work()
    for p, t in zip(params, threaded):
        np.testing.assert_array_equal(t, p.grad)


def test_two_threads_training_lstms_with_dropout_match_sequential():
    steps = 60 if FULL else 8

    def train(seed):
        gen = np.random.default_rng(seed)
        with mg.random.use_generator(gen):
            model = nn.LSTM(4, 8, num_layers=2, dropout=0.3, batch_first=True)
            head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 1))
            params = list(model.parameters()) + list(head.parameters())
            opt = mg.optim.Adam(params, lr=1e-2)
            x = mg.Tensor(gen.standard_normal((6, 5, 4)).astype(np.float32))
            y = mg.Tensor(gen.standard_normal((6, 5, 1)).astype(np.float32))
            losses = []
            for _ in range(steps):
                opt.zero_grad()
                out, _ = model(x)
                loss = ((head(out) - y) ** 2).mean()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return losses, [p.data.copy() for p in params]

    seq = [train(1), train(2)]
    thr = [None, None]

    run_threads(2, lambda i: thr.__setitem__(i, train(i + 1)))
    for (l1, p1), (l2, p2) in zip(seq, thr):
        assert l1 == l2
        for a, b in zip(p1, p2):
            np.testing.assert_array_equal(a, b)
