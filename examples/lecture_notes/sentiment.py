"""The lecture notes' sentiment comparison (seed 002): a dense baseline (Embedding -> Flatten
-> Dense) against SimpleRNN, LSTM, GRU and a two-layer GRU, each followed by Dense(32, relu) and
Dense(1, sigmoid), trained with binary cross-entropy and Adam; prints each model's test accuracy.

By default on generated reviews: word ids 1..5 are positive, 6..10 negative, the rest neutral,
and the label is 1 when positive words outnumber negative ones. Reviews are padded in front
(``pad_sequences``' default) and the Embedding masks the padding (``mask_zero=True``), so the
recurrent layers skip it. ``--imdb DIR`` reads the standard aclImdb folder layout instead
(DIR/train/pos, DIR/train/neg, DIR/test/pos, DIR/test/neg, one review per .txt file) through
``TextVectorization``.

    python examples/lecture_notes/sentiment.py            # 2,000 reviews, 8 epochs
    python examples/lecture_notes/sentiment.py --quick    # 200 reviews, 2 epochs (seconds)

A full run printed test accuracy 0.982 (Embedding + Dense), 0.942 (SimpleRNN), 0.974 (LSTM),
0.982 (GRU), 0.982 (two-layer GRU).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs: one thread is fastest here

import sys

import numpy as np

try:
    import minigrad as mg
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import minigrad as mg
# the helper next to this script (its folder is on sys.path when run as a script)
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _fit_args import epochs, fit_parser

from minigrad.keras import layers, models, utils


def make_reviews(rng, n, vocab=200, max_len=40, n_sentiment=5):
    """(list of word-id lists, labels): lengths 5..max_len, about a third sentiment words."""
    seqs, labels = [], []
    while len(seqs) < n:
        L = int(rng.integers(5, max_len + 1))
        words = rng.integers(2 * n_sentiment + 1, vocab, L)
        sent = rng.random(L) < 0.35
        words[sent] = rng.integers(1, 2 * n_sentiment + 1, int(sent.sum()))
        pos = int(((words >= 1) & (words <= n_sentiment)).sum())
        neg = int(((words > n_sentiment) & (words <= 2 * n_sentiment)).sum())
        if pos == neg:
            continue
        seqs.append(words.tolist())
        labels.append(float(pos > neg))
    return seqs, np.array(labels, np.float32)


def read_imdb(root, max_words, maxlen, limit=None):
    """(x_train, y_train, x_test, y_test) from an aclImdb folder: word indices through
    TextVectorization (vocabulary from the training reviews), padded in front to maxlen."""

    def read(split):
        texts, labels = [], []
        for label, sub in ((1.0, "pos"), (0.0, "neg")):
            folder = os.path.join(root, split, sub)
            if not os.path.isdir(folder):
                raise SystemExit(f"--imdb: expected the folder {folder} (aclImdb layout)")
            names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))[:limit]
            for name in names:
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    texts.append(f.read().replace("<br />", " "))
                labels.append(label)
        return texts, np.array(labels, np.float32)

    tr_text, y_train = read("train")
    te_text, y_test = read("test")
    vec = layers.TextVectorization(max_tokens=max_words)
    vec.adapt(tr_text)

    def encode(texts):
        seqs = [[w for w in row if w] for row in vec(texts).data.tolist()]
        return utils.pad_sequences(seqs, maxlen=maxlen)

    return encode(tr_text), y_train, encode(te_text), y_test


def sentiment_comparison(n_train, n_test, epochs, seed=0, verbose=0, imdb=None):
    """Test accuracy of each model of the notes' comparison."""
    rng = np.random.default_rng(seed)
    max_words, maxlen, embedding_dim = 200, 40, 16
    if imdb is None:
        tr, y_train = make_reviews(rng, n_train, max_words, maxlen)
        te, y_test = make_reviews(rng, n_test, max_words, maxlen)
        x_train = utils.pad_sequences(tr, maxlen=maxlen)
        x_test = utils.pad_sequences(te, maxlen=maxlen)
    else:
        max_words, maxlen = 10000, 100
        x_train, y_train, x_test, y_test = read_imdb(imdb, max_words, maxlen, limit=n_train // 2)
        order = rng.permutation(len(x_train))  # validation_split takes the tail
        x_train, y_train = x_train[order], y_train[order]
    builds = {
        "Embedding + Dense": lambda: [
            layers.Embedding(max_words, embedding_dim, input_length=maxlen),
            layers.Flatten(),
        ],
        "SimpleRNN": lambda: [
            layers.Embedding(max_words, embedding_dim, mask_zero=True),
            layers.SimpleRNN(units=embedding_dim),
        ],
        "LSTM": lambda: [
            layers.Embedding(max_words, embedding_dim, mask_zero=True),
            layers.LSTM(units=embedding_dim),
        ],
        "GRU": lambda: [
            layers.Embedding(max_words, embedding_dim, mask_zero=True),
            layers.GRU(units=embedding_dim),
        ],
        "GRU 2-layer": lambda: [
            layers.Embedding(max_words, embedding_dim, mask_zero=True),
            layers.GRU(units=embedding_dim, return_sequences=True),
            layers.GRU(units=embedding_dim),
        ],
    }
    results = {}
    for name, body in builds.items():
        mg.manual_seed(seed)
        model = models.Sequential()
        for layer in body():
            model.add(layer)
        model.add(layers.Dense(units=32, activation="relu"))
        model.add(layers.Dense(units=1, activation="sigmoid"))
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
        model.fit(
            x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=verbose
        )
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        results[name] = acc
        print(f"{name:<18} test accuracy {acc:.3f}")
    return results


def main(argv=None):
    p = fit_parser(__doc__, "200 training reviews, 2 epochs", 8)
    p.add_argument("--imdb", metavar="DIR", help="an aclImdb folder (default: generated reviews)")
    args = p.parse_args(argv)
    n_epochs = epochs(p, args, 2, 8)
    n_train, n_test = (200, 100) if args.quick else (2000, 500)
    return sentiment_comparison(n_train, n_test, n_epochs, args.seed, args.verbose, args.imdb)


if __name__ == "__main__":
    main()
