"""Recurrent kernels: compiled (minigrad._ops) vs NumPy twin (minigrad._ops_ref), float32.

For each cell (one step) and each whole-sequence kernel, one sample is forward + backward; the
two contenders are interleaved (A B A B ...), warm-up rounds are discarded, and the median (with
min and max) per call and the ratio twin / compiled are printed, for (B, H) in (32, 50),
(32, 128), (64, 512) with I = H and T = 20 for the sequences.

Floor: for the cells at H = 50, the six GEMMs of one step alone, run by the kernels' own gemm
(the path the cell takes, 200 times inside one call so no Python overhead is timed), beside the
3x target (twin / 3): what is left of the target once the GEMMs are paid for.

Roofline: for the sequence kernels at H = 512, the same GEMMs alone (forward: the input GEMM over
all T*B rows + T recurrent GEMMs; backward: T dh GEMMs + the dx, dW_ih, dW_hh GEMMs), timed with
scipy's BLAS (which _ops calls through cython_blas for the big GEMMs), and kernel time / GEMM
time. The kernels run the 2T per-step GEMMs on a W_hh packed once per call, faster than BLAS
re-packing it at every call, so the ratio can fall below 1.

BLAS threads: OPENBLAS_NUM_THREADS is set to 1 before NumPy is imported unless you set it.

    python benchmarks/bench_kernels.py [--quick] [--T 20] [--repeats 15] [--clock wall|cpu]

--clock cpu times with process CPU time instead of wall time: on a machine shared with other
jobs it leaves out the time the benchmark spent descheduled.
"""
import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.linalg import blas  # noqa: E402

from minigrad import _gemm, _ops, _ops_ref  # noqa: E402

SIZES = [(32, 50), (32, 128), (64, 512)]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
DTYPE = np.float32


# ---------------------------------------------------------------------------------------------
# Problems: one fwd+bwd closure per (module, kernel)
# ---------------------------------------------------------------------------------------------

def make_inputs(kind, T, B, H, seed=0):
    rng = np.random.default_rng(seed)
    G, I = GATES[kind], H
    k = 1 / np.sqrt(H)
    f = lambda *s: rng.standard_normal(s).astype(DTYPE)          # noqa: E731
    u = lambda *s: rng.uniform(-k, k, s).astype(DTYPE)           # noqa: E731
    return dict(x=f(T, B, I), x1=f(B, I), h=f(B, H) * 0.5, c=f(B, H), dh=f(B, H), dc=f(B, H),
                dys=f(T, B, H), w_ih=u(G * H, I), w_hh=u(G * H, H), b_ih=u(G * H), b_hh=u(G * H))


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
    r = lambda *s: rng.standard_normal(s).astype(DTYPE)           # noqa: E731
    X, Hp, dG = r(T * B, I), r(T * B, H), r(T * B, G * H)
    w_ih, w_hh = r(G * H, I), r(G * H, H)
    gates, dx = np.zeros((T * B, G * H), DTYPE), np.zeros((T * B, I), DTYPE)
    dh, dw_ih, dw_hh = np.zeros((B, H), DTYPE), np.zeros((G * H, I), DTYPE), np.zeros((G * H, H), DTYPE)
    h_t = [Hp[t * B:(t + 1) * B] for t in range(T)]
    g_t = [gates[t * B:(t + 1) * B] for t in range(T)]
    dG_t = [dG[t * B:(t + 1) * B] for t in range(T)]
    sgemm = blas.sgemm

    def mm(a, b, c, ta=False, tb=False, beta=0.0):
        """c = op(a) @ op(b) + beta c, all row-major (C-contiguous)."""
        sgemm(1.0, b.T, a.T, beta, c.T, trans_a=tb, trans_b=ta, overwrite_c=True)

    def run():
        mm(X, w_ih, gates, tb=True)                       # forward: input projection, all steps
        for t in range(T):                                # forward: recurrent GEMMs
            mm(h_t[t], w_hh, g_t[t], tb=True, beta=1.0)
        for t in range(T):                                # backward: dh_prev = dG_t @ w_hh
            mm(dG_t[t], w_hh, dh)
        mm(dG, w_ih, dx)                                  # dx = dG @ w_ih
        mm(dG, X, dw_ih, ta=True)                         # dW_ih = dG.T @ X
        mm(dG, Hp, dw_hh, ta=True)                        # dW_hh = dG.T @ Hprev
    return run


