"""The calls bench_kernels.py times: each recurrent kernel forward + backward, bound to its
arguments in a closure, on a compiled module (minigrad._ops) or its NumPy twin
(minigrad._ops_ref), and the GEMMs of a cell step or a whole sequence alone."""

import numpy as np
from scipy.linalg import blas

from minigrad import _gemm, _ops, _ops_ref

# The private kernel modules and names the benchmark reaches into, in this one place: the cell
# and sequence kernels timed (compiled and twin), and the GEMM entry points.
COMPILED, TWIN = _ops, _ops_ref
gemm = _gemm._gemm  # the kernels' own GEMM (with a repeat count)
small_gemm_limit = _gemm._set_small_gemm  # m*n*k up to which the small-GEMM kernel runs

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
DTYPE = np.float32


def make_inputs(kind, T, B, H, seed=0):
    rng = np.random.default_rng(seed)
    G, I = GATES[kind], H
    k = 1 / np.sqrt(H)
    f = lambda *s: rng.standard_normal(s).astype(DTYPE)  # noqa: E731
    u = lambda *s: rng.uniform(-k, k, s).astype(DTYPE)  # noqa: E731
    return dict(
        x=f(T, B, I),
        x1=f(B, I),
        h=f(B, H) * 0.5,
        c=f(B, H),
        dh=f(B, H),
        dc=f(B, H),
        dys=f(T, B, H),
        w_ih=u(G * H, I),
        w_hh=u(G * H, H),
        b_ih=u(G * H),
        b_hh=u(G * H),
    )


def cell_step(m, kind, v):
    """One cell step forward + backward on module m. The kernels and their arguments are bound
    before the closure, so a sample times the two calls and not the harness's lookups (14 dict
    and 2 attribute lookups a step: 0.3 us, the same for both contenders)."""
    x, h, c, dh, dc = v["x1"], v["h"], v["c"], v["dh"], v["dc"]
    w_ih, w_hh, b_ih, b_hh = v["w_ih"], v["w_hh"], v["b_ih"], v["b_hh"]
    if kind == "rnn":
        fwd, bwd = m.rnn_cell_forward, m.rnn_cell_backward

        def run():
            h1, cache = fwd(x, h, w_ih, w_hh, b_ih, b_hh, "tanh")
            return bwd(dh, x, h, w_ih, w_hh, cache, True, "tanh")
    elif kind == "lstm":
        fwd, bwd = m.lstm_cell_forward, m.lstm_cell_backward

        def run():
            h1, c1, cache = fwd(x, h, c, w_ih, w_hh, b_ih, b_hh)
            return bwd(dh, dc, x, h, c, w_ih, w_hh, cache, True)
    else:
        fwd, bwd = m.gru_cell_forward, m.gru_cell_backward

        def run():
            h1, cache = fwd(x, h, w_ih, w_hh, b_ih, b_hh)
            return bwd(dh, x, h, w_ih, w_hh, cache, True)

    return run


def sequence(m, kind, v):
    """A whole sequence forward + backward on module m (arguments bound as in cell_step)."""
    x, h, c, dys, dh, dc = v["x"], v["h"], v["c"], v["dys"], v["dh"], v["dc"]
    w_ih, w_hh, b_ih, b_hh = v["w_ih"], v["w_hh"], v["b_ih"], v["b_hh"]
    if kind == "rnn":
        fwd, bwd = m.rnn_sequence_forward, m.rnn_sequence_backward

        def run():
            ys, hn, cache = fwd(x, h, w_ih, w_hh, b_ih, b_hh, None, "tanh")
            return bwd(dys, dh, x, h, w_ih, w_hh, cache, None, True, "tanh")
    elif kind == "lstm":
        fwd, bwd = m.lstm_sequence_forward, m.lstm_sequence_backward

        def run():
            ys, hn, cn, cache = fwd(x, h, c, w_ih, w_hh, b_ih, b_hh, None)
            return bwd(dys, dh, dc, x, h, c, w_ih, w_hh, cache, None, True)
    else:
        fwd, bwd = m.gru_sequence_forward, m.gru_sequence_backward

        def run():
            ys, hn, cache = fwd(x, h, w_ih, w_hh, b_ih, b_hh, None)
            return bwd(dys, dh, x, h, w_ih, w_hh, cache, None, True)

    return run


