"""The benchmarked problem: one recurrent training step at a size B x T x I x H.

The step: forward over x (T, B, I) from zero states, a linear readout (H -> OUT) of the last
hidden state h_n, loss = mean squared error against a fixed random target, backward, and one
SGD update (lr LR) of every parameter; float32.
"""

import argparse

import numpy as np

import minigrad as mg

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
OUT = 10  # readout width
LR = 0.01


def size_name(size):
    return "x".join(str(v) for v in size)


def parse_sizes(text):
    """'32x20x50x50,2x3x4x5' -> [(32, 20, 50, 50), (2, 3, 4, 5)] (B x T x I x H each)."""
    sizes = []
    for part in text.split(","):
        vals = part.strip().lower().split("x")
        if len(vals) != 4 or not all(v.isdigit() and int(v) > 0 for v in vals):
            raise argparse.ArgumentTypeError(f"size must be BxTxIxH (positive ints), got {part!r}")
        sizes.append(tuple(int(v) for v in vals))
    return sizes


def add_sizes_option(ap, grid, quick):
    """The --sizes option of a benchmark over `grid` (None: the grid; `quick` says which part of
    it --quick runs)."""
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help="BxTxIxH,... sizes to run (default: the grid "
        + ", ".join(size_name(s) for s in grid)
        + f"; {quick} with --quick)",
    )


def add_quick_and_sizes_options(ap, grid, part, rest):
    """The --quick flag (`part` of `grid`, e.g. "the first two sizes", and `rest`, what else it
    shortens) and the --sizes option."""
    ap.add_argument("--quick", action="store_true", help=f"{part} of the grid, {rest}")
    add_sizes_option(ap, grid, part)


def parse_cells(text):
    """'lstm,gru' -> ['lstm', 'gru'], each among CELLS."""
    cells = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        raise argparse.ArgumentTypeError(f"cells must be among {','.join(CELLS)}, got {text!r}")
    return cells


def minigrad_modules(cell, I, H, **layer_kw):
    """minigrad's recurrent layer (nn.RNN/LSTM/GRU with `layer_kw`, e.g. how it runs the
    sequence; default: the modules' default) and its readout nn.Linear(H, OUT)."""
    cls = {"rnn": mg.nn.RNN, "lstm": mg.nn.LSTM, "gru": mg.nn.GRU}[cell]
    if cell == "rnn":
        layer_kw = dict(layer_kw, nonlinearity="tanh")
    return cls(I, H, **layer_kw), mg.nn.Linear(H, OUT)


def named_params(rnn, fc):
    """{PyTorch-style name: Parameter} of a recurrent layer and its readout (fc.*)."""
    out = {k: v for k, v in rnn.named_parameters()}
    out.update({"fc." + k: v for k, v in fc.named_parameters()})
    return out


def make_problem(cell, size, seed=0):
    """Initial weights (minigrad's), input and target for one cell/size, as float32 ndarrays.

    params uses PyTorch's names: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
    fc.weight, fc.bias."""
    B, T, I, H = size
    mg.manual_seed(seed)
    rnn, fc = minigrad_modules(cell, I, H)
    params = {k: np.array(v.data, np.float32) for k, v in named_params(rnn, fc).items()}
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    target = rng.standard_normal((B, OUT)).astype(np.float32)
    return params, x, target


def copy_params(params):
    return {k: np.array(v, np.float32, copy=True) for k, v in params.items()}


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
