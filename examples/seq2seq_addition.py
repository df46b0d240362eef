"""Encoder-decoder (seq2seq) that learns to add: "57+43" -> "100", one character at a time.

    python examples/seq2seq_addition.py               # 2-digit numbers, LSTM
    python examples/seq2seq_addition.py --cell gru --digits 3 --steps 6000

The encoder (Embedding -> LSTM or GRU) reads the question, e.g. "57+43"; questions have
different lengths ("5+43" is shorter), so the encoder gets ``lengths`` and its final state is
the state after each question's own last character. That state starts the decoder (Embedding
-> the same kind of cell -> Linear), which writes the answer followed by an end mark.

Training uses *teacher forcing*: the decoder's input at step t is the correct character of
step t-1 (after a start mark), so all answer positions are trained in one call of the
recurrent layer. At test time there is no correct answer to feed: *greedy decoding* feeds the
decoder its own most likely character, one step at a time, until the end mark.

Problems are generated on the fly; a fixed set of questions is held out, never trained on, and
exact-match accuracy on it is reported with a few example answers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see char_rnn.py

import argparse
import math
import sys
import time

import numpy as np

# the helpers next to this script (its folder is on sys.path when run as a script, not when
# loaded from a file path as the tests do); _cli also finds a source checkout's minigrad
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _cli import int_range, option, positive_float, positive_int

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

PAD, START, END = " ", "^", "$"
CHARS = PAD + START + END + "0123456789+"
INDEX = {c: i for i, c in enumerate(CHARS)}


def encode(strings, width):
    """(ids (N, width) int64, padded with PAD; lengths (N,))."""
    ids = np.full((len(strings), width), INDEX[PAD], dtype=np.int64)
    lengths = np.zeros(len(strings), dtype=np.int64)
    for r, s in enumerate(strings):
        ids[r, : len(s)] = [INDEX[c] for c in s]
        lengths[r] = len(s)
    return ids, lengths


def decode(ids):
    """Characters up to the first END (PAD/START dropped)."""
    out = []
    for i in ids:
        c = CHARS[int(i)]
        if c == END:
            break
        if c not in (PAD, START):
            out.append(c)
    return "".join(out)


class Problems:
    """Random a+b questions with a, b < 10**digits, a held-out set excluded from training."""

    def __init__(self, digits, n_val, rng):
        self.digits = digits
        self.high = 10**digits
        self.q_width = 2 * digits + 1  # "99+99"
        self.a_width = digits + 1  # "198"
        n_pairs = self.high**2
        n_val = min(n_val, n_pairs // 5)
        val = set()
        while len(val) < n_val:
            a, b = (int(v) for v in rng.integers(0, self.high, 2))
            val.add((a, b))
        self.val = sorted(val)
        self.val_set = val

    def sample(self, rng, n):
        pairs = []
        while len(pairs) < n:
            a, b = (int(v) for v in rng.integers(0, self.high, 2))
            if (a, b) not in self.val_set:
                pairs.append((a, b))
        return pairs

    def tensors(self, pairs):
        """Encoder ids+lengths; decoder inputs (START + answer) and targets (answer + END)."""
        q, q_len = encode([f"{a}+{b}" for a, b in pairs], self.q_width)
        answers = [str(a + b) for a, b in pairs]
        dec_in, _ = encode([START + s for s in answers], self.a_width + 1)
        target, _ = encode([s + END for s in answers], self.a_width + 1)
        return q, q_len, dec_in, target


class Seq2Seq(nn.Module):
    def __init__(self, cell, embed, hidden, layers=1):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        V = len(CHARS)
        self.src_embed = nn.Embedding(V, embed)
        self.encoder = rnn(embed, hidden, num_layers=layers, batch_first=True)
        self.tgt_embed = nn.Embedding(V, embed)
        self.decoder = rnn(embed, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, V)

    def encode(self, q, q_len):
        _, state = self.encoder(self.src_embed(q), lengths=q_len)
        return state  # h_n (and c_n): after each real last char

    def decode_step(self, tokens, state):
        """tokens (B, t) -> logits (B, t, V), new state (teacher forcing when t > 1)."""
        ys, state = self.decoder(self.tgt_embed(tokens), state)
        return self.out(ys), state

    def forward(self, q, q_len, dec_in):
        logits, _ = self.decode_step(dec_in, self.encode(q, q_len))
        return logits

    def greedy(self, q, q_len, max_len):
        """Answer ids (B, max_len): each step feeds back the argmax of the previous one."""
        with mg.no_grad():
            state = self.encode(q, q_len)
            tok = np.full((len(q), 1), INDEX[START], dtype=np.int64)
            out = []
            for _ in range(max_len):
                logits, state = self.decode_step(tok, state)
                tok = logits.data[:, -1].argmax(-1)[:, None].astype(np.int64)
                out.append(tok[:, 0])
        return np.stack(out, axis=1)


def evaluate(model, problems, pairs, batch=500):
    """Exact-match accuracy of greedy answers, and the answers."""
    answers = []
    model.eval()
    for i in range(0, len(pairs), batch):
        q, q_len, _, _ = problems.tensors(pairs[i : i + batch])
        ids = model.greedy(q, q_len, problems.a_width + 1)
        answers.extend(decode(row) for row in ids)
    model.train()
    correct = sum(ans == str(a + b) for ans, (a, b) in zip(answers, pairs))
    return correct / len(pairs), answers


def build_parser():
    # every option's help states its default once: "(default: %(default)s)" is the parser's value
    p = argparse.ArgumentParser(
        description="Encoder-decoder learning to add numbers written as text."
    )

    p.add_argument(
        "--cell",
        choices=["lstm", "gru"],
        default="lstm",
        help="recurrent cell of the encoder and the decoder (default: %(default)s)",
    )
    option(p, "--digits", int_range(1, 6), 2, "operands have up to this many digits, at most 6")
    option(p, "--embed", positive_int, 16, "character embedding size")
    option(p, "--hidden", positive_int, 128, "hidden size of the encoder and the decoder")
    option(p, "--layers", positive_int, 1, "stacked recurrent layers in each")
    option(p, "--steps", positive_int, 3000, "training steps, one batch of fresh problems each")
    option(p, "--batch-size", positive_int, 64, "problems per training step")
    option(
        p,
        "--lr",
        positive_float,
        5e-3,
        "Adam learning rate at the start; a cosine takes it down to a tenth of it by the last step",
    )
    option(p, "--clip", positive_float, 1.0, "max gradient norm")
    option(p, "--val-size", positive_int, 1000, "held-out questions, never trained on")
    option(p, "--eval-every", positive_int, 500, "steps between held-out evaluations")
    option(p, "--examples", int, 8, "held-out answers to print at the end")
    option(p, "--seed", int, 0, "seed of the weights and the problems")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    problems = Problems(args.digits, args.val_size, rng)
    model = Seq2Seq(args.cell, args.embed, args.hidden, args.layers)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.data.size for p in model.parameters())
    say(
        f"seq2seq {args.cell.upper()} {args.hidden}, {n_params:,} parameters; numbers below "
        f"{problems.high}; {len(problems.val)} held-out questions"
    )

    losses, history = [], []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        # cosine learning-rate decay from --lr to a tenth of it: steadier final answers
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - 1) / args.steps)))
        q, q_len, dec_in, target = problems.tensors(problems.sample(rng, args.batch_size))
        logits = model(q, q_len, dec_in)  # teacher forcing: (B, a_width + 1, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(float(loss.item()))
        if step % args.eval_every == 0 or step == args.steps:
            acc, _ = evaluate(model, problems, problems.val)
            history.append((step, acc))
            say(
                f"step {step:>5}  loss {np.mean(losses[-args.eval_every :]):.4f}  held-out "
                f"exact match {acc:.3f}  ({time.perf_counter() - t0:.0f} s)"
            )
    elapsed = time.perf_counter() - t0
    acc, answers = evaluate(model, problems, problems.val)
    shown = []
    pick = np.random.default_rng(args.seed + 1).permutation(len(answers))[: args.examples]
    for i in pick:
        (a, b), ans = problems.val[i], answers[i]
        q = f"{a}+{b}"
        mark = "ok" if ans == str(a + b) else f"WRONG (expected {a + b})"
        shown.append(f"  {q:>{problems.q_width}} = {ans:<{problems.a_width}}  {mark}")
    say("held-out examples (greedy decoding):\n" + "\n".join(shown))
    return {
        "accuracy": acc,
        "history": history,
        "losses": losses,
        "first_loss": losses[0],
        "train_loss": float(np.mean(losses[-20:])),
        "examples": shown,
        "seconds": elapsed,
        "logits_shape": logits.shape,
    }


if __name__ == "__main__":
    main()
