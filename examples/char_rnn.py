"""A character-level language model: an LSTM (or GRU / tanh RNN) learns to predict the next
character of a text, then writes some of its own.

    python examples/char_rnn.py                       # the Python standard library's sources
    python examples/char_rnn.py --text mybook.txt     # any UTF-8 text file
    python examples/char_rnn.py --steps 200 --save lm.npz
    python examples/char_rnn.py --resume lm.npz --steps 400 --save lm.npz
    mpiexec -n 2 python examples/char_rnn.py --distributed   # data-parallel on 2 processes

The default corpus needs no download: it is the Python standard library's own ``.py`` files,
read from the running interpreter (a deterministic selection, a few MB), as the lecture notes'
character model learns Linux source code. Files are split into training and validation sets
(every 20th file is held out), so the validation bits per character are measured on files the
model never trained on.

Training is truncated backpropagation through time: the training text is cut into
``--batch-size`` parallel streams, read ``--seq-len`` characters at a time. The hidden state is
carried from one chunk to the next (the model sees long context) but detached between chunks
(``nn.utils.detach_state``), so each backward pass only runs through the current chunk's steps.
Adam, gradient-norm clipping, a progress line with loss and tokens/s, validation bits per
character and a temperature sample every ``--eval-every`` steps, and checkpoints
(``--save``/``--resume``: model, optimizer, step and data position in one .npz; never pickle).

With ``--distributed`` (under ``mpiexec``; needs ``pip install "minigrad[distributed]"``) the
same model trains data-parallel: the ``--batch-size`` streams are split across the ranks, each
rank runs one BLAS thread, the gradients are averaged after every backward pass
(``minigrad.distributed.DistributedDataParallel``), validation is shared out across the ranks,
and only rank 0 prints, samples and writes checkpoints (which load in one process too).

Measured with the defaults (seed 0, CPython 3.11's standard library: 2.84M training and 165k
validation characters, vocabulary 159; one LSTM layer of 256, 381k parameters; 2-core AMD EPYC,
one BLAS thread): validation 2.37 / 2.07 / 1.96 / 1.86 / 1.81 bits per character after 500 /
1000 / 1500 / 2000 / 2500 steps (on 100k held-out characters) and 1.85 on all 165k held-out
characters after the 3000th step; 3 min 36 s wall clock, about 28,800 tokens/s, on a quiet
machine (`python examples/char_rnn.py`).
"""

from __future__ import annotations

import os
import sys

# _cli (next to this script) sets one BLAS thread unless OPENBLAS_NUM_THREADS is set, before
# NumPy loads, and finds minigrad in a source checkout. This folder is on sys.path when the
# script runs, not when it is loaded from a file path (as the tests do).
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _cli import option  # noqa: I001  (first: before NumPy loads)

import argparse
import math
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.data import BPTTBatcher
from minigrad.optim.lr_scheduler import CosineAnnealingLR

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "__pycache__",
    "test",
    "tests",
    "idle_test",
    "lib2to3",
    "turtledemo",
}


# ------------------------------------------------------------------------------ data
def stdlib_files():
    """The .py files of the running interpreter's standard library, in a fixed order."""
    root = os.path.dirname(os.__file__)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    found.sort(key=lambda p: os.path.relpath(p, root))
    return root, found


