"""Kernel tests: the compiled kernels (minigrad._ops, _gemm, _optim_ops) against their NumPy twins
(minigrad._ops_ref, _gemm_ref, _optim_ops_ref).

* twin equality: every output and every cache array of every kernel, float32 and float64,
  hypothesis-drawn sizes, with and without biases, lengths, recurrent dropout and zoneout
  masks, tanh and relu;
* finite differences on the twins (float64, random upstream gradients): the twin backward is
  the derivative of the twin forward, independently of the tape;
* layer norm (LSTM and GRU, ``ln=(gain, shift)``): the same twin equality and finite
  differences with the norms on, their cache included;
* stability: pre-activations of ±1e4 give finite, saturated results without warnings;
* bad arguments: every wrong shape, dtype, contiguity, length, bias or nonlinearity raises a
  ValueError that names the argument, what was expected and what was got.
"""

import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad import _gemm, _gemm_ref, _ops, _ops_ref, _optim_ops, _optim_ops_ref

# One namespace per backend over its three modules (cells, linear, optimizer updates): `ops` the
# compiled kernels, `ref` their NumPy twins.
TWINS = (_ops_ref, _gemm_ref, _optim_ops_ref)
ops = SimpleNamespace(
    **{n: getattr(m, n) for m, t in zip((_ops, _gemm, _optim_ops), TWINS) for n in t.__all__}
)
ref = SimpleNamespace(**{n: getattr(t, n) for t in TWINS for n in t.__all__})

MODULES = {"twin": ref, "cython": ops}

# ---------------------------------------------------------------------------------------------
# The kernel table: signature and outputs of every kernel, as in docs/kernels.md
# ---------------------------------------------------------------------------------------------

GATES = {
    "linear": 1,
    "rnn_cell": 1,
    "lstm_cell": 4,
    "gru_cell": 3,
    "rnn_sequence": 1,
    "lstm_sequence": 4,
    "gru_sequence": 3,
}
KINDS = list(GATES)
CELL_CACHE_WIDTH = {"rnn": 1, "lstm": 5, "gru": 4}  # cache columns, in units of H
SEQ_CACHE = {
    "rnn_sequence": ("hs",),
    "lstm_sequence": ("hs", "cs", "gates"),
    "gru_sequence": ("hs", "gates"),
}

# The GRU's sequence backward arguments; the RNN adds its nonlinearity.
_SEQUENCE_BACKWARD = ("dys", "dh_n", "x", "h0", "w_ih", "w_hh", "cache", "lengths", "has_bias")
SIGNATURES = {
    "linear_forward": ("x", "w", "b"),
    "linear_backward": ("dy", "x", "w", "has_bias"),
    "rnn_cell_forward": ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh", "nonlinearity"),
    "rnn_cell_backward": ("dh1", "x", "h", "w_ih", "w_hh", "cache", "has_bias", "nonlinearity"),
    "lstm_cell_forward": ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"),
    "lstm_cell_backward": ("dh1", "dc1", "x", "h", "c", "w_ih", "w_hh", "cache", "has_bias"),
    "gru_cell_forward": ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh"),
    "gru_cell_backward": ("dh1", "x", "h", "w_ih", "w_hh", "cache", "has_bias"),
    "rnn_sequence_forward": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths", "nonlinearity"),
    "rnn_sequence_backward": (*_SEQUENCE_BACKWARD, "nonlinearity"),
    "lstm_sequence_forward": ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths"),
    "lstm_sequence_backward": (
        "dys",
        "dh_n",
        "dc_n",
        "x",
        "h0",
        "c0",
        "w_ih",
        "w_hh",
        "cache",
        "lengths",
        "has_bias",
    ),
    "gru_sequence_forward": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths"),
    "gru_sequence_backward": _SEQUENCE_BACKWARD,
}
FORWARD_OUTPUTS = {
    "linear": ("y",),
    "rnn_cell": ("h1", "cache"),
    "lstm_cell": ("h1", "c1", "cache"),
    "gru_cell": ("h1", "cache"),
    "rnn_sequence": ("ys", "h_n", "cache"),
    "lstm_sequence": ("ys", "h_n", "c_n", "cache"),
    "gru_sequence": ("ys", "h_n", "cache"),
}
# Backward returns the gradient "d" + name of each differentiable input, in this order.
GRAD_INPUTS = {
    "linear": ("x", "w", "b"),
    "rnn_cell": ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh"),
    "lstm_cell": ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"),
    "gru_cell": ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh"),
    "rnn_sequence": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"),
    "lstm_sequence": ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"),
    "gru_sequence": ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"),
}
BIASES = ("b", "b_ih", "b_hh")
LN_BLOCKS = {"lstm": 5, "gru": 4}  # layer norms per cell (the kernels' ln gains are nb*H long)
LN_KINDS = ["lstm_cell", "gru_cell", "lstm_sequence", "gru_sequence"]


def is_sequence(kind):
    return kind.endswith("_sequence")


def shapes(kind, T, B, I, H):
    """Shape of every array argument of the kind's forward and backward (cache entries too)."""
    if kind == "linear":  # N = B rows, O = H outputs
        return dict(x=(B, I), w=(H, I), b=(H,), dy=(B, H), y=(B, H))
    G = GATES[kind]
    s = dict(w_ih=(G * H, I), w_hh=(G * H, H), b_ih=(G * H,), b_hh=(G * H,))
    if is_sequence(kind):
        width = CELL_CACHE_WIDTH[kind.split("_")[0]]
        s.update(
            x=(T, B, I),
            h0=(B, H),
            c0=(B, H),
            ys=(T, B, H),
            h_n=(B, H),
            c_n=(B, H),
            hs=(T + 1, B, H),
            cs=(T + 1, B, H),
            gates=(T, B, width * H),
        )
    else:
        width = CELL_CACHE_WIDTH[kind.split("_")[0]]
        s.update(x=(B, I), h=(B, H), c=(B, H), h1=(B, H), c1=(B, H), cache=(B, width * H))
    for name in FORWARD_OUTPUTS[kind]:  # upstream gradient of each output: its shape
        if name != "cache":
            s["d" + name] = s[name]
    return s


def draw_masks(kind, rng, T, B, H, dtype):
    """The kernels' masks (drop_h, zone_h, zone_c) for a cell or sequence kind: an inverted
    dropout mask (B, H) (0 or 1/(1-p), p = 0.3) and zoneout weights of 0, 1 (training) or 0.3
    (eval's expectation), per step for a sequence; zone_c for the LSTM only."""
    lead = (T,) if is_sequence(kind) else ()
    drop_h = ((rng.random((B, H)) >= 0.3) / 0.7).astype(dtype)

    def zone():
        return rng.choice(np.array([0.0, 1.0, 0.3]), lead + (B, H)).astype(dtype)

    family = kind.split("_")[0]
    return (
        drop_h,
        zone(),
        zone() if family == "lstm" else None,
    )


