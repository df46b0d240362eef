"""Threads: the recurrent training step of bench_rnn at 1, 2, ... threads (scaling), or on a
machine a second process keeps busy (--contention); minigrad beside torch and NumPy.

Run from the repository root:

    python benchmarks/bench_threads.py [--quick] [--threads 1,2,4] [--cells lstm] [--sizes ...]
    python benchmarks/bench_threads.py --contention [--quick]

The step, the contenders and the sizes are bench_rnn's (benchmarks/harness/): minigrad (nn
modules + optim.SGD), numpy (the hand-written BPTT), torch. Each contender runs in a worker
process of its own (benchmarks/harness/isolated.py: frameworks sharing a process change each
other's allocations and so their speed; glibc's thresholds are fixed there unless
--glibc-malloc), at each thread count, all interleaved in rounds (a contender's thread count
is set before its turn, untimed: minigrad.set_num_threads, torch.set_num_threads, NumPy's
OpenBLAS through minigrad.threads); each step timed in its worker; medians per step, and
ratios of medians of the same run. --same-process runs them all in this process.

Scaling (default): every contender at every count of --threads (default: 1 and the cores this
process may use, at least 2). Columns: each median, each contender's speedup over its own 1-thread
step, and minigrad / torch at equal thread counts (below 1: minigrad faster). A turn is one step
(--run-length 1, the default) or K steps back to back (--run-length K, as a training loop runs
them). Each turn starts once the previous contender's worker threads have stopped running
(harness.timing.wait_quiet, untimed: torch's OpenMP workers spin for about 8 ms after a step,
and would otherwise take the cores from the first milliseconds of whoever comes next, which no
framework training alone pays); --no-quiet starts it at once. --settle S sleeps S seconds,
untimed, before each turn. --by-previous adds a table of each contender's median step by the
contender whose step ran just before it: what the previous turn leaves behind (idle cores,
spinning threads, cold caches) weighs on some steps and not on others.

Contention (--contention): a second process spins on one core (the last this process may use)
for the whole run; each contender runs at 1 thread and at its default (minigrad:
MINIGRAD_NUM_THREADS or the cores it may use; torch: torch.get_num_threads() at start; NumPy: its
OpenBLAS setting at
start). Columns: the medians and each contender's default / 1-thread ratio (above 1: its threads
cost more than they bring under contention). Method: docs/performance.md.
"""

import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import statistics  # noqa: E402
import time  # noqa: E402

from benchmarks.bench_rnn import GRID  # noqa: E402
from benchmarks.harness import cli, isolated, threads, timing  # noqa: E402
from benchmarks.harness.contenders import build  # noqa: E402
from benchmarks.harness.problem import (  # noqa: E402
    CELLS,
    make_problem,
    parse_cells,
    parse_sizes,
    size_name,
)

SCALING_LEGEND = (
    "name@n = median ms per step at n threads; name xn = its 1-thread median / its n-thread "
    "median (speedup); mg/torch@n = minigrad's median / torch's at n threads (< 1: minigrad "
    "faster); all contenders interleaved in one run, each in a worker process of its own"
)
BY_PREVIOUS_LEGEND = (
    "ms = median ms of the contender's steps that ran right after a step of `after` (itself: "
    "the later steps of a turn of --run-length > 1); / all = that median over the median of "
    "all its steps (above 1: the steps after `after` were slower than its usual step)"
)
CONTENTION_LEGEND = (
    "name@1 / name@def = median ms per step at 1 thread / at the contender's default threads, "
    "while another process spins on one core; name def/1 = the default's median / the 1-thread "
    "median (> 1: its threads cost more than they bring)"
)
SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def cores():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def parse_counts(text):
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"--threads expects comma-separated integers, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise ValueError(f"--threads expects counts >= 1, got {text!r}")
    return counts


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--cells", type=parse_cells, default=",".join(CELLS), help="cell types")
    ap.add_argument("--sizes", type=parse_sizes, default=None, help="BxTxIxH,... (default: grid)")
    ap.add_argument(
        "--threads",
        type=parse_counts,
        default=None,
        help="thread counts of the scaling table, 1 always among them (the speedups are over "
        "it) (default: 1 and the cores this process may use)",
    )
    ap.add_argument(
        "--min-time",
        type=float,
        default=2.0,
        help="seconds sampled per contender (--quick: at most 0.5)",
    )
    ap.add_argument(
        "--run-length",
        type=int,
        default=1,
        help="steps back to back per turn of a contender, each timed (1: every step right "
        "after another contender's; K > 1: as a training loop runs, mostly after its own)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds of sleep before each turn, untimed (the machine idle that long)",
    )
    cli.add_flags(
        ap,
        [
            ("--quick", "the first two sizes of the grid, shorter sampling (0.5 s each)"),
            ("--contention", "the contention table instead"),
            (
                "--by-previous",
                "also a table of each contender's median step by the contender that ran just "
                "before it (scaling only)",
            ),
            (
                "--no-quiet",
                "start each turn right after the previous one, even while the previous "
                "contender's threads still spin",
            ),
            ("--no-torch", "leave torch out"),
            ("--no-numpy", "leave the NumPy reference out"),
            (
                "--same-process",
                "run every contender in this process instead of a worker process each",
            ),
            (
                "--glibc-malloc",
                "run the workers with glibc's own moving mmap and trim thresholds "
                "(otherwise fixed, so that no step pays page faults for what ran before it)",
            ),
        ],
    )
    return ap