def stdlib_corpus(max_chars, val_every=20):
    """(train text, validation text, description): about ``max_chars`` characters of stdlib
    source, taking every k-th file (k chosen from the file sizes) so the whole library is
    represented; every ``val_every``-th chosen file goes to validation."""
    root, files = stdlib_files()
    if not files:
        raise SystemExit(f"error: no .py files found under {root}; pass --text PATH")
    sizes = [os.path.getsize(p) for p in files]
    stride = max(1, int(sum(sizes) // max_chars))
    texts = []
    total = 0
    for path in files[::stride]:
        try:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        except (UnicodeDecodeError, OSError):
            continue
        total += len(texts[-1])
        if total >= max_chars:
            break
    if len(texts) < 2:
        raise SystemExit(
            f"error: found too little standard-library source under {root}; pass --text PATH"
        )
    held = set(range(val_every - 1, len(texts), val_every)) or {len(texts) - 1}
    train = [t for i, t in enumerate(texts) if i not in held]
    val = [t for i, t in enumerate(texts) if i in held]
    return (
        "\n".join(train),
        "\n".join(val),
        f"{len(texts)} of the {len(files)} standard-library .py files under {root} "
        f"({total:,} chars)",
    )


def file_corpus(path, val_fraction):
    """(train, validation, description) from one text file; the last part is validation."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SystemExit(f"error: --text {path!r}: no such file") from None
    except IsADirectoryError:
        raise SystemExit(f"error: --text {path!r} is a directory, expected a text file") from None
    except UnicodeDecodeError as e:
        raise SystemExit(
            f"error: --text {path!r} is not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None
    n_val = int(len(text) * val_fraction)
    if len(text) - n_val < 1000 or n_val < 200:
        raise SystemExit(
            f"error: --text {path!r} has {len(text)} characters; need at least a "
            "few thousand to train on and validate"
        )
    return text[:-n_val], text[-n_val:], f"{path} ({len(text):,} chars)"


class Vocab:
    """Characters <-> integer ids. Characters outside the vocabulary map to the most common
    character's id (they only occur when a resumed model meets a new text)."""

    def __init__(self, chars):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def build(cls, text):
        counts = {}
        for c in text:
            counts[c] = counts.get(c, 0) + 1
        return cls("".join(sorted(counts))), max(counts, key=counts.get)

    def encode(self, text, fallback=" "):
        fb = self.index.get(fallback, 0)
        get = self.index.get
        return np.fromiter((get(c, fb) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)

    def __len__(self):
        return len(self.chars)


# ------------------------------------------------------------------------------ model
class CharLM(nn.Module):
    """Embedding -> recurrent layers -> Linear to one logit per character."""

    def __init__(self, vocab_size, embed, hidden, layers, cell, dropout=0.0):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = CELLS[cell](
            embed,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state=None):
        """ids (B, T) -> logits (B, T, V), state to pass to the next chunk."""
        ys, state = self.rnn(self.embed(ids), state)
        return self.head(ys), state


def evaluate(model, ids, batch_size, seq_len, max_chars=None, dist=None):
    """Mean cross-entropy in bits per character over ``ids`` (stateful, no gradient).  With
    ``dist`` (minigrad.distributed, initialized) each rank scores its share of the streams and
    the sums are all-reduced."""
    if max_chars is not None and len(ids) > max_chars + 1:
        ids = ids[: max_chars + 1]
    world = dist.world_size() if dist else 1
    B = max(1, min(batch_size, (len(ids) - 1) // (seq_len + 1)) // world) * world
    shard = {"num_replicas": world, "rank": dist.rank()} if dist else {}
    batches = BPTTBatcher(ids, B, seq_len, **shard)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state = None
    with mg.no_grad():
        for x, y in batches:
            logits, state = model(x, state)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            )  # (B*T, V): classes on axis 1
            total += float(loss.item())
            count += y.size
    model.train(was_training)
    if dist:
        total, count = dist.all_reduce(np.array([total, count], dtype=np.float64), "sum")
    return total / max(count, 1) / math.log(2)


def sample(model, vocab, prime, length, temperature, rng):
    """Text generated one character at a time, each drawn from softmax(logits / temperature)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    was_training = model.training
    model.eval()
    out = []
    with mg.no_grad():
        ids = vocab.encode(prime)[None, :]
        logits, state = model(ids)
        for _ in range(length):
            z = logits.data[0, -1].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(rng.choice(len(p), p=p))
            out.append(nxt)
            logits, state = model(np.array([[nxt]], dtype=np.int64), state)
    model.train(was_training)
    return prime + vocab.decode(out)


# ------------------------------------------------------------------------------ checkpoints
ARCH_KEYS = ("cell", "embed", "hidden", "layers")


def save_checkpoint(path, model, opt, step, vocab, args, data_pos):
    mg.save(
        {
            "model": model.state_dict(),
            "optim": opt.state_dict(),
            "step": step,
            "data_pos": data_pos,
            "vocab": vocab.chars,
            "arch": {k: getattr(args, k) for k in ARCH_KEYS},
        },
        path,
    )


def load_checkpoint(path):
    try:
        ck = mg.load(path)
    except FileNotFoundError:
        raise SystemExit(f"error: --resume {path!r}: no such file") from None
    except ValueError as e:
        raise SystemExit(f"error: --resume {path!r}: {e}") from None
    missing = [k for k in ("model", "optim", "step", "vocab", "arch") if k not in ck]
    if missing:
        raise SystemExit(
            f"error: --resume {path!r} is not a char_rnn checkpoint (missing {', '.join(missing)})"
        )
    return ck


# ------------------------------------------------------------------------------ main
def positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {s!r}") from None
        if not v > 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be positive, got {s}")
        return v

    return parse


def build_parser():
    # every option's help states its default once: "(default: %(default)s)" is the parser's value
    p = argparse.ArgumentParser(
        description="Character-level recurrent language model with truncated BPTT."
    )

    p.add_argument(
        "--text",
        metavar="PATH",
        help="UTF-8 text file to train on; its last "
        "--val-fraction is held out (default: the Python standard library's source "
        "files)",
    )
    option(
        p,
        "--corpus-chars",
        positive(int),
        3_000_000,
        "characters of standard-library source to use, when no --text is given",
    )
    option(
        p, "--val-fraction", float, 0.05, "share of --text held out for validation, from its end"
    )
    p.add_argument(
        "--cell",
        choices=sorted(CELLS),
        default="lstm",
        help="recurrent cell (default: %(default)s)",
    )
    option(p, "--embed", positive(int), 64, "character embedding size")
    option(p, "--hidden", positive(int), 256, "hidden size of each recurrent layer")
    option(p, "--layers", positive(int), 1, "stacked recurrent layers")
    option(p, "--dropout", float, 0.0, "dropout between recurrent layers, with --layers above 1")
    option(p, "--seq-len", positive(int), 64, "characters per training chunk: the BPTT length")
    option(p, "--batch-size", positive(int), 32, "parallel streams of text per step")
    option(
        p,
        "--steps",
        positive(int),
        3000,
        "total optimizer steps; a resumed run continues up to this count, not this many more",
    )
    p.add_argument(
        "--time-limit",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="stop training after this many seconds, then evaluate and save (default: no limit)",
    )
    option(p, "--lr", positive(float), 2e-3, "Adam learning rate at step 0")
    option(
        p,
        "--min-lr-ratio",
        float,
        0.1,
        "the learning rate follows a cosine from --lr down to this fraction of it at --steps; "
        "1 keeps it constant",
    )
    option(p, "--clip", positive(float), 5.0, "max gradient norm")
    option(
        p,
        "--eval-every",
        positive(int),
        500,
        "steps between evaluations: validation bits per character, a sample and, with --save, "
        "a checkpoint",
    )
    option(
        p,
        "--eval-chars",
        positive(int),
        100_000,
        "validation characters scored at each periodic evaluation",
    )
    option(
        p, "--final-eval-chars", positive(int), 300_000, "validation characters scored at the end"
    )
    option(p, "--sample-len", int, 300, "characters to sample at each evaluation; 0 samples none")
    p.add_argument(
        "--prime", default="def ", help="text the samples start from (default: '%(default)s')"
    )
    option(
        p, "--temperature", positive(float), 0.8, "sampling temperature: lower is more conservative"
    )
    option(p, "--seed", int, 0, "seed of the weights and the samples")
    p.add_argument(
        "--save",
        metavar="PATH",
        help="write a checkpoint (.npz: model, optimizer, step, data position, "
        "vocabulary) here at every --eval-every steps and at the end, replacing the "
        "file (default: no checkpoint)",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue from a checkpoint written by --save, up to --steps in all; "
        f"its {', '.join('--' + k for k in ARCH_KEYS)} and vocabulary replace "
        "those of the flags (default: start afresh)",
    )
    p.add_argument(
        "--threads",
        type=positive(int),
        default=None,
        help="threads of minigrad's kernels and NumPy's BLAS, minigrad.set_num_threads (default: "
        "the kernels on the cores this process may use or MINIGRAD_NUM_THREADS, NumPy's BLAS on "
        "OPENBLAS_NUM_THREADS if set, else 1)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress lines, samples or notes on stdout"
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training on the ranks of an MPI job (mpiexec -n N python "
        "examples/char_rnn.py --distributed): --batch-size is the global batch, split across "
        "the ranks; one BLAS thread per rank; rank 0 prints and saves. Needs mpi4py: pip "
        'install "minigrad[distributed]"',
    )
    return p


class Progress:
    """One status line: rewritten in place with \\r on a terminal, printed every
    ``every`` updates otherwise (so a log file stays readable)."""

    def __init__(self, quiet, every=50):
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.every = every
        self.dirty = False

    def update(self, step, text):
        if self.quiet:
            return
        if self.tty:
            sys.stdout.write("\r" + text + " " * 4)
            sys.stdout.flush()
            self.dirty = True
        elif step % self.every == 0:
            print(text, flush=True)

    def message(self, text):
        if self.quiet:
            return
        if self.dirty:
            sys.stdout.write("\n")
            self.dirty = False
        print(text, flush=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not 0 < args.val_fraction < 1:
        raise SystemExit(f"error: --val-fraction must be between 0 and 1, got {args.val_fraction}")
    if not 0 < args.min_lr_ratio <= 1:
        raise SystemExit(f"error: --min-lr-ratio must be in (0, 1], got {args.min_lr_ratio}")
    if not 0 <= args.dropout < 1:
        raise SystemExit(f"error: --dropout must be in [0, 1), got {args.dropout}")
    if args.sample_len < 0:
        raise SystemExit(f"error: --sample-len must be >= 0, got {args.sample_len}")
    if not args.prime:
        args.prime = "\n"
    if args.distributed:
        from minigrad import distributed

        try:
            distributed.init()
        except ImportError as e:
            raise SystemExit(f"error: --distributed: {e}") from None
        if args.threads is None:
            mg.set_num_threads(1)  # one thread per rank (kernels and BLAS)
        if distributed.world_size() > 1 and args.batch_size % distributed.world_size():
            raise SystemExit(
                f"error: --batch-size {args.batch_size} must be a multiple of the "
                f"{distributed.world_size()} ranks (each trains on an equal share of the streams)"
            )
        if distributed.rank() != 0:
            args.quiet = True
        args.dist = distributed
    else:
        args.dist = None
    if args.threads is not None:
        mg.set_num_threads(args.threads)
    return _train(args)


def _train(args):
    out = Progress(args.quiet)
    dist = args.dist
    world, rank = (dist.world_size(), dist.rank()) if dist else (1, 0)
    if args.text:
        train_text, val_text, desc = file_corpus(args.text, args.val_fraction)
    else:
        train_text, val_text, desc = stdlib_corpus(args.corpus_chars)

    ck = load_checkpoint(args.resume) if args.resume else None
    if ck is not None:
        vocab = Vocab(ck["vocab"])
        fallback = " " if " " in vocab.index else vocab.chars[0]
        replaced = [
            f"--{k} {getattr(args, k)}" for k in ARCH_KEYS if getattr(args, k) != ck["arch"][k]
        ]
        for k in ARCH_KEYS:  # the checkpoint decides the architecture
            setattr(args, k, ck["arch"][k])
        if replaced:
            kept = " ".join(f"--{k} {getattr(args, k)}" for k in ARCH_KEYS)
            print(
                f"note: --resume {args.resume}: the checkpoint's model has {kept}; that "
                f"replaces {', '.join(replaced)}",
                file=sys.stderr,
            )
    else:
        vocab, fallback = Vocab.build(train_text)
    unknown = sorted(set(train_text + val_text) - set(vocab.chars))
    if unknown:
        out.message(
            f"note: {len(unknown)} distinct characters of this text are not in the "
            f"checkpoint's vocabulary; they are read as {fallback!r}"
        )
    train_ids = vocab.encode(train_text, fallback)
    val_ids = vocab.encode(val_text, fallback)
    out.message(
        f"corpus: {desc}; {len(train_ids):,} training and {len(val_ids):,} validation "
        f"characters, vocabulary {len(vocab)}"
    )

    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = CharLM(len(vocab), args.embed, args.hidden, args.layers, args.cell, args.dropout)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    try:
        shard = {"num_replicas": world, "rank": rank} if dist else {}
        batcher = BPTTBatcher(train_ids, args.batch_size, args.seq_len, **shard)
    except ValueError:
        raise SystemExit(
            f"error: the text ({len(train_ids)} chars) is too short for "
            f"--batch-size {args.batch_size} streams of --seq-len {args.seq_len}"
        ) from None
    step = 0
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optim"])
        except ValueError as e:
            raise SystemExit(
                f"error: --resume {args.resume!r} does not fit this model: {e}"
            ) from None
        step = int(ck["step"])
        batcher.position = int(ck.get("data_pos", 0)) // args.seq_len % len(batcher)
        if step >= args.steps:
            print(
                f"note: --resume {args.resume} is at step {step} and --steps is {args.steps}: "
                f"nothing left to train (--steps is the total, the checkpoint's steps "
                f"included: give more than {step} to continue); evaluating only",
                file=sys.stderr,
            )
        else:
            out.message(
                f"resumed from {args.resume} at step {step}; training continues to "
                f"step {args.steps}"
            )
    net = model
    if dist:  # rank 0's weights everywhere; the gradients averaged after each backward
        net = dist.DistributedDataParallel(model)
        mg.manual_seed(args.seed * 1000 + 1 + rank)  # each rank its own dropout masks
    n_params = sum(p.data.size for p in model.parameters())
    out.message(
        f"model: {args.cell.upper()} {args.layers} x {args.hidden}, embedding "
        f"{args.embed}, {n_params:,} parameters; batch {args.batch_size} x "
        f"{args.seq_len} characters, Adam lr {args.lr} (cosine to "
        f"{args.lr * args.min_lr_ratio:.0e}), clip {args.clip}"
        + (
            f"; data-parallel on {world} ranks, {args.batch_size // world} streams each"
            if dist
            else ""
        )
    )

    log2 = math.log(2)
    state = None
    losses = []
    history = []
    start_step = step
    t_start = time.perf_counter()
    tokens = 0
    smooth = None
    val_bpc = None
    sample_text = ""

    def do_eval(final=False):
        nonlocal val_bpc, sample_text
        limit = args.final_eval_chars if final else args.eval_chars
        val_bpc = evaluate(model, val_ids, args.batch_size, args.seq_len, limit, dist)
        history.append((step, val_bpc))
        out.message(
            f"step {step}: validation {val_bpc:.3f} bits/char "
            f"(on {min(limit, len(val_ids)):,} held-out characters)"
        )
        if args.sample_len and rank == 0:
            sample_text = sample(model, vocab, args.prime, args.sample_len, args.temperature, rng)
            out.message(f"--- sample (temperature {args.temperature}) ---\n{sample_text}\n---")
        if args.save and rank == 0:
            save_checkpoint(
                args.save, model, opt, step, vocab, args, batcher.position * args.seq_len
            )
            out.message(f"checkpoint of step {step} written to {args.save}")

    # Cosine from --lr at step 0 to --lr * --min-lr-ratio at --steps; a resumed run jumps to its
    # step (a checkpoint's optimizer state carries each group's initial_lr).
    for g in opt.param_groups:
        g.setdefault("initial_lr", args.lr)
    sched = CosineAnnealingLR(
        opt, T_max=args.steps, eta_min=args.lr * args.min_lr_ratio, last_epoch=step - 1
    )
    chunks = iter(batcher)
    model.train()
    while step < args.steps:
        over = args.time_limit is not None and time.perf_counter() - t_start > args.time_limit
        if dist and args.time_limit is not None:  # the ranks stop at the same step
            over = bool(dist.all_reduce(int(over), "max"))
        if over:
            out.message(f"time limit of {args.time_limit:g} s reached at step {step}")
            break
        x, y = next(chunks, (None, None))
        if x is None:  # a new pass over the text: start from zeros
            chunks = iter(batcher)
            x, y = next(chunks)
            state = None
        logits, state = net(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        sched.step()
        state = nn.utils.detach_state(state)  # truncated BPTT: keep the value, cut the tape
        step += 1
        tokens += y.size * world
        lv = float(loss.item())
        losses.append(lv)
        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
        elapsed = time.perf_counter() - t_start
        out.update(
            step,
            f"step {step}/{args.steps} | loss {smooth:.3f} ({smooth / log2:.2f} "
            f"bits/char) | {tokens / elapsed:,.0f} tokens/s | {elapsed:.0f} s",
        )
        if step % args.eval_every == 0 and step < args.steps:
            do_eval()
    train_time = time.perf_counter() - t_start
    do_eval(final=True)
    total_time = time.perf_counter() - t_start
    tps = tokens / train_time if train_time > 0 else 0.0  # periodic evaluations included
    out.message(
        f"done: {step - start_step} steps, {total_time:.0f} s in all (training "
        f"{tokens / max(train_time, 1e-9):,.0f} tokens/s, periodic evaluations "
        f"included); validation {val_bpc:.3f} bits/char"
    )
    return {
        "steps": step,
        "first_loss": losses[0] if losses else None,
        "train_loss": float(np.mean(losses[-20:])) if losses else None,
        "losses": losses,
        "val_bpc": val_bpc,
        "history": history,
        "tokens_per_s": tps,
        "train_seconds": train_time,
        "seconds": total_time,
        "sample": sample_text,
        "vocab_size": len(vocab),
        "params": n_params,
    }


if __name__ == "__main__":
    main()
