"""The adding problem (Hochreiter & Schmidhuber, 1997): long-term dependencies, RNN vs LSTM vs GRU.

Each input is a sequence of T pairs (value, marker): values are uniform in [0, 1], and exactly
two markers are 1 -- one in the first half of the sequence, one in the second. The target is
the sum of the two marked values. Predicting the mean (1.0) scores an MSE of 2/12 ~ 0.167, so a
model is only doing something when it goes clearly below that. The first marked value can be
up to T steps before the answer is due: the gradient that should teach the model to remember it
has to travel back through up to T cell steps.

    python examples/adding_problem.py             # T = 50, 100, 200; all three cells
    python examples/adding_problem.py --quick     # a smaller run, under two minutes
    python examples/adding_problem.py --plot grads.png   # needs matplotlib

Every cell gets the same budget (steps, batch size, hidden size, learning rate). The script
prints the test MSE per cell and T, and the size of the gradient reaching the *first* time
step, |dL/dx_0|, relative to the one at the last step, |dL/dx_{T-1}|: the vanishing gradient of
the lecture notes, as a number. It is measured on the freshly initialized models (where the
tanh RNN's and, with its update gate near one half, the GRU's are tiny) and again after
training (where a cell that learned to remember carries the gradient back to the start).

Measured with the defaults (seed 0; hidden 64, 3000 steps of 64 sequences, Adam 3e-3; 2-core
AMD EPYC, one BLAS thread; 8 min 47 s in all): test MSE

    cell      T=50     T=100    T=200
    RNN      0.1750   0.1700   0.1712     (stays at the 0.167 baseline)
    LSTM     0.0003   0.0003   0.0010
    GRU      0.0001   0.0005   0.0002

and |dL/dx_0| / |dL/dx_T-1| at initialization of 1e-10 / 8e-21 / 6e-41 (RNN), 1e-4 / 2e-7 /
3e-14 (LSTM), 1e-10 / 7e-21 / 8e-41 (GRU); after training about 0.2 to 4 for LSTM and GRU, and
at most 5e-23 for the RNN. ``--quick`` (T = 25, 50; 1000 steps) took 33 s.
"""

from __future__ import annotations

import os
import sys

# _cli (next to this script) sets one BLAS thread unless OPENBLAS_NUM_THREADS is set, before
# NumPy loads, and finds minigrad in a source checkout. This folder is on sys.path when the
# script runs, not when it is loaded from a file path (as the tests do).
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _cli import int_range, option, positive_float, positive_int  # noqa: I001  (first: before NumPy loads)

import argparse
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
BASELINE = 2 / 12  # variance of the sum of two U(0, 1) values: the MSE of predicting 1.0


def make_batch(rng, batch, T, dtype=np.float32):
    """x (batch, T, 2) = (value, marker) pairs; y (batch, 1) = sum of the two marked values."""
    if T < 2:
        raise ValueError(f"T must be at least 2, got {T}")
    values = rng.random((batch, T))
    half = T // 2
    first = rng.integers(0, half, batch)
    second = rng.integers(half, T, batch)
    markers = np.zeros((batch, T))
    rows = np.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)
    y = (values[rows, first] + values[rows, second])[:, None].astype(dtype)
    return x, y


class Adder(nn.Module):
    """A recurrent layer read at its last step, then a linear read-out of one number."""

    def __init__(self, cell, hidden, forget_bias=1.0):
        super().__init__()
        self.rnn = CELLS[cell](2, hidden, batch_first=True, return_sequences=False)
        self.head = nn.Linear(hidden, 1)
        if cell == "lstm" and forget_bias:
            # Gate order i, f, g, o: start with forget gates open (f = sigmoid(1) ~ 0.73
            # instead of 0.5), the usual LSTM initialization (Gers et al. 2000; Jozefowicz et
            # al. 2015). b_ih + b_hh is what the cell sees.
            H = hidden
            self.rnn.bias_ih_l0.data[H : 2 * H] = forget_bias
            self.rnn.bias_hh_l0.data[H : 2 * H] = 0.0

    def forward(self, x):
        return self.head(self.rnn(x))


