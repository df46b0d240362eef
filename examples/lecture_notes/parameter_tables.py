"""The lecture notes' parameter tables (seed 002), with only the import line changed:
Embedding(10000, 50) -> SimpleRNN(50) / LSTM(50) / GRU(50) -> Dense(32) -> Dense(1, sigmoid),
each printed by ``model.summary()``: Embedding 500,000; SimpleRNN 5,050; LSTM 20,200; GRU 15,300
(Keras's reset_after form, two bias rows); Dense 1,632 and 33; total 506,715 for the SimpleRNN
model.

    python examples/lecture_notes/parameter_tables.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs: one thread is fastest here

import argparse
import sys

try:
    from minigrad.keras import backend, layers, models
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from minigrad.keras import backend, layers, models


def parameter_tables():
    """The notes' models, as written there; returns {name: total params}."""
    totals = {}
    for rnn in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        backend.clear_session()
        model = models.Sequential()
        model.add(layers.Embedding(input_dim=10000, output_dim=50))
        model.add(rnn(50))
        model.add(layers.Dense(32))
        model.add(layers.Dense(1, activation="sigmoid"))
        model.summary()
        totals[rnn.__name__] = model.count_params()
    return totals


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    return parameter_tables()


if __name__ == "__main__":
    main()