class Problem:
    """One drawn test case: sizes, dtype, options, and every argument value by name."""

    def __init__(self, kind, T, B, I, H, dtype, bias, lengths, nonlinearity, seed, masked=False):
        self.kind, self.T, self.B, self.I, self.H = kind, T, B, I, H
        self.dtype, self.bias, self.nonlinearity = dtype, bias, nonlinearity
        rng = np.random.default_rng(seed)
        sh = shapes(kind, T, B, I, H)
        k = 1 / np.sqrt(H)  # PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) init
        v = {}
        for name in GRAD_INPUTS[kind]:
            if name in ("h", "h0"):
                v[name] = rng.uniform(-1, 1, sh[name])
            elif name.startswith("w") or name.startswith("b"):
                v[name] = rng.uniform(-k, k, sh[name])
            else:
                v[name] = rng.standard_normal(sh[name])
        for name in FORWARD_OUTPUTS[kind]:  # upstream gradients, one per output
            if name != "cache":
                v["d" + name] = rng.standard_normal(sh[name])
        v = {name: a.astype(dtype) for name, a in v.items()}
        if not bias:
            for name in BIASES:
                if name in v:
                    v[name] = None
        v["lengths"] = lengths
        v["has_bias"] = bias
        v["nonlinearity"] = nonlinearity
        # recurrent dropout and zoneout: passed by keyword (the kernels' last argument)
        v["masks"] = draw_masks(kind, rng, T, B, H, dtype) if masked else None
        v["ln"] = None  # with_layer_norm sets (gain, shift)
        self.values = v

    def args(self, fname, **override):
        values = dict(self.values, **override)
        return [values[name] for name in SIGNATURES[fname]]

    def __repr__(self):
        lengths = self.values["lengths"]
        return (
            f"Problem({self.kind}, T={self.T}, B={self.B}, I={self.I}, H={self.H}, "
            f"{np.dtype(self.dtype).name}, bias={self.bias}, nonlinearity={self.nonlinearity},"
            f" lengths={None if lengths is None else lengths.tolist()},"
            f" masked={self.values['masks'] is not None})"
        )


@st.composite
def problems(
    draw, kind, max_size=17, max_T=12, dtypes=(np.float32, np.float64), masked=None, min_H=1
):
    """A drawn Problem of `kind`; with masks (recurrent dropout, zoneout) drawn or not, or as
    `masked` says when given; H at least `min_H`."""
    B, I = (draw(st.integers(1, max_size)) for _ in range(2))
    H = draw(st.integers(min_H, max(min_H, max_size)))
    T = draw(st.integers(1, max_T)) if is_sequence(kind) else 1
    dtype = draw(st.sampled_from(dtypes))
    bias = draw(st.booleans())
    lengths = None
    if is_sequence(kind) and draw(st.booleans()):
        lengths_dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
        lengths = np.array(
            draw(st.lists(st.integers(1, T), min_size=B, max_size=B)), dtype=lengths_dtype
        )
    nonlinearity = draw(st.sampled_from(["tanh", "relu"])) if kind.startswith("rnn") else None
    seed = draw(st.integers(0, 2**32 - 1))
    if masked is None:
        masked = draw(st.booleans())
    masked = kind != "linear" and masked
    return Problem(kind, T, B, I, H, dtype, bias, lengths, nonlinearity, seed, masked)


def with_layer_norm(problem, seed):
    """The problem with layer norm on: gains and shifts drawn around their initial 1 and 0."""
    rng = np.random.default_rng(seed)
    n = LN_BLOCKS[problem.kind.split("_")[0]] * problem.H
    gain = rng.uniform(0.5, 1.5, n).astype(problem.dtype)
    problem.values["ln"] = (gain, rng.uniform(-0.5, 0.5, n).astype(problem.dtype))
    return problem


def kernel_kwargs(problem):
    """The kernels' trailing keywords the problem turns on: masks= (recurrent dropout and
    zoneout) and ln= (layer norm); none: the call as before those options."""
    v = problem.values
    return {name: v[name] for name in ("masks", "ln") if v[name] is not None}


def forward(module, problem):
    """Run the kind's forward; return its outputs by name (cache kept as returned)."""
    fname = problem.kind + "_forward"
    out = getattr(module, fname)(*problem.args(fname), **kernel_kwargs(problem))
    if not isinstance(out, tuple):
        out = (out,)
    names = FORWARD_OUTPUTS[problem.kind]
    assert len(out) == len(names), f"{fname} returned {len(out)} outputs, expected {names}"
    return dict(zip(names, out))


def backward(module, problem, cache):
    """Run the kind's backward with the given cache; return gradients by name ("dx", ...)."""
    fname = problem.kind + "_backward"
    out = getattr(module, fname)(*problem.args(fname, cache=cache), **kernel_kwargs(problem))
    names = ["d" + name for name in GRAD_INPUTS[problem.kind]]
    if problem.values["ln"] is not None:
        names += ["dln_gain", "dln_shift"]
    assert len(out) == len(names), f"{fname} returned {len(out)} outputs, expected {names}"
    return dict(zip(names, out))


def named_cache(kind, cache):
    """Cache as (name, array) pairs: the cell cache is one array, a sequence cache a tuple."""
    if kind == "linear":
        return []
    if not is_sequence(kind):
        if isinstance(cache, tuple):  # layer norm: (cache, lnc)
            return list(zip(("cache", "lnc"), cache))
        return [("cache", cache)]
    names = SEQ_CACHE[kind]
    if isinstance(cache, tuple) and len(cache) == len(names) + 1:  # one more array last: the
        names += ("ht",) if kind == "rnn_sequence" else ("lnc",)  # RNN's h~ (zoneout), or LN's
    assert isinstance(cache, tuple) and len(cache) == len(names), (
        f"{kind} cache must be a tuple ({', '.join(names)}), got {type(cache).__name__}"
    )
    return list(zip(names, cache))


def tolerances(dtype, want, twin_error=0.0):
    """rtol 1e-5 / atol 1e-6 (float32), 1e-12 / 1e-12 (float64); atol is scaled by the array's
    largest magnitude, and by the size of the terms each entry sums: an entry that is a sum of
    large terms (db, dW: sums over T*B rows) can cancel to a small number whose rounding error
    is that of the terms, eps times their summed magnitude, not eps times the result.
    ``twin_error`` measures that: the largest difference between the twin in this dtype and the
    twin in float64 on the same arrays (see twin_backward_error); the kernel rounds terms of the
    same size in another order, so it may differ from the twin by 8 times as much."""
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    if dtype == np.float32:
        return dict(rtol=1e-5, atol=max(1e-6 * scale, 8 * twin_error))
    return dict(rtol=1e-12, atol=max(1e-12 * scale, 8 * twin_error))


def _wide(a):
    """float arrays (in tuples too) as float64."""
    if isinstance(a, tuple):
        return tuple(map(_wide, a))
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a


def _wide_problem(problem):
    p64 = Problem.__new__(Problem)
    p64.__dict__.update(
        problem.__dict__, dtype=np.float64, values={k: _wide(v) for k, v in problem.values.items()}
    )
    return p64


def _errors(arrays, exact):
    return {
        name: float(np.abs(g.astype(np.float64) - exact[name]).max())
        if g is not None and g.size
        else 0.0
        for name, g in arrays.items()
    }


def twin_backward_error(problem, cache, grads):
    """For each float32 gradient of the twin: the largest difference from the twin's backward
    run in float64 on the same inputs and cache (the rounding the float32 sums made)."""
    if problem.dtype != np.float32:
        return {}
    return _errors(grads, backward(ref, _wide_problem(problem), _wide(cache)))


def twin_forward_error(problem, want):
    """With layer norm in float32, for each forward output and cache array of the twin: the
    largest difference from the twin's forward in float64. A norm over a block whose values
    barely differ magnifies rounding by up to 1/sqrt(eps) (300), so the kernel, rounding in
    another order, gets 8 times that as its atol, as the gradients do."""
    if problem.dtype != np.float32 or problem.values["ln"] is None:
        return {}

    def flat(out):
        arrays = {name: a for name, a in out.items() if name != "cache"}
        arrays.update(("cache " + n, c) for n, c in named_cache(problem.kind, out["cache"]))
        return arrays

    return _errors(flat(want), flat(forward(ref, _wide_problem(problem))))


