"""Seq2seq with and without attention on date formats: "Tuesday, September 27, 1994",
"27.09.1994", "sep 27 1994", ... -> "1994-09-27".

    python examples/seq2seq_attention.py                 # both models, greedy decoding
    python examples/seq2seq_attention.py --beam 4        # beam search with 4 beams
    python examples/seq2seq_attention.py --quick         # a small run (seconds)

The encoder (Embedding -> LSTM) reads the date as written, padded at the end and given with its
``lengths``. The decoder (Embedding -> LSTM, started from the encoder's final state) writes the
ten ISO characters. Without attention, the decoder's output at each step goes straight to a
Linear layer; everything it knows about the input has to pass through the encoder's final
state. With attention (Luong's "general" score, ``nn.DotAttention``), each decoder output also
reads a weighted mix of all encoder outputs; the concatenation of that context and the decoder
output goes to the Linear layer. Training uses teacher forcing (the whole target in one call of
each recurrent layer); testing decodes one character at a time, greedily or with beam search.

Both models train on the same generated dates and are scored by exact-match accuracy on dates
they never saw. With matplotlib installed, ``--heatmap PATH`` saves the attention weights of
one test date as a PNG: the diagonal-like pattern is the alignment the model learned (year
characters read the year, and so on).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs: one thread is fastest here

import argparse
import functools
import sys
import time

import numpy as np

try:
    import minigrad as mg
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.data import DataLoader, TensorDataset

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAYS_IN = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def _weekday(y, m, d):
    """Monday = 0 (Zeller-style count from a known Monday, 1900-01-01)."""
    days = (y - 1900) * 365 + sum(_leap(yy) for yy in range(1900, y))
    days += sum(DAYS_IN[: m - 1]) + (m > 2 and _leap(y)) + d - 1
    return days % 7


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _written(template, y, m, d):
    """The date y-m-d written by a TEMPLATES entry, whose fields are the numbers y, m, d and
    the words month ("September"), mon ("Sep"), day ("Tuesday") and dy ("Tue")."""
    month, day = MONTHS[m - 1], DAYS[_weekday(y, m, d)]
    mon = month[:3]
    return template.format(
        y=y,
        m=m,
        d=d,
        month=month,
        month_lower=month.lower(),
        day=day,
        dy=day[:3],
        mon=mon,
        mon_upper=mon.upper(),
        mon_lower=mon.lower(),
    )


TEMPLATES = [
    "{month} {d}, {y}",
    "{day}, {month} {d}, {y}",
    "{d} {month} {y}",
    "{d} {mon} {y}",
    "{mon_upper} {d}, {y}",
    "{mon_lower} {d:02d} {y}",
    "{m}/{d}/{y}",
    "{m:02d}/{d:02d}/{y}",
    "{d:02d}.{m:02d}.{y}",
    "{d}.{m}.{y}",
    "{y}.{m:02d}.{d:02d}",
    "{y} {month} {d}",
    "{dy} {d} {month_lower} {y}",
]
# FORMATS[i](y, m, d) is the date written the i-th way
FORMATS = [functools.partial(_written, t) for t in TEMPLATES]


def make_dates(n, rng, exclude=frozenset()):
    """n (written, iso) pairs of distinct dates between 1900 and 2099, none in ``exclude``."""
    out, seen = [], set(exclude)
    while len(out) < n:
        y = int(rng.integers(1900, 2100))
        m = int(rng.integers(1, 13))
        d = int(rng.integers(1, DAYS_IN[m - 1] + (m == 2 and _leap(y)) + 1))
        fmt = int(rng.integers(len(FORMATS)))
        key = (y, m, d, fmt)
        if key in seen:
            continue
        seen.add(key)
        out.append((FORMATS[fmt](y, m, d), f"{y:04d}-{m:02d}-{d:02d}"))
    return out, seen


class Vocab:
    def __init__(self, texts, specials):
        self.chars = list(specials) + sorted(set("".join(texts)) - set(specials))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, texts, width):
        ids = np.zeros((len(texts), width), dtype=np.int64)  # 0 is the padding character
        lengths = np.zeros(len(texts), dtype=np.int64)
        for r, t in enumerate(texts):
            ids[r, : len(t)] = [self.index[c] for c in t]
            lengths[r] = len(t)
        return ids, lengths

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


class Seq2Seq(nn.Module):
    """Encoder LSTM -> decoder LSTM (-> Luong attention over the encoder outputs) -> Linear."""

    def __init__(self, n_src, n_tgt, embed, hidden, attention):
        super().__init__()
        self.src_embed = nn.Embedding(n_src, embed, padding_idx=0)
        self.encoder = nn.LSTM(embed, hidden, batch_first=True)
        self.tgt_embed = nn.Embedding(n_tgt, embed)
        self.decoder = nn.LSTM(embed, hidden, batch_first=True)
        self.attention = nn.DotAttention(hidden, score="general") if attention else None
        self.out = nn.Linear(2 * hidden if attention else hidden, n_tgt)

    def encode(self, src, lengths):
        enc, state = self.encoder(self.src_embed(src), lengths=lengths)
        pad = np.arange(src.shape[1])[None, :] >= np.asarray(lengths)[:, None]
        return enc, state, pad

    def decode(self, tgt_in, state, enc, pad):
        """Logits (B, T, V) for decoder inputs (B, T), the new state, and the attention weights
        (B, T, S) (None without attention)."""
        dec, state = self.decoder(self.tgt_embed(tgt_in), state)
        weights = None
        if self.attention is not None:
            context, weights = self.attention(dec, enc, key_padding_mask=pad)
            dec = F.concatenate([context, dec], axis=-1)
        return self.out(dec), state, weights


def greedy(model, src, lengths, start, steps):
    """The most likely character at each step, fed back as the next input."""
    with mg.no_grad():
        enc, state, pad = model.encode(src, lengths)
        tok = np.full((len(src), 1), start, dtype=np.int64)
        out, attn = [], []
        for _ in range(steps):
            logits, state, w = model.decode(tok, state, enc, pad)
            tok = np.argmax(logits.data[:, -1], axis=-1)[:, None]
            out.append(tok[:, 0])
            if w is not None:
                attn.append(w.data[:, 0])
    return np.stack(out, 1), (np.stack(attn, 1) if attn else None)


def beam_search(model, src, lengths, start, steps, k):
    """Keep the k most likely prefixes (sum of log-probabilities) of every input; return the
    best complete one. All B * k beams run as one batch."""
    B = len(src)
    with mg.no_grad():
        enc, (h, c), pad = model.encode(src, lengths)
        rep = np.repeat(np.arange(B), k)  # beam b*k + j belongs to input b
        enc = enc[rep]
        pad = pad[rep]
        state = (h[:, rep], c[:, rep])
        scores = np.full((B, k), -np.inf)
        scores[:, 0] = 0.0  # all beams start identical: keep one
        seqs = np.zeros((B, k, 0), dtype=np.int64)
        tok = np.full((B * k, 1), start, dtype=np.int64)
        for _ in range(steps):
            logits, state, _ = model.decode(tok, state, enc, pad)
            logp = F.log_softmax(logits[:, -1], axis=-1).data.astype(np.float64)
            V = logp.shape[-1]
            total = (scores[:, :, None] + logp.reshape(B, k, V)).reshape(B, k * V)
            best = np.argsort(-total, axis=1, kind="stable")[:, :k]
            beam, char = best // V, best % V
            scores = np.take_along_axis(total, best, 1)
            seqs = np.concatenate(
                [np.take_along_axis(seqs, beam[:, :, None], 1), char[:, :, None]], axis=2
            )
            rows = (np.arange(B)[:, None] * k + beam).reshape(-1)
            state = (state[0][:, rows], state[1][:, rows])
            tok = char.reshape(-1, 1)
    return seqs[np.arange(B), np.argmax(scores, axis=1)]


def exact_match(model, src, lengths, tgt, start):
    model.eval()
    pred, attn = greedy(model, src, lengths, start, tgt.shape[1] - 1)
    model.train()
    return float(np.mean(np.all(pred == tgt[:, 1:], axis=1))), pred, attn


def train(model, loader, epochs, lr, quiet, name, test):
    """Train for ``epochs``; returns the test exact-match accuracy after each epoch."""
    opt = mg.optim.Adam(model.parameters(), lr=lr)
    curve = []
    for epoch in range(epochs):
        t0, total, n = time.perf_counter(), 0.0, 0
        for src, lengths, tgt in loader:
            enc, state, pad = model.encode(src, lengths)
            logits, _, _ = model.decode(tgt[:, :-1], state, enc, pad)
            loss = F.cross_entropy(
                F.reshape(logits, (-1, logits.shape[-1])), tgt[:, 1:].reshape(-1)
            )
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss.item())
            n += 1
        curve.append(exact_match(model, *test)[0])
        if not quiet:
            print(
                f"{name}: epoch {epoch + 1}/{epochs}, loss {total / n:.4f}, test exact match "
                f"{curve[-1]:.1%}, {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
    return curve


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--train", type=int, default=10000, help="training dates")
    p.add_argument("--test", type=int, default=1000, help="held-out test dates")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument(
        "--beam", type=int, default=0, help="beam width for decoding (0: greedy decoding only)"
    )
    p.add_argument(
        "--heatmap",
        default=None,
        metavar="PATH",
        help="save one test date's attention weights as a PNG (needs matplotlib)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small run: 2,000 training dates, 200 test dates, 2 epochs",
    )
    p.add_argument("--quiet", action="store_true", help="only the final accuracies")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs = 2000, 200, 2
    for name in ("train", "test", "epochs", "batch_size", "hidden", "embed"):
        if getattr(args, name) < 1:
            raise SystemExit(
                f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
            )
    if args.beam < 0:
        raise SystemExit(f"error: --beam must be >= 0, got {args.beam}")
    rng = np.random.default_rng(args.seed)
    test, seen = make_dates(args.test, rng)
    trainset, _ = make_dates(
        args.train, rng, exclude={k[:3] + (f,) for k in seen for f in range(len(FORMATS))}
    )
    src_vocab = Vocab([s for s, _ in trainset + test], "\0")
    tgt_vocab = Vocab(["0123456789-"], "\0^")
    width = max(len(s) for s, _ in trainset + test)
    start = tgt_vocab.index["^"]

    def tensors(pairs):
        src, lengths = src_vocab.encode([s for s, _ in pairs], width)
        tgt, _ = tgt_vocab.encode(["^" + t for _, t in pairs], 11)
        return src, lengths, tgt

    tr_src, tr_len, tr_tgt = tensors(trainset)
    te_src, te_len, te_tgt = tensors(test)
    results = {}
    for attention in (False, True):
        name = "attention" if attention else "no attention"
        mg.manual_seed(args.seed)
        model = Seq2Seq(
            len(src_vocab.chars), len(tgt_vocab.chars), args.embed, args.hidden, attention
        )
        loader = DataLoader(
            TensorDataset(tr_src, tr_len, tr_tgt),
            batch_size=args.batch_size,
            shuffle=True,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        model.train()
        curve = train(
            model, loader, args.epochs, args.lr, args.quiet, name, (te_src, te_len, te_tgt, start)
        )
        acc, pred, attn = exact_match(model, te_src, te_len, te_tgt, start)
        model.eval()
        results[name] = {"greedy": acc, "curve": curve, "seconds": time.perf_counter() - t0}
        line = f"{name}: exact match {acc:.1%} (greedy)"
        if args.beam:
            bpred = beam_search(model, te_src, te_len, start, 10, args.beam)
            bacc = float(np.mean(np.all(bpred == te_tgt[:, 1:], axis=1)))
            results[name]["beam"] = bacc
            line += f", {bacc:.1%} (beam {args.beam})"
        print(f"{line} on {args.test} unseen dates; {results[name]['seconds']:.0f} s", flush=True)
        if not args.quiet:
            for i in range(3):
                print(f"    {test[i][0]!r:40} -> {tgt_vocab.decode(pred[i])}   (want {test[i][1]})")
        if attention and args.heatmap:
            save_heatmap(args.heatmap, test[0][0], tgt_vocab.decode(pred[0]), attn[0])
    return results


def save_heatmap(path, source, output, weights):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--heatmap: matplotlib is not installed; no PNG written")
        return
    fig, ax = plt.subplots(figsize=(max(4, len(source) * 0.3), 3.5))
    ax.imshow(weights[:, : len(source)], cmap="gray_r", aspect="auto")
    ax.set_xticks(range(len(source)), list(source))
    ax.set_yticks(range(len(output)), list(output))
    ax.set_xlabel("input")
    ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"attention weights of {source!r} saved to {path}")


if __name__ == "__main__":
    main()