def gradient_profile(model, x, y):
    """|dL/dx_t| for t = 0 .. T-1 (the norm over the batch and both features), one backward."""
    xt = mg.tensor(x, requires_grad=True)
    loss = F.mse_loss(model(xt), mg.tensor(y))
    model.zero_grad()
    loss.backward()
    g = xt.grad.astype(np.float64)
    model.zero_grad()
    return np.sqrt((g * g).sum(axis=(0, 2)))


def test_mse(model, x, y, batch=500):
    total = 0.0
    with mg.no_grad():
        for i in range(0, len(x), batch):
            pred = model(x[i : i + batch]).data
            total += float(((pred - y[i : i + batch]) ** 2).sum())
    return total / len(x)


def run_one(cell, T, args, log):
    """Train one cell on length-T problems; returns (test MSE, gradient profiles at
    initialization and after training, loss curve)."""
    mg.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Adder(cell, args.hidden, args.forget_bias)
    gx, gy = make_batch(np.random.default_rng(args.seed + 1), args.batch_size, T)
    profile = gradient_profile(model, gx, gy)
    opt = mg.optim.Adam(model.parameters(), lr=args.lr)
    tx, ty = make_batch(np.random.default_rng(args.seed + 2), args.test_size, T)
    losses = []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = make_batch(rng, args.batch_size, T)
        loss = F.mse_loss(model(x), mg.tensor(y))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(float(loss.item()))
        if not args.quiet and sys.stdout.isatty() and (step % 50 == 0 or step == args.steps):
            recent = float(np.mean(losses[-50:]))
            log(
                f"\r  {cell:<4} T={T:<4} step {step}/{args.steps}  train MSE {recent:.4f}  "
                f"{time.perf_counter() - t0:.0f} s ",
                end="",
            )
    mse = test_mse(model, tx, ty)
    trained = gradient_profile(model, gx, gy)
    if not args.quiet:
        head = "\r" if sys.stdout.isatty() else ""
        log(
            f"{head}  {cell:<4} T={T:<4} test MSE {mse:.4f}  "
            f"({time.perf_counter() - t0:.0f} s)" + " " * 30
        )
    return mse, (profile, trained), losses


def _table(title, rows, cols, fmt):
    head = "cell   " + "".join(f"{'T=' + str(T):>11}" for T in cols)
    lines = [title, head, "-" * len(head)]
    for name, vals in rows:
        lines.append(f"{name:<7}" + "".join(f"{fmt(v):>11}" for v in vals))
    return "\n".join(lines)


