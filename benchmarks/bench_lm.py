"""A character language model's whole training step: minigrad against torch, in total and by part.

    python benchmarks/bench_lm.py [options]

The model is examples/char_rnn.py's: Embedding(65, 64) -> 2-layer LSTM or GRU (256, batch
first) -> Linear(256, 65), on synthetic tokens (a tiny-Shakespeare-sized vocabulary), batch
32 x 64. One step: forward from the previous step's detached state, mean cross-entropy,
zero_grad, backward, clip_grad_norm_, Adam; float32. Contenders (benchmarks/harness/lm_step.py):
minigrad and torch (when importable), from the same weights; before timing, the losses and
every gradient of one chunk must agree within float32 tolerance.

Thread settings: "own" runs each framework at the thread count it starts with, what a user gets
without setting any (minigrad.get_num_threads() and torch.get_num_threads() at start); a
number n runs both at n
(minigrad.set_num_threads, torch.set_num_threads). Timing interleaves the contenders in rounds
(benchmarks/harness/timing.py); medians, and ratios of medians with a 95% bootstrap interval
over the rounds. Each framework runs in a worker process of its own (benchmarks/harness/
isolated.py), as in a user's training process: two frameworks in one process share its memory
allocator, and one's frees change how the other's allocations are served (torch's LSTM step
took 175 ms next to minigrad's, 150-166 ms alone); the parent still alternates their turns
and each step is timed in its worker. The workers run with glibc's mmap and trim thresholds
fixed (unless --glibc-malloc): with its moving thresholds a framework's step pays
page faults in some runs and not in others (torch's: 254 or 5,174 a step in two runs alone),
which --glibc-malloc shows. The profile times each part of the step alone (embedding,
recurrent layers, projection + loss, forward and backward each; clip; optimizer step) on the
step's shapes, minigrad and torch interleaved, so the reader sees where the time goes. A turn of
the profile runs a part --part-run-length times back to back, each run timed: in the step a
part follows the one before it on warm cores, while the first run of a turn starts where the
other framework has just been (on this virtual machine a 1-2 ms part then ran up to twice as
long, minigrad's 2-thread GEMMs more so than torch's). Method: docs/performance.md.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from benchmarks.harness import cli, isolated, lm_step, machine, threads, timing  # noqa: E402
from benchmarks.harness.stats import ratio_interval  # noqa: E402

CELLS = ("lstm", "gru")
MINIMUMS = dict(
    warmup=0, layers=1, hidden=1, embed=1, vocab=2, batch=1, seq_len=1, sgemm_n=1, part_run_length=1
)
SGEMM_REPEATS = 5
# seconds to wait before timing minigrad's GEMMs after NumPy's: OpenBLAS's threads spin about
# 0.1 s after a call, holding the cores minigrad's threads would run on
SPIN_SETTLE = 0.25
FLOOR_PASSES = 2


def thread_list(text):
    """'own,1,2' -> ['own', 1, 2]."""
    out = []
    for s in text.split(","):
        s = s.strip()
        if s == "own":
            out.append(s)
            continue
        try:
            n = int(s)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"thread settings are 'own' or integers >= 1, got {s!r}")
        out.append(n)
    return out


def cell_list(text):
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise ValueError(f"cells must be among {CELLS}, got {text!r}")
    return cells


def _arg(parse):
    """An argparse type from a parser that raises ValueError."""

    def f(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    f.__name__ = parse.__name__
    return f


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--cells", type=_arg(cell_list), default="lstm,gru", help="cells to run")
    ap.add_argument(
        "--threads",
        type=_arg(thread_list),
        default="own,1,2",
        help="thread settings of the whole step: 'own' (each framework at its own thread "
        "count) or a count for both",
    )
    ap.add_argument(
        "--profile-threads",
        type=_arg(thread_list),
        default="1,2",
        help="thread settings of the per-part profile",
    )
    ap.add_argument(
        "--part-run-length",
        type=int,
        default=3,
        help="runs of a part back to back per turn of the profile, each timed (1: each right "
        "after the other framework's turn, on cores it has just left)",
    )
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds sampled per contender")
    ap.add_argument("--warmup", type=int, default=3, help="discarded rounds")
    ap.add_argument("--layers", type=int, default=2, help="recurrent layers")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size")
    ap.add_argument("--embed", type=int, default=64, help="embedding size")
    ap.add_argument("--vocab", type=int, default=65, help="vocabulary size")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=64, help="tokens per sequence")
    ap.add_argument(
        "--head",
        choices=lm_step.HEADS,
        default="linear",
        help="the output layer: a Linear module, or h @ W.T + b through the framework's matmul "
        "(as a Keras Dense layer computes it)",
    )
    ap.add_argument(
        "--sgemm-n",
        type=int,
        default=1536,
        help="matrix size of the SGEMM rate measurement behind the gemm-bound column",
    )
    cli.add_flags(
        ap,
        [
            (
                "--quick",
                "shorter sampling (0.5 s per contender and setting, profile at 1 thread only, "
                "0.2 s per part): one to two minutes",
            ),
            ("--no-torch", "leave torch out (minigrad's times only)"),
            (
                "--same-process",
                "run both frameworks in this process instead of a worker process each (their "
                "allocations then change each other's speed: see the module docstring)",
            ),
            (
                "--glibc-malloc",
                "run the workers with glibc's own moving mmap and trim thresholds, as an "
                "unconfigured process runs (otherwise fixed, so that no step pays page faults "
                "for what ran before it)",
            ),
            ("--no-profile", "skip the per-part profile"),
        ],
    )
    return ap


def set_threads(setting, defaults, torch):
    """Put both frameworks at `setting` ('own': each at the thread count it started with)."""
    mg_n, torch_n = defaults if setting == "own" else (setting, setting)
    mg.set_num_threads(mg_n)
    if torch is not None:
        torch.set_num_threads(torch_n)
    return mg_n, torch_n


def _label(setting, used):
    if setting != "own":
        return str(setting)
    return f"own ({used[0]}/{used[1]})" if used[1] is not None else f"own ({used[0]})"


def _ratio_cell(a, b):
    lo, hi = ratio_interval(a, b)
    return f"{statistics.median(a) / statistics.median(b):.2f} [{lo:.2f}, {hi:.2f}]"


def _best_seconds(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def packed_rate(m, n, k, repeats=SGEMM_REPEATS, reps=20):
    """GFLOP/s of minigrad's packed per-step GEMM (the product every step of a recurrent layer
    runs, h (m x k) @ W_hh^T (k x n), one thread), best of `repeats` runs of `reps` products;
    0 without the compiled kernels."""
    try:
        from minigrad import _gemm
    except ImportError:
        return 0.0
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    run = partial(_gemm._gemm, False, True, a, b, c, packed=True, repeat=reps)
    return 2.0 * m * n * k * reps / _best_seconds(run, repeats) / 1e9


def gemm_bound(pb, n_threads, sgemm_n, rates):
    """(ms, GFLOP/s): the time the step's matrix products alone would take at this machine's
    best float32 GEMM rate at n_threads: the better of NumPy's BLAS on sgemm_n^3 matrices at
    n_threads (best of SGEMM_REPEATS runs) and n_threads times minigrad's packed per-step GEMM
    on the step's shape at one thread, measured once per thread count in this process and kept
    in `rates`. No implementation of the step is faster than its products at that rate."""
    if n_threads not in rates:
        before = mg.get_num_threads()
        mg.set_num_threads(n_threads)
        try:
            blas = machine.measure_sgemm(sgemm_n, SGEMM_REPEATS, scipy_too=False)
            mg.set_num_threads(1)
            own = n_threads * packed_rate(pb.B, pb.G, pb.H)
        finally:
            mg.set_num_threads(before)
        rates[n_threads] = max(blas["numpy"]["best_gflops"], own)
    return pb.gemm_flops() / rates[n_threads] / 1e6, rates[n_threads]


def shape_floor(pb, n_threads, repeats=SGEMM_REPEATS, passes=FLOOR_PASSES):
    """(ms, rows): the step's matrix products (LMProblem.gemm_shapes), each timed at its own
    shape at n_threads with the fastest of NumPy's BLAS (np.matmul), minigrad's kernels
    (kernels.matmul) and, for the per-step products, n_threads times minigrad's packed GEMM on
    one thread's share of the rows; best of `repeats` runs each in each of `passes` passes over
    the shapes (a slow moment of a shared machine spoils one pass, not the floor), on operands in
    cache. Their sum is the least time these products take on this machine with the GEMMs it
    has. rows: (what, shape, times, ms for all of them, GFLOP/s, the fastest)."""
    from minigrad import kernels

    shapes = pb.gemm_shapes()
    best = [dict() for _ in shapes]  # per shape: candidate -> least seconds
    before = mg.get_num_threads()
    try:
        for _ in range(passes):
            rng = np.random.default_rng(0)
            for (_what, m, n, k, ta, times), seen in zip(shapes, best):
                a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
                a = a.T if ta else a
                b = rng.standard_normal((k, n), dtype=np.float32)
                c = np.empty((m, n), np.float32)
                mg.set_num_threads(n_threads)
                if n_threads > 1:  # NumPy's BLAS threads idle again after the last shape's
                    time.sleep(SPIN_SETTLE)
                cand = {"minigrad": _best_seconds(partial(kernels.matmul, a, b), repeats)}
                if times > 1:
                    mg.set_num_threads(1)
                    rate = packed_rate(-(-m // n_threads), n, k)
                    cand["packed"] = 2.0 * m * n * k / (n_threads * rate * 1e9)
                    mg.set_num_threads(n_threads)
                cand["numpy"] = _best_seconds(partial(np.matmul, a, b, out=c), repeats)
                for name, t in cand.items():
                    seen[name] = min(t, seen.get(name, t))
    finally:
        mg.set_num_threads(before)
    rows, total = [], 0.0
    for (what, m, n, k, _ta, times), seen in zip(shapes, best):
        fastest = min(seen, key=seen.get)
        ms = seen[fastest] * times * 1e3
        total += ms
        gflops = 2.0 * m * n * k / seen[fastest] / 1e9
        rows.append((what, f"{m}x{k} @ {k}x{n}", times, ms, gflops, fastest))
    return total, rows


def _contenders(args, pb, names, torch, defaults):
    """({name: contender}, a function applying a thread setting to them and returning the
    counts used (minigrad's, torch's), the workers or None): by default each framework in a
    worker process of its own (harness.isolated), with --same-process both in this one."""
    if args.same_process:
        models = lm_step.build(pb, names)
        return models, (lambda setting: set_threads(setting, defaults, torch)), None
    specs = {n: (lm_step.LMWorker, (pb.args, n)) for n in names}
    workers = isolated.start(specs, isolated.malloc_env(args.glibc_malloc))

    def apply(setting):
        used = {n: w.call("set_threads", setting) for n, w in workers.items()}
        return used["minigrad"], used.get("torch")

    return workers, apply, workers


def run(args, torch):
    names = ["minigrad"] + (["torch"] if torch is not None else [])
    defaults = (mg.get_num_threads(), torch.get_num_threads() if torch else None)
    min_time = 0.5 if args.quick else args.min_time
    warmup = 1 if args.quick else args.warmup
    part_time = 0.2 if args.quick else max(0.5, args.min_time / 4)
    profile_threads = [] if args.no_profile else ([1] if args.quick else args.profile_threads)
    totals, parts, results, rates, shapes = [], [], [], {}, []
    try:
        for cell in args.cells:
            pb = lm_step.LMProblem(
                cell,
                args.vocab,
                args.embed,
                args.hidden,
                args.layers,
                args.batch,
                args.seq_len,
                head=args.head,
            )
            print(f"{cell}: {pb.describe()}")
            lm_step.check_agreement(lm_step.build(pb, names))
            models, apply, workers = _contenders(args, pb, names, torch, defaults)
            floors = {}  # thread count -> shape_floor
            try:
                for setting in args.threads:
                    used = apply(setting)
                    samples = timing.time_interleaved(models, warmup, min_time=min_time)
                    med = {n: statistics.median(v) * 1e3 for n, v in samples.items()}
                    bound, rate = gemm_bound(pb, used[0], args.sgemm_n, rates)
                    if used[0] not in floors:
                        floors[used[0]] = shape_floor(pb, used[0])
                    floor = floors[used[0]][0]
                    row = [cell, _label(setting, used), f"{med['minigrad']:.1f}"]
                    if torch is not None:
                        row += [
                            f"{med['torch']:.1f}",
                            _ratio_cell(samples["minigrad"], samples["torch"]),
                        ]
                    row += [f"{bound:.1f}", f"{rate:.0f}", f"{floor:.1f}"]
                    if torch is not None:
                        row += [f"{bound / med['torch']:.2f}", f"{floor / med['torch']:.2f}"]
                    totals.append(row)
                    results.append(
                        {
                            "cell": cell,
                            "threads": setting,
                            "used": used,
                            "ms": med,
                            "gemm_bound_ms": bound,
                            "sgemm_gflops": rate,
                            "gemm_by_shape_ms": floor,
                        }
                    )
                for setting in profile_threads:
                    used = apply(setting)
                    if used[0] not in floors:
                        floors[used[0]] = shape_floor(pb, used[0])
                    for what, shape, times, ms, gf, fastest in floors[used[0]][1]:
                        shapes.append(
                            [cell, str(used[0]), what, shape, str(times), f"{ms:.2f}"]
                            + [f"{gf:.0f}", fastest]
                        )
                    if workers is None:
                        per = {n: m.parts().contenders() for n, m in models.items()}
                    else:
                        per = {n: {p: w.part(p) for p in lm_step.PARTS} for n, w in workers.items()}
                    sums = dict.fromkeys(names, 0.0)
                    for part in lm_step.PARTS:
                        s = timing.time_interleaved(
                            {n: per[n][part] for n in names},
                            warmup,
                            min_time=part_time,
                            run_length=args.part_run_length,
                        )
                        med = {n: statistics.median(v) * 1e6 for n, v in s.items()}
                        for n in names:
                            sums[n] += med[n]
                        row = [cell, str(setting), part, f"{med['minigrad']:.0f}"]
                        if torch is not None:
                            row += [f"{med['torch']:.0f}", _ratio_cell(s["minigrad"], s["torch"])]
                        parts.append(row)
                        results.append({"cell": cell, "threads": setting, "part": part, "us": med})
                    row = [cell, str(setting), "sum of parts", f"{sums['minigrad']:.0f}"]
                    if torch is not None:
                        row += [f"{sums['torch']:.0f}", f"{sums['minigrad'] / sums['torch']:.2f}"]
                    parts.append(row)
            finally:
                isolated.close_all(workers)
    finally:
        set_threads("own", defaults, torch)
    vs = ["torch", "minigrad / torch"] if torch is not None else []
    print()
    cli.print_table(
        ["cell", "threads", "minigrad"]
        + vs
        + ["gemm-bound", "gemm GF/s", "by shape"]
        + (["gemm-bound / torch", "by shape / torch"] if torch is not None else []),
        totals,
        "median ms per training step; threads: the count both run at, or own: each "
        "framework at the count it starts with (minigrad/torch); minigrad / torch: ratio of "
        "medians [95% bootstrap interval] (below 1: minigrad faster); gemm-bound: ms the "
        "step's matrix products alone take at gemm GF/s, this machine's best float32 GEMM "
        f"rate at minigrad's thread count (the better of NumPy's BLAS on {args.sgemm_n}^3 and "
        "the thread count times minigrad's packed per-step GEMM, best of "
        f"{SGEMM_REPEATS} each), a floor under any implementation of the step; by shape: ms "
        "the same products take each at its own shape with the fastest GEMM here at that "
        "thread count (the table of shapes below)"
        + (
            "; gemm-bound / torch, by shape / torch: the least ratios to torch they allow"
            if torch
            else ""
        ),
        left=2,
    )
    if shapes:
        print()
        cli.print_table(
            ["cell", "threads", "product", "shape", "times", "ms", "GF/s", "fastest"],
            shapes,
            "the step's matrix products (op(A) @ B, m x k @ k x n; times: per step), each at "
            "its shape with the fastest of NumPy's BLAS (numpy), minigrad's matmul kernel "
            "(minigrad) and, for the per-step products, minigrad's packed per-step GEMM "
            "(packed, one thread's rows, times the threads); ms: all of that shape's products, "
            f"best of {SGEMM_REPEATS} in each of {FLOOR_PASSES} passes, on operands in cache; "
            "their sum is the by shape column above",
            left=4,
        )
    if parts:
        print()
        cli.print_table(
            ["cell", "threads", "part", "minigrad"] + vs,
            parts,
            "median us per part, each timed alone on the step's shapes (fwd: forward with its "
            "graph; bwd: that graph's backward; clip: clip_grad_norm_; optimizer: Adam step); "
            "minigrad / torch as above",
            left=3,
        )
    return results


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(ap, **{k: (getattr(args, k), low) for k, low in MINIMUMS.items()})
    if not args.min_time > 0:
        ap.error(f"--min-time must be > 0, got {args.min_time}")
    torch = None
    if not args.no_torch and threads.torch_available():
        import torch
    info = machine.machine_info()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, numpy "
        f"{info['numpy']}, minigrad kernels: {machine.kernel_backend()}, "
        + (
            f"torch {torch.__version__}"
            if torch
            else "torch left out (--no-torch)"
            if args.no_torch
            else "torch not installed: its columns are skipped, minigrad only"
        )
    )
    return run(args, torch)


if __name__ == "__main__":
    main()