def assert_same(got, want, name, what, dtype, twin_error=0.0):
    """got (kernel) equals want (twin) within the dtype's tolerance, with the same dtype/shape."""
    if want is None:
        assert got is None, f"{name}: {what}: expected None, got {type(got).__name__}"
        return
    assert isinstance(got, np.ndarray), f"{name}: {what}: expected an ndarray, got {type(got)}"
    assert got.dtype == dtype, f"{name}: {what}: expected dtype {np.dtype(dtype)}, got {got.dtype}"
    assert got.shape == want.shape, f"{name}: {what}: expected shape {want.shape}, got {got.shape}"
    np.testing.assert_allclose(
        got, want, **tolerances(dtype, want, twin_error), err_msg=f"{name}: {what}"
    )


def snapshot(problem):
    return {k: v.copy() for k, v in problem.values.items() if isinstance(v, np.ndarray)}


def assert_unchanged(problem, before, who):
    for name, a in before.items():
        np.testing.assert_array_equal(
            problem.values[name], a, err_msg=f"{name}: modified in place by {who}"
        )


# ---------------------------------------------------------------------------------------------
# Twin equality: Cython kernel vs NumPy twin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_kernel_matches_twin(kind, data):
    check_kernel_matches_twin(kind, data.draw(problems(kind), label="problem"))


@pytest.mark.parametrize("kind", LN_KINDS)
@given(data=st.data())
def test_layer_norm_kernel_matches_twin(kind, data):
    """H >= 4: a norm over two or three values that differ by less than sqrt(eps) is
    ill-conditioned (float32 rounding grows 300-fold), which says nothing about the kernel."""
    problem = data.draw(problems(kind, min_H=4), label="problem")
    check_kernel_matches_twin(kind, with_layer_norm(problem, data.draw(st.integers(0, 2**32 - 1))))


def check_kernel_matches_twin(kind, problem):
    dtype = problem.dtype
    before = snapshot(problem)

    want = forward(ref, problem)
    got = forward(ops, problem)
    for name, a in want.items():  # the twin keeps the input dtype too
        for cname, c in named_cache(kind, a) if name == "cache" else [(name, a)]:
            assert c.dtype == dtype, f"{cname}: twin output dtype {c.dtype}, expected {dtype}"
    assert_unchanged(problem, before, f"{kind}_forward")
    fwd_error = twin_forward_error(problem, want)
    for name in FORWARD_OUTPUTS[kind]:
        if name != "cache":
            err = fwd_error.get(name, 0.0)
            assert_same(got[name], want[name], name, "kernel vs twin", dtype, err)
    if kind != "linear":
        got_cache = named_cache(kind, got["cache"])
        for (name, g), (_, w) in zip(got_cache, named_cache(kind, want["cache"])):
            err = fwd_error.get("cache " + name, 0.0)
            assert_same(g, w, f"cache {name}", "kernel vs twin", dtype, err)

    # Both backwards get the twin's cache, so a difference is the backward's own.
    want_grads = backward(ref, problem, want.get("cache"))
    got_grads = backward(ops, problem, want.get("cache"))
    assert_unchanged(problem, before, f"{kind}_backward")
    twin_error = twin_backward_error(problem, want.get("cache"), want_grads)
    for name, w in want_grads.items():
        assert w is None or w.dtype == dtype, f"{name}: twin dtype {w.dtype}, expected {dtype}"
        assert_same(got_grads[name], w, name, "kernel vs twin", dtype, twin_error.get(name, 0.0))
    if problem.bias and kind != "linear":
        for who, grads in (("twin", want_grads), ("kernel", got_grads)):
            assert not np.shares_memory(grads["db_ih"], grads["db_hh"]), (
                f"db_ih and db_hh must be separate arrays ({who})"
            )


@pytest.mark.parametrize("kind", ["lstm_cell", "gru_cell", "lstm_sequence", "gru_sequence"])
@pytest.mark.parametrize("H", [5, 8, 9, 15, 16, 50])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_rows_with_a_partial_last_vector_match_twin(kind, H, dtype):
    """The LSTM and GRU forward rows rewrite their gate blocks in place, run their vector loop up to
    the last multiple of 8 and then once more over the last 8 elements, from inputs saved before
    the first pass: H = 9, 15, 50 take that path; H = 5 (< 8), 8 and 16 (multiples) do not."""
    T = 3 if is_sequence(kind) else 1
    problem = Problem(kind, T, 5, 6, H, dtype, True, None, None, seed=H)
    want = forward(ref, problem)
    got = forward(ops, problem)
    for name in FORWARD_OUTPUTS[kind]:
        if name != "cache":
            assert_same(got[name], want[name], name, f"kernel vs twin, H = {H}", dtype)
    for (name, g), (_, w) in zip(named_cache(kind, got["cache"]), named_cache(kind, want["cache"])):
        assert_same(g, w, f"cache {name}", f"kernel vs twin, H = {H}", dtype)


# ---------------------------------------------------------------------------------------------
# Finite differences on the twins (float64)
# ---------------------------------------------------------------------------------------------

FD_EPS = 1e-6


def twin_loss(problem):
    """L = sum over the outputs of out * (its random upstream gradient)."""
    out = forward(ref, problem)
    return sum(
        float(np.sum(out[name] * problem.values["d" + name]))
        for name in FORWARD_OUTPUTS[problem.kind]
        if name != "cache"
    )


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_twin_backward_matches_finite_differences(kind, data):
    problem = data.draw(problems(kind, max_size=4, max_T=4, dtypes=(np.float64,)), label="problem")
    check_twin_backward_matches_finite_differences(kind, problem)


@pytest.mark.parametrize("kind", LN_KINDS)
@given(data=st.data())
def test_layer_norm_twin_backward_matches_finite_differences(kind, data):
    """H >= 4, as in the layer-norm kernel-vs-twin test: a norm over two units maps its inputs to
    about +-1 through a slope of up to 1/sqrt(eps), and central differences there miss the
    derivative by more than the tolerance (seen at H = 2: dx 1474.752 against 1474.736)."""
    problem = data.draw(
        problems(kind, max_size=5, max_T=4, dtypes=(np.float64,), min_H=4), label="problem"
    )
    problem = with_layer_norm(problem, data.draw(st.integers(0, 2**32 - 1)))
    check_twin_backward_matches_finite_differences(kind, problem)


def check_twin_backward_matches_finite_differences(kind, problem):
    grads = backward(ref, problem, forward(ref, problem).get("cache"))
    inputs = [(name, problem.values[name]) for name in GRAD_INPUTS[kind]]
    if problem.values["ln"] is not None:
        inputs += list(zip(("ln_gain", "ln_shift"), problem.values["ln"]))
    for name, a in inputs:
        if a is None:  # no bias: backward must say so
            assert grads["d" + name] is None, f"d{name}: expected None without bias"
            continue
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + FD_EPS
            up = twin_loss(problem)
            a[idx] = old - FD_EPS
            down = twin_loss(problem)
            a[idx] = old
            numeric[idx] = (up - down) / (2 * FD_EPS)
        np.testing.assert_allclose(
            grads["d" + name],
            numeric,
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"d{name}: twin backward vs finite differences ({problem})",
        )


def test_finite_differences_can_fail():
    """The finite-difference check above detects a wrong gradient (guards the harness)."""
    problem = Problem("gru_cell", 1, 2, 3, 2, np.float64, True, None, None, seed=0)
    grads = backward(ref, problem, forward(ref, problem)["cache"])
    a = problem.values["w_hh"]
    old = a[0, 0]
    a[0, 0] = old + FD_EPS
    up = twin_loss(problem)
    a[0, 0] = old - FD_EPS
    down = twin_loss(problem)
    a[0, 0] = old
    numeric = (up - down) / (2 * FD_EPS)
    np.testing.assert_allclose(grads["dw_hh"][0, 0], numeric, rtol=1e-5, atol=1e-6)
    assert abs(grads["dw_hh"][0, 0] * 1.01 - numeric) > 1e-6 * (1 + abs(numeric)), (
        "a 1% gradient error would go unnoticed"
    )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind", [k for k in KINDS if is_sequence(k)])
