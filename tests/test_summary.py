"""nn.summary: the seeds' Keras model, counted by formula; rows, totals, modes restored."""

import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def pytorch_layout_count(gates, inputs, hidden):
    """Parameters of one recurrent layer direction in PyTorch's layout: W_ih, W_hh, b_ih, b_hh."""
    return gates * (hidden * inputs + hidden * hidden + 2 * hidden)


def keras_count(gates, inputs, hidden):
    """Keras SimpleRNN / LSTM / GRU(reset_after=False): one bias per gate block."""
    return gates * (hidden * inputs + hidden * hidden + hidden)


def seeds_model(cell="LSTM"):
    return nn.Sequential(
        nn.Embedding(10000, 50),
        getattr(nn, cell)(50, 50, batch_first=True, return_sequences=False),
        nn.Linear(50, 32),
        nn.ReLU(),
        nn.Linear(32, 1),
    )


def rows(text):
    """{layer name: (output shape text, count)} from the table."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+ \(\w+\))\s+(\(.*?\)|\[.*\])\s+([\d,]+)$", line)
        if m:
            out[m.group(1)] = (m.group(2), int(m.group(3).replace(",", "")))
    return out


def totals(text):
    return {
        k: int(v.replace(",", ""))
        for k, v in re.findall(r"^(Total|Trainable|Non-trainable) params: ([\d,]+)$", text, re.M)
    }


def test_seeds_lstm_model_counts():
    model = seeds_model()
    tokens = np.random.default_rng(0).integers(0, 10000, size=(3, 20))
    text = nn.summary(model, tokens, print_fn=None)
    r = rows(text)
    expected = {
        "0 (Embedding)": ("(3, 20, 50)", 10000 * 50),
        "1 (LSTM)": ("(3, 50)", pytorch_layout_count(4, 50, 50)),
        "2 (Linear)": ("(3, 32)", 50 * 32 + 32),
        "3 (ReLU)": ("(3, 32)", 0),
        "4 (Linear)": ("(3, 1)", 32 * 1 + 1),
    }
    assert r == expected
    total = sum(c for _, c in expected.values())
    assert totals(text) == {"Total": total, "Trainable": total, "Non-trainable": 0}
    # the notes' figures: Embedding 500,000; LSTM 20,400 here (Keras 20,200); Dense 1,632 and 33
    assert expected["1 (LSTM)"][1] - keras_count(4, 50, 50) == 4 * 50


@pytest.mark.parametrize("cell, gates", [("RNN", 1), ("GRU", 3)])
def test_simple_rnn_and_gru_counts(cell, gates):
    text = nn.summary(seeds_model(cell), (2, 20), print_fn=None)  # int64 ids: Embedding first
    assert rows(text)[f"1 ({cell})"][1] == pytorch_layout_count(gates, 50, 50)
    assert pytorch_layout_count(gates, 50, 50) - keras_count(gates, 50, 50) == gates * 50


def test_bidirectional_stacked_counts_and_tuple_outputs():
    model = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    text = nn.summary(model, (5, 2, 3), print_fn=None)
    expected = 2 * pytorch_layout_count(4, 3, 4) + 2 * pytorch_layout_count(4, 2 * 4, 4)
    assert totals(text)["Total"] == expected == sum(p.numel() for p in model.parameters())
    assert "[(5, 2, 8), [(4, 2, 4), (4, 2, 4)]]" in text


def test_trainable_counts_and_printing(capsys):
    model = seeds_model()
    model[0].requires_grad_(False)
    text = nn.summary(model, (2, 7), dtype=np.int64)
    printed = capsys.readouterr().out
    assert printed.strip() == text.strip()
    t = totals(text)
    assert t["Non-trainable"] == 10000 * 50 and t["Trainable"] == t["Total"] - 10000 * 50


def test_summary_restores_modes_and_hooks_and_draws_no_randomness():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model[2].eval()
    mg.manual_seed(5)
    nn.summary(model, (3, 4), print_fn=None)
    after = mg.random.default_rng().random()
    mg.manual_seed(5)
    assert mg.random.default_rng().random() == after, "summary consumed random numbers"
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert all(not m._forward_hooks for m in model.modules())


def test_container_with_own_parameters_and_bad_input():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.gain = nn.Parameter(np.ones(3, dtype=np.float32))

        def forward(self, x):
            return self.lin(x) * self.gain

    text = nn.summary(Scaled(), np.zeros((2, 3), dtype=np.float32), print_fn=None)
    r = rows(text)
    assert r["lin (Linear)"][1] == 12
    assert any(
        line.startswith("Scaled") and line.rstrip().endswith(" 3") for line in text.splitlines()
    )
    assert totals(text)["Total"] == 15
    with pytest.raises(TypeError, match="input shape"):
        nn.summary(Scaled(), "big", print_fn=None)
