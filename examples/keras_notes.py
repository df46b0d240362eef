"""The lecture notes' Keras models, run on minigrad.keras with only the import line changed.

    python examples/keras_notes.py            # parameter tables, sentiment comparison, time series
    python examples/keras_notes.py --quick    # the same on less data and fewer epochs (seconds)

1. The parameter tables of the notes (seed 002): Embedding(10000, 50) -> SimpleRNN(50) / LSTM(50)
   / GRU(50) -> Dense(32) -> Dense(1, sigmoid), printed by ``model.summary()``: 500,000; 5,050
   (SimpleRNN), 20,200 (LSTM), 15,300 (GRU, Keras's reset_after form with two biases); 1,632; 33.
2. The sentiment comparison (seed 002): a dense baseline (Embedding -> Flatten -> Dense) against
   SimpleRNN, LSTM, GRU and a two-layer GRU, on generated reviews: word ids 1..5 are positive,
   6..10 negative, the rest neutral, the label is 1 when positive words outnumber negative ones.
   Reviews are padded in front (``pad_sequences``' default) and the Embedding masks the padding
   (``mask_zero=True``), so the recurrent layers skip it. Prints each model's test accuracy.
3. The time-series window model (seed 001): windows of 5 steps of a noisy seasonal series
   (``timeseries_dataset_from_array``), split by time, the notes' stacked SimpleRNN(3) ->
   SimpleRNN(3) -> Dense(1) trained with the mean absolute error; prints the test MAE beside the
   MAE of repeating the last value of the window.

A full run (``python examples/keras_notes.py``, about half a minute) printed: test accuracy
0.982 (Embedding + Dense), 0.942 (SimpleRNN), 0.974 (LSTM), 0.982 (GRU), 0.982 (two-layer GRU);
time series test MAE 0.124 against 0.170 for repeating the last value; 'hell' -> 'ello'.
4. The character-level "hello" model (seed 004): vocabulary h, e, l, o one-hot, a SimpleRNN with
   3 hidden units and a softmax over the 4 characters at every step, trained on "hell" -> "ello";
   prints the greedy prediction and a sampled continuation of "h".

Real data instead of the generated: ``--imdb DIR`` reads the standard aclImdb folder layout
(DIR/train/pos, DIR/train/neg, DIR/test/pos, DIR/test/neg with one review per .txt file) through
``TextVectorization``; ``--csv PATH`` takes the last numeric column of a CSV file as the series.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see char_rnn.py

import argparse
import sys

import numpy as np

try:
    import minigrad as mg
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg
from minigrad.keras import backend, layers, models, optimizers, utils


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


def time_series(n_steps, epochs, seed=0, window=5, verbose=0, series=None):
    """(test MAE of the notes' stacked SimpleRNN, test MAE of repeating the window's last value)."""
    rng = np.random.default_rng(seed)
    if series is None:
        t = np.arange(n_steps)
        series = 0.5 * np.sin(2 * np.pi * t / 12) + 0.002 * t + 0.05 * rng.standard_normal(n_steps)
    series = np.asarray(series, np.float32)[:, None]
    cut = int(len(series) * 0.8)  # split by time, not at random
    train = utils.timeseries_dataset_from_array(
        series[:cut], series[window:cut], window, batch_size=32
    )
    test = utils.timeseries_dataset_from_array(
        series[cut - window :], series[cut:], window, batch_size=32
    )
    mg.manual_seed(seed)
    model_4 = models.Sequential(name="Stackd_RNN")
    model_4.add(layers.SimpleRNN(3, input_shape=(window, 1), return_sequences=True))
    model_4.add(layers.SimpleRNN(3, input_shape=(window, 1), return_sequences=False))
    model_4.add(layers.Dense(1))
    model_4.compile(loss="mae", optimizer="adam", metrics=["mae"])
    model_4.fit(train, epochs=epochs, verbose=verbose)
    mae = model_4.evaluate(test, verbose=0)[0]
    x_test, y_test = test.as_numpy()
    naive = float(np.mean(np.abs(x_test[:, -1] - y_test)))
    print(f"time series: test MAE {mae:.4f} (repeat-last-value baseline {naive:.4f})")
    return mae, naive


def read_csv_series(path):
    """The last numeric column of a CSV file (a header row is skipped)."""
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().split(",") if c.strip()]
            try:
                values.append(float(cells[-1]))
            except (ValueError, IndexError):
                continue
    if len(values) < 20:
        raise SystemExit(f"--csv: need at least 20 numeric rows in {path}, found {len(values)}")
    v = np.array(values, np.float32)
    return (v - v.mean()) / (v.std() + 1e-8)


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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="less data, fewer epochs")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per sentiment model "
        "(default 8, quick 2); the small window model trains 25 times as many (quick: "
        "twice)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--verbose",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="fit's progress lines (Keras's verbose)",
    )
    p.add_argument("--imdb", metavar="DIR", help="an aclImdb folder for the sentiment models")
    p.add_argument("--csv", metavar="PATH", help="a CSV file whose last column is the series")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    epochs = args.epochs or (2 if args.quick else 8)
    totals = parameter_tables()
    acc = sentiment_comparison(
        200 if args.quick else 2000,
        100 if args.quick else 500,
        epochs,
        args.seed,
        args.verbose,
        imdb=args.imdb,
    )
    series = read_csv_series(args.csv) if args.csv else None
    ts = time_series(
        200 if args.quick else 1000,
        epochs * (2 if args.quick else 25),
        args.seed,
        verbose=args.verbose,
        series=series,
    )
    chars = hello(100 if args.quick else 300, args.seed)
    return {"totals": totals, "accuracy": acc, "time_series": ts, "hello": chars}


if __name__ == "__main__":
    main()
