"""``summary(model, input)``: a Keras-style table of layers, output shapes and parameter counts.

How the counts relate to the Keras tables of the lecture notes the project grew from
------------------------------------------------------------------------------------
Embedding and Linear (Keras ``Dense``) count the same in both: Embedding(10000, 50) has
10000*50 = 500,000 parameters, Linear(50, 32) 50*32 + 32 = 1,632, Linear(32, 1) 33.

Recurrent layers differ because minigrad uses PyTorch's layout, which has *two* bias vectors
per gate block (``bias_ih`` and ``bias_hh``) where Keras has one.  With G gate blocks (RNN 1,
LSTM 4, GRU 3), input size I and hidden size H::

    minigrad / PyTorch:  G * (H*I + H*H + 2*H)
    Keras:               G * (H*I + H*H + H)          (SimpleRNN, LSTM, GRU(reset_after=False))
    Keras GRU, reset_after=True (the TF2 default):  3 * (H*I + H*H + 2*H) -- the same as ours

So the notes' SimpleRNN(50) on 50 inputs has 5,050 parameters in Keras and RNN(50, 50) 5,100
here; LSTM(50) 20,200 in Keras and LSTM(50, 50) 20,400 here; the difference is G*H, the second
bias, which adds nothing to what the layer can compute (only b_ih + b_hh matters for RNN and
LSTM; for GRU the n-gate's b_hn sits inside r * (...), which is why Keras' reset_after GRU also
has two).  A bidirectional layer has twice the parameters of one direction; layers above the
first take D*H inputs.
"""

from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor
from .layers import Embedding

__all__ = ["summary"]


def _shape_text(out):
    if isinstance(out, Tensor):
        return str(tuple(out.shape))
    if isinstance(out, np.ndarray):
        return str(tuple(out.shape))
    if isinstance(out, (tuple, list)):
        return "[" + ", ".join(_shape_text(o) for o in out) + "]"
    return type(out).__name__


def _example(model, input_shape_or_example, dtype):
    if isinstance(input_shape_or_example, Tensor):
        return input_shape_or_example
    if isinstance(input_shape_or_example, np.ndarray):
        return Tensor(input_shape_or_example)
    shape = input_shape_or_example
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise TypeError(
            "summary() needs an input shape (a tuple of positive ints, including the "
            "batch dimension) or an example input (ndarray or Tensor), got "
            f"{input_shape_or_example!r}"
        )
    if dtype is None:
        first_leaf = next((m for m in model.modules() if not m._modules), None)
        if isinstance(first_leaf, Embedding):
            dtype = np.int64  # token ids
        else:
            first = next(iter(model.parameters()), None)
            dtype = first.data.dtype if first is not None else np.float32
    dtype = np.dtype(dtype)
    return Tensor(np.zeros(tuple(int(s) for s in shape), dtype=dtype))


def summary(model, input_shape_or_example, dtype=None, print_fn=print):
    """Run ``model`` once on an example input and tabulate what each layer produced.

    ``input_shape_or_example``: the full input shape *including* the batch dimension (as the
    model's forward receives it, e.g. (32, 20) for 32 sequences of 20 token ids), filled with
    zeros of ``dtype`` (default: int64 token ids when the first layer is an Embedding, else the
    parameters' dtype), or an example input (ndarray or Tensor).
    The forward runs under ``no_grad`` in eval mode (no dropout, no random draws) and the
    modules' training flags are restored afterwards.

    Rows: every module without children, plus any container that owns parameters directly, in
    the order they were first called, named by their dotted path and type; output shapes are
    the actual shapes (the batch size is the example's; nested lists for tuples such as an
    LSTM's (output, (h_n, c_n))).  Parameter counts are per row; the totals count every
    parameter of the model once (shared parameters once; modules not called are included).
    The table is printed with ``print_fn`` (None prints nothing) and returned as a string.

    See the module docstring for how these counts relate to the Keras tables of the notes.
    """
    x = _example(model, input_shape_or_example, dtype)
    rows = []
    seen = set()
    handles = []

    def make_hook(name):
        def hook(module, args, out):
            if id(module) not in seen:
                seen.add(id(module))
                own = sum(p.data.size for p in module.parameters(recurse=not module._modules))
                rows.append(
                    (
                        f"{name} ({type(module).__name__})" if name else type(module).__name__,
                        _shape_text(out),
                        own,
                    )
                )

        return hook

    for name, m in model.named_modules():
        leaf = not any(True for _ in m.children())
        if leaf or any(p is not None for p in m._parameters.values()):
            handles.append(m.register_forward_hook(make_hook(name)))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.__dict__["training"] = mode

    total = sum(p.data.size for p in model.parameters())
    trainable = sum(p.data.size for p in model.parameters() if p.requires_grad)
    header = ("Layer (type)", "Output Shape", "Param #")
    body = [(n, s, f"{c:,}") for n, s, c in rows]
    w0 = max([len(header[0])] + [len(r[0]) for r in body]) + 2
    w1 = max([len(header[1])] + [len(r[1]) for r in body]) + 2
    w2 = max([len(header[2])] + [len(r[2]) for r in body])
    width = w0 + w1 + w2
    lines = [
        f"Model: {type(model).__name__}",
        "_" * width,
        f"{header[0]:<{w0}}{header[1]:<{w1}}{header[2]:>{w2}}",
        "=" * width,
    ]
    for n, s, c in body:
        lines.append(f"{n:<{w0}}{s:<{w1}}{c:>{w2}}")
    lines += [
        "=" * width,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "_" * width,
    ]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
