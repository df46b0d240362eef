"""The layer-normalised LSTM's training step: against the plain LSTM and against torch.

Run from the repository root:

    python benchmarks/bench_layernorm.py [--quick] [options]

The step is bench_rnn.py's (harness/problem.py): forward over x (T, B, I) from zero states, a
linear readout of h_n, mean squared error, backward, one SGD update; float32; sizes B x T x I x H.
Contenders:

* ln-lstm: minigrad's nn.LSTM(layer_norm=True), the norms inside the compiled sequence kernel;
* lstm: minigrad's plain nn.LSTM (with biases), the same step: ln-lstm / lstm is what the norms
  cost;
* torch-cells (when torch is importable): the same layer-normalised LSTM composed in torch as a
  user would write it, a Python loop over time steps on the weights of an nn.LSTMCell
  (bias=False): the input projection of all steps hoisted into one matmul, then per step
  h W_hh^T, layer_norm over the four gate blocks (F.layer_norm on a (B, 4, H) view, each block
  with its own gain and shift) and an nn.LayerNorm(H) on the cell state; torch on one thread.

Before timing, ln-lstm and torch-cells must agree on the loss and every gradient (float32
tolerance). Timing interleaves the contenders in rounds (each right after every other equally
often), medians per step, ratios of medians of the same run with 95% bootstrap intervals over
the rounds (docs/performance.md). BLAS runs on one thread unless OPENBLAS_NUM_THREADS is set.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

threads.set_env(1, only_if_unset=True)  # one BLAS thread unless the environment says otherwise

import statistics  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.harness import cli, machine, timing  # noqa: E402
from benchmarks.harness.agreement import check_agreement  # noqa: E402
from benchmarks.harness.contenders import MinigradStep, TorchStep  # noqa: E402
from benchmarks.harness.problem import (  # noqa: E402
    LR,
    OUT,
    add_quick_and_sizes_options,
    make_problem,
    size_name,
)
from benchmarks.harness.stats import ratio_interval  # noqa: E402

GRID = [(32, 100, 128, 128), (64, 100, 512, 512), (32, 20, 50, 50), (32, 100, 256, 256)]
TARGET = 1.3  # ln-lstm / lstm at the first two sizes of the grid


def ln_params(params, H):
    """The problem's weights for a layer-normalised LSTM: no biases, norms at gain 1, shift 0."""
    out = {k: v for k, v in params.items() if not k.startswith("bias")}
    out["layer_norm_weight_l0"] = np.ones(5 * H, np.float32)
    out["layer_norm_bias_l0"] = np.zeros(5 * H, np.float32)
    return out


class LayerNormStep(MinigradStep):
    """minigrad's nn.LSTM(layer_norm=True): MinigradStep with the layer option."""

    name = "ln-lstm"
    layer_kw = dict(layer_norm=True)


