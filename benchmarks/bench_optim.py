"""Optimizer steps: minigrad.optim on its compiled update kernels against the same optimizer on
the kernels' NumPy twins (MINIGRAD_BACKEND=numpy), and torch.optim when installed.

For each optimizer setting and parameter set, one opt.step() (gradients already in place) is
timed per contender; contenders are interleaved in balanced orders (each right after every
other equally often) after warm-up rounds, and the median per step and its ratio to the twin
(and to torch) are printed. Before timing, the contenders take 3 steps from the same parameters
and gradients and must end within float32 tolerance of each other.

Parameter sets: lstm50, the six parameters of bench_rnn.py's LSTM at H = 50 with its readout;
char_rnn, the seven of examples/char_rnn.py's default model (380k values).

    python benchmarks/bench_optim.py [options]
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
from minigrad import kernels  # noqa: E402

SETS = {
    "lstm50": [(200, 50), (200, 50), (200,), (200,), (10, 50), (10,)],
    "char_rnn": [(159, 64), (1024, 64), (1024, 256), (1024,), (1024,), (159, 256), (159,)],
}
SETTINGS = [  # (minigrad / torch class name, keyword arguments both accept)
    ("SGD", dict(lr=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=1e-4)),
    ("Adam", dict(lr=1e-3)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.01, amsgrad=True)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True)),
    ("Adagrad", dict(lr=0.01)),
]


def label(name, kw):
    return name + "(" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")"


def draw(shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [(rng.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
    return params, grads


class MinigradOpt:
    """One minigrad optimizer on its own copy of the parameters, stepping on `backend`'s
    kernels (the backend is set in prepare(), before each step, outside the timed call)."""

    def __init__(self, backend, name, kw, params, grads):
        self.backend = backend
        self.params = [mg.tensor(p, requires_grad=True) for p in params]
        for t, g in zip(self.params, grads):
            t.grad = g.copy()
        self.opt = getattr(mg.optim, name)(self.params, **kw)

    def prepare(self):
        kernels.set_backend(self.backend)

    def step(self):
        self.opt.step()

    def values(self):
        return [t.data for t in self.params]


class TorchOpt:
    def __init__(self, torch, name, kw, params, grads):
        self.params = [torch.tensor(p, requires_grad=True) for p in params]
        for t, g in zip(self.params, grads):
            t.grad = torch.tensor(g)
        self.opt = getattr(torch.optim, name)(self.params, **kw)

    def prepare(self):
        pass

    def step(self):
        self.opt.step()

    def values(self):
        return [t.detach().numpy() for t in self.params]


def build(name, kw, shapes, torch=None):
    params, grads = draw(shapes)
    out = {
        "compiled": MinigradOpt("cython", name, kw, params, grads),
        "numpy twin": MinigradOpt("numpy", name, kw, params, grads),
    }
    if torch is not None:
        out["torch"] = TorchOpt(torch, name, kw, params, grads)
    return out


def check_agreement(contenders, steps=3, rtol=1e-4, atol=1e-6):
    """Each contender takes `steps` steps; all must end where the compiled one does."""
    for c in contenders.values():
        for _ in range(steps):
            c.prepare()
            c.step()
    ref = contenders["compiled"].values()
    for name, c in contenders.items():
        for i, (a, b) in enumerate(zip(c.values(), ref)):
            np.testing.assert_allclose(
                a, b, rtol=rtol, atol=atol, err_msg=f"{name}: parameter {i} after {steps} steps"
            )


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument(
        "--repeats",
        type=int,
        default=200,
        help="timed rounds (rounded up to whole cycles of the balanced order)",
    )
    ap.add_argument("--warmup", type=int, default=5, help="discarded rounds")
    ap.add_argument(
        "--sets",
        default=",".join(SETS),
        help="parameter sets, comma-separated, among " + ", ".join(SETS),
    )
    ap.add_argument("--no-torch", action="store_true", help="leave torch out")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        ap.error(f"unknown parameter set(s) {unknown}; choose from {list(SETS)}")
    if args.repeats < 1 or args.warmup < 0:
        ap.error(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")

    torch = None
    if not args.no_torch and threads.torch_available():
        import torch

        torch.set_num_threads(1)
    before = machine.kernel_backend()
    info = machine.machine_info()
    print(machine.short_line(info, torch, ", no torch"))
    print(
        f"one opt.step() per turn, {args.repeats} interleaved rounds (balanced order: each "
        f"contender right after every other equally often) after {args.warmup} warm-up"
    )
    rows, results = [], []
    try:
        for set_name in sets:
            for name, kw in SETTINGS:
                contenders = build(name, kw, SETS[set_name], torch)
                check_agreement(contenders)
                samples = timing.time_interleaved(contenders, args.warmup, args.repeats)
                med = {n: statistics.median(v) * 1e6 for n, v in samples.items()}
                c, t = med["compiled"], med.get("torch")
                rows.append(
                    [
                        set_name,
                        label(name, kw),
                        f"{c:.1f}",
                        f"{med['numpy twin']:.1f}",
                        "-" if t is None else f"{t:.1f}",
                        f"{c / med['numpy twin']:.2f}",
                        "-" if t is None else f"{c / t:.2f}",
                    ]
                )
                results.append({"set": set_name, "optimizer": label(name, kw), "median_us": med})
    finally:
        kernels.set_backend(before)
    cli.print_table(
        ["set", "optimizer", "compiled", "twin", "torch", "x twin", "x torch"],
        rows,
        "median us per opt.step(): compiled kernels, their NumPy twin, torch.optim; "
        "x twin, x torch: compiled over the other (below 1: compiled faster)",
        left=2,
    )
    return results


if __name__ == "__main__":
    main()
