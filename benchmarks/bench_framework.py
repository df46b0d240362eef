"""What minigrad's framework costs around its kernels, and how much that depends on what ran
just before a step.

Two subjects from benchmarks/bench_rnn.py, for each cell at one size (default the seeds'
32x20x50x50): ``minigrad`` (modules, tape, optimizer: the whole training step) and ``kernels``
(the same step calling minigrad's compiled kernels by hand: no tape, modules or optimizer
objects). The framework's cost is the difference of their median step times.

Each subject's step is timed right after one untimed step of a *predecessor*: itself (as in a
training loop), the NumPy reference, and torch when installed (as in bench_rnn's interleaved
protocol, where every step follows another library's). One round runs, for every predecessor
and subject, predecessor step then timed subject step; the order of the pairs rotates from round
to round. The 95% interval of each difference comes from resampling whole rounds (the same
rounds for both subjects), as bench_rnn's ratio intervals do. Before timing, the contenders'
losses and gradients are checked against each other (bench_rnn.verify).

    python benchmarks/bench_framework.py [--cells rnn,lstm,gru] [--sizes 32x20x50x50]
                                         [--rounds 300] [--no-torch] [--parts] [--stub]
                                         [--numpy] [--idle MS,...] [--probe] [--json PATH]

--parts also splits the kernels-by-hand step into the time inside its kernel calls and the rest
(the Python and NumPy glue around them: the loss, the gradient dict, the update loop). --stub
replaces the sequence kernels by functions returning stored results while timing: what remains
is everything else, the framework's cost with no kernel running between its parts.

--idle 1,5 adds predecessors that only busy-wait that many milliseconds, touching no arrays: a
step timed after one shows what the mere passing of time costs it on this machine (other
processes and machines sharing its caches evict what a step left there). --numpy also times the
NumPy reference as a subject, so each row gives minigrad's and the kernels' ratio to it after the
same predecessor. --probe measures the eviction directly: the time to read a buffer again, one
cache line at a time in random order, right after reading it and after each --idle wait.
"""
import os
import sys

if __name__ == "__main__" and "numpy" not in sys.modules:
    for _k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_k] = "1"        # bench_rnn's default thread setting, before numpy loads

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import bench_rnn as br  # noqa: E402

SUBJECTS = ("minigrad", "kernels")


class TimedKernels:
    """The kernels module seen through timers: every public function, called through this
    object, adds its wall time to `inside` (--parts: how much of the kernels-by-hand step is
    spent in kernel calls, the rest being its Python and NumPy glue). The timers add about
    0.2 us a call."""

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
        setattr(self, name, timed)      # made once: later lookups skip __getattr__
        return timed


def time_after(subjects, predecessors, rounds, warmup=5, parts=None):
    """{(predecessor, subject): [seconds]}: each subject's step timed right after one untimed
    step of each predecessor ("itself": the subject's own step). subjects, predecessors:
    {name: object with step()}. Within a round the (predecessor, subject) pairs run in an order
    that rotates by one every round; the first `warmup` rounds are not kept. parts: None, or a
    dict that gets {(predecessor, subject): [seconds inside kernel calls]} for each subject
    whose `k` is a TimedKernels."""
    pairs = [(p, s) for p in ["itself"] + list(predecessors) for s in subjects]
    out = {pair: [] for pair in pairs}
    perf = time.perf_counter
    for r in range(warmup + rounds):
        k = r % len(pairs)
        for p, s in pairs[k:] + pairs[:k]:
            subject = subjects[s].step
            timed = getattr(subjects[s], "k", None)
            timed = timed if isinstance(timed, TimedKernels) else None
            (subject if p == "itself" else predecessors[p].step)()
            if timed is not None:
                timed.inside = 0.0
            t0 = perf()
            subject()
            dt = perf() - t0
            if r >= warmup:
                out[(p, s)].append(dt)
                if timed is not None and parts is not None:
                    parts.setdefault((p, s), []).append(timed.inside)
    return out