@given(data=st.data())
def test_sequence_backward_without_output_gradient(module, kind, data):
    """dys=None (only the final state was used) gives the gradients of dys = zeros: the kernel
    skips the per-step add, so this is the only check that it skips nothing else."""
    problem = data.draw(problems(kind, max_size=9, max_T=6), label="problem")
    cache = forward(ref, problem)["cache"]
    fname = kind + "_backward"
    zeros = np.zeros_like(problem.values["dys"])
    kw = kernel_kwargs(problem)
    want = getattr(ref, fname)(*problem.args(fname, dys=zeros, cache=cache), **kw)
    got = getattr(MODULES[module], fname)(*problem.args(fname, dys=None, cache=cache), **kw)
    for name, g, w in zip(GRAD_INPUTS[kind], got, want):
        assert_same(g, w, "d" + name, f"{module}, dys=None vs zeros", problem.dtype)


@pytest.mark.parametrize("kind", [k for k in KINDS if is_sequence(k)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_outputs_view_the_state_cache_only_without_lengths(kind, with_lengths):
    """Without lengths the compiled forward returns ys as hs[1:], a view of its cache (no copy of
    T*B*H elements); with lengths, padded steps output zeros while hs carries the state on, so
    ys must be its own array. Either way ys equals the twin's."""
    problem = Problem(
        kind,
        5,
        3,
        4,
        6,
        np.float32,
        True,
        np.array([5, 2, 4]) if with_lengths else None,
        "tanh" if kind.startswith("rnn") else None,
        0,
    )
    got, want = forward(ops, problem), forward(ref, problem)
    hs = got["cache"][0]
    assert np.shares_memory(got["ys"], hs) != with_lengths, (
        f"ys {'shares' if with_lengths else 'does not share'} memory with the cache's hs"
    )
    if not with_lengths:
        np.testing.assert_array_equal(got["ys"], hs[1:])
    assert got["ys"].flags.c_contiguous
    assert_same(got["ys"], want["ys"], "ys", "kernel vs twin", np.float32)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_twin_is_sequence_twin_of_length_one(kind):
    """A sequence of one step is one cell step: the cell and sequence twins agree."""
    cell = Problem(
        kind + "_cell",
        1,
        3,
        4,
        5,
        np.float64,
        True,
        None,
        "tanh" if kind == "rnn" else None,
        seed=7,
    )
    seq = Problem(kind + "_sequence", 1, 3, 4, 5, np.float64, True, None, cell.nonlinearity, seed=7)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        seq.values[name] = cell.values[name]
    seq.values["x"] = cell.values["x"][None]
    seq.values["h0"] = cell.values["h"]
    if kind == "lstm":
        seq.values["c0"] = cell.values["c"]
    c_out, s_out = forward(ref, cell), forward(ref, seq)
    np.testing.assert_allclose(
        s_out["ys"][0], c_out["h1"], rtol=1e-14, atol=1e-14, err_msg="ys[0]: sequence vs cell"
    )
    np.testing.assert_allclose(
        s_out["h_n"], c_out["h1"], rtol=1e-14, atol=1e-14, err_msg="h_n: sequence vs cell"
    )
    if kind == "lstm":
        np.testing.assert_allclose(
            s_out["c_n"], c_out["c1"], rtol=1e-14, atol=1e-14, err_msg="c_n: sequence vs cell"
        )


# ---------------------------------------------------------------------------------------------
# Stability: pre-activations of ±1e4
# ---------------------------------------------------------------------------------------------


def extreme_problem(kind, dtype, nonlinearity):
    """x[..., 0] = ±1e4 and w_ih[:, 0] = ±1 (other columns 0): every gate pre-activation is
    ±1e4 plus a small recurrent term.  c (LSTM) is ±1e4 too."""
    T, B, I, H = 3, 4, 2, 3
    problem = Problem(kind, T, B, I, H, dtype, True, None, nonlinearity, seed=3)
    v = problem.values
    rng = np.random.default_rng(4)
    v["x"][...] = 0
    v["x"][..., 0] = 1e4 * rng.choice([-1, 1], v["x"].shape[:-1])
    v["w_ih"][...] = 0
    v["w_ih"][:, 0] = rng.choice([-1, 1], v["w_ih"].shape[0])
    for name in ("c", "c0"):
        if name in v:
            v[name][...] = 1e4 * rng.choice([-1, 1], v[name].shape)
    return problem


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kind,nonlinearity",
    [
        ("rnn_cell", "tanh"),
        ("rnn_cell", "relu"),
        ("lstm_cell", None),
        ("gru_cell", None),
        ("rnn_sequence", "tanh"),
        ("rnn_sequence", "relu"),
        ("lstm_sequence", None),
        ("gru_sequence", None),
    ],
)
def test_extreme_preactivations_are_finite(module, dtype, kind, nonlinearity):
    mod = MODULES[module]
    problem = extreme_problem(kind, dtype, nonlinearity)
    with np.errstate(all="raise"):
        out = forward(mod, problem)
        grads = backward(mod, problem, out["cache"])
    for name, a in list(out.items()) + list(grads.items()):
        if name == "cache":
            for cname, c in named_cache(kind, a):
                assert np.isfinite(c).all(), f"cache {cname}: not finite at ±1e4 ({module})"
        else:
            assert np.isfinite(a).all(), f"{name}: not finite at ±1e4 ({module})"
    # The gates saturate: sigmoid gates are 0 or 1 and tanh gates -1 or 1 where the
    # pre-activation is ±1e4 (its sign is the sign of x[..., 0] * w_ih[:, 0]).
    if kind in ("lstm_cell", "gru_cell", "lstm_sequence", "gru_sequence"):
        v = problem.values
        H = problem.H
        sign = np.sign(v["x"][..., :1] * v["w_ih"][:, 0])  # (..., B, G*H)
        gates = out["cache"] if kind.endswith("cell") else out["cache"][-1]
        blocks = (
            [("i", 0, "sig"), ("f", 1, "sig"), ("g", 2, "tanh"), ("o", 3, "sig")]
            if kind.startswith("lstm")
            else [("r", 0, "sig"), ("z", 1, "sig")]
        )
        for gname, k, fn in blocks:
            s = sign[..., k * H : (k + 1) * H]
            expected = (s > 0).astype(dtype) if fn == "sig" else s.astype(dtype)
            np.testing.assert_allclose(
                gates[..., k * H : (k + 1) * H],
                expected,
                atol=1e-6,
                err_msg=f"gate {gname}: not saturated at ±1e4 ({module})",
            )


# ---------------------------------------------------------------------------------------------
# Accuracy of the float32 sigmoid and tanh, in ulps of the float64 truth
# ---------------------------------------------------------------------------------------------


def _ulps(y, exact):
    """|y - exact| in units of the float32 spacing at exact (float64)."""
    return np.abs(y.astype(np.float64) - exact) / np.spacing(np.abs(exact.astype(np.float32)))


def _dense_grid():
    near0 = np.geomspace(1e-30, 1.0, 20001)
    return np.concatenate(
        [np.linspace(-30, 30, 200001), near0, -near0, np.linspace(-87, 87, 40001)]
    ).astype(np.float32)


def test_float32_tanh_within_2_ulps():
    """The compiled RNN cell with w_ih = 1, w_hh = 0 and no bias computes tanh(x) exactly on its
    input, so its output is the kernel's tanh: within 2 ulps of the truth everywhere, including
    near 0 (where 1 - 2 / (1 + e**2x) would lose every digit) and in saturation."""
    x = _dense_grid()
    h = np.zeros((x.size, 1), np.float32)
    y, _ = ops.rnn_cell_forward(
        x[:, None], h, np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), None, None, "tanh"
    )
    err = _ulps(y[:, 0], np.tanh(x.astype(np.float64)))
    assert err.max() <= 2, f"tanh: {err.max():.2f} ulps at x = {x[err.argmax()]!r}"


