"""Recurrent kernels: compiled (minigrad._ops) vs NumPy twin (minigrad._ops_ref), float32.

For each cell (one step) and each whole-sequence kernel, one sample is forward + backward; the
two contenders are interleaved (A B A B ...), warm-up rounds are discarded, and the median (with
min and max) per call and the ratio twin / compiled are printed, for (B, H) in (32, 50),
(32, 128), (64, 512) with I = H and T = 20 for the sequences.

Floor: for the cells at H = 50, the six GEMMs of one step alone, run by the kernels' own gemm
(the path the cell takes, 200 times inside one call so no Python overhead is timed), beside the
3x target (twin / 3): what is left of the target once the GEMMs are paid for.

Roofline: for the sequence kernels at H = 512, the same GEMMs alone (forward: the input GEMM over
all T*B rows + T recurrent GEMMs; backward: T dh GEMMs + the dx, dW_ih, dW_hh GEMMs), timed with
scipy's BLAS (which the kernels call through cython_blas for the big GEMMs), and kernel time /
GEMM time. The kernels run the 2T per-step GEMMs on a W_hh packed once per call, faster than
BLAS re-packing it at every call, so the ratio can fall below 1.

BLAS threads: OPENBLAS_NUM_THREADS is set to 1 before NumPy is imported unless you set it.

    python benchmarks/bench_kernels.py [options]
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

threads.set_env(1, only_if_unset=True)

import platform  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from benchmarks.harness import cli, machine  # noqa: E402
from benchmarks.harness.kernel_cases import (  # noqa: E402,F401
    COMPILED,
    GATES,
    TWIN,
    cell_gemms,
    cell_step,
    gemms_alone,
    make_inputs,
    sequence,
    small_gemm_limit,
)
from benchmarks.harness.timing import time_batched  # noqa: E402

SIZES = [(32, 50), (32, 128), (64, 512)]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def peak_mb(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def fmt(stat):
    med, lo, hi = stat
    return f"{med * 1e3:.3f} ({lo * 1e3:.3f}-{hi * 1e3:.3f})"


def describe_machine():
    print(
        f"machine: {machine.cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.machine()}"
    )
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    lim = small_gemm_limit()
    print(
        f"small-GEMM kernel (instead of BLAS) for m*n*k <= {lim} (transposed A, k <= 1024: "
        f"<= {4 * lim})"
        if lim
        else "small-GEMM kernel: off (no AVX2+FMA), every GEMM on BLAS"
    )
    try:
        import threadpoolctl

        for p in threadpoolctl.threadpool_info():
            print(
                f"  threadpoolctl: {p.get('internal_api')} {p.get('version')} "
                f"threads={p.get('num_threads')} ({os.path.basename(p.get('filepath', ''))})"
            )
    except ImportError:
        print("  (threadpoolctl not installed; thread count from OPENBLAS_NUM_THREADS)")


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--T", type=int, default=20, help="sequence length")
    ap.add_argument(
        "--repeats", type=int, default=15, help="timed samples per contender (5 with --quick)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="few short samples (5 of about 0.01 s, 1 warm-up): a smoke run",
    )
    ap.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or process CPU time (leaves out time spent descheduled "
        "on a shared machine)",
    )
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(ap, T=(args.T, 1), repeats=(args.repeats, 1))
    clock = CLOCKS[args.clock]
    repeats, warmup, target = (args.repeats, 3, 0.05) if not args.quick else (5, 1, 0.01)
    T = args.T

    def timed(fns):
        return time_batched(fns, repeats, warmup, target, clock)

    describe_machine()
    print(
        f"float32, I = H, T = {T} for sequences; {repeats} interleaved samples after {warmup} "
        f"warm-up; {args.clock} clock\n"
    )
    rows = []
    for B, H in SIZES:
        for what, builder, steps in (("cell", cell_step, 1), ("sequence", sequence, T)):
            for kind in GATES:
                v = make_inputs(kind, steps, B, H)
                fns = [builder(COMPILED, kind, v), builder(TWIN, kind, v)]
                for a, b in zip(fns[0](), fns[1]()):  # same results before timing
                    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
                cy, nv = timed(fns)
                rows.append(
                    [
                        f"{kind}_{what}",
                        str(B),
                        str(H),
                        fmt(cy),
                        fmt(nv),
                        f"{nv[0] / cy[0]:.2f}x",
                        f"{peak_mb(fns[0]):.1f}/{peak_mb(fns[1]):.1f}",
                    ]
                )
    cli.print_table(
        ["kernel", "B", "H", "compiled ms", "numpy twin ms", "twin/compiled", "peak MB c/np"],
        rows,
        "ms per forward + backward call, median (min-max); twin/compiled: how many "
        "times faster the compiled kernel is; peak MB: tracemalloc peak of one call, "
        "compiled/twin",
    )
    print()

    B, H = SIZES[0]
    print(f"floor: cells at B = {B}, H = I = {H} against their six GEMMs alone")
    rows = []
    for kind in GATES:
        v = make_inputs(kind, 1, B, H)
        cy, nv, gm = timed(
            [cell_step(COMPILED, kind, v), cell_step(TWIN, kind, v), cell_gemms(kind, B, H, 200)]
        )
        g_us = gm[0] / 200 * 1e6
        rows.append(
            [
                f"{kind}_cell",
                f"{cy[0] * 1e6:.1f}",
                f"{g_us:.1f}",
                f"{nv[0] * 1e6:.1f}",
                f"{nv[0] / 3 * 1e6:.1f}",
                f"{g_us / (nv[0] / 3 * 1e6):.0%}",
            ]
        )
    cli.print_table(
        ["kernel", "compiled us", "GEMMs us", "twin us", "twin/3 us", "GEMMs/(twin/3)"],
        rows,
        "median us per forward + backward call; GEMMs: the step's six GEMMs alone on "
        "the kernels' own gemm (200 in one call); twin/3: the time a 3x speed-up "
        "over the twin allows; GEMMs/(twin/3): the share of it the GEMMs take",
    )
    print()

    B, H = SIZES[-1]
    print(f"roofline: sequence kernels at B = {B}, H = I = {H}, T = {T} vs their GEMMs alone")
    rows = []
    for kind in GATES:
        v = make_inputs(kind, T, B, H)
        k, g = timed([sequence(COMPILED, kind, v), gemms_alone(kind, T, B, H)])
        rows.append([f"{kind}_sequence", fmt(k), fmt(g), f"{k[0] / g[0]:.2f}x"])
    cli.print_table(
        ["kernel", "kernel fwd+bwd ms", "GEMMs alone ms", "kernel/GEMMs"],
        rows,
        "ms per call, median (min-max); GEMMs alone: the same GEMMs on scipy's BLAS "
        "(the BLAS the kernels call); kernel/GEMMs below 1: faster than its GEMMs "
        "on BLAS",
    )


if __name__ == "__main__":
    main()
