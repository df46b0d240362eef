"""PyTorch's names mean PyTorch's things: softmax/log_softmax with dim=, from_numpy sharing
memory, multinomial, and the signatures the examples and docs use, checked against torch when
it is installed."""

import inspect

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim


def test_softmax_dim_keyword():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(F.softmax(x, dim=0).data, F.softmax(x, axis=0).data)
    np.testing.assert_allclose(F.log_softmax(x, dim=1).data, F.log_softmax(x, axis=1).data)
    with pytest.raises(ValueError, match="give axis or dim, not both"):
        F.softmax(x, axis=0, dim=1)


def test_from_numpy_shares_memory_and_keeps_dtype():
    a = np.arange(4, dtype=np.float64)
    t = mg.from_numpy(a)
    assert t.dtype == np.float64 and np.shares_memory(t.data, a)
    a[0] = 7.0
    assert t.data[0] == 7.0
    t.data[1] = -1.0
    assert a[1] == -1.0
    assert mg.from_numpy(np.arange(3)).dtype == np.arange(3).dtype
    with pytest.raises(TypeError, match="float16"):
        mg.from_numpy(np.zeros(2, dtype=np.float16))
    with pytest.raises(TypeError, match="expects a numpy.ndarray, got list"):
        mg.from_numpy([1.0])


def test_multinomial():
    rng = np.random.default_rng(0)
    w = np.array([[0.0, 1.0, 3.0], [5.0, 0.0, 0.0]])
    s = mg.multinomial(w, 2000, replacement=True, generator=rng)
    assert s.shape == (2, 2000) and s.dtype == np.int64
    assert np.all(s.data[1] == 0) and not np.any(s.data[0] == 0)
    assert abs(np.mean(s.data[0] == 2) - 0.75) < 0.05
    d = mg.multinomial(np.ones(5), 5, generator=np.random.default_rng(1))
    assert sorted(d.data.tolist()) == [0, 1, 2, 3, 4]  # without replacement: each once
    with pytest.raises(ValueError, match="cannot draw 3 samples without replacement"):
        mg.multinomial(w, 3)
    with pytest.raises(ValueError, match="non-negative"):
        mg.multinomial(np.array([1.0, -1.0]), 1)
    with pytest.raises(ValueError, match="positive total weight"):
        mg.multinomial(np.zeros((2, 3)), 1, replacement=True)


# The PyTorch signatures minigrad promises (functions and constructors the examples and docs
# use): each parameter torch has must exist here under the same name, in the same order, with
# the same default.
SIGNATURES = [
    (
        "nn.functional.cross_entropy",
        lambda t: t.nn.functional.cross_entropy,
        lambda: F.cross_entropy,
        ["input", "target", "weight", "ignore_index", "reduction", "label_smoothing"],
    ),
    (
        "nn.functional.nll_loss",
        lambda t: t.nn.functional.nll_loss,
        lambda: F.nll_loss,
        ["input", "target", "weight", "ignore_index", "reduction"],
    ),
    (
        "nn.utils.clip_grad_norm_",
        lambda t: t.nn.utils.clip_grad_norm_,
        lambda: nn.utils.clip_grad_norm_,
        ["parameters", "max_norm", "norm_type", "error_if_nonfinite"],
    ),
    (
        "nn.Linear",
        lambda t: t.nn.Linear,
        lambda: nn.Linear,
        ["in_features", "out_features", "bias"],
    ),
    (
        "nn.Embedding",
        lambda t: t.nn.Embedding,
        lambda: nn.Embedding,
        ["num_embeddings", "embedding_dim", "padding_idx"],
    ),
    (
        "nn.LSTM",
        lambda t: t.nn.RNNBase,
        lambda: nn.LSTM,
        [
            "input_size",
            "hidden_size",
            "num_layers",
            "bias",
            "batch_first",
            "dropout",
            "bidirectional",
        ],
    ),
    (
        "nn.LayerNorm",
        lambda t: t.nn.LayerNorm,
        lambda: nn.LayerNorm,
        ["normalized_shape", "eps", "elementwise_affine", "bias"],
    ),
    (
        "nn.MultiheadAttention",
        lambda t: t.nn.MultiheadAttention,
        lambda: nn.MultiheadAttention,
        [
            "embed_dim",
            "num_heads",
            "dropout",
            "bias",
            "add_bias_kv",
            "add_zero_attn",
            "kdim",
            "vdim",
            "batch_first",
        ],
    ),
    (
        "optim.Adam",
        lambda t: t.optim.Adam,
        lambda: optim.Adam,
        ["params", "lr", "betas", "eps", "weight_decay", "amsgrad"],
    ),
    (
        "optim.SGD",
        lambda t: t.optim.SGD,
        lambda: optim.SGD,
        ["params", "lr", "momentum", "dampening", "weight_decay", "nesterov"],
    ),
    (
        "optim.lr_scheduler.CosineAnnealingLR",
        lambda t: t.optim.lr_scheduler.CosineAnnealingLR,
        lambda: optim.lr_scheduler.CosineAnnealingLR,
        ["optimizer", "T_max", "eta_min", "last_epoch"],
    ),
    (
        "optim.lr_scheduler.OneCycleLR",
        lambda t: t.optim.lr_scheduler.OneCycleLR,
        lambda: optim.lr_scheduler.OneCycleLR,
        [
            "optimizer",
            "max_lr",
            "total_steps",
            "epochs",
            "steps_per_epoch",
            "pct_start",
            "anneal_strategy",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
            "div_factor",
            "final_div_factor",
            "three_phase",
            "last_epoch",
        ],
    ),
    (
        "multinomial",
        lambda t: t.multinomial,
        lambda: mg.multinomial,
        ["input", "num_samples", "replacement", "generator"],
    ),
]


def _params(fn):
    try:
        sig = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn)
    except ValueError:  # a builtin: read the signature its docstring opens with
        head = fn.__doc__.strip().split("->")[0]
        args = head[head.index("(") + 1 : head.rindex(")")]
        scope = {}
        exec(f"def f({args}): pass", {}, scope)
        sig = inspect.signature(scope["f"])
    return {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


@pytest.mark.parametrize("name, theirs, ours, names", SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_signature_matches_torch(name, theirs, ours, names):
    mine = _params(ours())
    order = [n for n in mine if n in names]
    assert order == names, f"{name}: minigrad's parameters {list(mine)}"
    torch = pytest.importorskip("torch")
    tp = _params(theirs(torch))
    assert [n for n in tp if n in names] == names, f"torch.{name}: {list(tp)}"
    for n in names:
        a, b = mine[n].default, tp[n].default
        if b is inspect.Parameter.empty or a is inspect.Parameter.empty:
            assert a is b, f"{name}({n}): default {a!r} here, {b!r} in torch"
        elif not (isinstance(b, (int, float, str, bool, tuple, type(None)))):
            continue  # torch-specific objects (a Tensor default) are not comparable
        else:
            assert a == b, f"{name}({n}): default {a!r} here, {b!r} in torch"