def diff_interval(a, b, level=br.RATIO_LEVEL, n_boot=br.BOOTSTRAP, seed=0):
    """Bootstrap interval of median(a) - median(b), a[i] and b[i] from the same round (resampled
    together: bench_rnn.round_bootstrap). Deterministic (fixed seed)."""
    return br.round_bootstrap(a, b, np.subtract, 1, level, n_boot, seed)


class StubbedSequenceKernels:
    """Context manager: minigrad.kernels' forward and backward sequence kernels of one cell
    replaced by functions that return the results of one real call each (stored on first use),
    so that a step costs everything but the sequence kernels' own work (--stub: the framework's
    cost with no kernel running between its Python parts). Both subjects call kernels through
    the module, so both get the stubs; the predecessors never call them."""

    def __init__(self, cell):
        from minigrad import kernels
        if cell not in br.CELLS:
            raise ValueError(f"cell must be one of {br.CELLS}, got {cell!r}")
        self.kernels, self.names = kernels, [f"{cell}_sequence_forward", f"{cell}_sequence_backward"]

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


def run(cell, size, rounds, use_torch=True, warmup=5, with_parts=False, stub=False,
        idle_ms=(), with_numpy=False):
    """One cell/size: the agreement check, then time_after; returns a JSON-ready dict. With
    with_parts, the kernels-by-hand step calls the kernels through TimedKernels and each row
    also gives the median time inside kernel calls and the rest of that step (its glue). With
    stub, the sequence kernels return stored results (StubbedSequenceKernels) while timing.
    idle_ms: predecessors that busy-wait those milliseconds (bench_rnn.Idle). with_numpy: the
    NumPy reference is a subject too, and each row gives minigrad's and the kernels' ratio to
    it (same rounds)."""
    names = ["numpy", "minigrad", "kernels"] + (["torch"] if use_torch else [])
    errors = br.verify(cell, size, names)
    params, x, target = br.make_problem(cell, size)
    built = br.build(cell, params, x, target, names)
    if with_parts:
        built["kernels"].k = TimedKernels(built["kernels"].k)
    subjects = {n: built[n] for n in SUBJECTS + (("numpy",) if with_numpy else ())}
    preds = {n: built[n] for n in ("numpy", "torch") if n in built}
    for ms in idle_ms:
        idle = br.Idle(ms)
        preds[idle.name] = idle
    parts = {}
    if stub:
        with StubbedSequenceKernels(cell):
            samples = time_after(subjects, preds, rounds, warmup, parts)
    else:
        samples = time_after(subjects, preds, rounds, warmup, parts)
    rows = []
    for p in ["itself"] + list(preds):
        mgs, ks = samples[(p, "minigrad")], samples[(p, "kernels")]
        m, k = float(np.median(mgs)), float(np.median(ks))
        lo, hi = diff_interval(mgs, ks)
        row = {"after": p, "minigrad_us": m * 1e6, "kernels_us": k * 1e6,
               "framework_us": (m - k) * 1e6, "framework_ci95_us": [lo * 1e6, hi * 1e6]}
        if (p, "kernels") in parts:
            inside = np.asarray(parts[(p, "kernels")])
            row["kernels_inside_calls_us"] = float(np.median(inside)) * 1e6
            row["kernels_glue_us"] = float(np.median(np.asarray(ks) - inside)) * 1e6
        if with_numpy:
            ns = samples[(p, "numpy")]
            row["numpy_us"] = float(np.median(ns)) * 1e6
            for s in SUBJECTS:
                row[f"{s}_vs_numpy"] = row[f"{s}_us"] / row["numpy_us"]
                row[f"{s}_vs_numpy_ci95"] = list(br.round_bootstrap(samples[(p, s)], ns,
                                                                    np.divide))
        rows.append(row)
    return {"cell": cell, "size": list(size), "rounds": rounds, "agreement": errors,
            "parts": with_parts, "stub": stub, "idle_ms": list(idle_ms), "rows": rows}