def test_float32_sigmoid_within_3_ulps_and_limits():
    """The LSTM cell's input gate with w_ih = [1, 0, 0, 0] is sigmoid(x): within 3 ulps of the
    truth on [-87, 87]; 0 and 1 at the ends, NaN stays NaN."""
    x = _dense_grid()
    h = np.zeros((x.size, 1), np.float32)
    w = np.zeros((4, 1), np.float32)
    w[0, 0] = 1
    _, _, cache = ops.lstm_cell_forward(
        x[:, None], h, h, w, np.zeros((4, 1), np.float32), None, None
    )
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    err = _ulps(cache[:, 0], exact)
    assert err.max() <= 3, f"sigmoid: {err.max():.2f} ulps at x = {x[err.argmax()]!r}"
    ends = np.array([-np.inf, -1e4, 1e4, np.inf, np.nan, -100, -88.5, 100], np.float32)
    z = np.zeros((ends.size, 1), np.float32)
    _, _, cache = ops.lstm_cell_forward(
        ends[:, None], z, z, w, np.zeros((4, 1), np.float32), None, None
    )
    np.testing.assert_array_equal(cache[:5, 0], [0, 0, 1, 1, np.nan])
    # below -87 the result may leave the true (subnormal) value, by less than 1e-38
    np.testing.assert_allclose(
        cache[5:, 0], 1 / (1 + np.exp(-ends[5:].astype(np.float64))), rtol=0, atol=1e-38
    )


# ---------------------------------------------------------------------------------------------
# Bad arguments: ValueError naming what was expected and what was got
# ---------------------------------------------------------------------------------------------

BAD_T, BAD_B, BAD_I, BAD_H = 6, 3, 4, 5
DEFINING = {"x", "h", "h0", "w"}  # these arguments fix the sizes the others must match


def valid_call(fname):
    """Valid positional arguments for fname (float64, biases, lengths, tanh) and the shapes."""
    kind = fname.rsplit("_", 1)[0]
    lengths = np.array([BAD_T, 1, 3]) if is_sequence(kind) else None
    problem = Problem(
        kind,
        BAD_T,
        BAD_B,
        BAD_I,
        BAD_H,
        np.float64,
        True,
        lengths,
        "tanh" if kind.startswith("rnn") else None,
        seed=11,
    )
    if fname.endswith("_backward"):
        problem.values["cache"] = forward(ref, problem).get("cache")
    return problem, shapes(kind, BAD_T, BAD_B, BAD_I, BAD_H)


def name_re(name):
    return r"(?<![\w])" + re.escape(name) + r"(?![\w])"


def shape_re(shape):
    return re.escape(str(tuple(shape)))


def noncontiguous(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    out = big[..., ::2]
    out[...] = a
    assert not out.flags.c_contiguous
    return out


def array_mutations(name, a, expected_shape):
    """(mutation id, bad value, regex the message must match, accepted exceptions)."""
    n = name_re(name)
    if name == "x":
        bad = a[..., None]
        yield "shape", bad, f"{n}.*got.*{shape_re(bad.shape)}", ValueError
    elif name in ("h", "h0"):
        bad = np.zeros((a.shape[0] + 1,) + a.shape[1:], a.dtype)
        yield "shape", bad, f"{n}.*got.*{shape_re(bad.shape)}", ValueError
    elif name == "w":
        bad = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype)
        yield "shape", bad, f"{n}.*got.*{shape_re(bad.shape)}", ValueError
    else:
        bad = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype)
        yield (
            "shape",
            bad,
            f"{n}.*{shape_re(expected_shape)}.*got.*{shape_re(bad.shape)}",
            ValueError,
        )
    if name == "x":  # then every other argument has the wrong dtype; one is named
        yield "dtype", a.astype(np.float32), r"float32.*got.*float64", ValueError
        yield "int", a.astype(np.int64), f"{n}.*float.*got.*int64", ValueError
    else:
        yield "dtype", a.astype(np.float32), f"{n}.*float64.*got.*float32", ValueError
        yield "int", a.astype(np.int64), f"{n}.*float64.*got.*int64", ValueError
    yield "noncontig", noncontiguous(a), f"{n}.*contiguous.*got", ValueError
    if name not in BIASES and name != "dys":  # dys=None is valid: no output gradient
        yield "none", None, n, (ValueError, TypeError)


def mutations(fname):
    """Every bad-argument case of one kernel: (arg, mutation, override dict, regex, exc)."""
    problem, sh = valid_call(fname)
    kind = problem.kind
    for name in SIGNATURES[fname]:
        value = problem.values[name]
        if name == "cache" and is_sequence(kind):
            cache = value
            cnames = SEQ_CACHE[kind]
            for i, cname in enumerate(cnames):
                for mid, bad, rx, exc in array_mutations(cname, cache[i], sh[cname]):
                    new = cache[:i] + (bad,) + cache[i + 1 :]
                    yield cname, mid, {"cache": new}, rx, exc
            yield "cache", "length", {"cache": cache[:-1]}, r"cache.*got", ValueError
            yield "cache", "none", {"cache": None}, r"cache", (ValueError, TypeError)
        elif isinstance(value, np.ndarray) and name != "lengths":
            for mid, bad, rx, exc in array_mutations(name, value, sh[name]):
                yield name, mid, {name: bad}, rx, exc
        if name in ("b_ih", "b_hh"):
            yield name, "half_none", {name: None}, r"b_ih.*b_hh.*got", ValueError
    if "lengths" in SIGNATURES[fname]:
        lengths = problem.values["lengths"]
        T, B = BAD_T, BAD_B
        in_range = rf"lengths.*\b1\b.*\b{T}\b.*got"
        yield (
            "lengths",
            "zero",
            {"lengths": np.where(lengths == 1, 0, lengths)},
            in_range + r".*\b0\b",
            ValueError,
        )
        yield "lengths", "negative", {"lengths": -lengths}, in_range + r".*-", ValueError
        yield (
            "lengths",
            "too_long",
            {"lengths": np.where(lengths == T, T + 1, lengths)},
            in_range + rf".*\b{T + 1}\b",
            ValueError,
        )
        yield (
            "lengths",
            "shape",
            {"lengths": np.ones(B + 1, np.int64)},
            rf"lengths.*{shape_re((B,))}.*got.*{shape_re((B + 1,))}",
            ValueError,
        )
        yield (
            "lengths",
            "2d",
            {"lengths": lengths[:, None]},
            rf"lengths.*{shape_re((B,))}.*got.*{shape_re((B, 1))}",
            ValueError,
        )
        yield (
            "lengths",
            "float",
            {"lengths": lengths.astype(np.float64)},
            r"lengths.*int.*got.*float64",
            ValueError,
        )
    if "nonlinearity" in SIGNATURES[fname]:
        yield (
            "nonlinearity",
            "sigmoid",
            {"nonlinearity": "sigmoid"},
            r"nonlinearity.*tanh.*relu.*got.*sigmoid",
            ValueError,
        )
        yield (
            "nonlinearity",
            "none",
            {"nonlinearity": None},
            r"nonlinearity.*tanh.*relu.*got",
            (ValueError, TypeError),
        )