class Setters:
    """Set one contender's thread count (minigrad, torch, numpy); remembers the defaults."""

    def __init__(self):
        import minigrad
        from minigrad import threads as mthreads

        self.mg = minigrad
        self.numpy_blas = [
            (s, g) for p, s, g in mthreads.blas_libraries() if not mthreads.kernels_only_blas(p)
        ]
        self.torch = None
        if threads.torch_available():
            import torch

            self.torch = torch
        self.default = {
            "minigrad": minigrad.get_num_threads(),
            "numpy": self.numpy_blas[0][1]() if self.numpy_blas else 1,
            "torch": self.torch.get_num_threads() if self.torch else 1,
        }

    def set(self, name, n):
        if name == "minigrad":
            self.mg.set_num_threads(n)  # NumPy's BLAS too: the tape's NumPy ops
        elif name == "torch":
            self.torch.set_num_threads(n)
        else:
            for setter, _ in self.numpy_blas:
                setter(n)


class AtThreads:
    """A contender run at n threads: its count set before each turn (not timed)."""

    def __init__(self, inner, name, n, setters):
        self.inner, self.name, self.n, self.setters = inner, name, n, setters

    def prepare(self):
        self.setters.set(self.name, self.n)

    def step(self):
        return self.inner.step()


class ThreadsWorker:
    """One contender's step of a (cell, size) problem at each of its thread counts, in a worker
    process of its own (harness.isolated): each count its own copy of the weights."""

    def __init__(self, cell, size, name, counts):
        self.setters = Setters()
        self.name = name
        params, x, target = make_problem(cell, size)
        self.models = {n: build(cell, params, x, target, [name])[name] for n in counts}

    def set_threads(self, n):
        self.setters.set(self.name, n)

    def step_at(self, n):
        """One step at n threads (set by set_threads before); its seconds."""
        t0 = time.perf_counter()
        self.models[n].step()
        return time.perf_counter() - t0


def time_counts(
    cell,
    size,
    names,
    counts,
    setters,
    min_time,
    run_length=1,
    settle=0.0,
    same_process=False,
    env=None,
    quiet_turns=True,
    log=None,
):
    """{(name, n): median seconds}: every contender at every count of counts[name], interleaved;
    each contender in a worker process of its own (harness.isolated, started with ``env``)
    unless same_process. ``log``: a list that receives timing.time_interleaved's log, each
    contender named 'name@n'."""
    runs, workers = {}, None
    try:
        if same_process:
            params, x, target = make_problem(cell, size)
            for name in names:
                for n in counts[name]:
                    # each thread count its own copy of the weights: every turn steps the same
                    # problem
                    runs[f"{name}@{n}"] = AtThreads(
                        build(cell, params, x, target, [name])[name], name, n, setters
                    )
        else:
            specs = {n: (ThreadsWorker, (cell, size, n, counts[n])) for n in names}
            workers = isolated.start(specs, env)
            for name, w in workers.items():
                for n in counts[name]:
                    runs[f"{name}@{n}"] = w.remote(("step_at", (n,)), ("set_threads", (n,)))
        samples = timing.time_interleaved(
            runs,
            warmup=2,
            min_time=min_time,
            min_repeats=5,
            run_length=run_length,
            settle=settle,
            quiet_turns=quiet_turns,
            log=log,
        )
    finally:
        isolated.close_all(workers)
    return {
        (k.split("@")[0], int(k.split("@")[1])): statistics.median(v) for k, v in samples.items()
    }


