"""One recurrent training step (RNN tanh, LSTM, GRU): minigrad vs the NumPy reference vs PyTorch.

Run from the repository root, any of:

    python benchmarks/bench_rnn.py [options]
    python -m benchmarks.bench_rnn [options]
    python -m benchmarks [options]

The step: forward over x (T, B, I) from zero states, a linear readout (H -> 10) of the last
hidden state h_n, loss = mean squared error against a fixed random target, backward, and one
SGD update of every parameter (lr 0.01); float32. Contenders (benchmarks/harness/contenders.py):
minigrad (nn modules + optim.SGD), numpy (benchmarks/numpy_reference.py, hand-written BPTT),
torch (when importable); opt-in: kernels (minigrad's kernels called by hand, no tape) and
unrolled (minigrad's modules with one cell node per time step).

All start from the same weights. Before timing, each cell/size is checked: the losses and every
parameter gradient must agree within float32 tolerance, else the run stops (MismatchError).
Each contender runs in a worker process of its own (benchmarks/harness/isolated.py; contenders
sharing a process share its allocator, and one's frees change the other's page faults), with
glibc's mmap and trim thresholds fixed there (--glibc-malloc: not); --same-process runs them all
in this process. Timing interleaves the contenders in rounds, one turn each, in orders that put
every contender's turn right after every other's equally often; each step is timed in its
worker; warm-up rounds are discarded;
median, min and max per step are reported, and ratios of medians of the same run with a 95%
bootstrap interval over the rounds. Method: docs/performance.md.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

if __name__ == "__main__":  # the BLAS pools take their size when numpy is first imported
    _ENV_BEFORE_NUMPY = threads.set_env(threads.from_argv(sys.argv[1:]))
else:
    _ENV_BEFORE_NUMPY = "numpy" not in sys.modules

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from benchmarks.harness import cli, isolated, machine, memory, timing  # noqa: E402
from benchmarks.harness.agreement import verify  # noqa: E402
from benchmarks.harness.contenders import build  # noqa: E402
from benchmarks.harness.plot import plot  # noqa: E402
from benchmarks.harness.problem import (  # noqa: E402
    CELLS,
    LR,
    OUT,
    add_quick_and_sizes_options,
    gemm_flops,
    make_problem,
    parse_cells,
    size_name,
)
from benchmarks.harness.stats import ratio_interval  # noqa: E402

GRID = [(32, 20, 50, 50), (32, 100, 128, 128), (32, 100, 256, 256), (64, 100, 512, 512)]
SGEMM_PER_ROW = 5  # SGEMM runs before each cell/size (roofline rate: median of all runs)


def build_parser():
    ap = cli.parser(__doc__)
    add_quick_and_sizes_options(
        ap,
        GRID,
        "the first two sizes",
        "shorter sampling (warm-up 1 round, 0.5 s per contender, at least 3 rounds): about a "
        "minute",
    )
    ap.add_argument(
        "--cells",
        type=parse_cells,
        default=",".join(CELLS),
        help="cell types to run, comma-separated",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=threads.DEFAULT_THREADS,
        help="BLAS/OpenMP threads for numpy, scipy and torch",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds per cell/size (default: enough for --min-time)",
    )
    ap.add_argument(
        "--warmup", type=int, default=None, help="discarded rounds (default: 2; 1 with --quick)"
    )
    ap.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds each contender is sampled when --repeats is not given "
        "(default: 2; 0.5 with --quick)",
    )
    ap.add_argument(
        "--run-length",
        type=int,
        default=1,
        metavar="K",
        help="steps per contender turn, back to back (1: A B C A B C; more: "
        "steady training-loop steps)",
    )
    ap.add_argument(
        "--order",
        choices=timing.ORDERS,
        default="balanced",
        help="order of the turns: balanced (each contender right after every other "
        "equally often), rotate (A B C, B C A, C A B) or fixed (A B C)",
    )
    cli.add_flags(
        ap,
        [
            (
                "--kernels",
                "add minigrad's kernels called by hand, without the tape (what the framework adds)",
            ),
            ("--unrolled", "add minigrad's modules unrolled: one cell node per time step"),
            ("--no-torch", "leave torch out"),
            (
                "--same-process",
                "run every contender in this process instead of a worker process each",
            ),
            (
                "--glibc-malloc",
                "run the workers with glibc's own moving mmap and trim thresholds (otherwise "
                "fixed, so that no step pays page faults for what ran before it)",
            ),
            ("--no-memory", "skip the memory measurement"),
            ("--probe", "measure the machine's cache eviction at the start and end of the run"),
        ],
    )
    ap.add_argument(
        "--sgemm-n",
        type=int,
        default=1536,
        help="matrix size of the SGEMM rate measurement (the roofline)",
    )
    ap.add_argument(
        "--json",
        default=os.path.join(_ROOT, "bench_results", "bench_rnn.json"),
        help="file for every figure as JSON",
    )
    ap.add_argument(
        "--plot",
        default=os.path.join(_ROOT, "bench_results", "bench_rnn.png"),
        help="PNG of time per step against size (needs matplotlib)",
    )
    ap.add_argument("--no-plot", action="store_true", help="write no plot")
    return ap


class StepWorker:
    """One contender of the step, in a worker process of its own (harness.isolated): its
    threads set as the run's, then load(cell, size) builds its step on that problem."""

    def __init__(self, name, n_threads):
        threads.apply(n_threads)
        self.name, self.contender = name, None

    def load(self, cell, size):
        params, x, target = make_problem(cell, size)
        self.contender = build(cell, params, x, target, [self.name])[self.name]

    def step(self):
        self.contender.step()


