"""The bad-input matrix: every layer and op a user calls, fed hostile inputs, on both kernel
backends. Each case runs in a forked child, so a crash (a signal) fails that case and not the
run. A case passes when each backend either gives a result or raises a clear exception
(TypeError, ValueError, IndexError or RuntimeError), and the two backends agree: both raise,
or both give the same numbers (NaN in the same places).

Inputs reach the code two ways: through ``Tensor(...)`` (which converts what it can) and by
assigning ``tensor.data`` directly (a hostile array reaching the kernels as it is).
The reduced form (default, CI) runs every 6th case; MINIGRAD_ADVERSARIAL=full runs them all.
"""

import itertools
import multiprocessing as mp
import os
import traceback

import numpy as np
import pytest

import minigrad as mg
from minigrad import functional as F
from minigrad import kernels, nn

from .conftest import FULL

CLEAR = (TypeError, ValueError, IndexError, RuntimeError)
BACKENDS = ["cython", "numpy"]


# ----- the inputs ---------------------------------------------------------------------------
def _variants(shape):
    """name -> function making the bad (or good) array from a float32 base of `shape`."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(shape).astype(np.float32)
    wide = np.concatenate([base, base], axis=-1)

    def nan(a):
        a = a.copy()
        a.flat[0] = np.nan
        return a

    def inf(a, s=1):
        a = a.copy()
        a.flat[-1] = s * np.inf
        return a

    def read_only(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    def zero(axis):
        s = list(shape)
        s[axis] = 0
        return np.zeros(s, np.float32)

    out = {
        "float32": lambda: base.copy(),
        "float64": lambda: base.astype(np.float64),
        "float16": lambda: base.astype(np.float16),
        "complex64": lambda: base.astype(np.complex64),
        "object": lambda: base.astype(object),
        "bool": lambda: base > 0,
        "int64": lambda: base.astype(np.int64),
        "big-endian": lambda: base.astype(">f4"),
        "strided": lambda: wide[..., ::2],
        "fortran": lambda: np.asfortranarray(base),
        "reversed": lambda: base[::-1],
        "unaligned": lambda: _unaligned(base),
        "read-only": lambda: read_only(base),
        "nan": lambda: nan(base),
        "inf": lambda: inf(base),
        "-inf": lambda: inf(base, -1),
        "huge": lambda: base * np.float32(1e30),
        "zero-first": lambda: zero(0),
        "zero-last": lambda: zero(-1),
        "wrong-last": lambda: np.ones(shape[:-1] + (shape[-1] + 1,), np.float32),
        "extra-dim": lambda: base[None],
        "scalar": lambda: np.float32(1.0),
    }
    if len(shape) > 2:
        out["zero-middle"] = lambda: zero(1)
    return out


def _unaligned(base):
    raw = np.empty(base.nbytes + 1, np.uint8)
    a = raw[1:].view(np.float32).reshape(base.shape)
    a[...] = base
    return a


# ----- what is called -----------------------------------------------------------------------
def _module_case(make, shape, state=None):
    def run(x_arr, route):
        mg.manual_seed(0)
        m = make()
        x = _as_input(x_arr, route)
        out = m(x) if state is None else m(x, state())
        outs = out if isinstance(out, tuple) else (out,)
        flat = []
        for o in outs:
            flat.extend(o if isinstance(o, tuple) else (o,))
        total = None
        for o in flat:
            s = o.sum()
            total = s if total is None else total + s
        total.backward()
        return [o.data for o in flat] + [p.grad for p in m.parameters()]

    return run, shape


def _as_input(arr, route):
    if route == "tensor":
        return mg.Tensor(arr)
    t = mg.Tensor(np.zeros(1, np.float32))
    t.data = arr
    return t


def _fn_case(fn, shape):
    def run(x_arr, route):
        x = _as_input(x_arr, route)
        if x.data.dtype.kind == "f":
            x.requires_grad_(True)
        y = fn(x)
        if x.requires_grad:
            y.sum().backward()
        return [y.data, x.grad]

    return run, shape


def _optim_case(name):
    def run(g_arr, route):
        p = mg.Tensor(np.ones((3, 4), np.float32), requires_grad=True)
        opt = getattr(mg.optim, name)([p], lr=0.1)
        p.grad = g_arr if route == "data" else mg.Tensor(g_arr).data
        opt.step()
        return [p.data]

    return run, (3, 4)


def _lengths_case(mode, lengths):
    def run(_x, _route):
        mg.manual_seed(0)
        m = getattr(nn, mode)(4, 3)
        x = mg.Tensor(np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32))
        out, _ = m(x, lengths=lengths)
        out.sum().backward()
        return [out.data] + [p.grad for p in m.parameters()]

    return run, (1,)


def _state_case(mode, state):
    def run(_x, _route):
        mg.manual_seed(0)
        m = getattr(nn, mode)(4, 3)
        x = mg.Tensor(np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32))
        out, _ = m(x, state)
        out.sum().backward()
        return [out.data] + [p.grad for p in m.parameters()]

    return run, (1,)


def _cases():
    targets = {
        "Linear": _module_case(lambda: nn.Linear(4, 3), (2, 4)),
        "RNN": _module_case(lambda: nn.RNN(4, 3), (3, 2, 4)),
        "RNN-relu-2layer-bi": _module_case(
            lambda: nn.RNN(4, 3, num_layers=2, nonlinearity="relu", bidirectional=True), (3, 2, 4)
        ),
        "LSTM": _module_case(lambda: nn.LSTM(4, 3), (3, 2, 4)),
        "GRU": _module_case(lambda: nn.GRU(4, 3, batch_first=True), (2, 3, 4)),
        "LSTM-step": _module_case(lambda: nn.LSTM(4, 3, impl="step"), (3, 2, 4)),
        "LSTM-composed": _module_case(lambda: nn.LSTM(4, 3, impl="composed"), (3, 2, 4)),
        "RNNCell": _module_case(lambda: nn.RNNCell(4, 3), (2, 4)),
        "LSTMCell": _module_case(lambda: nn.LSTMCell(4, 3), (2, 4)),
        "GRUCell": _module_case(lambda: nn.GRUCell(4, 3), (2, 4)),
        "tanh": _fn_case(F.tanh, (2, 4)),
        "log_softmax": _fn_case(lambda x: F.log_softmax(x, -1), (2, 4)),
        "cross_entropy": _fn_case(lambda x: F.cross_entropy(x, np.array([0, 3])), (2, 4)),
        "matmul": _fn_case(lambda x: x @ mg.Tensor(np.ones((4, 2), np.float32)), (2, 4)),
        "SGD": _optim_case("SGD"),
        "Adam": _optim_case("Adam"),
    }
    cases = []
    for tname, (run, shape) in targets.items():
        for vname in _variants(shape):
            for route in ("tensor", "data"):
                cases.append((f"{tname}|{vname}|{route}", run, shape, vname, route))
    for mode, (lname, lengths) in itertools.product(
        ("RNN", "LSTM", "GRU"),
        [
            ("ok", np.array([3, 1])),
            ("zero", np.array([0, 2])),
            ("too-long", np.array([4, 1])),
            ("negative", np.array([-1, 2])),
            ("float", np.array([3.0, 1.0])),
            ("wrong-shape", np.array([3, 1, 2])),
            ("list", [2, 3]),
            ("2-d", np.array([[3, 1]])),
            ("huge", np.array([2**62, 1])),
            ("bool", np.array([True, True])),
        ],
    ):
        run, shape = _lengths_case(mode, lengths)
        cases.append((f"{mode}|lengths-{lname}|-", run, shape, None, None))
    good = lambda: mg.Tensor(np.zeros((1, 2, 3), np.float32))  # noqa: E731
    for mode, (sname, state) in itertools.product(
        ("RNN", "LSTM", "GRU"),
        [
            ("none", lambda: None),
            ("wrong-shape", lambda: mg.Tensor(np.zeros((1, 3, 3)))),
            ("float64", lambda: mg.Tensor(np.zeros((1, 2, 3)))),
            ("nan", lambda: mg.Tensor(np.full((1, 2, 3), np.nan, np.float32))),
            ("tuple", lambda: (good(), good())),
            ("none-pair", lambda: (None, good())),
            ("triple", lambda: (good(), good(), good())),
            ("list-of-arrays", lambda: [[0.0]]),
            ("string", lambda: "h0"),
        ],
    ):
        st = state()
        run, shape = _state_case(mode, st)
        cases.append((f"{mode}|state-{sname}|-", run, shape, None, None))
    return cases


ALL_CASES = _cases()
CASES = ALL_CASES if FULL else ALL_CASES[::6]


# ----- running a case in a forked child -----------------------------------------------------
def _summarize(run, shape, vname, route):
    out = {}
    for backend in BACKENDS:
        kernels.set_backend(backend)
        try:
            arr = _variants(shape)[vname]() if vname else None
            res = run(arr, route)
            out[backend] = ("ok", [None if r is None else _wide(r) for r in res])
        except CLEAR as e:
            out[backend] = ("clear", f"{type(e).__name__}: {str(e)[:200]}")
        except BaseException as e:  # an unclear exception type is a finding
            out[backend] = ("unclear", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    return out


def _wide(r):
    """A result as float64 (complex128 when complex: its imaginary part is compared too)."""
    r = np.asarray(r)
    return r.astype(np.complex128 if r.dtype.kind == "c" else np.float64)


def _child(conn, run, shape, vname, route):
    try:
        conn.send(_summarize(run, shape, vname, route))
    finally:
        conn.close()
        os._exit(0)


def run_forked(run, shape, vname, route, timeout=60):
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, run, shape, vname, route))
    proc.start()
    child.close()
    got = None
    if parent.poll(timeout):
        try:
            got = parent.recv()
        except EOFError:  # the child died before sending
            pass
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "hang", None
    if got is None:
        return f"crash (exit code {proc.exitcode})", None
    return "done", got


def judge(got):
    """None when the case passes, else what is wrong."""
    kinds = {b: got[b][0] for b in BACKENDS}
    for b in BACKENDS:
        if kinds[b] == "unclear":
            return f"{b}: unclear exception {got[b][1]}"
    if kinds["cython"] != kinds["numpy"]:
        return (
            f"backends disagree: cython {kinds['cython']} {str(got['cython'][1])[:200]}, "
            f"numpy {kinds['numpy']} {str(got['numpy'][1])[:200]}"
        )
    if kinds["cython"] == "ok":
        a, b = got["cython"][1], got["numpy"][1]
        if len(a) != len(b):
            return "backends return different numbers of arrays"
        for i, (x, y) in enumerate(zip(a, b)):
            if (x is None) != (y is None):
                return f"array {i}: None on one backend only"
            if x is None:
                continue
            if x.shape != y.shape:
                return f"array {i}: shapes {x.shape} vs {y.shape}"
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return f"array {i}: NaN in different places"
            if not np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True):
                return f"array {i}: values differ by {np.nanmax(np.abs(x - y))}"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case):
    name, run, shape, vname, route = case
    status, got = run_forked(run, shape, vname, route)
    assert status == "done", f"{name}: {status}"
    problem = judge(got)
    assert problem is None, f"{name}: {problem}"


def test_the_matrix_is_the_size_docs_testing_md_reports():
    assert len(ALL_CASES) >= 600


def test_a_crashing_case_is_caught_not_fatal():
    def crash(_x, _route):
        import faulthandler

        faulthandler.disable()  # a deliberate SIGSEGV: no traceback in the test log
        os.kill(os.getpid(), 11)

    status, _ = run_forked(crash, (1,), None, None)
    assert status.startswith("crash")


def test_judge_can_fail():
    ok = ("ok", [np.array([1.0, np.nan])])
    assert judge({"cython": ok, "numpy": ok}) is None
    assert "disagree" in judge({"cython": ok, "numpy": ("clear", "ValueError: x")})
    assert "NaN" in judge({"cython": ok, "numpy": ("ok", [np.array([1.0, 2.0])])})
    assert "unclear" in judge({"cython": ("unclear", "AttributeError"), "numpy": ok})