BAD_CASES = [
    pytest.param(fname, arg, mid, id=f"{fname}-{arg}-{mid}")
    for fname in SIGNATURES
    for arg, mid, _, _, _ in mutations(fname)
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("fname", SIGNATURES)
def test_valid_call_used_by_bad_argument_tests_succeeds(module, fname):
    """The baseline of the bad-argument tests is valid, so each raise is the mutation's."""
    problem, _ = valid_call(fname)
    out = getattr(MODULES[module], fname)(*problem.args(fname))
    assert out is not None


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("fname,arg,mutation", BAD_CASES)
def test_bad_argument_raises_value_error(module, fname, arg, mutation):
    problem, _ = valid_call(fname)
    [(override, pattern, exc)] = [
        (o, rx, e) for a, m, o, rx, e in mutations(fname) if (a, m) == (arg, mutation)
    ]
    with pytest.raises(exc, match=re.compile(pattern, re.IGNORECASE | re.DOTALL)):
        getattr(MODULES[module], fname)(*problem.args(fname, **override))


def bad_mask_cases():
    """(fname, which, masks-from-good-masks, message pattern): a wrong shape or dtype of each
    mask, a list or a 2-tuple for the tuple, and zoneout the cell does not have."""
    for fname in SIGNATURES:
        kind = fname.rsplit("_", 1)[0]
        if kind == "linear":
            continue
        family = kind.split("_")[0]
        cases = {
            "drop_h shape": (lambda m: (m[0][:, :-1].copy(),) + m[1:], r"drop_h.*shape"),
            "drop_h dtype": (lambda m: (m[0].astype(np.float32),) + m[1:], r"drop_h.*float"),
            "not a tuple": (lambda m: list(m), r"masks must be None or a tuple"),
            "two entries": (lambda m: m[:2], r"masks must be None or a tuple"),
        }
        if family != "lstm":  # zoneout of a cell state this cell does not have
            cases["zone_c given"] = (lambda m: m[:2] + (m[1].copy(),), r"zone_c must be None")
        cases["zone_h shape"] = (
            lambda m: (m[0], m[1][..., :-1].copy(), m[2]),
            r"zone_h.*shape",
        )
        for which, (change, pattern) in cases.items():
            yield pytest.param(fname, change, pattern, id=f"{fname}-{which}")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("fname,change,pattern", list(bad_mask_cases()))
def test_bad_masks_raise_value_error(module, fname, change, pattern):
    problem, _ = valid_call(fname)
    kind = fname.rsplit("_", 1)[0]
    masks = draw_masks(kind, np.random.default_rng(0), BAD_T, BAD_B, BAD_H, np.float64)
    if fname.endswith("_backward"):  # the cache of a forward with these masks (the RNN's h~)
        problem.values["masks"] = masks
        problem.values["cache"] = forward(ref, problem).get("cache")
    good = getattr(MODULES[module], fname)(*problem.args(fname), masks=masks)
    assert good is not None
    with pytest.raises(ValueError, match=pattern):
        getattr(MODULES[module], fname)(*problem.args(fname), masks=change(masks))


def zero_size_cases():
    for fname in SIGNATURES:
        kind = fname.rsplit("_", 1)[0]
        dims = ("T", "B", "I", "H") if is_sequence(kind) else ("B", "I", "H")
        for dim in dims:
            yield pytest.param(fname, dim, id=f"{fname}-{dim}=0")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("fname,dim", list(zero_size_cases()))
def test_zero_size_dimension_is_rejected(module, fname, dim):
    """All arguments consistent, but one of T, B, I, H is 0: a ValueError showing a 0 size."""
    kind = fname.rsplit("_", 1)[0]
    sizes = dict(T=2, B=3, I=4, H=5)
    sizes[dim] = 0
    sh = shapes(kind, **sizes)
    values = {name: np.zeros(s) for name, s in sh.items()}
    if is_sequence(kind):
        values["cache"] = tuple(values[n] for n in SEQ_CACHE[kind])
    values.update(lengths=None, has_bias=True, nonlinearity="tanh")
    args = [values[name] for name in SIGNATURES[fname]]
    with pytest.raises(ValueError, match=r"got.*\b0\b"):
        getattr(MODULES[module], fname)(*args)


# ---------------------------------------------------------------------------------------------
# sgd_update: the optimizer's in-place step
# ---------------------------------------------------------------------------------------------

SGD_SETTINGS = [  # (momentum, dampening, weight_decay, nesterov)
    (0.0, 0.0, 0.0, False),
    (0.0, 0.0, 0.1, False),
    (0.9, 0.0, 0.0, False),
    (0.9, 0.3, 0.0, False),
    (0.9, 0.3, 0.05, False),
    (0.8, 0.0, 0.0, True),
    (0.8, 0.0, 0.1, True),
]


def _sgd_by_hand(p, g, buf, lr, momentum, dampening, wd, nesterov, first):
    """The rule in float64, element by element in Python: the oracle of both modules."""
    p, g = p.astype(np.float64).ravel(), g.astype(np.float64).ravel()
    b = None if buf is None else buf.astype(np.float64).ravel()
    for j in range(p.size):
        gj = g[j] + wd * p[j]
        if b is not None:
            b[j] = gj if first else momentum * b[j] + (1 - dampening) * gj
            gj = gj + momentum * b[j] if nesterov else b[j]
        p[j] = p[j] - lr * gj
    return p, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("setting", SGD_SETTINGS)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 50), (2, 3, 9)])
def test_sgd_update_matches_twin_and_the_rule(dtype, setting, shape):
    momentum, dampening, wd, nesterov = setting
    rng = np.random.default_rng(len(shape) * 7 + int(momentum * 10))
    p0 = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    b0 = rng.standard_normal(shape).astype(dtype)
    tol = 8 * np.finfo(dtype).eps
    for first in [True, False] if momentum else [False]:
        results = {}
        for name, mod in MODULES.items():
            p = p0.copy()
            b = b0.copy() if momentum else None
            assert mod.sgd_update(p, g, b, 0.05, momentum, dampening, wd, nesterov, first) is None
            results[name] = (p, b)
        want_p, want_b = _sgd_by_hand(
            p0, g, b0 if momentum else None, 0.05, momentum, dampening, wd, nesterov, first
        )
        for name, (p, b) in results.items():
            np.testing.assert_allclose(
                p.ravel(), want_p, rtol=tol, atol=tol, err_msg=f"{name}: p, first={first}"
            )
            if momentum:
                np.testing.assert_allclose(
                    b.ravel(), want_b, rtol=tol, atol=tol, err_msg=f"{name}: buf, first={first}"
                )
        # compiled and twin: the same arithmetic up to FMA contraction (an ulp or two)
        np.testing.assert_allclose(results["cython"][0], results["twin"][0], rtol=tol, atol=tol)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
def test_sgd_update_first_step_sets_the_buffer_and_leaves_g(module):
    rng = np.random.default_rng(3)
    p = rng.standard_normal(10).astype(np.float32)
    g = rng.standard_normal(10).astype(np.float32)
    g0, p0 = g.copy(), p.copy()
    buf = np.full(10, np.nan, np.float32)  # "holds nothing yet": never read
    module.sgd_update(p, g, buf, 0.1, 0.9, 0.5, 0.0, False, True)
    np.testing.assert_array_equal(buf, g0)  # no dampening on the first step (PyTorch)
    np.testing.assert_array_equal(g, g0)
    assert np.isfinite(p).all() and not np.array_equal(p, p0)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
def test_sgd_update_rejects_a_buffer_overlapping_p(module):
    big = np.zeros(20, np.float32)
    p, buf = big[:12].reshape(4, 3), big[8:].reshape(4, 3)  # share elements 8..11
    with pytest.raises(ValueError, match="buf must not share memory with p"):
        module.sgd_update(p, np.ones((4, 3), np.float32), buf, 0.1, 0.9, 0.0, 0.0, False, False)