def _isolation(args):
    return {
        "same_process": args.same_process,
        "env": isolated.malloc_env(args.glibc_malloc),
        "quiet_turns": not args.no_quiet,
    }


def ms(s):
    return f"{s * 1e3:.3g}"


def scaling(args, names, sizes, setters):
    counts = sorted({1, *(args.threads or [max(2, len(cores()))])})
    header = ["cell", "size"] + [f"{n}@{c}" for n in names for c in counts]
    header += [f"{n} x{c}" for n in names for c in counts if c > 1]
    if "torch" in names:
        header += [f"mg/torch@{c}" for c in counts]
    rows, by_previous = [], []
    for cell in args.cells:
        for size in sizes:
            log = [] if args.by_previous else None
            med = time_counts(
                cell,
                size,
                names,
                {n: counts for n in names},
                setters,
                args.min_time,
                args.run_length,
                args.settle,
                log=log,
                **_isolation(args),
            )
            if log is not None:
                by_previous += previous_rows(cell, size, log)
            row = [cell, size_name(size)] + [ms(med[n, c]) for n in names for c in counts]
            row += [f"{med[n, 1] / med[n, c]:.2f}" for n in names for c in counts if c > 1]
            if "torch" in names:
                row += [f"{med['minigrad', c] / med['torch', c]:.2f}" for c in counts]
            rows.append(row)
            print("  " + "  ".join(row), flush=True)
    cli.print_table(header, rows, SCALING_LEGEND, left=2)
    if by_previous:
        print()
        cli.print_table(
            ["cell", "size", "contender", "after", "steps", "ms", "/ all"],
            by_previous,
            BY_PREVIOUS_LEGEND,
            left=3,
        )


def previous_rows(cell, size, log):
    """Rows of the --by-previous table from a time_interleaved log: each contender's median
    step after each contender that ran just before it, and its ratio to the contender's median
    over all its steps."""
    groups, every = {}, {}
    for name, prev, seconds in log:
        every.setdefault(name, []).append(seconds)
        if prev is not None:
            groups.setdefault((name, prev), []).append(seconds)
    rows = []
    for name in every:
        whole = statistics.median(every[name])
        for prev in every:
            secs = groups.get((name, prev))
            if secs:
                m = statistics.median(secs)
                rows.append(
                    [cell, size_name(size), name, prev, str(len(secs)), ms(m), f"{m / whole:.2f}"]
                )
    return rows


def contention(args, names, sizes, setters):
    core = cores()[-1]
    spin = subprocess.Popen([sys.executable, "-c", SPIN, str(core)])
    print(f"contention: a process (pid {spin.pid}) spinning on core {core} for the whole run")
    print(
        "default threads: "
        + ", ".join(f"{n} {setters.default[n]}" for n in names)
        + f" (cores this process may use: {len(cores())})"
    )
    try:
        counts = {n: sorted({1, setters.default[n]}) for n in names}
        header = ["cell", "size"] + [f"{n}@1" for n in names] + [f"{n}@def" for n in names]
        header += [f"{n} def/1" for n in names]
        rows = []
        for cell in args.cells:
            for size in sizes:
                med = time_counts(
                    cell, size, names, counts, setters, args.min_time, **_isolation(args)
                )
                d = {n: setters.default[n] for n in names}
                row = [cell, size_name(size)] + [ms(med[n, 1]) for n in names]
                row += [ms(med[n, d[n]]) for n in names]
                row += [f"{med[n, d[n]] / med[n, 1]:.2f}" for n in names]
                rows.append(row)
                print("  " + "  ".join(row), flush=True)
    finally:
        spin.kill()
        spin.wait()
    cli.print_table(header, rows, CONTENTION_LEGEND, left=2)


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    sizes = args.sizes or (GRID[:2] if args.quick else GRID)
    if args.quick:
        args.min_time = min(args.min_time, 0.5)
    if args.run_length < 1:
        ap.error(f"--run-length must be >= 1, got {args.run_length}")
    if not 0 <= args.settle <= 10:
        ap.error(f"--settle must lie in [0, 10] seconds, got {args.settle}")
    setters = Setters()
    names = ["minigrad"]
    if not args.no_numpy:
        names.append("numpy")
    if not args.no_torch and setters.torch is not None:
        names.append("torch")
    try:
        (contention if args.contention else scaling)(args, names, sizes, setters)
    finally:
        for n in names:
            setters.set(n, setters.default[n])


if __name__ == "__main__":
    main()
