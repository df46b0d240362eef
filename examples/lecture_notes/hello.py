"""The lecture notes' character-level "hello" model (seed 004): the vocabulary h, e, l, o
one-hot, a SimpleRNN with 3 hidden units and a softmax over the 4 characters at every step,
trained on "hell" -> "ello"; prints the greedy prediction and a sampled continuation of "h".

    python examples/lecture_notes/hello.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs: one thread is fastest here

import argparse
import sys

import numpy as np

try:
    import minigrad as mg
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import minigrad as mg
from minigrad.keras import layers, models, optimizers, utils


def hello(epochs, seed=0):
    """The notes' character model: returns (greedy prediction for 'hell', a sampled string)."""
    chars = "helo"
    ix = {c: i for i, c in enumerate(chars)}
    x = utils.to_categorical([[ix[c] for c in "hell"]], 4)  # (1, 4, 4) one-hot
    y = utils.to_categorical([[ix[c] for c in "ello"]], 4)
    mg.manual_seed(seed)
    model = models.Sequential(
        [
            layers.SimpleRNN(3, input_shape=(None, 4), return_sequences=True),
            layers.TimeDistributed(layers.Dense(4, activation="softmax")),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam(0.05))
    model.fit(x, y, epochs=epochs, verbose=0)
    greedy = "".join(chars[i] for i in model.predict(x, verbose=0)[0].argmax(-1))
    rng = np.random.default_rng(seed)
    text = "h"
    for _ in range(4):
        onehot = np.eye(4, dtype=np.float32)[[ix[c] for c in text]][None]  # (1, t, 4)
        p = model.predict(onehot, verbose=0)[0, -1]
        text += chars[rng.choice(4, p=p / p.sum())]
    print(f"hello: 'hell' -> {greedy!r} (target 'ello'); sampled from 'h': {text!r}")
    return greedy, text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=300, help="(default: 300)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    return hello(args.epochs, args.seed)


if __name__ == "__main__":
    main()
