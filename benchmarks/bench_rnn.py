"""One recurrent training step (RNN tanh, LSTM, GRU): minigrad vs the NumPy reference vs PyTorch.

Run from the repository root, either way:

    python benchmarks/bench_rnn.py [options]
    python -m benchmarks.bench_rnn [options]
    python -m benchmarks [options]          (benchmarks/__main__.py runs this file)

    --quick               reduced grid (first two sizes, fewer repeats; < 2 minutes)
    --cells lstm,gru      cell types to run (rnn, lstm, gru; default all three)
    --sizes 32x20x50x50   B x T x I x H sizes, comma-separated (default: the grid below)
    --threads N           BLAS/OpenMP threads for numpy, scipy and torch (default 1, see
                          docs/performance.md for the 1-vs-2-thread measurement behind it)
    --repeats N           timed rounds per cell/size (default: enough for --min-time seconds)
    --json PATH           every figure as JSON (default bench_results/bench_rnn.json)
    --plot PATH           PNG of time per step vs size (default bench_results/bench_rnn.png;
                          skipped with a message when matplotlib is not installed)
    --kernels             add a fourth contender: minigrad's kernels called by hand, no tape
    --unrolled            add minigrad with fused=False modules (one cell node per time step)
    --run-length K        K steps back to back per contender turn (default 1: A B C A B C)
    --order ORDER         balanced (default: every contender right after every other equally
                          often), rotate (A B C, B C A, C A B) or fixed (A B C every round)
    --no-torch, --no-memory, --no-plot

The step: forward over x (T, B, I) from zero states, a linear readout (H -> 10) of the last
hidden state h_n, loss = mean squared error against a fixed random target, backward, and one
SGD update of every parameter (lr 0.01).  Contenders:

* minigrad: ``nn.LSTM/GRU/RNN`` + ``nn.Linear`` + ``optim.SGD`` when the modules exist, else
  the functional ops ``F.{lstm,gru,rnn}_sequence`` + ``F.linear`` + ``optim.SGD`` (the JSON
  and the header say which);
* numpy: ``benchmarks/numpy_reference.train_step`` (hand-written BPTT);
* torch: ``torch.nn.LSTM/GRU/RNN`` + ``torch.nn.Linear`` + ``torch.optim.SGD`` (when importable);
* kernels (opt-in, ``--kernels``): the same step calling minigrad's kernels by hand, without the
  tape, modules or optimizer: minigrad's time minus this one is what the framework costs.
* unrolled (opt-in, ``--unrolled``): minigrad's modules with ``fused=False``, one cell node per
  time step on the tape (the generic BPTT path) instead of one sequence node.

All three start from the same weights (minigrad's, copied).  Before timing, each cell/size is
checked: the three losses and every parameter gradient must agree within float32 tolerance
(relative L2 error), else the run stops with MismatchError.  Timing interleaves the contenders
in rounds, one turn each (with --run-length K a turn is K steps of one contender); by default
the rounds' orders make every contender's turn follow every other's equally often (A B C, A C B
for three), discards warm-up rounds, and reports median, min and max per step; ratios are taken
between medians of the same run.  Memory and the SGEMM roofline are described in
docs/performance.md (and in the functions ``memory_probe`` and ``measure_sgemm`` below).
"""
import os
import sys

SGEMM_PER_ROW = 5     # SGEMM runs before each cell/size (roofline rate: median of all runs)
DEFAULT_THREADS = 1   # chosen from the 1-vs-2-thread measurement in docs/performance.md
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _early_threads(argv):
    """The --threads value, read before numpy is imported so the BLAS pools start at that size."""
    n = DEFAULT_THREADS
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    try:
        return max(1, int(n))
    except ValueError:
        return DEFAULT_THREADS   # argparse reports the bad value later


if __name__ == "__main__" and "numpy" not in sys.modules:
    _n = str(_early_threads(sys.argv[1:]))
    for _k in THREAD_ENV:
        os.environ[_k] = _n
_THREAD_ENV_BEFORE_NUMPY = "numpy" not in sys.modules

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad import functional as F  # noqa: E402
from benchmarks import numpy_reference as ref  # noqa: E402

GRID = [(32, 20, 50, 50), (32, 100, 128, 128), (32, 100, 256, 256), (64, 100, 512, 512)]
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
OUT = 10          # readout width
LR = 0.01
LOSS_RTOL = 1e-4  # relative error of the loss between contenders
GRAD_RTOL = 2e-3  # relative L2 error of each gradient (float32 BPTT over up to 100 steps)


class MismatchError(AssertionError):
    """The contenders disagree on the loss or a gradient: their timings would be meaningless."""


# ------------------------------------------------------------------------------------ problem
def size_name(size):
    return "x".join(str(v) for v in size)


def parse_sizes(text):
    sizes = []
    for part in text.split(","):
        vals = part.strip().lower().split("x")
        if len(vals) != 4 or not all(v.isdigit() and int(v) > 0 for v in vals):
            raise argparse.ArgumentTypeError(f"size must be BxTxIxH (positive ints), got {part!r}")
        sizes.append(tuple(int(v) for v in vals))
    return sizes


def parse_cells(text):
    cells = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise argparse.ArgumentTypeError(f"cells must be among {','.join(CELLS)}, got {text!r}")
    return cells


def _minigrad_uses_modules():
    return all(hasattr(mg.nn, n) for n in ("LSTM", "GRU", "RNN", "Linear"))