def gemms_alone(kind, T, B, H):
    """The sequence kernel's GEMMs only, on scipy's BLAS, into preallocated outputs.

    Row-major C = A @ B is computed as the Fortran C.T = B.T @ A.T on transposed views, so
    nothing is copied (the views of C-contiguous arrays are Fortran-contiguous)."""
    G, I = GATES[kind], H
    rng = np.random.default_rng(1)
    r = lambda *s: rng.standard_normal(s).astype(DTYPE)  # noqa: E731
    X, Hp, dG = r(T * B, I), r(T * B, H), r(T * B, G * H)
    w_ih, w_hh = r(G * H, I), r(G * H, H)
    gates, dx = np.zeros((T * B, G * H), DTYPE), np.zeros((T * B, I), DTYPE)
    dh, dw_ih, dw_hh = (
        np.zeros((B, H), DTYPE),
        np.zeros((G * H, I), DTYPE),
        np.zeros((G * H, H), DTYPE),
    )
    h_t = [Hp[t * B : (t + 1) * B] for t in range(T)]
    g_t = [gates[t * B : (t + 1) * B] for t in range(T)]
    dG_t = [dG[t * B : (t + 1) * B] for t in range(T)]
    sgemm = blas.sgemm

    def mm(a, b, c, ta=False, tb=False, beta=0.0):
        """c = op(a) @ op(b) + beta c, all row-major (C-contiguous)."""
        sgemm(1.0, b.T, a.T, beta, c.T, trans_a=tb, trans_b=ta, overwrite_c=True)

    def run():
        mm(X, w_ih, gates, tb=True)  # forward: input projection, all steps
        for t in range(T):  # forward: recurrent GEMMs
            mm(h_t[t], w_hh, g_t[t], tb=True, beta=1.0)
        for t in range(T):  # backward: dh_prev = dG_t @ w_hh
            mm(dG_t[t], w_hh, dh)
        mm(dG, w_ih, dx)  # dx = dG @ w_ih
        mm(dG, X, dw_ih, ta=True)  # dW_ih = dG.T @ X
        mm(dG, Hp, dw_hh, ta=True)  # dW_hh = dG.T @ Hprev

    return run


def cell_gemms(kind, B, H, repeat):
    """The six GEMMs of one cell step (forward x @ W_ih.T, h @ W_hh.T; backward dG @ W_hh,
    dG @ W_ih, dG.T @ x, dG.T @ h), each run `repeat` times by the kernels' own gemm (the path
    the cell takes) inside one call, so no Python overhead is timed. Returns seconds per step."""
    G, I = GATES[kind], H
    rng = np.random.default_rng(2)
    r = lambda *s: rng.standard_normal(s).astype(DTYPE)  # noqa: E731
    x, h, dG, w_ih, w_hh = r(B, I), r(B, H), r(B, G * H), r(G * H, I), r(G * H, H)
    g, dh, dx = np.zeros((B, G * H), DTYPE), np.zeros((B, H), DTYPE), np.zeros((B, I), DTYPE)
    dw_ih, dw_hh = np.zeros((G * H, I), DTYPE), np.zeros((G * H, H), DTYPE)
    calls = [
        (False, True, x, w_ih, g, 0.0),
        (False, True, h, w_hh, g, 1.0),
        (False, False, dG, w_hh, dh, 0.0),
        (False, False, dG, w_ih, dx, 0.0),
        (True, False, dG, x, dw_ih, 0.0),
        (True, False, dG, h, dw_hh, 0.0),
    ]

    def run():
        for ta, tb, a, b, c, beta in calls:
            gemm(ta, tb, a, b, c, 1.0, beta, False, repeat)
        return dict(
            x=x, h=h, dG=dG, w_ih=w_ih, w_hh=w_hh, g=g, dh=dh, dx=dx, dw_ih=dw_ih, dw_hh=dw_hh
        )

    return run
