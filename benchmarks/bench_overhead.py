"""Engine overhead: the cost of one recorded op (forward + its backward visit) on tiny tensors.

A chain of N ops (alternating mul, add, tanh) on a small vector is recorded and backpropagated.
The same arithmetic is done in plain NumPy (forward, then the hand-written backward) and, when
installed, in PyTorch.  Contenders are interleaved (A B C A B C ...), warm-up rounds discarded,
and the median per-op cost and its ratio to NumPy and torch are printed.

    python benchmarks/bench_overhead.py [--ops 300] [--repeats 30] [--size 8]
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


def chain_minigrad(x0, n):
    x = mg.tensor(x0, requires_grad=True)
    y = x
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y * 0.9
        elif k == 1:
            y = y + 0.1
        else:
            y = y.tanh()
    y.sum().backward()
    return x.grad


def chain_numpy(x0, n):
    ys = []
    y = x0
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y * 0.9
        elif k == 1:
            y = y + 0.1
        else:
            y = np.tanh(y)
            ys.append(y)
    g = np.ones_like(y)
    for i in reversed(range(n)):
        k = i % 3
        if k == 0:
            g = g * 0.9
        elif k == 2:
            t = ys.pop()
            g = g * (1 - t * t)
    return g


def chain_torch(torch, x0, n):
    x = torch.tensor(x0, requires_grad=True)
    y = x
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y * 0.9
        elif k == 1:
            y = y + 0.1
        else:
            y = y.tanh()
    y.sum().backward()
    return x.grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=300, help="ops per chain")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=8, help="vector length")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    x0 = np.linspace(-1, 1, args.size).astype(np.float32)
    contenders = {"numpy": lambda: chain_numpy(x0, args.ops),
                  "minigrad": lambda: chain_minigrad(x0, args.ops)}
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(1)
            contenders["torch"] = lambda: chain_torch(torch, x0, args.ops)
        except ImportError:
            pass

    # the three agree on the gradient (a benchmark of wrong code is worthless)
    ref = chain_numpy(x0, args.ops)
    np.testing.assert_allclose(chain_minigrad(x0, args.ops), ref, rtol=1e-4, atol=1e-6)
    if torch is not None:
        np.testing.assert_allclose(chain_torch(torch, x0, args.ops).numpy(), ref, rtol=1e-4, atol=1e-6)

    times = {k: [] for k in contenders}
    for r in range(args.warmup + args.repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= args.warmup:
                times[name].append(dt / args.ops * 1e6)

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}" + (f", torch {torch.__version__} (1 thread)" if torch else ""))
    print(f"chain of {args.ops} ops (mul, add, tanh) on float32[{args.size}], forward + backward, "
          f"{args.repeats} interleaved repeats")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'contender':<10} {'median us/op':>13} {'min':>8} {'max':>8} {'vs numpy':>9} {'vs torch':>9}")
    for k, v in times.items():
        vs_t = f"{med[k] / med['torch']:.2f}x" if "torch" in med else "-"
        print(f"{k:<10} {med[k]:>13.2f} {min(v):>8.2f} {max(v):>8.2f} "
              f"{med[k] / med['numpy']:>8.2f}x {vs_t:>9}")
    return med


if __name__ == "__main__":
    main()