def make_problem(cell, size, seed=0):
    """Initial weights (minigrad's), input and target for one cell/size, as float32 ndarrays.

    params uses PyTorch's names: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
    fc.weight, fc.bias."""
    B, T, I, H = size
    if _minigrad_uses_modules():
        mg.manual_seed(seed)
        rnn, fc = _minigrad_modules(cell, I, H)
        params = {k: np.array(v.data, np.float32) for k, v in _named_params(rnn, fc).items()}
    else:   # functional path: PyTorch's initialisation as written in the reference
        params = ref.init_params(cell, I, H, output_size=OUT, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    target = rng.standard_normal((B, OUT)).astype(np.float32)
    return params, x, target


def _copy(params):
    return {k: np.array(v, np.float32, copy=True) for k, v in params.items()}


# ---------------------------------------------------------------------------------- contenders
# Each contender is built from a params dict; step() runs one training step (the timed code)
# and returns the loss before the update; loss_and_grads() runs forward + backward only and
# returns (loss, {param name: gradient ndarray}) for the agreement check.

def _minigrad_modules(cell, I, H, fused=True):
    cls = {"rnn": mg.nn.RNN, "lstm": mg.nn.LSTM, "gru": mg.nn.GRU}[cell]
    kw = dict(nonlinearity="tanh") if cell == "rnn" else {}
    return cls(I, H, fused=fused, **kw), mg.nn.Linear(H, OUT)


def _named_params(rnn, fc):
    out = {k: v for k, v in rnn.named_parameters()}
    out.update({"fc." + k: v for k, v in fc.named_parameters()})
    return out


class MinigradStep:
    name = "minigrad"
    fused = True        # the modules' whole-sequence kernels (their default)

    def __init__(self, cell, params, x, target, lr=LR):
        self.cell = cell
        self.modules = _minigrad_uses_modules()
        if self.modules:
            H, I = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
            self.rnn, self.fc = _minigrad_modules(cell, I, H, self.fused)
            self.P = _named_params(self.rnn, self.fc)
            for k, p in self.P.items():
                p.data[...] = params[k]
        else:
            self.P = {k: mg.tensor(v, requires_grad=True) for k, v in params.items()}
        self.x = mg.tensor(x)
        self.target = mg.tensor(target)
        self.opt = mg.optim.SGD(list(self.P.values()), lr=lr)

    def _h_n(self):
        if self.modules:
            out = self.rnn(self.x)
            state = out[1]
            h_n = state[0] if self.cell == "lstm" else state
            return h_n[0] if h_n.ndim == 3 else h_n     # (num_layers, B, H) -> (B, H)
        P = self.P
        w = (P["weight_ih_l0"], P["weight_hh_l0"], P["bias_ih_l0"], P["bias_hh_l0"])
        if self.cell == "lstm":
            _, (h_n, _) = F.lstm_sequence(self.x, *w)
        elif self.cell == "gru":
            _, h_n = F.gru_sequence(self.x, *w)
        else:
            _, h_n = F.rnn_sequence(self.x, *w, nonlinearity="tanh")
        return h_n

    def _loss(self):
        h_n = self._h_n()
        if self.modules:
            pred = self.fc(h_n)
        else:
            pred = F.linear(h_n, self.P["fc.weight"], self.P["fc.bias"])
        return F.mse_loss(pred, self.target)

    def step(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        self.opt.step()
        return float(loss.data)

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        return float(loss.data), {k: np.array(p.grad) for k, p in self.P.items()}


class UnrolledStep(MinigradStep):
    """minigrad with fused=False: the module unrolls one cell node per time step on the tape
    (the generic BPTT path, docs/autograd.md). Opt-in (--unrolled)."""
    name = "unrolled"
    fused = False

    def __init__(self, cell, params, x, target, lr=LR):
        if not _minigrad_uses_modules():
            raise RuntimeError("the unrolled contender needs minigrad's nn modules")
        super().__init__(cell, params, x, target, lr)


class NumpyStep:
    name = "numpy"

    def __init__(self, cell, params, x, target, lr=LR):
        self.cell, self.params, self.x, self.target, self.lr = cell, _copy(params), x, target, lr

    def step(self):
        return ref.train_step(self.cell, self.params, self.x, self.target, self.lr)

    def loss_and_grads(self):
        """train_step without its update: the reference's forward/backward composed as it does."""
        p, cell = self.params, self.cell
        if cell == "lstm":
            _, h_n, _, cache = ref.lstm_forward(self.x, None, None, p)
        elif cell == "gru":
            _, h_n, cache = ref.gru_forward(self.x, None, p)
        else:
            _, h_n, cache = ref.rnn_forward(self.x, None, p)
        W, b = p["fc.weight"], p["fc.bias"]
        err = h_n @ W.T + b - self.target
        dpred = (2 / err.size) * err
        if cell == "lstm":
            grads = ref.lstm_backward(None, dpred @ W, None, cache)
        elif cell == "gru":
            grads = ref.gru_backward(None, dpred @ W, cache)
        else:
            grads = ref.rnn_backward(None, dpred @ W, cache)
        grads["fc.weight"] = dpred.T @ h_n
        grads["fc.bias"] = dpred.sum(axis=0)
        return float(np.mean(err ** 2)), {k: grads[k] for k in p}


class TorchStep:
    name = "torch"

    def __init__(self, cell, params, x, target, lr=LR):
        import torch
        self.torch = torch
        H, I = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
        if cell == "lstm":
            self.rnn = torch.nn.LSTM(I, H)
        elif cell == "gru":
            self.rnn = torch.nn.GRU(I, H)
        else:
            self.rnn = torch.nn.RNN(I, H, nonlinearity="tanh")
        self.fc = torch.nn.Linear(H, OUT)
        self.cell = cell
        self.P = dict(self.rnn.named_parameters())
        self.P.update({"fc." + k: v for k, v in self.fc.named_parameters()})
        with torch.no_grad():
            for k, v in self.P.items():
                v.copy_(torch.from_numpy(params[k]))
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.target = torch.from_numpy(np.ascontiguousarray(target))
        self.opt = torch.optim.SGD(list(self.P.values()), lr=lr)

    def _loss(self):
        _, state = self.rnn(self.x)
        h_n = state[0] if self.cell == "lstm" else state
        return self.torch.nn.functional.mse_loss(self.fc(h_n[0]), self.target)

    def step(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        self.opt.step()
        return loss.item()

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        return loss.item(), {k: v.grad.numpy().copy() for k, v in self.P.items()}


class KernelsStep:
    """minigrad's compiled kernels called by hand, with no tape, modules or optimizer objects:
    the same step as MinigradStep minus everything Python adds around the kernels. Opt-in
    (--kernels); the time between it and minigrad is the cost of the framework."""
    name = "kernels"

    def __init__(self, cell, params, x, target, lr=LR):
        from minigrad import kernels
        self.k, self.cell, self.p = kernels, cell, _copy(params)
        self.x, self.target, self.lr = np.ascontiguousarray(x), np.ascontiguousarray(target), lr
        B, H = x.shape[1], params["weight_hh_l0"].shape[1]
        self.zero = np.zeros((B, H), np.float32)

    def loss_and_grads(self):
        k, p, x, z = self.k, self.p, self.x, self.zero
        w = (p["weight_ih_l0"], p["weight_hh_l0"])
        b = (p["bias_ih_l0"], p["bias_hh_l0"])
        if self.cell == "lstm":
            _, h_n, _, cache = k.lstm_sequence_forward(x, z, z, *w, *b, None)
        elif self.cell == "gru":
            _, h_n, cache = k.gru_sequence_forward(x, z, *w, *b, None)
        else:
            _, h_n, cache = k.rnn_sequence_forward(x, z, *w, *b, None, "tanh")
        err = k.linear_forward(h_n, p["fc.weight"], p["fc.bias"]) - self.target
        dpred = (2 / err.size) * err
        dh, dW, db = k.linear_backward(dpred, h_n, p["fc.weight"], True)
        if self.cell == "lstm":
            _, _, _, dw_ih, dw_hh, db_ih, db_hh = k.lstm_sequence_backward(
                None, dh, z, x, z, z, *w, cache, None, True, need_dx=False, need_dh0=False)
        elif self.cell == "gru":
            _, _, dw_ih, dw_hh, db_ih, db_hh = k.gru_sequence_backward(
                None, dh, x, z, *w, cache, None, True, need_dx=False, need_dh0=False)
        else:
            _, _, dw_ih, dw_hh, db_ih, db_hh = k.rnn_sequence_backward(
                None, dh, x, z, *w, cache, None, True, "tanh", need_dx=False, need_dh0=False)
        grads = {"weight_ih_l0": dw_ih, "weight_hh_l0": dw_hh, "bias_ih_l0": db_ih,
                 "bias_hh_l0": db_hh, "fc.weight": dW, "fc.bias": db}
        return float(np.mean(err ** 2)), grads

    def step(self):
        loss, grads = self.loss_and_grads()
        for n, g in grads.items():      # the kernel optim.SGD calls, without its loop around it
            self.k.sgd_update(self.p[n], g, None, self.lr, 0.0, 0.0, 0.0, False, False)
        return loss


CONTENDERS = {"minigrad": MinigradStep, "numpy": NumpyStep, "torch": TorchStep,
              "kernels": KernelsStep, "unrolled": UnrolledStep}


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build(cell, params, x, target, names, overrides=None):
    """{name: contender} from one params dict; overrides {name: params} substitutes one
    contender's weights (how the tests show that the agreement check bites)."""
    overrides = overrides or {}
    return {n: CONTENDERS[n](cell, _copy(overrides.get(n, params)), x, target) for n in names}


def _rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_agreement(results, reference="numpy", loss_rtol=LOSS_RTOL, grad_rtol=GRAD_RTOL):
    """results {contender: (loss, grads)}: every contender against `reference`.

    Returns {contender: {"loss": rel err, param: rel L2 err, ...}}; raises MismatchError naming
    every loss or gradient outside tolerance."""
    ref_loss, ref_grads = results[reference]
    errors, bad = {}, []
    for name, (loss, grads) in results.items():
        if name == reference:
            continue
        e = {"loss": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)}
        if not e["loss"] <= loss_rtol:
            bad.append(f"{name} loss {loss!r} vs {reference} {ref_loss!r} "
                       f"(rel err {e['loss']:.2e} > {loss_rtol:g})")
        for k, g in ref_grads.items():
            if k not in grads or np.shape(grads[k]) != np.shape(g):
                bad.append(f"{name} gradient {k}: missing or shape {np.shape(grads.get(k))} "
                           f"vs {np.shape(g)}")
                continue
            e[k] = _rel_err(grads[k], g)
            if not e[k] <= grad_rtol:
                bad.append(f"{name} gradient {k}: rel L2 err {e[k]:.2e} > {grad_rtol:g}")
        errors[name] = e
    if bad:
        raise MismatchError("contenders disagree:\n  " + "\n  ".join(bad))
    return errors


def verify(cell, size, names, overrides=None, seed=0):
    """The agreement check of one cell/size: losses and gradients (forward + backward), then the
    losses returned by one full training step of each (the timed code path)."""
    params, x, target = make_problem(cell, size, seed)
    ref_name = "numpy" if "numpy" in names else names[0]
    results = {n: c.loss_and_grads() for n, c in build(cell, params, x, target, names,
                                                        overrides).items()}
    errors = check_agreement(results, ref_name)
    stepped = build(cell, params, x, target, names, overrides)
    step_err = check_agreement({n: (c.step(), {}) for n, c in stepped.items()}, ref_name)
    for n, e in step_err.items():
        errors[n]["step_loss"] = e["loss"]
    return errors


# -------------------------------------------------------------------------------------- timing
ORDERS = ("balanced", "rotate", "fixed")


def balanced_orders(n):
    """Orders of range(n) for successive rounds such that, the rounds run one after another and
    the cycle repeated, every contender's turn comes right after every other contender's turn
    equally often (once per cycle) and never right after its own: n - 1 rounds a cycle (one for
    n <= 2), the first in the given order. Found by depth-first search (instant up to n = 6)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of contenders) must be an int >= 1, got {n!r}")
    if n <= 2:
        return [tuple(range(n))]
    perms = list(itertools.permutations(range(n)))

    def extend(rounds, used):
        last = rounds[-1][-1]
        if len(rounds) == n - 1:     # the cycle closes: last turn -> the first round's first
            return rounds if (last, rounds[0][0]) not in used and last != rounds[0][0] else None
        for p in perms:
            new = [(last, p[0])] + list(zip(p, p[1:]))
            if len(set(new)) < len(new) or any(a == b or (a, b) in used for a, b in new):
                continue
            found = extend(rounds + [p], used | set(new))
            if found:
                return found
        return None

    first = tuple(range(n))
    return extend([first], set(zip(first, first[1:])))


def round_orders(n, order="balanced"):
    """The cycle of contender orders (tuples of indices) time_interleaved runs its rounds in:
    'balanced' (default): every contender follows every other equally often (balanced_orders);
    'rotate': A B C, B C A, C A B (the default until c4a0add; with three contenders A follows
    C in two turns of three and B in one); 'fixed': A B C every round."""
    if order == "balanced":
        return balanced_orders(n)
    if order == "rotate":
        return [tuple(range(k, n)) + tuple(range(k)) for k in range(n)]
    if order == "fixed":
        return [tuple(range(n))]
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def time_interleaved(contenders, warmup, repeats=None, min_time=2.0, min_repeats=5,
                     max_repeats=200, run_length=1, order="balanced"):
    """{name: [seconds per step]} over interleaved rounds, one turn of each contender a round,
    the rounds in the orders of round_orders(len(contenders), order): by default a cycle of
    rounds in which every contender's turn follows every other's equally often, so that what
    the preceding step left in the caches weighs on all alike. A contender's turn is
    `run_length` steps back to back, each timed: 1 (the default) puts every step right after
    another contender's; more measures steps as a training loop runs them, mostly after a step
    of their own. Without `repeats`, enough rounds for each contender to be sampled ~min_time
    seconds (at most max_repeats steps per contender). The timed rounds are rounded up to whole
    cycles."""
    names = list(contenders)
    cycle = [[names[i] for i in o] for o in round_orders(len(names), order)]
    samples = {n: [] for n in names}
    last = {n: 0.0 for n in names}
    perf = time.perf_counter
    r = 0
    total = None
    while total is None or r < warmup + total:
        for n in cycle[r % len(cycle)]:
            step = contenders[n].step
            for _ in range(run_length):
                t0 = perf()
                step()
                dt = perf() - t0
                last[n] = dt
                if r >= warmup:
                    samples[n].append(dt)
        r += 1
        if total is None and r >= warmup:
            if repeats is not None:
                total = repeats
            else:
                slowest = max(last.values())
                steps = min(max_repeats, max(min_repeats, math.ceil(min_time / slowest)))
                total = math.ceil(steps / run_length)
            total = math.ceil(total / len(cycle)) * len(cycle)
    return samples


RATIO_LEVEL = 0.95   # ratio intervals: 95%, from BOOTSTRAP resamples of the timed rounds
BOOTSTRAP = 2000


def round_bootstrap(a, b, combine, run_length=1, level=RATIO_LEVEL, n_boot=BOOTSTRAP, seed=0):
    """Bootstrap interval of combine(median(a), median(b)) for two contenders timed in the same
    rounds. Rounds are resampled with replacement, the same rounds for both (a round's steps of
    the two ran seconds apart, so a slow stretch of the machine moves both): the interval shows
    how much the statistic depends on which rounds were drawn, not the machine's drift over the
    run. `run_length` steps of a contender make one round. Deterministic (fixed seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size != b.size or a.size == 0 or a.size % run_length:
        raise ValueError(f"samples must be whole rounds of {run_length} steps, the same number "
                         f"for both (at least one round), got {a.size} and {b.size}")
    ra, rb = a.reshape(-1, run_length), b.reshape(-1, run_length)
    rounds = np.random.default_rng(seed).integers(0, len(ra), (n_boot, len(ra)))
    stats = combine(np.median(ra[rounds].reshape(n_boot, -1), axis=1),
                    np.median(rb[rounds].reshape(n_boot, -1), axis=1))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def ratio_interval(a, b, run_length=1, level=RATIO_LEVEL, n_boot=BOOTSTRAP, seed=0):
    """Bootstrap interval of median(a) / median(b) for two contenders of one time_interleaved
    run (round_bootstrap)."""
    return round_bootstrap(a, b, np.divide, run_length, level, n_boot, seed)


def gemm_flops(size, cell):
    """GEMM FLOPs the step needs: forward input GEMM 2*T*B*I*G*H and recurrent GEMMs
    2*T*B*H*G*H; backward dW_ih (as the input GEMM), dh per step and dW_hh (each as the recurrent
    GEMMs). The input needs no gradient, so the dx GEMM is not counted (minigrad and torch's GRU
    and RNN skip it; the NumPy reference and torch's LSTM compute it anyway). The readout
    (2*B*H*OUT forward, dW and dh backward) is included though negligible."""
    B, T, I, H = size
    G = GATES[cell]
    inp, rec, out = 2 * T * B * I * G * H, 2 * T * B * H * G * H, 2 * B * H * OUT
    return 2 * inp + 3 * rec + 3 * out


def measure_sgemm(n=1536, repeats=5, scipy_too=True):
    """This machine's float32 GEMM rate at the current thread setting: C = A @ B with
    n x n float32 matrices through numpy's BLAS (best and median of `repeats` timed runs
    after one warm-up, and every run's rate in "samples_gflops").  Also the same through
    scipy's BLAS (the one minigrad's kernels use) unless scipy_too is false."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    flops = 2.0 * n ** 3
    out = {"n": n}
    fns = {"numpy": lambda: np.matmul(a, b, out=c)}
    try:
        if scipy_too:
            from scipy.linalg.blas import sgemm
            fa, fb = np.asfortranarray(a), np.asfortranarray(b)
            fns["scipy"] = lambda: sgemm(1.0, fa, fb)
    except ImportError:
        pass
    for name, fn in fns.items():
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = {"best_gflops": flops / min(ts) / 1e9,
                     "median_gflops": flops / statistics.median(ts) / 1e9,
                     "samples_gflops": [flops / t / 1e9 for t in ts]}
    return out


def roofline_rate(samples):
    """The SGEMM rate (FLOP/s) the roofline uses: the median of every SGEMM run of the benchmark
    run (5 at start-up, then 5 before each cell/size), so that the GEMM-only time, like the
    contenders' median step times, is a typical figure of the run. The best run, which on a
    shared machine catches a quiet moment, is kept beside it (roofline_fraction_best_rate); the
    median of the 5 runs before one cell/size alone was tried and is too short a window (one
    row's 0.4 s of SGEMM runs at 75 GFLOP/s, then its 30 s of steps at 82: 109%)."""
    return statistics.median(samples) * 1e9


# -------------------------------------------------------------------------------------- memory
def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else None


def _reset_peak_rss():
    """Linux: writing 5 to /proc/self/clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _quiet_stderr:
    """Send file descriptor 2 to /dev/null for the duration (C++ logging included)."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _torch_profiled_peak(run):
    """Peak bytes held by torch's CPU allocator during run(), above the level at its start:
    torch.profiler with profile_memory=True records every allocation and free; the events'
    self_cpu_memory_usage (net bytes of each op, children excluded) is summed in order of op
    start and the running maximum taken.  A transient allocated and freed inside one op is not
    seen (a slight underestimate)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return int(peak)


MEMORY_STEPS = 2


def memory_probe(cell, size, names):
    """Peak memory of training, per contender, in bytes: the most memory held at any moment
    during the first MEMORY_STEPS steps of a freshly built model, minus what was held just
    before them (parameters, input and target are not counted; everything a step allocates,
    including buffers a contender keeps from one step to the next such as gradients or a
    kernel workspace cache, is).  Each contender first runs two steps at a tiny size, so that
    code loading and one-time library set-up are not counted.  Meant to run in a fresh child
    process per cell/size (run_memory_child), started with MALLOC_MMAP_THRESHOLD_=4096.

    peak_bytes, the headline figure:
      numpy, minigrad: tracemalloc (numpy reports its array buffers to it); exact.  It counts
        bytes allocated, not pages touched (np.zeros pages never written count here).
      torch: its own allocator's records through torch.profiler (see _torch_profiled_peak),
        on a second fresh model, since torch's allocator does not report to tracemalloc.
    rss_bytes, the same method for all three (cross-check): peak RSS minus RSS before the
      steps, the peak reset through /proc/self/clear_refs; with MALLOC_MMAP_THRESHOLD_=4096
      every allocation of 4 KiB or more is mapped on allocation and unmapped on free, so RSS
      follows the live buffers.  Coarse: page granularity, allocator slack and the kernel's
      batched counters (about +-0.3 MiB)."""
    params, x, target = make_problem(cell, size)
    tiny = make_problem(cell, (2, 3, 4, 5))
    out = {}
    for n in names:
        warm = CONTENDERS[n](cell, *tiny)
        for _ in range(2):
            warm.step()
        del warm
        c = CONTENDERS[n](cell, _copy(params), x, target)
        gc.collect()
        res = {}
        rss = _reset_peak_rss()
        base = _proc_status_kib("VmRSS") if rss else None
        traced = n != "torch"
        if traced:
            tracemalloc.start()
            cur0 = tracemalloc.get_traced_memory()[0]
        for _ in range(MEMORY_STEPS):
            c.step()
        if traced:
            res["peak_bytes"] = tracemalloc.get_traced_memory()[1] - cur0
            res["peak_method"] = "tracemalloc"
            tracemalloc.stop()
        if rss:
            res["rss_bytes"] = max(0, _proc_status_kib("VmHWM") - base) * 1024
        del c
        gc.collect()
        if not traced:
            c = CONTENDERS[n](cell, _copy(params), x, target)
            try:
                with _quiet_stderr():     # the profiler logs to fd 2 on start and stop
                    res["peak_bytes"] = _torch_profiled_peak(
                        lambda: [c.step() for _ in range(MEMORY_STEPS)])
                res["peak_method"] = "torch.profiler allocation records"
            except Exception as e:      # profiler API differences: keep the RSS figure
                res["peak_error"] = repr(e)
            del c
            gc.collect()
        out[n] = res
    return out


def run_memory_child(jobs, threads, names):
    """memory_probe for each (cell, size), each in a fresh interpreter (see memory_probe)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4096")
    for k in THREAD_ENV:
        env[k] = str(threads)
    out = {}
    for job in jobs:
        cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(threads),
               "--memory-probe", json.dumps([job])] + ([] if "torch" in names else ["--no-torch"]) \
            + (["--kernels"] if "kernels" in names else []) \
            + (["--unrolled"] if "unrolled" in names else [])
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=_ROOT)
        if p.returncode != 0:
            print(f"memory probe {job} failed (exit {p.returncode}):\n{p.stderr[-2000:]}",
                  file=sys.stderr)
            continue
        out.update(json.loads(p.stdout.strip().splitlines()[-1]))
    return out


# ------------------------------------------------------------------------------------- threads
def apply_threads(n):
    """Limit every BLAS/OpenMP pool to n threads (threadpoolctl when importable: numpy's and
    scipy's separate OpenBLAS and torch's OpenMP) and torch.set_num_threads(n); report them."""
    info = {"requested": n, "env_set_before_numpy_import": _THREAD_ENV_BEFORE_NUMPY,
            "env": {k: os.environ.get(k) for k in THREAD_ENV}}
    try:
        import threadpoolctl
        global _LIMITER
        _LIMITER = threadpoolctl.threadpool_limits(limits=n)
        info["threadpoolctl"] = [
            {"api": d["internal_api"], "lib": os.path.basename(d["filepath"]),
             "num_threads": d["num_threads"]} for d in threadpoolctl.threadpool_info()]
    except ImportError:
        info["threadpoolctl"] = None
    if torch_available():
        import torch
        torch.set_num_threads(n)
        info["torch_num_threads"] = torch.get_num_threads()
    return info


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "minigrad": mg.__version__}
    try:
        import scipy
        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    if torch_available():
        import torch
        info["torch"] = torch.__version__
    try:
        from minigrad import kernels
        info["minigrad_backend"] = kernels.backend()
    except ImportError:
        pass
    info["minigrad_api"] = "modules" if _minigrad_uses_modules() else "functional"
    try:
        git = ["git", "-C", _ROOT]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        if commit:
            info["git_commit"] = commit
            info["git_dirty_minigrad"] = bool(subprocess.run(
                git + ["status", "--porcelain", "--", "minigrad"],
                capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    return info


# ------------------------------------------------------------------------ the machine's caches
class Idle:
    """Busy-waits `ms` milliseconds on step(), touching no arrays: only time passes (the loop
    keeps the core busy, so no sleep state or frequency drop is involved). eviction_probe's
    wait, and bench_framework's --idle predecessor."""

    def __init__(self, ms):
        if not 0 < ms < float("inf"):
            raise ValueError(f"idle time must be a finite number of ms > 0, got {ms!r}")
        self.ms, self.seconds = ms, ms / 1e3

    @property
    def name(self):
        return f"idle {self.ms:g} ms"

    def step(self):
        perf = time.perf_counter
        t0 = perf()
        while perf() - t0 < self.seconds:
            pass


def eviction_probe(kib=(64, 256, 1024), idle_ms=(1, 5), rounds=100, seed=0):
    """{kib: {ms: median us}}: the time to read a buffer of `kib` KiB again, one 8-byte word per
    64-byte cache line in a random order (so that the hardware prefetchers cannot hide a miss),
    right after reading it (ms = 0) and after busy-waiting `ms` milliseconds (Idle). The
    conditions run in a shuffled order every round. What the first read leaves in the caches
    and the second finds gone, something else on the machine took in between."""
    if not all(isinstance(k, int) and k > 0 for k in kib) or not kib:
        raise ValueError(f"kib must be buffer sizes in KiB (positive ints), got {kib!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    idles = {m: Idle(m) for m in idle_ms}     # Idle rejects a wait that is not > 0
    waits = [0] + list(idles)
    rng = np.random.default_rng(seed)
    out = {}
    for size in kib:
        lines = size * 1024 // 64
        buf = np.zeros(lines * 8, np.int64)
        idx = rng.permutation(lines) * 8
        samples = {m: [] for m in waits}
        order = list(waits)
        perf = time.perf_counter
        for _ in range(rounds):
            rng.shuffle(order)
            for m in order:
                buf[idx].sum()
                if m:
                    idles[m].step()
                t0 = perf()
                buf[idx].sum()
                samples[m].append(perf() - t0)
        out[size] = {m: float(np.median(v)) * 1e6 for m, v in samples.items()}
    return out


PROBE = dict(kib=(64,), idle_ms=(1, 5), rounds=60)   # bench_rnn's header and footer: ~1 s


def probe_json(probe):
    """eviction_probe's result with JSON keys: {"64": {"0": us, "1": us, ...}}."""
    return {str(k): {f"{m:g}": v for m, v in row.items()} for k, row in probe.items()}


def probe_line(probe):
    """One line for a run's header or footer: eviction_probe's figures for its first buffer."""
    kib, row = next(iter(probe.items()))
    waits = ", ".join(f"{row[m]:.0f} after {m:g} ms" for m in sorted(row) if m)
    return (f"cache eviction: a {kib} KiB buffer read again one line at a time in random order "
            f"takes {row[0]:.1f} us right after reading it, {waits} of busy-waiting (median us; "
            "what other processes and guests on the host take from the caches meanwhile)")


# ---------------------------------------------------------------------------------------- main
def _fmt_mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def _fmt_ratio(c, ref_name):
    r = c.get(f"ratio_vs_{ref_name}")
    if r is None:
        return "-"
    lo, hi = c[f"ratio_vs_{ref_name}_ci95"]
    return f"{r:.2f} ({lo:.2f}-{hi:.2f})"


def print_table(results, names):
    hdr = (f"{'cell':<5} {'B x T x I x H':<16} {'contender':<9} {'median ms':>10} "
           f"{'min-max ms':>17} {'x numpy (95%)':>17} {'x torch (95%)':>17} {'roofline':>9} "
           f"{'peak MiB':>9} {'RSS MiB':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        for n in names:
            c = r["contenders"].get(n)
            if c is None:
                continue
            mem = c.get("memory", {})
            print(f"{r['cell']:<5} {r['size_name']:<16} {n:<9} {c['median_s'] * 1e3:>10.3f} "
                  f"{c['min_s'] * 1e3:>8.2f}-{c['max_s'] * 1e3:<8.2f} "
                  f"{_fmt_ratio(c, 'numpy'):>17} {_fmt_ratio(c, 'torch'):>17} "
                  f"{c['roofline_fraction'] * 100:>8.1f}% "
                  f"{_fmt_mib(mem.get('peak_bytes')):>9} {_fmt_mib(mem.get('rss_bytes')):>8}")


def plot(results, names, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib, or the bench extra)")
        return None
    cells = list(dict.fromkeys(r["cell"] for r in results))
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 4), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        rows = [r for r in results if r["cell"] == cell]
        xs = range(len(rows))
        for n in names:
            med = [r["contenders"][n]["median_s"] * 1e3 if n in r["contenders"] else np.nan
                   for r in rows]
            lo = [r["contenders"][n]["min_s"] * 1e3 if n in r["contenders"] else np.nan
                  for r in rows]
            hi = [r["contenders"][n]["max_s"] * 1e3 if n in r["contenders"] else np.nan
                  for r in rows]
            err = [np.subtract(med, lo), np.subtract(hi, med)]
            ax.errorbar(list(xs), med, yerr=err, marker="o", capsize=3, label=n)
        ax.plot(list(xs), [r["gemm_time_s"] * 1e3 for r in rows], "k--", label="GEMM roofline")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["size_name"] for r in rows], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{cell}: one training step")
        ax.set_xlabel("B x T x I x H")
        ax.set_ylabel("ms per step (median, min-max bars)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _order_note(order):
    return {"balanced": "each contender right after every other equally often",
            "rotate": "A B C, B C A, C A B", "fixed": "A B C every round"}[order]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first two sizes, fewer repeats")
    ap.add_argument("--cells", type=parse_cells, default=list(CELLS))
    ap.add_argument("--sizes", type=parse_sizes, default=None, help="BxTxIxH,... (default grid)")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default: auto)")
    ap.add_argument("--warmup", type=int, default=None, help="discarded rounds (default 2, quick 1)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="auto repeats: seconds sampled per contender (default 2, quick 0.5)")
    ap.add_argument("--json", default=os.path.join(_ROOT, "bench_results", "bench_rnn.json"))
    ap.add_argument("--plot", default=os.path.join(_ROOT, "bench_results", "bench_rnn.png"))
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--sgemm-n", type=int, default=1536,
                    help="matrix size of the SGEMM rate measurement (default 1536)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--kernels", action="store_true",
                    help="add minigrad's kernels called by hand, without the tape (shows what "
                         "the framework adds)")
    ap.add_argument("--unrolled", action="store_true",
                    help="add minigrad with fused=False modules (one cell node per step)")
    ap.add_argument("--run-length", type=int, default=1, metavar="K",
                    help="steps per contender turn, back to back (default 1: A B C A B C; "
                         "more: steady training-loop steps, see docs/performance.md)")
    ap.add_argument("--order", choices=ORDERS, default="balanced",
                    help="order of the contenders' turns (default balanced: each follows every "
                         "other equally often; rotate: A B C, B C A, C A B; fixed: A B C)")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.run_length < 1:
        ap.error(f"--run-length must be >= 1, got {args.run_length}")

    threads = apply_threads(args.threads)
    names = ["minigrad", "numpy"] + ([] if args.no_torch or not torch_available() else ["torch"])
    names += ["kernels"] if args.kernels else []
    names += ["unrolled"] if args.unrolled else []

    if args.memory_probe is not None:      # child mode: see run_memory_child
        out = {}
        for cell, size in json.loads(args.memory_probe):
            out[f"{cell}/{size_name(size)}"] = memory_probe(cell, tuple(size), names)
        print(json.dumps(out))
        return 0

    sizes = args.sizes or (GRID[:2] if args.quick else GRID)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    min_time = args.min_time if args.min_time is not None else (0.5 if args.quick else 2.0)
    min_repeats = 3 if args.quick else 7

    t_start = time.perf_counter()
    machine = machine_info()
    sgemm = measure_sgemm(args.sgemm_n)
    sgemm_all = list(sgemm["numpy"]["samples_gflops"])     # every numpy SGEMM run of this run
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}")
    print(f"python {machine['python']}, numpy {machine['numpy']}, scipy {machine.get('scipy')}, "
          f"torch {machine.get('torch', 'not installed')}, minigrad {machine['minigrad']} "
          f"({machine.get('minigrad_backend')} kernels, {machine['minigrad_api']} API), "
          f"git {machine.get('git_commit', 'unknown (no repository)')}"
          f"{' + uncommitted minigrad/ changes' if machine.get('git_dirty_minigrad') else ''}")
    pools = threads["threadpoolctl"]
    print(f"threads: {args.threads} (env {', '.join(f'{k}={v}' for k, v in threads['env'].items())}"
          f"{'' if threads['env_set_before_numpy_import'] else ' NOT applied: numpy was already imported'}; "
          f"torch.set_num_threads({threads.get('torch_num_threads', '-')}); "
          + ("threadpoolctl: " + ", ".join(f"{p['lib']}={p['num_threads']}" for p in pools)
             if pools else "threadpoolctl not installed") + ")")
    print(f"SGEMM {sgemm['n']}^3 float32: numpy {sgemm['numpy']['best_gflops']:.1f} GFLOP/s best "
          f"({sgemm['numpy']['median_gflops']:.1f} median)"
          + (f", scipy {sgemm['scipy']['best_gflops']:.1f} best" if "scipy" in sgemm else "")
          + f"; {SGEMM_PER_ROW} more numpy runs before each cell/size: the median of all of "
          "them is the roofline rate")
    print(f"step: forward, MSE of a linear readout (H->{OUT}) of h_n, backward, SGD lr={LR}; "
          f"float32; {warmup} warm-up round(s) discarded; interleaved, {args.order} order "
          f"({_order_note(args.order)}), "
          + ("one step per turn; " if args.run_length == 1 else
             f"{args.run_length} steps back to back per turn; ")
          + "ratios = contender median / reference median (lower is faster), with a 95% "
            "bootstrap interval over the timed rounds")
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    probe0 = eviction_probe(**PROBE)
    print(f"load average at start: {load0}; on a shared machine other processes compete for the "
          "cores, so absolute times are noisy: read the within-run ratios")
    print(probe_line(probe0) + "\n")

    results = []
    for cell in args.cells:
        for size in sizes:
            errors = verify(cell, size, names)
            params, x, target = make_problem(cell, size)
            contenders = build(cell, params, x, target, names)
            row_sgemm = measure_sgemm(args.sgemm_n, SGEMM_PER_ROW,
                                      scipy_too=False)["numpy"]["samples_gflops"]
            sgemm_all += row_sgemm
            samples = time_interleaved(contenders, warmup, args.repeats, min_time, min_repeats,
                                       run_length=args.run_length, order=args.order)
            flops = gemm_flops(size, cell)
            row = {"cell": cell, "size": list(size), "size_name": size_name(size),
                   "B": size[0], "T": size[1], "I": size[2], "H": size[3], "gemm_flops": flops,
                   "sgemm_samples_gflops": row_sgemm, "agreement_rel_err": errors,
                   "contenders": {}}
            for n, s in samples.items():
                row["contenders"][n] = {"samples_s": s, "repeats": len(s),
                                        "median_s": statistics.median(s),
                                        "min_s": min(s), "max_s": max(s)}
            for n, c in row["contenders"].items():
                for refn in ("numpy", "torch"):
                    if refn in row["contenders"] and refn != n:
                        ref_c = row["contenders"][refn]
                        c[f"ratio_vs_{refn}"] = c["median_s"] / ref_c["median_s"]
                        c[f"ratio_vs_{refn}_ci95"] = ratio_interval(
                            c["samples_s"], ref_c["samples_s"], args.run_length)
                c["gemm_gflops_achieved"] = flops / c["median_s"] / 1e9
            results.append(row)
            print(f"  {cell} {size_name(size)}: agree (max rel err "
                  f"{max(max(e.values()) for e in errors.values()):.1e}), "
                  f"{len(samples[names[0]])} rounds, "
                  + ", ".join(f"{n} {row['contenders'][n]['median_s'] * 1e3:.2f} ms" for n in names),
                  flush=True)

    if not args.no_memory:
        mem = run_memory_child([[r["cell"], r["size"]] for r in results], args.threads, names)
        for r in results:
            for n, m in mem.get(f"{r['cell']}/{r['size_name']}", {}).items():
                r["contenders"][n]["memory"] = m

    rate, best_rate = roofline_rate(sgemm_all), max(sgemm_all) * 1e9
    for r in results:
        r["gemm_time_s"] = r["gemm_flops"] / rate
        for c in r["contenders"].values():
            c["roofline_fraction"] = r["gemm_time_s"] / c["median_s"]
            c["roofline_fraction_best_rate"] = r["gemm_flops"] / best_rate / c["median_s"]
    elapsed = time.perf_counter() - t_start
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    probe1 = eviction_probe(**PROBE)
    print()
    print_table(results, names)
    largest = [r for r in results if r["size"] == results[-1]["size"]]
    at_best = ", ".join(f"{r['cell']} {r['size_name']} "
                        f"{r['contenders'][names[0]]['roofline_fraction_best_rate']:.1%}"
                        for r in largest)
    print(f"\nroofline = (GEMM FLOPs of the step / SGEMM rate) / contender median time; the rate is "
          f"the median of all {len(sgemm_all)} SGEMM runs of this run, {rate / 1e9:.1f} GFLOP/s "
          f"(range {min(sgemm_all):.1f}-{max(sgemm_all):.1f}). At the best run "
          f"({best_rate / 1e9:.1f} GFLOP/s) the fractions would be {at_best} ({names[0]}).\n"
          f"peak MiB: most memory held during the first {MEMORY_STEPS} steps of a fresh model, "
          "above what it held before (numpy, minigrad: tracemalloc; torch: its allocator records "
          "via torch.profiler).\nRSS MiB: the same for all three as peak RSS growth (a child "
          "process per cell/size, MALLOC_MMAP_THRESHOLD_=4096; coarse, +-0.3 MiB).\n"
          f"wall time {elapsed:.0f} s; load average at end {load1}\nat end: {probe_line(probe1)}")

    doc = {"command": "python benchmarks/bench_rnn.py " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv),
           "machine": machine, "threads": threads, "sgemm": sgemm,
           "sgemm_samples_gflops": sgemm_all, "roofline_rate_gflops": rate / 1e9,
           "sgemm_best_gflops_run": best_rate / 1e9, "lr": LR, "readout": OUT,
           "warmup": warmup, "run_length": args.run_length, "order": args.order,
           "contenders": names, "memory_method": memory_probe.__doc__,
           "elapsed_s": elapsed, "load_average_start": load0, "load_average_end": load1,
           "eviction_probe_start_us": probe_json(probe0),
           "eviction_probe_end_us": probe_json(probe1),
           "results": results}
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