def print_result(res):
    head = (f"{res['cell']} {br.size_name(tuple(res['size']))}, {res['rounds']} rounds"
            + (", sequence kernels stubbed" if res.get("stub") else ""))
    rows = res["rows"]
    numpy = bool(rows) and "numpy_us" in rows[0]
    print(f"\n{head}\n{'after':<12} {'minigrad us':>12} {'kernels us':>11} "
          f"{'framework us (95%)':>24}"
          + (f" {'numpy us':>9} {'minigrad/numpy (95%)':>21} {'kernels/numpy (95%)':>21}"
             if numpy else ""))
    for r in rows:
        lo, hi = r["framework_ci95_us"]
        ci = f"{r['framework_us']:.0f} ({lo:.0f}-{hi:.0f})"
        extra = ""
        if numpy:
            extra += f" {r['numpy_us']:>9.0f}"
            for s in SUBJECTS:
                lo_s, hi_s = r[f"{s}_vs_numpy_ci95"]
                cell = f"{r[s + '_vs_numpy']:.3f} ({lo_s:.2f}-{hi_s:.2f})"
                extra += f" {cell:>21}"
        if "kernels_glue_us" in r:
            extra += (f"   kernels: {r['kernels_inside_calls_us']:.0f} in kernel calls, "
                      f"{r['kernels_glue_us']:.0f} glue")
        print(f"{r['after']:<12} {r['minigrad_us']:>12.0f} {r['kernels_us']:>11.0f} {ci:>24}"
              + extra)


def print_probe(probe):
    waits = sorted(next(iter(probe.values())))
    print("\neviction probe: a buffer read again one cache line at a time in random order, "
          "median us, right after reading it and after busy-waiting")
    print(f"{'buffer':>8} " + " ".join(f"{f'{m:g} ms':>9}" for m in waits))
    for kib, row in probe.items():
        print(f"{f'{kib} KiB':>8} " + " ".join(f"{row[m]:>9.1f}" for m in waits))


def parse_ms(text):
    """'1,5' -> (1.0, 5.0): idle times in milliseconds, each > 0; '' -> ()."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(br.Idle(float(part)).ms)     # Idle holds the rule: finite and > 0
        except ValueError:
            raise argparse.ArgumentTypeError(f"idle times must be finite milliseconds > 0, "
                                             f"got {part!r}") from None
    return tuple(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default="rnn,lstm,gru", type=br.parse_cells)
    ap.add_argument("--sizes", default="32x20x50x50", type=br.parse_sizes)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--parts", action="store_true",
                    help="also split the kernels-by-hand step into kernel calls and glue")
    ap.add_argument("--stub", action="store_true",
                    help="sequence kernels return stored results: the framework without them")
    ap.add_argument("--numpy", action="store_true",
                    help="time the NumPy reference as a subject too: ratios to it per row")
    ap.add_argument("--idle", default="", type=parse_ms,
                    help="MS,...: also time each step after busy-waiting that long")
    ap.add_argument("--probe", action="store_true",
                    help="first measure how fast this machine evicts an untouched buffer")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.warmup < 0:
        ap.error(f"--rounds must be >= 1 and --warmup >= 0, got {a.rounds} and {a.warmup}")
    br.apply_threads(1)
    use_torch = not a.no_torch and br.torch_available()
    info = br.machine_info()
    print(f"minigrad's framework cost: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
          f"1 thread, git {info.get('git_commit', '?')}, "
          f"torch {info.get('torch') if use_torch else 'not used'}; "
          f"median step times; framework = minigrad - kernels")
    probe = None
    if a.probe:
        probe = br.eviction_probe(idle_ms=a.idle or (1, 5))
        print_probe(probe)
    results = []
    for size in a.sizes:
        for cell in a.cells:
            res = run(cell, size, a.rounds, use_torch, a.warmup, a.parts, a.stub, a.idle,
                      a.numpy)
            print_result(res)
            results.append(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "results": results,
                       "eviction_probe_us": None if probe is None else br.probe_json(probe)},
                      f, indent=1)
        print(f"JSON: {a.json}")
    return results


if __name__ == "__main__":
    main()