# ---------------------------------------------------------------------------------------------
# adam_update: Adam's (AdamW's) in-place step
# ---------------------------------------------------------------------------------------------

ADAM_SETTINGS = [  # (weight_decay, decoupled, amsgrad)
    (0.0, False, False),
    (0.1, False, False),
    (0.1, True, False),
    (0.0, False, True),
    (0.05, False, True),
    (0.05, True, True),
]


def _adam_by_hand(p, g, m, v, vmax, lr, b1, b2, eps, wd, t, decoupled):
    """The rule in float64, element by element in Python: the oracle of both modules."""
    p, g, m, v = (a.astype(np.float64).ravel() for a in (p, g, m, v))
    vmax = None if vmax is None else vmax.astype(np.float64).ravel()
    for j in range(p.size):
        gj = g[j]
        if wd and decoupled:
            p[j] *= 1 - lr * wd
        elif wd:
            gj = gj + wd * p[j]
        m[j] = b1 * m[j] + (1 - b1) * gj
        v[j] = b2 * v[j] + (1 - b2) * gj * gj
        vv = v[j]
        if vmax is not None:
            vmax[j] = max(vmax[j], v[j])
            vv = vmax[j]
        p[j] -= lr / (1 - b1**t) * m[j] / (np.sqrt(vv) / np.sqrt(1 - b2**t) + eps)
    return p, m, v, vmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("setting", ADAM_SETTINGS)
@pytest.mark.parametrize("shape,step", [((), 1), ((7,), 1), ((3, 50), 4), ((2, 3, 9), 30)])
def test_adam_update_matches_twin_and_the_rule(dtype, setting, shape, step):
    wd, decoupled, amsgrad = setting
    rng = np.random.default_rng(len(shape) * 11 + step)
    p0 = np.array(rng.standard_normal(shape), dtype)
    g = np.array(rng.standard_normal(shape), dtype)
    m0 = np.array(rng.standard_normal(shape) * 0.1, dtype)
    v0 = np.array(rng.random(shape) * 0.01, dtype)
    x0 = np.array(rng.random(shape) * 0.02, dtype) if amsgrad else None
    hyper = (0.01, 0.9, 0.999, 1e-8, wd, step, decoupled)
    want = _adam_by_hand(p0, g, m0, v0, x0, *hyper)
    tol = 16 * np.finfo(dtype).eps
    got = {}
    for name, mod in MODULES.items():
        arrays = [a.copy() for a in (p0, m0, v0)] + [None if x0 is None else x0.copy()]
        p, m, v, x = arrays
        assert mod.adam_update(p, g, m, v, x, *hyper) is None
        got[name] = arrays
        for what, a, w in zip("pmvx", arrays, want):
            if a is not None:
                scale = max(1.0, float(np.abs(w).max()))
                np.testing.assert_allclose(
                    a.ravel(), w, rtol=tol, atol=tol * scale, err_msg=f"{name}: {what}"
                )
    np.testing.assert_allclose(got["cython"][0], got["twin"][0], rtol=tol, atol=tol)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
