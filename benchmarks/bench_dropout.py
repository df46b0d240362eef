"""Recurrent dropout and zoneout in the LSTM/GRU training step: their cost over the plain layer.

Run from the repository root:

    python benchmarks/bench_dropout.py [--quick] [options]

The step is bench_rnn's (forward over x (T, B, I) from zero states, a linear readout of h_n, MSE,
backward, one SGD update; float32), run by minigrad's modules (nn.LSTM / nn.GRU, the compiled
sequence kernel) three ways that take turns in interleaved rounds: the plain layer,
``recurrent_dropout=0.25`` (one mask per sequence on the state entering the recurrent GEMM) and
``zoneout=0.1`` (per step and unit, on h and, for the LSTM, c), all in training mode. The table
gives median ms per step and each option's median over the plain layer's with a 95% bootstrap
interval over the rounds (harness/stats.py).
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

# the BLAS pools take their size when numpy is first imported
_ENV_BEFORE_NUMPY = threads.set_env_for_script(__name__, sys.argv[1:])

import statistics  # noqa: E402

from benchmarks.harness import cli, machine, timing  # noqa: E402
from benchmarks.harness.contenders import MinigradStep  # noqa: E402
from benchmarks.harness.problem import add_quick_and_sizes_options, make_problem, size_name  # noqa: E402
from benchmarks.harness.stats import ratio_interval  # noqa: E402

GRID = [
    (32, 20, 50, 50),
    (32, 100, 128, 128),
    (32, 100, 256, 256),
    (64, 100, 512, 512),
]  # bench_rnn's
CELLS = ("lstm", "gru")
OPTIONS = {  # contender name -> the layer's keywords (all train mode)
    "plain": {},
    "rdrop": {"recurrent_dropout": 0.25},
    "zoneout": {"zoneout": 0.1},
}


def contender(name):
    """A MinigradStep whose layer has OPTIONS[name]."""
    return type(f"Step_{name}", (MinigradStep,), {"name": name, "layer_kw": OPTIONS[name]})


def build_parser():
    ap = cli.parser(__doc__)
    add_quick_and_sizes_options(
        ap, GRID, "the first two sizes", "0.5 s per contender, 1 warm-up round"
    )
    ap.add_argument(
        "--cells",
        default=",".join(CELLS),
        help="cells to run, comma-separated, among " + ", ".join(CELLS),
    )
    threads.add_option(ap)
    ap.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds each contender is sampled (default: 2; 0.5 with --quick)",
    )
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(ap, threads=(args.threads, 1))
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or any(c not in CELLS for c in cells):
        ap.error(f"--cells must be among {','.join(CELLS)}, got {args.cells!r}")
    thread_info = threads.apply(args.threads, _ENV_BEFORE_NUMPY)
    sizes = args.sizes or (GRID[:2] if args.quick else GRID)
    min_time = args.min_time if args.min_time is not None else (0.5 if args.quick else 2.0)
    warmup = 1 if args.quick else 2
    print(machine.describe(machine.machine_info()))
    print(threads.describe(thread_info))
    rows = []
    for cell in cells:
        for size in sizes:
            params, x, target = make_problem(cell, size)
            steps = {n: contender(n)(cell, params, x, target) for n in OPTIONS}
            samples = timing.time_interleaved(
                steps, warmup, min_time=min_time, min_repeats=3 if args.quick else 7
            )
            med = {n: statistics.median(s) * 1e3 for n, s in samples.items()}
            row = [cell, size_name(size)] + [f"{med[n]:.2f}" for n in OPTIONS]
            for n in list(OPTIONS)[1:]:
                lo, hi = ratio_interval(samples[n], samples["plain"])
                row.append(f"{med[n] / med['plain']:.3f} [{lo:.2f}, {hi:.2f}]")
            rows.append(row)
    cli.print_table(
        ["cell", "BxTxIxH"]
        + [f"{n} ms" for n in OPTIONS]
        + [f"{n}/plain" for n in list(OPTIONS)[1:]],
        rows,
        "ms: median per training step; plain: nn.LSTM/GRU; rdrop: recurrent_dropout=0.25; "
        "zoneout: zoneout=0.1; x/plain: ratio of medians [95% bootstrap interval] "
        "(target for rdrop: <= 1.1)",
        left=2,
    )


if __name__ == "__main__":
    main()