class TorchCellsStep(TorchStep):
    """The layer-normalised LSTM composed in torch (module docstring); step() is TorchStep's."""

    name = "torch-cells"

    def __init__(self, params, x, target, lr=LR):
        import torch

        self.torch = torch
        H, I = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
        self.H = H
        self.cell = torch.nn.LSTMCell(I, H, bias=False)
        self.ln_c = torch.nn.LayerNorm(H)
        self.gain = torch.nn.Parameter(torch.ones(4, H))
        self.shift = torch.nn.Parameter(torch.zeros(4, H))
        self.fc = torch.nn.Linear(H, OUT)
        with torch.no_grad():
            self.cell.weight_ih.copy_(torch.from_numpy(params["weight_ih_l0"]))
            self.cell.weight_hh.copy_(torch.from_numpy(params["weight_hh_l0"]))
            self.fc.weight.copy_(torch.from_numpy(params["fc.weight"]))
            self.fc.bias.copy_(torch.from_numpy(params["fc.bias"]))
        self.P = {
            "weight_ih_l0": self.cell.weight_ih,
            "weight_hh_l0": self.cell.weight_hh,
            "gain": self.gain,
            "shift": self.shift,
            "ln_c.weight": self.ln_c.weight,
            "ln_c.bias": self.ln_c.bias,
            "fc.weight": self.fc.weight,
            "fc.bias": self.fc.bias,
        }
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.target = torch.from_numpy(np.ascontiguousarray(target))
        self.opt = torch.optim.SGD(list(self.P.values()), lr=lr)

    def _loss(self):
        torch, H = self.torch, self.H
        T, B, _ = self.x.shape
        xw = self.x @ self.cell.weight_ih.T  # (T, B, 4H): all steps at once
        h = c = torch.zeros(B, H)
        w_hh = self.cell.weight_hh
        for t in range(T):
            a = (xw[t] + h @ w_hh.T).view(B, 4, H)
            a = torch.nn.functional.layer_norm(a, (H,)) * self.gain + self.shift
            i, f, g, o = a.unbind(1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
        return torch.nn.functional.mse_loss(self.fc(h), self.target)

    def loss_and_grads(self):
        """Loss and gradients under minigrad's names (the norms' gains and shifts as one
        (5H,) array each: [i | f | g | o | c])."""
        loss, g = super().loss_and_grads()
        g["layer_norm_weight_l0"] = np.concatenate([g.pop("gain").ravel(), g.pop("ln_c.weight")])
        g["layer_norm_bias_l0"] = np.concatenate([g.pop("shift").ravel(), g.pop("ln_c.bias")])
        return loss, g


def build(size, torch_ok):
    params, x, target = make_problem("lstm", size)
    H = size[3]
    out = {
        "ln-lstm": LayerNormStep("lstm", ln_params(params, H), x, target),
        "lstm": MinigradStep("lstm", params, x, target),
    }
    if torch_ok:
        out["torch-cells"] = TorchCellsStep(ln_params(params, H), x, target)
    return out


def verify(contenders):
    """ln-lstm and torch-cells compute the same loss and gradients (float32 tolerance)."""
    if "torch-cells" not in contenders:
        return
    check_agreement(
        {n: contenders[n].loss_and_grads() for n in ("ln-lstm", "torch-cells")}, "ln-lstm"
    )


def build_parser():
    ap = cli.parser(__doc__)
    add_quick_and_sizes_options(
        ap, GRID, "the first size", "2 warm-up rounds and 0.5 s per contender"
    )
    ap.add_argument("--warmup", type=int, default=3, help="discarded rounds")
    ap.add_argument(
        "--min-time", type=float, default=3.0, help="seconds of timed steps per contender"
    )
    ap.add_argument("--no-torch", action="store_true", help="leave torch out")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    cli.at_least(ap, warmup=(args.warmup, 0))
    sizes = args.sizes or (GRID[:1] if args.quick else GRID)
    warmup, min_time = (2, 0.5) if args.quick else (args.warmup, args.min_time)
    torch = None
    if not args.no_torch and threads.torch_available():
        import torch

        torch.set_num_threads(1)
    print(machine.short_line(machine.machine_info(), torch, ", no torch"))
    print(
        f"one training step per turn (float32), interleaved rounds, {warmup} warm-up, "
        f"~{min_time:g} s per contender per size"
    )
    rows, results = [], []
    for size in sizes:
        contenders = build(size, torch is not None)
        verify(contenders)
        samples = timing.time_interleaved(contenders, warmup, min_time=min_time, min_repeats=3)
        med = {n: statistics.median(v) * 1e3 for n, v in samples.items()}
        lo, hi = ratio_interval(samples["ln-lstm"], samples["lstm"])
        row = [
            size_name(size),
            f"{med['ln-lstm']:.1f}",
            f"{med['lstm']:.1f}",
            f"{med['ln-lstm'] / med['lstm']:.2f} [{lo:.2f}, {hi:.2f}]",
        ]
        if torch is not None:
            tlo, thi = ratio_interval(samples["ln-lstm"], samples["torch-cells"])
            row[3:3] = [f"{med['torch-cells']:.1f}"]
            row.append(f"{med['ln-lstm'] / med['torch-cells']:.2f} [{tlo:.2f}, {thi:.2f}]")
        rows.append(row)
        results.append({"size": size_name(size), "median_ms": med})
    header = ["BxTxIxH", "ln-lstm", "lstm"]
    header += ["torch-cells"] if torch is not None else []
    header += ["ln/lstm"] + (["ln/torch"] if torch is not None else [])
    cli.print_table(
        header,
        rows,
        "median ms per training step; ln/lstm: minigrad's layer-normalised LSTM over its plain "
        f"LSTM (target <= {TARGET} at 32x100x128x128 and 64x100x512x512), ln/torch: over "
        "the same model composed from torch's LSTMCell weights and layer_norm in a Python loop "
        "(below 1: minigrad faster); [95% bootstrap interval]",
    )
    return results


if __name__ == "__main__":
    main()