def cell_gemms(kind, B, H, repeat):
    """The six GEMMs of one cell step (forward x @ W_ih.T, h @ W_hh.T; backward dG @ W_hh,
    dG @ W_ih, dG.T @ x, dG.T @ h), each run `repeat` times by the kernels' own gemm (the path
    the cell takes) inside one call, so no Python overhead is timed. Returns seconds per step."""
    G, I = GATES[kind], H
    rng = np.random.default_rng(2)
    r = lambda *s: rng.standard_normal(s).astype(DTYPE)           # noqa: E731
    x, h, dG, w_ih, w_hh = r(B, I), r(B, H), r(B, G * H), r(G * H, I), r(G * H, H)
    g, dh, dx = np.zeros((B, G * H), DTYPE), np.zeros((B, H), DTYPE), np.zeros((B, I), DTYPE)
    dw_ih, dw_hh = np.zeros((G * H, I), DTYPE), np.zeros((G * H, H), DTYPE)
    calls = [(False, True, x, w_ih, g, 0.0), (False, True, h, w_hh, g, 1.0),
             (False, False, dG, w_hh, dh, 0.0), (False, False, dG, w_ih, dx, 0.0),
             (True, False, dG, x, dw_ih, 0.0), (True, False, dG, h, dw_hh, 0.0)]

    def run():
        for ta, tb, a, b, c, beta in calls:
            _gemm._gemm(ta, tb, a, b, c, 1.0, beta, False, repeat)
        return dict(x=x, h=h, dG=dG, w_ih=w_ih, w_hh=w_hh, g=g, dh=dh, dx=dx, dw_ih=dw_ih,
                    dw_hh=dw_hh)
    return run


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def calibrate(fn, target):
    """Calls per sample so that one sample takes about `target` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 16:
            return max(1, int(round(n * target / max(dt, 1e-9))))
        n *= 4


CLOCK = time.perf_counter


def interleaved(fns, repeats, warmup, target):
    """Median/min/max seconds per call of each fn, samples interleaved A B A B ..."""
    ns = [calibrate(fn, target) for fn in fns]
    samples = [[] for _ in fns]
    for r in range(warmup + repeats):
        for i, (fn, n) in enumerate(zip(fns, ns)):
            t0 = CLOCK()
            for _ in range(n):
                fn()
            dt = (CLOCK() - t0) / n
            if r >= warmup:
                samples[i].append(dt)
    return [(statistics.median(s), min(s), max(s)) for s in samples]


def peak_mb(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def fmt(stat):
    med, lo, hi = stat
    return f"{med * 1e3:9.3f} ({lo * 1e3:.3f}-{hi * 1e3:.3f})"


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def describe_machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    lim = _gemm._set_small_gemm()
    print(f"_ops small-GEMM kernel (instead of BLAS) for m*n*k <= {lim} (transposed A, k <= 1024: "
          f"<= {4 * lim})" if lim
          else "_ops small-GEMM kernel: off (no AVX2+FMA), every GEMM on BLAS")
    try:
        import threadpoolctl
        for p in threadpoolctl.threadpool_info():
            print(f"  threadpoolctl: {p.get('internal_api')} {p.get('version')} "
                  f"threads={p.get('num_threads')} ({os.path.basename(p.get('filepath', ''))})")
    except ImportError:
        print("  (threadpoolctl not installed; thread count from OPENBLAS_NUM_THREADS)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=20, help="sequence length (default 20)")
    ap.add_argument("--repeats", type=int, default=15, help="timed samples per contender")
    ap.add_argument("--quick", action="store_true", help="few short samples (a smoke run)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time (default) or process CPU time (on a shared machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    repeats, warmup, target = (args.repeats, 3, 0.05) if not args.quick else (5, 1, 0.01)
    T = args.T

    describe_machine()
    print(f"float32, I = H, T = {T} for sequences; {repeats} interleaved samples after {warmup} "
          f"warm-up; {args.clock} clock; ms per forward+backward: median (min-max)\n")
    head = (f"{'kernel':<16}{'B':>4}{'H':>5}   {'compiled ms':<27}{'numpy twin ms':<27}"
            f"{'twin/compiled':>13}  {'peak MB c/np':>12}")
    print(head)
    print("-" * len(head))
    for B, H in SIZES:
        for what, builder, steps in (("cell", cell_step, 1), ("sequence", sequence, T)):
            for kind in GATES:
                v = make_inputs(kind, steps, B, H)
                fns = [builder(_ops, kind, v), builder(_ops_ref, kind, v)]
                for a, b in zip(fns[0](), fns[1]()):        # same results before timing
                    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
                cy, nv = interleaved(fns, repeats, warmup, target)
                mem = f"{peak_mb(fns[0]):.1f}/{peak_mb(fns[1]):.1f}"
                print(f"{kind + '_' + what:<16}{B:>4}{H:>5}   {fmt(cy):<27}{fmt(nv):<27}"
                      f"{nv[0] / cy[0]:>12.2f}x  {mem:>12}")
        print()

    B, H = SIZES[0]
    print(f"floor: cells at B = {B}, H = I = {H} against their six GEMMs alone (the kernels' own "
          "gemm, 200 in one call) and the 3x target (twin / 3)")
    head = (f"{'kernel':<16}{'compiled us':>12}{'GEMMs us':>10}{'twin us':>10}{'twin/3 us':>11}"
            f"{'GEMMs/(twin/3)':>16}")
    print(head)
    print("-" * len(head))
    for kind in GATES:
        v = make_inputs(kind, 1, B, H)
        gem = cell_gemms(kind, B, H, 200)
        cy, nv, gm = interleaved([cell_step(_ops, kind, v), cell_step(_ops_ref, kind, v), gem],
                                 repeats, warmup, target)
        g_us = gm[0] / 200 * 1e6
        print(f"{kind + '_cell':<16}{cy[0] * 1e6:>12.1f}{g_us:>10.1f}{nv[0] * 1e6:>10.1f}"
              f"{nv[0] / 3 * 1e6:>11.1f}{g_us / (nv[0] / 3 * 1e6):>15.0%}")
    print()

    B, H = SIZES[-1]
    print(f"roofline: sequence kernels at B = {B}, H = I = {H}, T = {T} vs their GEMMs alone "
          "(same BLAS: scipy's)")
    head = f"{'kernel':<16}{'kernel fwd+bwd ms':<27}{'GEMMs alone ms':<27}{'kernel/GEMMs':>12}"
    print(head)
    print("-" * len(head))
    for kind in GATES:
        v = make_inputs(kind, T, B, H)
        k, g = interleaved([sequence(_ops, kind, v), gemms_alone(kind, T, B, H)],
                           repeats, warmup, target)
        print(f"{kind + '_sequence':<16}{fmt(k):<27}{fmt(g):<27}{k[0] / g[0]:>11.2f}x")


if __name__ == "__main__":
    main()