def test_adam_update_keeps_nan_and_takes_the_max(module):
    p = np.zeros(3, np.float32)
    g = np.array([np.nan, 1.0, 1.0], np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    vmax = np.array([0.0, 5.0, np.nan], np.float32)
    module.adam_update(p, g, m, v, vmax, 0.1, 0.9, 0.999, 1e-8, 0.0, 1, False)
    assert np.isnan(p[0]) and np.isnan(vmax[0])  # a NaN gradient reaches p
    assert vmax[1] == 5.0 and np.isnan(vmax[2])  # max(5, v) = 5; NaN stays, as np.maximum
    assert np.isfinite(p[1]) and p[1] < 0


# ---------------------------------------------------------------------------------------------
# Both update kernels: bad arrays are refused before anything is written
# ---------------------------------------------------------------------------------------------

UPDATE_ARRAYS = {
    "sgd_update": ("p", "g", "buf"),
    "adam_update": ("p", "g", "m", "v", "vmax"),
    "adagrad_update": ("p", "g", "acc"),
    "rmsprop_update": ("p", "g", "v", "grad_avg", "buf"),
}


def _update(module, kernel, a, step=1):
    if kernel == "sgd_update":
        return module.sgd_update(a["p"], a["g"], a["buf"], 0.1, 0.9, 0.0, 0.0, False, False)
    if kernel == "adagrad_update":
        return module.adagrad_update(a["p"], a["g"], a["acc"], 0.1, 0.0, 0.0, 1e-10, step)
    if kernel == "rmsprop_update":
        return module.rmsprop_update(
            a["p"], a["g"], a["v"], a["grad_avg"], a["buf"], 0.1, 0.9, 1e-8, 0.0, 0.9
        )
    return module.adam_update(
        a["p"], a["g"], a["m"], a["v"], a["vmax"], 0.1, 0.9, 0.999, 1e-8, 0.0, step, False
    )


_S, _A = "sgd_update", "adam_update"
_F32, _F64 = np.float32, np.float64
UPDATE_BAD = [  # (kernel, argument, replacement, message); a string names the array to alias
    (_S, "p", [0.0] * 12, "p must be a numpy.ndarray, got list"),
    (_S, "p", np.zeros((4, 3), np.int64), "p must have dtype float32 or float64, got int64"),
    (_S, "p", np.zeros((3, 4), _F32).T, "p must be C-contiguous"),
    (_S, "g", np.ones((3, 4), _F32), "g must have shape (4, 3) (that of p), got (3, 4)"),
    (_S, "g", np.ones((4, 3), _F64), "g must have dtype float32 (the dtype of p), got float64"),
    (_S, "g", np.ones((3, 4), _F32).T, "g must be C-contiguous"),
    (_S, "g", "p", "g must not share memory with p"),
    (_S, "buf", np.zeros(12, _F32), "buf must have shape (4, 3) (that of p), got (12,)"),
    (
        _S,
        "buf",
        np.zeros((4, 3), _F64),
        "buf must have dtype float32 (the dtype of p), got float64",
    ),
    (_S, "buf", "g", "buf must not share memory with g"),
    (_A, "p", [0.0] * 12, "p must be a numpy.ndarray, got list"),
    (_A, "p", np.zeros((4, 3), np.int32), "p must have dtype float32 or float64, got int32"),
    (_A, "g", np.zeros((4, 3), _F64), "g must have dtype float32 (the dtype of p), got float64"),
    (_A, "m", np.zeros((3, 4), _F32), "m must have shape (4, 3) (that of p), got (3, 4)"),
    (_A, "v", np.zeros((3, 4), _F32).T, "v must be C-contiguous"),
    (_A, "vmax", np.zeros(12, _F32), "vmax must have shape (4, 3) (that of p), got (12,)"),
    (_A, "m", "p", "m must not share memory with p"),
    (_A, "v", "m", "v must not share memory with m"),
    (_A, "vmax", "g", "vmax must not share memory with g"),
    (
        "adagrad_update",
        "acc",
        np.zeros((4, 3), _F64),
        "acc must have dtype float32 (the dtype of p), got float64",
    ),
    ("adagrad_update", "acc", "g", "acc must not share memory with g"),
    (
        "rmsprop_update",
        "grad_avg",
        np.zeros((4,), _F32),
        "grad_avg must have shape (4, 3) (that of p), got (4,)",
    ),
    ("rmsprop_update", "buf", np.zeros((3, 4), _F32).T, "buf must be C-contiguous"),
    ("rmsprop_update", "buf", "v", "buf must not share memory with v"),
]


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
@pytest.mark.parametrize("kernel,arg,bad,message", UPDATE_BAD)
def test_update_kernels_reject_bad_arrays(module, kernel, arg, bad, message):
    a = {k: np.zeros((4, 3), np.float32) for k in UPDATE_ARRAYS[kernel]}
    a[arg] = a[bad] if isinstance(bad, str) else bad
    before = {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=re.escape(message)):
        _update(module, kernel, a)
    for k, v in before.items():  # checked before any write
        np.testing.assert_array_equal(a[k], v, err_msg=k)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
@pytest.mark.parametrize(
    "kernel,arg", [(k, n) for k, names in UPDATE_ARRAYS.items() for n in names if n != "g"]
)
def test_update_kernels_reject_read_only_state(module, kernel, arg):
    a = {k: np.zeros((4, 3), np.float32) for k in UPDATE_ARRAYS[kernel]}
    a[arg].flags.writeable = False
    with pytest.raises(ValueError, match=f"{arg} must be writeable, got a read-only array"):
        _update(module, kernel, a)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
@pytest.mark.parametrize("kernel", ["adam_update", "adagrad_update"])
def test_update_kernels_reject_step_zero(module, kernel):
    a = {k: np.zeros((4, 3), np.float32) for k in UPDATE_ARRAYS[kernel]}
    with pytest.raises(ValueError, match="step must be >= 1, got 0"):
        _update(module, kernel, a, step=0)


# ---------------------------------------------------------------------------------------------
# adagrad_update and rmsprop_update against their rules
# ---------------------------------------------------------------------------------------------


def _adagrad_by_hand(p, g, acc, lr, lr_decay, wd, eps, t):
    p, g, acc = (a.astype(np.float64).ravel() for a in (p, g, acc))
    clr = lr / (1 + (t - 1) * lr_decay)
    for j in range(p.size):
        gj = g[j] + wd * p[j]
        acc[j] += gj * gj
        p[j] -= clr * gj / (np.sqrt(acc[j]) + eps)
    return p, acc


def _rmsprop_by_hand(p, g, v, ga, buf, lr, alpha, eps, wd, momentum):
    p, g, v = (a.astype(np.float64).ravel() for a in (p, g, v))
    ga = None if ga is None else ga.astype(np.float64).ravel()
    buf = None if buf is None else buf.astype(np.float64).ravel()
    for j in range(p.size):
        gj = g[j] + wd * p[j]
        v[j] = alpha * v[j] + (1 - alpha) * gj * gj
        vt = v[j]
        if ga is not None:
            ga[j] = alpha * ga[j] + (1 - alpha) * gj
            vt = vt - ga[j] * ga[j]
        u = gj / (np.sqrt(vt) + eps)
        if buf is not None:
            buf[j] = momentum * buf[j] + u
            u = buf[j]
        p[j] -= lr * u
    return p, v, ga, buf


def _close(got, want, dtype, what):
    tol = 16 * np.finfo(dtype).eps
    for name, a, w in zip(what, got, want):
        if a is not None:
            scale = max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(a.ravel(), w, rtol=tol, atol=tol * scale, err_msg=name)


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd,lr_decay,step", [(0.0, 0.0, 1), (0.1, 0.05, 4)])
@pytest.mark.parametrize("shape", [(), (3, 50)])
def test_adagrad_update_matches_the_rule(module, dtype, wd, lr_decay, step, shape):
    rng = np.random.default_rng(step + len(shape))
    p0, g = (np.array(rng.standard_normal(shape), dtype) for _ in range(2))
    acc0 = np.array(rng.random(shape) + 0.1, dtype)
    want = _adagrad_by_hand(p0, g, acc0, 0.1, lr_decay, wd, 1e-10, step)
    p, acc = p0.copy(), acc0.copy()
    assert module.adagrad_update(p, g, acc, 0.1, lr_decay, wd, 1e-10, step) is None
    _close((p, acc), want, dtype, ("p", "acc"))


@pytest.mark.parametrize("module", list(MODULES.values()), ids=list(MODULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "wd,centered,momentum",
    [(0.0, False, 0.0), (0.1, False, 0.9), (0.0, True, 0.0), (0.05, True, 0.5)],
)
@pytest.mark.parametrize("shape", [(), (3, 50)])
def test_rmsprop_update_matches_the_rule(module, dtype, wd, centered, momentum, shape):
    rng = np.random.default_rng(len(shape) + int(centered))
    p0, g, b0 = (np.array(rng.standard_normal(shape), dtype) for _ in range(3))
    v0 = np.array(rng.random(shape) + 0.5, dtype)
    ga0 = np.array(rng.standard_normal(shape) * 0.1, dtype) if centered else None
    b0 = b0 if momentum else None
    want = _rmsprop_by_hand(p0, g, v0, ga0, b0, 0.01, 0.9, 1e-8, wd, momentum)
    got = [None if a is None else a.copy() for a in (p0, v0, ga0, b0)]
    assert (
        module.rmsprop_update(got[0], g, got[1], got[2], got[3], 0.01, 0.9, 1e-8, wd, momentum)
        is None
    )
    _close(got, want, dtype, ("p", "v", "grad_avg", "buf"))


# ---------------------------------------------------------------------------------------------
# Layer norm: bad ln arguments, and the cache layout it adds
# ---------------------------------------------------------------------------------------------


LN_TUPLE = "ln must be None or a tuple (gain, shift) of two arrays, "


def _ln_bad_cases():
    for kind in LN_KINDS:
        for bad, message in (
            (lambda g, s: [g, s], LN_TUPLE + "got list"),
            (lambda g, s: (g,), LN_TUPLE + "got a tuple of length 1"),
            (lambda g, s: (g[:-1], s), "ln gain must have shape"),
            (lambda g, s: (g, s.astype(np.float32)), "ln shift"),
            (lambda g, s: (g, s.reshape(2, -1)), "ln shift must have shape"),
        ):
            yield kind, bad, message


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind,bad,message", list(_ln_bad_cases()))
def test_bad_layer_norm_argument_raises_value_error(module, kind, bad, message):
    problem = with_layer_norm(Problem(kind, 3, 2, 3, 4, np.float64, True, None, None, 0), 0)
    cache = forward(ref, problem)["cache"]
    gain, shift = problem.values["ln"]
    for fname, args in (
        (kind + "_forward", problem.args(kind + "_forward")),
        (kind + "_backward", problem.args(kind + "_backward", cache=cache)),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            getattr(MODULES[module], fname)(*args, ln=bad(gain, shift))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("kind", LN_KINDS)
def test_layer_norm_cache_layout_and_missing_cache(module, kind):
    """With ln the cache gains the norms' cache lnc, (B, nb*H + nb) per step: xhat of every
    norm (each block zero-mean, unit-variance up to eps), then 1/std of every norm; a backward
    given ln but the plain cache refuses it."""
    T, B, H = 3, 2, 6
    problem = with_layer_norm(Problem(kind, T, B, 3, H, np.float64, True, None, None, 1), 1)
    cache = forward(MODULES[module], problem)["cache"]
    nb = LN_BLOCKS[kind.split("_")[0]]
    lnc = cache[-1].reshape(-1, nb * H + nb)
    xh = lnc[:, : nb * H].reshape(-1, nb, H)
    np.testing.assert_allclose(xh.mean(axis=2), 0, atol=1e-12)
    # mean(xhat^2) = var / (var + eps) = 1 - eps / std^2
    np.testing.assert_allclose((xh**2).mean(axis=2) + 1e-5 * lnc[:, nb * H :] ** 2, 1, rtol=1e-12)
    plain = cache[0] if not is_sequence(kind) else cache[:-1]
    fname = kind + "_backward"
    with pytest.raises(ValueError, match="cache must be a tuple"):
        getattr(MODULES[module], fname)(*problem.args(fname, cache=plain), **kernel_kwargs(problem))
