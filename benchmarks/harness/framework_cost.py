"""What minigrad's framework costs around its kernels: minigrad's whole training step against
the same step calling the kernels by hand (contenders "minigrad" and "kernels"), each timed
right after a predecessor (timing.time_after); the framework's cost is the difference of their
median step times, with a bootstrap interval over rounds (stats.diff_interval)."""

import time

import numpy as np

from benchmarks.harness import stats
from benchmarks.harness.agreement import verify
from benchmarks.harness.contenders import build
from benchmarks.harness.problem import CELLS, make_problem
from benchmarks.harness.timing import Idle, time_after

SUBJECTS = ("minigrad", "kernels")


class TimedKernels:
    """The kernels module seen through timers: every public function, called through this
    object, adds its wall time to `inside` (how much of the kernels-by-hand step is spent in
    kernel calls, the rest being its Python and NumPy glue). The timers add about 0.2 us a
    call."""

    def __init__(self, module):
        self._module, self.inside = module, 0.0

    def __getattr__(self, name):
        f = getattr(self._module, name)
        if name.startswith("_") or not callable(f):
            return f
        perf = time.perf_counter

        def timed(*args, **kw):
            t0 = perf()
            try:
                return f(*args, **kw)
            finally:
                self.inside += perf() - t0

        setattr(self, name, timed)  # made once: later lookups skip __getattr__
        return timed


class StubbedSequenceKernels:
    """Context manager: minigrad.kernels' forward and backward sequence kernels of one cell
    replaced by functions that return the results of one real call each (stored on first use),
    so that a step costs everything but the sequence kernels' own work (the framework's cost
    with no kernel running between its Python parts). Both subjects call kernels through the
    module, so both get the stubs; the predecessors never call them."""

    def __init__(self, cell):
        from minigrad import kernels

        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        self.kernels = kernels
        self.names = [f"{cell}_sequence_forward", f"{cell}_sequence_backward"]

    def __enter__(self):
        self.real = {n: getattr(self.kernels, n) for n in self.names}
        for n in self.names:
            setattr(self.kernels, n, self._stub(self.real[n]))
        return self

    @staticmethod
    def _stub(real):
        stored = []

        def stub(*args, **kw):
            if not stored:
                stored.append(real(*args, **kw))
            return stored[0]

        return stub

    def __exit__(self, *exc):
        for n, f in self.real.items():
            setattr(self.kernels, n, f)
        return False


def run(
    cell,
    size,
    rounds,
    use_torch=True,
    warmup=5,
    with_parts=False,
    stub=False,
    idle_ms=(),
    with_numpy=False,
):
    """One cell/size: the agreement check, then time_after; returns a JSON-ready dict. With
    with_parts, the kernels-by-hand step calls the kernels through TimedKernels and each row
    also gives the median time inside kernel calls and the rest of that step (its glue). With
    stub, the sequence kernels return stored results (StubbedSequenceKernels) while timing.
    idle_ms: predecessors that busy-wait those milliseconds (timing.Idle). with_numpy: the
    NumPy reference is a subject too, and each row gives minigrad's and the kernels' ratio to
    it (same rounds)."""
    names = ["numpy", "minigrad", "kernels"] + (["torch"] if use_torch else [])
    errors = verify(cell, size, names)
    params, x, target = make_problem(cell, size)
    built = build(cell, params, x, target, names)
    timed = None
    if with_parts:
        timed = built["kernels"].k = TimedKernels(built["kernels"].k)
    subjects = {n: built[n] for n in SUBJECTS + (("numpy",) if with_numpy else ())}
    preds = {n: built[n] for n in ("numpy", "torch") if n in built}
    for ms in idle_ms:
        idle = Idle(ms)
        preds[idle.name] = idle
    parts = {}

    def before(p, s, kept):
        if timed is not None:
            timed.inside = 0.0

    def after(p, s, kept):
        if timed is not None and kept and s == "kernels":
            parts.setdefault((p, s), []).append(timed.inside)

    if stub:
        with StubbedSequenceKernels(cell):
            samples = time_after(subjects, preds, rounds, warmup, (before, after))
    else:
        samples = time_after(subjects, preds, rounds, warmup, (before, after))
    rows = []
    for p in ["itself"] + list(preds):
        mgs, ks = samples[(p, "minigrad")], samples[(p, "kernels")]
        m, k = float(np.median(mgs)), float(np.median(ks))
        lo, hi = stats.diff_interval(mgs, ks)
        row = {
            "after": p,
            "minigrad_us": m * 1e6,
            "kernels_us": k * 1e6,
            "framework_us": (m - k) * 1e6,
            "framework_ci95_us": [lo * 1e6, hi * 1e6],
        }
        if (p, "kernels") in parts:
            inside = np.asarray(parts[(p, "kernels")])
            row["kernels_inside_calls_us"] = float(np.median(inside)) * 1e6
            row["kernels_glue_us"] = float(np.median(np.asarray(ks) - inside)) * 1e6
        if with_numpy:
            ns = samples[(p, "numpy")]
            row["numpy_us"] = float(np.median(ns)) * 1e6
            for s in SUBJECTS:
                row[f"{s}_vs_numpy"] = row[f"{s}_us"] / row["numpy_us"]
                row[f"{s}_vs_numpy_ci95"] = list(stats.ratio_interval(samples[(p, s)], ns))
        rows.append(row)
    return {
        "cell": cell,
        "size": list(size),
        "rounds": rounds,
        "agreement": errors,
        "parts": with_parts,
        "stub": stub,
        "idle_ms": list(idle_ms),
        "rows": rows,
    }
