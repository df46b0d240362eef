"""Many-to-one classification in the lecture notes' Keras style, on variable-length sequences.

    python examples/sequence_classification.py
    python examples/sequence_classification.py --ignore-lengths   # the LSTM also reads the padding

The model is the notes' stack (Embedding -> LSTM returning only its last output -> Dense ->
ReLU -> Dense), built with ``nn.Sequential`` and shown with ``nn.summary``:

    Sequential(Embedding(V, 32, padding_idx=0),
               LSTM(32, 64, batch_first=True, return_sequences=False),
               Linear(64, 32), ReLU(), Linear(32, 2))

The task is generated on the fly, a toy "sentiment" problem: sentences of 5 to 40 word ids,
where a few words are positive, a few negative and the rest neutral; the label is 1 when the
sentence has more positive than negative words. Sentences are padded with 0 at the end to the
longest one in their batch, and the LSTM is given each sentence's length (``lengths=``), so it
reads the state after the last *real* word instead of after the padding. ``Sequential`` passes
one argument from layer to layer, so ``classify`` below calls the layers itself to hand the
lengths to the LSTM; ``model(x)`` also works (it reads the padding too).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see char_rnn.py

import argparse
import sys
import time

import numpy as np

# the helpers next to this script (its folder is on sys.path when run as a script, not when
# loaded from a file path as the tests do); _cli also finds a source checkout's minigrad
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _cli import option, positive_float, positive_int

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.data import DataLoader, pad_collate

PAD = 0


def make_dataset(rng, n, vocab, min_len, max_len, n_sentiment=5):
    """(tokens (n, max_len) int64 padded with 0, lengths (n,), labels (n,)).

    Word ids 1..n_sentiment are positive, the next n_sentiment negative, the rest neutral;
    sentiment words make up about a third of a sentence; ties are redrawn."""
    if vocab < 2 * n_sentiment + 2:
        raise ValueError(f"vocab must be at least {2 * n_sentiment + 2}, got {vocab}")
    tokens = np.zeros((n, max_len), dtype=np.int64)
    lengths = rng.integers(min_len, max_len + 1, n)
    labels = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        m = todo.size
        words = rng.integers(2 * n_sentiment + 1, vocab, (m, max_len))
        sentiment = rng.random((m, max_len)) < 0.35
        words[sentiment] = rng.integers(1, 2 * n_sentiment + 1, int(sentiment.sum()))
        real = np.arange(max_len)[None, :] < lengths[todo, None]
        words[~real] = PAD
        pos = ((words >= 1) & (words <= n_sentiment)).sum(1)
        neg = ((words > n_sentiment) & (words <= 2 * n_sentiment)).sum(1)
        ok = pos != neg
        tokens[todo[ok]] = words[ok]
        labels[todo[ok]] = (pos > neg)[ok]
        todo = todo[~ok]
    return tokens, lengths, labels


def build_model(vocab, embed, hidden, dense, cell="lstm"):
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    return nn.Sequential(
        nn.Embedding(vocab, embed, padding_idx=PAD),
        rnn(embed, hidden, batch_first=True, return_sequences=False),
        nn.Linear(hidden, dense),
        nn.ReLU(),
        nn.Linear(dense, 2),
    )


def classify(model, tokens, lengths=None):
    """Logits (B, 2). The Sequential's layers are called one by one so that the recurrent layer
    (index 1) gets the lengths; the rest is the same as model(tokens)."""
    x = model[0](tokens)
    x = model[1](x, lengths=lengths)
    return model[2:](x)


def sentences(tokens, lengths, labels):
    """The dataset as a list of (sentence without padding, label), for a DataLoader."""
    return [(tokens[i, : lengths[i]], labels[i]) for i in range(len(labels))]


def accuracy(model, data, batch_size, use_lengths):
    correct = 0
    model.eval()
    with mg.no_grad():
        for x, ln, y in DataLoader(data, batch_size=batch_size, collate_fn=pad_collate):
            logits = classify(model, x, ln if use_lengths else None)
            correct += int((logits.data.argmax(-1) == y).sum())
    model.train()
    return correct / len(data)


def build_parser():
    # every option's help states its default once: "(default: %(default)s)" is the parser's value
    p = argparse.ArgumentParser(
        description="Keras-style many-to-one LSTM classifier on "
        "variable-length generated sentences."
    )

    p.add_argument(
        "--cell",
        choices=["lstm", "gru", "rnn"],
        default="lstm",
        help="recurrent cell (default: %(default)s)",
    )
    option(p, "--vocab", positive_int, 50, "word ids, padding included; at least 12")
    option(p, "--embed", positive_int, 32, "word embedding size")
    option(p, "--hidden", positive_int, 64, "recurrent hidden size")
    option(p, "--dense", positive_int, 32, "width of the dense layer after the recurrent one")
    option(p, "--min-len", positive_int, 5, "shortest sentence, in words")
    option(p, "--max-len", positive_int, 40, "longest sentence, in words")
    option(p, "--train-size", positive_int, 4000, "training sentences")
    option(p, "--val-size", positive_int, 1000, "validation sentences")
    option(p, "--epochs", positive_int, 8, "passes over the training sentences")
    option(p, "--batch-size", positive_int, 64, "sentences per training step")
    option(p, "--lr", positive_float, 3e-3, "Adam learning rate")
    option(p, "--clip", positive_float, 1.0, "max gradient norm")
    p.add_argument(
        "--ignore-lengths",
        action="store_true",
        help="do not pass lengths: the LSTM also reads the padding",
    )
    option(p, "--seed", int, 0, "seed of the weights and the data")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.min_len > args.max_len:
        parser.error(f"--min-len ({args.min_len}) must not exceed --max-len ({args.max_len})")
    if args.vocab < 12:
        parser.error(
            f"--vocab must be at least 12 (10 sentiment words, a neutral one and the "
            f"padding id), got {args.vocab}"
        )
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tr = make_dataset(rng, args.train_size, args.vocab, args.min_len, args.max_len)
    va = make_dataset(rng, args.val_size, args.vocab, args.min_len, args.max_len)
    say(
        f"task: {args.train_size} training / {args.val_size} validation sentences of "
        f"{args.min_len}-{args.max_len} words; positive share {tr[2].mean():.2f} (train)"
    )

    model = build_model(args.vocab, args.embed, args.hidden, args.dense, args.cell)
    summary = nn.summary(
        model, np.zeros((args.batch_size, args.max_len), dtype=np.int64), print_fn=None
    )
    say(summary)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    use_lengths = not args.ignore_lengths
    train_loader = DataLoader(
        sentences(*tr),
        batch_size=args.batch_size,
        shuffle=True,
        generator=rng,
        collate_fn=pad_collate,
    )
    val_data = sentences(*va)
    history = {"loss": [], "train_acc": [], "val_acc": []}
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total, count, correct = 0.0, 0, 0
        for x, ln, y in train_loader:  # padded to the longest sentence in the batch
            logits = classify(model, x, ln if use_lengths else None)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            total += float(loss.item()) * len(y)
            count += len(y)
            correct += int((logits.data.argmax(-1) == y).sum())
        val_acc = accuracy(model, val_data, 256, use_lengths)
        history["loss"].append(total / count)
        history["train_acc"].append(correct / count)
        history["val_acc"].append(val_acc)
        say(
            f"epoch {epoch:>2}/{args.epochs}  loss {total / count:.4f}  "
            f"train accuracy {correct / count:.3f}  validation accuracy {val_acc:.3f}  "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    elapsed = time.perf_counter() - t0
    return {
        "loss": history["loss"],
        "train_acc": history["train_acc"],
        "val_acc": history["val_acc"],
        "final_val_acc": history["val_acc"][-1],
        "summary": summary,
        "seconds": elapsed,
        "logits_shape": classify(model, va[0][:3], va[1][:3]).shape,
    }


if __name__ == "__main__":
    main()