def plot(path, lengths, cells, mse, profiles):
    """Two panels: gradient norm per time step (largest T) at initialization (solid) and after
    training (dashed); test MSE against T."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "note: --plot needs matplotlib (pip install matplotlib); no plot written",
            file=sys.stderr,
        )
        return False
    T = max(lengths)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for c in cells:
        init, trained = profiles[c][T]
        (line,) = a.semilogy(np.arange(T), np.maximum(init, 1e-45), label=f"{c.upper()} at init")
        a.semilogy(
            np.arange(T),
            np.maximum(trained, 1e-45),
            linestyle="--",
            color=line.get_color(),
            label=f"{c.upper()} trained",
        )
        b.plot(lengths, [mse[c][t] for t in lengths], marker="o", label=c.upper())
    a.set_xlabel("time step t")
    a.set_ylabel("|dL/dx_t|")
    a.set_title(f"gradient reaching each step (T={T})")
    a.legend()
    b.axhline(BASELINE, color="gray", linestyle="--", label="predict the mean")
    b.set_yscale("log")
    b.set_xlabel("sequence length T")
    b.set_ylabel("test MSE")
    b.set_title("adding problem, same budget per cell")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --lengths and --steps left unset take these (the second of each pair with --quick)
LENGTHS = ([50, 100, 200], [25, 50])
STEPS = (3000, 1000)


def _words(values):
    return " ".join(map(str, values))


def build_parser():
    # every option's help states its default once: "(default: %(default)s)" is the parser's value
    p = argparse.ArgumentParser(description="The adding problem: tanh RNN vs LSTM vs GRU.")

    p.add_argument(
        "--lengths",
        type=int_range(2),
        nargs="+",
        default=None,
        help=f"sequence lengths T, each at least 2 (default: {_words(LENGTHS[0])}; "
        f"with --quick {_words(LENGTHS[1])})",
    )
    p.add_argument(
        "--cells",
        nargs="+",
        choices=sorted(CELLS),
        default=["rnn", "lstm", "gru"],
        help="cells to compare (default: rnn lstm gru)",
    )
    option(p, "--hidden", positive_int, 64, "hidden size of every cell")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"training steps per cell and length (default: {STEPS[0]}; with --quick {STEPS[1]})",
    )
    option(p, "--batch-size", positive_int, 64, "sequences per training step")
    option(p, "--lr", positive_float, 3e-3, "Adam learning rate")
    option(p, "--clip", positive_float, 1.0, "max gradient norm")
    option(p, "--forget-bias", float, 1.0, "initial LSTM forget bias")
    option(p, "--test-size", positive_int, 1000, "test sequences per length")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run (under two minutes): shorter --lengths and fewer --steps",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="save a figure here (gradient per time step, test MSE against T); "
        "needs matplotlib (default: no figure)",
    )
    option(p, "--seed", int, 0, "seed of the weights and the data")
    p.add_argument("--quiet", action="store_true", help="print no progress lines or tables")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.lengths is None:
        args.lengths = list(LENGTHS[args.quick])
    if args.steps is None:
        args.steps = STEPS[args.quick]
    lengths = sorted(set(args.lengths))
    cells = list(dict.fromkeys(args.cells))

    def log(msg, end="\n"):
        if not args.quiet:
            print(msg, end=end, flush=True)

    log(
        f"adding problem: {', '.join(c.upper() for c in cells)}; hidden {args.hidden}, "
        f"{args.steps} steps of batch {args.batch_size}, Adam lr {args.lr}; T = "
        f"{', '.join(map(str, lengths))}"
    )
    t_start = time.perf_counter()
    mse = {c: {} for c in cells}
    profiles = {c: {} for c in cells}
    curves = {c: {} for c in cells}
    times = {c: {} for c in cells}
    for T in lengths:
        for c in cells:
            t0 = time.perf_counter()
            mse[c][T], profiles[c][T], curves[c][T] = run_one(c, T, args, log)
            times[c][T] = time.perf_counter() - t0
    elapsed = time.perf_counter() - t_start

    def first_over_last(p):
        return float(p[0] / max(p[-1], 1e-300))

    ratio = {c: {T: first_over_last(profiles[c][T][0]) for T in lengths} for c in cells}
    ratio_trained = {c: {T: first_over_last(profiles[c][T][1]) for T in lengths} for c in cells}
    if not args.quiet:
        print()
        print(
            _table(
                f"test MSE ({args.test_size} sequences; predicting the mean gives {BASELINE:.3f})",
                [(c.upper(), [mse[c][T] for T in lengths]) for c in cells],
                lengths,
                lambda v: f"{v:.4f}",
            )
        )
        print()
        print(
            _table(
                "gradient reaching the first step at initialization, |dL/dx_0| / |dL/dx_T-1|",
                [(c.upper(), [ratio[c][T] for T in lengths]) for c in cells],
                lengths,
                lambda v: f"{v:.1e}",
            )
        )
        print()
        print(
            _table(
                "... and after training",
                [(c.upper(), [ratio_trained[c][T] for T in lengths]) for c in cells],
                lengths,
                lambda v: f"{v:.1e}",
            )
        )
        print()
        print(
            _table(
                "training time (s)",
                [(c.upper(), [times[c][T] for T in lengths]) for c in cells],
                lengths,
                lambda v: f"{v:.1f}",
            )
        )
        print(f"\ntotal {elapsed:.0f} s")
    plotted = False
    if args.plot:
        plotted = plot(args.plot, lengths, cells, mse, profiles)
        if plotted:
            log(f"plot written to {args.plot}")
    return {
        "mse": mse,
        "grad_ratio": ratio,
        "grad_ratio_trained": ratio_trained,
        "grad_profile": {c: {T: profiles[c][T][0] for T in lengths} for c in cells},
        "grad_profile_trained": {c: {T: profiles[c][T][1] for T in lengths} for c in cells},
        "losses": curves,
        "baseline": BASELINE,
        "seconds": elapsed,
        "times": times,
        "plotted": plotted,
    }


if __name__ == "__main__":
    main()