def start_workers(names, args):
    """{name: worker} for the run (None with --same-process)."""
    if args.same_process:
        return None
    specs = {n: (StepWorker, (n, args.threads)) for n in names}
    return isolated.start(specs, isolated.malloc_env(args.glibc_malloc))


def measure_row(cell, size, names, args, warmup, min_time, min_repeats, workers=None):
    """One cell/size: the agreement check, SGEMM runs, the interleaved timing, ratios; the
    contenders in `workers` (start_workers) or, without them, in this process."""
    errors = verify(cell, size, names)
    if workers is None:
        params, x, target = make_problem(cell, size)
        contenders = build(cell, params, x, target, names)
    else:
        for w in workers.values():
            w.call("load", cell, size)
        contenders = workers
    row_sgemm = machine.measure_sgemm(args.sgemm_n, SGEMM_PER_ROW, scipy_too=False)["numpy"][
        "samples_gflops"
    ]
    samples = timing.time_interleaved(
        contenders,
        warmup,
        args.repeats,
        min_time,
        min_repeats,
        run_length=args.run_length,
        order=args.order,
    )
    flops = gemm_flops(size, cell)
    row = {
        "cell": cell,
        "size": list(size),
        "size_name": size_name(size),
        "B": size[0],
        "T": size[1],
        "I": size[2],
        "H": size[3],
        "gemm_flops": flops,
        "sgemm_samples_gflops": row_sgemm,
        "agreement_rel_err": errors,
        "contenders": {},
    }
    for n, s in samples.items():
        row["contenders"][n] = {
            "samples_s": s,
            "repeats": len(s),
            "median_s": statistics.median(s),
            "min_s": min(s),
            "max_s": max(s),
        }
    for n, c in row["contenders"].items():
        for refn in ("numpy", "torch"):
            if refn in row["contenders"] and refn != n:
                ref_c = row["contenders"][refn]
                c[f"ratio_vs_{refn}"] = c["median_s"] / ref_c["median_s"]
                c[f"ratio_vs_{refn}_ci95"] = ratio_interval(
                    c["samples_s"], ref_c["samples_s"], args.run_length
                )
        c["gemm_gflops_achieved"] = flops / c["median_s"] / 1e9
    return row


def _ratio(c, ref_name):
    r = c.get(f"ratio_vs_{ref_name}")
    if r is None:
        return "-"
    lo, hi = c[f"ratio_vs_{ref_name}_ci95"]
    return f"{r:.2f} ({lo:.2f}-{hi:.2f})"


