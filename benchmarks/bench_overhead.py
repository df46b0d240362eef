"""Engine overhead: the cost of one recorded op (forward + its backward visit) on tiny tensors.

A chain of N ops (alternating mul, add, tanh) on a small vector is recorded and backpropagated.
The same arithmetic is done in plain NumPy (forward, then the hand-written backward) and, when
installed, in PyTorch. Contenders are interleaved (A B C A B C ...), warm-up rounds discarded,
and the median per-op cost and its ratio to NumPy and torch are printed.

    python benchmarks/bench_overhead.py [options]
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

threads.set_env(1, only_if_unset=True)

import statistics  # noqa: E402

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from benchmarks.harness import cli, machine, timing  # noqa: E402


def forward(y, n, tanh, saved=None):
    """The chain's n ops on y: multiply by 0.9, add 0.1, tanh, again and again; each tanh
    output appended to `saved` when given (what a hand-written backward needs)."""
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y * 0.9
        elif k == 1:
            y = y + 0.1
        else:
            y = tanh(y)
            if saved is not None:
                saved.append(y)
    return y


def chain_tape(tensor, x0, n):
    """The chain recorded on a tape library's tensors (`tensor`: mg.tensor or torch.tensor) and
    backpropagated; returns the gradient of its sum with respect to x0."""
    x = tensor(x0, requires_grad=True)
    forward(x, n, lambda t: t.tanh()).sum().backward()
    return x.grad


def chain_minigrad(x0, n):
    return chain_tape(mg.tensor, x0, n)


def chain_numpy(x0, n):
    """The chain forward in NumPy, then its hand-written backward."""
    ys = []
    y = forward(x0, n, np.tanh, ys)
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
    return chain_tape(torch.tensor, x0, n)


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument("--ops", type=int, default=300, help="ops per chain")
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=3, help="discarded rounds")
    ap.add_argument("--size", type=int, default=8, help="vector length")
    ap.add_argument("--no-torch", action="store_true", help="leave torch out")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(
        ap,
        ops=(args.ops, 1),
        repeats=(args.repeats, 1),
        warmup=(args.warmup, 0),
        size=(args.size, 1),
    )

    x0 = np.linspace(-1, 1, args.size).astype(np.float32)
    contenders = {
        "numpy": timing.Call(lambda: chain_numpy(x0, args.ops)),
        "minigrad": timing.Call(lambda: chain_minigrad(x0, args.ops)),
    }
    torch = None
    if not args.no_torch and threads.torch_available():
        import torch

        torch.set_num_threads(1)
        contenders["torch"] = timing.Call(lambda: chain_torch(torch, x0, args.ops))

    # the three agree on the gradient (a benchmark of wrong code is worthless)
    ref = chain_numpy(x0, args.ops)
    np.testing.assert_allclose(chain_minigrad(x0, args.ops), ref, rtol=1e-4, atol=1e-6)
    if torch is not None:
        np.testing.assert_allclose(
            chain_torch(torch, x0, args.ops).numpy(), ref, rtol=1e-4, atol=1e-6
        )

    samples = timing.time_interleaved(contenders, args.warmup, args.repeats, order="fixed")
    times = {k: [t / args.ops * 1e6 for t in v] for k, v in samples.items()}
    info = machine.machine_info()
    print(machine.short_line(info, torch))
    print(
        f"chain of {args.ops} ops (mul, add, tanh) on float32[{args.size}], forward + backward, "
        f"{args.repeats} interleaved rounds after {args.warmup} warm-up"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [
        [
            k,
            f"{med[k]:.2f}",
            f"{min(v):.2f}",
            f"{max(v):.2f}",
            f"{med[k] / med['numpy']:.2f}",
            f"{med[k] / med['torch']:.2f}" if "torch" in med else "-",
        ]
        for k, v in times.items()
    ]
    cli.print_table(
        ["contender", "median us/op", "min", "max", "x numpy", "x torch"],
        rows,
        "us per op of the chain, forward + backward (median, min, max over rounds); "
        "x numpy, x torch: median over theirs (below 1: faster)",
    )
    return med


if __name__ == "__main__":
    main()
