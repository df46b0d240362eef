"""The cost of the lock around the leaf-gradient stores of a backward pass, single-threaded.

One training step's forward + backward through a model with many leaves (a stack of small
Linear layers: 2 leaves each) is timed with the engine's lock and with a lock that does
nothing, contenders interleaved (A B A B ...), warm-up rounds discarded; the medians and their
ratio are printed.  A third contender repeats the no-op lock, so the printed
"no-op vs no-op" ratio shows the run's noise floor.

    python benchmarks/bench_leaf_lock.py [--layers 10] [--repeats 40] [--steps 50]
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad import autograd, nn  # noqa: E402


class NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50, help="forward+backward passes per timing")
    args = ap.parse_args(argv)
    if args.layers < 1 or args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--layers, --repeats and --steps must be >= 1 and --warmup >= 0")

    mg.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(args.layers)])
    x = mg.Tensor(np.ones((2, 8), dtype=np.float32))
    real = autograd._LEAF_LOCK
    contenders = {"lock": real, "no-op": NoLock(), "no-op again": NoLock()}
    times = {k: [] for k in contenders}
    try:
        for r in range(args.warmup + args.repeats):
            for name, lock in contenders.items():
                autograd._LEAF_LOCK = lock
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    model(x).sum().backward()
                if r >= args.warmup:
                    times[name].append((time.perf_counter() - t0) / args.steps * 1e6)
    finally:
        autograd._LEAF_LOCK = real
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    print(
        f"{args.layers} Linear(8, 8) layers ({2 * args.layers} leaves), forward + backward, "
        f"{args.repeats} interleaved repeats of {args.steps}"
    )
    for k, v in med.items():
        print(f"{k:<12} median {v:8.1f} us per step")
    print(
        f"lock vs no-op: {med['lock'] / med['no-op']:.3f}x   "
        f"no-op vs no-op (noise): {med['no-op again'] / med['no-op']:.3f}x"
    )
    return med


if __name__ == "__main__":
    main()