def _mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def print_results(results, names):
    rows = []
    for r in results:
        for n in names:
            c = r["contenders"].get(n)
            if c is None:
                continue
            mem = c.get("memory", {})
            rows.append(
                [
                    r["cell"],
                    r["size_name"],
                    n,
                    f"{c['median_s'] * 1e3:.3f}",
                    f"{c['min_s'] * 1e3:.2f}-{c['max_s'] * 1e3:.2f}",
                    _ratio(c, "numpy"),
                    _ratio(c, "torch"),
                    f"{c['roofline_fraction'] * 100:.1f}%",
                    _mib(mem.get("peak_bytes")),
                    _mib(mem.get("rss_bytes")),
                ]
            )
    cli.print_table(
        [
            "cell",
            "B x T x I x H",
            "contender",
            "median ms",
            "min-max ms",
            "x numpy (95%)",
            "x torch (95%)",
            "roofline",
            "peak MiB",
            "RSS MiB",
        ],
        rows,
        "median and min-max ms per training step; x numpy, x torch: this contender's median "
        "over theirs in the same run (below 1: faster), 95% bootstrap interval over rounds; "
        "roofline: GEMM-only time at the run's SGEMM rate over the median; peak MiB, RSS MiB: "
        "extra memory during a step (below)",
        left=3,
    )


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(
        ap, threads=(args.threads, 1), run_length=(args.run_length, 1), sgemm_n=(args.sgemm_n, 1)
    )

    thread_info = threads.apply(args.threads, _ENV_BEFORE_NUMPY)
    names = ["minigrad", "numpy"] + (
        [] if args.no_torch or not threads.torch_available() else ["torch"]
    )
    names += ["kernels"] if args.kernels else []
    names += ["unrolled"] if args.unrolled else []
    sizes = args.sizes or (GRID[:2] if args.quick else GRID)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    min_time = args.min_time if args.min_time is not None else (0.5 if args.quick else 2.0)
    min_repeats = 3 if args.quick else 7

    t_start = time.perf_counter()
    info = machine.machine_info()
    sgemm = machine.measure_sgemm(args.sgemm_n)
    sgemm_all = list(sgemm["numpy"]["samples_gflops"])  # every numpy SGEMM run of this run
    print(machine.describe(info))
    print(threads.describe(thread_info))
    print(
        f"SGEMM {sgemm['n']}^3 float32: numpy {sgemm['numpy']['best_gflops']:.1f} GFLOP/s best "
        f"({sgemm['numpy']['median_gflops']:.1f} median)"
        + (f", scipy {sgemm['scipy']['best_gflops']:.1f} best" if "scipy" in sgemm else "")
        + f"; {SGEMM_PER_ROW} more numpy runs before each cell/size: the median of all of "
        "them is the roofline rate"
    )
    print(
        f"step: forward, MSE of a linear readout (H->{OUT}) of h_n, backward, SGD lr={LR}; "
        f"float32; {warmup} warm-up round(s) discarded; interleaved, {args.order} order "
        f"({timing.ORDER_NOTES[args.order]}), "
        + (
            "one step per turn"
            if args.run_length == 1
            else f"{args.run_length} steps back to back per turn"
        )
    )
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"load average at start: {load0}; on a shared machine other processes compete for the "
        "cores, so absolute times are noisy: read the within-run ratios"
    )
    probe0 = machine.eviction_probe(**machine.SHORT_PROBE) if args.probe else None
    if probe0:
        print(machine.probe_line(probe0))
    print()

    results = []
    workers = start_workers(names, args)
    try:
        for cell in args.cells:
            for size in sizes:
                row = measure_row(cell, size, names, args, warmup, min_time, min_repeats, workers)
                sgemm_all += row["sgemm_samples_gflops"]
                results.append(row)
                worst = max(max(e.values()) for e in row["agreement_rel_err"].values())
                print(
                    f"  {cell} {size_name(size)}: agree (max rel err {worst:.1e}), "
                    f"{row['contenders'][names[0]]['repeats']} rounds, "
                    + ", ".join(
                        f"{n} {row['contenders'][n]['median_s'] * 1e3:.2f} ms" for n in names
                    ),
                    flush=True,
                )
    finally:
        isolated.close_all(workers)

    if not args.no_memory:
        mem = memory.run_children([[r["cell"], r["size"]] for r in results], args.threads, names)
        for r in results:
            for n, m in mem.get(f"{r['cell']}/{r['size_name']}", {}).items():
                r["contenders"][n]["memory"] = m

    rate, best_rate = machine.roofline_rate(sgemm_all), max(sgemm_all) * 1e9
    for r in results:
        r["gemm_time_s"] = r["gemm_flops"] / rate
        for c in r["contenders"].values():
            c["roofline_fraction"] = r["gemm_time_s"] / c["median_s"]
            c["roofline_fraction_best_rate"] = r["gemm_flops"] / best_rate / c["median_s"]
    elapsed = time.perf_counter() - t_start
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    probe1 = machine.eviction_probe(**machine.SHORT_PROBE) if args.probe else None
    print()
    print_results(results, names)
    largest = [r for r in results if r["size"] == results[-1]["size"]]
    at_best = ", ".join(
        f"{r['cell']} {r['size_name']} "
        f"{r['contenders'][names[0]]['roofline_fraction_best_rate']:.1%}"
        for r in largest
    )
    print(
        f"\nroofline rate: the median of all {len(sgemm_all)} SGEMM runs of this run, "
        f"{rate / 1e9:.1f} GFLOP/s (range {min(sgemm_all):.1f}-{max(sgemm_all):.1f}); at the "
        f"best run ({best_rate / 1e9:.1f} GFLOP/s) the fractions would be {at_best} "
        f"({names[0]}).\n{memory.LEGEND}.\n"
        f"wall time {elapsed:.0f} s; load average at end {load1}"
    )
    if probe1:
        print("at end: " + machine.probe_line(probe1))

    doc = {
        "command": "python benchmarks/bench_rnn.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "threads": thread_info,
        "sgemm": sgemm,
        "sgemm_samples_gflops": sgemm_all,
        "roofline_rate_gflops": rate / 1e9,
        "sgemm_best_gflops_run": best_rate / 1e9,
        "lr": LR,
        "readout": OUT,
        "warmup": warmup,
        "run_length": args.run_length,
        "order": args.order,
        "contenders": names,
        "memory_method": memory.memory_probe.__doc__,
        "elapsed_s": elapsed,
        "load_average_start": load0,
        "load_average_end": load1,
        "results": results,
    }
    if args.probe:
        doc["eviction_probe_start_us"] = machine.probe_json(probe0)
        doc["eviction_probe_end_us"] = machine.probe_json(probe1)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"JSON: {args.json}")
    if args.plot and not args.no_plot:
        p = plot(results, names, args.plot)
        if p:
            print(f"plot: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
