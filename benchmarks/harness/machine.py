"""Facts about the machine a run measures: CPU and versions, its float32 GEMM rate (the
roofline), and how quickly something outside the process evicts an untouched buffer from the
caches (the eviction probe)."""

import os
import platform
import re
import statistics
import subprocess
import time

import numpy as np

import minigrad as mg
from benchmarks.harness.threads import torch_available
from benchmarks.harness.timing import Idle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_name():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return cpu


def kernel_backend():
    """Which kernels minigrad runs on ("cython" or "numpy"): minigrad.kernels.backend, read
    whether it is a value or a function returning it."""
    from minigrad import kernels

    b = kernels.backend
    return b() if callable(b) else b


def machine_info():
    """CPU, core count, platform, versions of Python, numpy, scipy, torch and minigrad (with its
    kernel backend), and the git commit of the checkout when there is one."""
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minigrad": mg.__version__,
    }
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    if torch_available():
        import torch

        info["torch"] = torch.__version__
    info["minigrad_backend"] = kernel_backend()
    try:
        git = ["git", "-C", ROOT]
        commit = subprocess.run(
            git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if commit:
            info["git_commit"] = commit
            info["git_dirty_minigrad"] = bool(
                subprocess.run(
                    git + ["status", "--porcelain", "--", "minigrad"],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            )
    except OSError:
        pass
    return info


def describe(info):
    """Two header lines from machine_info()'s result."""
    dirty = " + uncommitted minigrad/ changes" if info.get("git_dirty_minigrad") else ""
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, {info['platform']}\n"
        f"python {info['python']}, numpy {info['numpy']}, scipy {info.get('scipy')}, "
        f"torch {info.get('torch', 'not installed')}, minigrad {info['minigrad']} "
        f"({info.get('minigrad_backend')} kernels), "
        f"git {info.get('git_commit', 'unknown (no repository)')}{dirty}"
    )


def short_line(info, torch, no_torch=""):
    """One header line from machine_info()'s result: CPU, cores, Python and numpy, and torch
    (run on one thread) when `torch` is the module, else the `no_torch` text."""
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, numpy "
        f"{info['numpy']}" + (f", torch {torch.__version__} (1 thread)" if torch else no_torch)
    )


# ------------------------------------------------------------------------------- the roofline
def measure_sgemm(n=1536, repeats=5, scipy_too=True):
    """This machine's float32 GEMM rate at the current thread setting: C = A @ B with
    n x n float32 matrices through numpy's BLAS (best and median of `repeats` timed runs
    after one warm-up, and every run's rate in "samples_gflops").  Also the same through
    scipy's BLAS (the one minigrad's kernels use) unless scipy_too is false."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    flops = 2.0 * n**3
    out = {"n": n}
    fns = {"numpy": lambda: np.matmul(a, b, out=c)}
    try:
        if scipy_too:
            from scipy.linalg.blas import sgemm

            fa, fb = np.asfortranarray(a), np.asfortranarray(b)
            fns["scipy"] = lambda: sgemm(1.0, fa, fb)
    except ImportError:
        pass
    for name, fn in fns.items():
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[name] = {
            "best_gflops": flops / min(ts) / 1e9,
            "median_gflops": flops / statistics.median(ts) / 1e9,
            "samples_gflops": [flops / t / 1e9 for t in ts],
        }
    return out


def roofline_rate(samples):
    """The SGEMM rate (FLOP/s) the roofline uses, from every SGEMM run's GFLOP/s of a benchmark
    run (spread over the run): their median, so that the GEMM-only time, like the contenders'
    median step times, is a typical figure of the run. (The best run catches a quiet moment of
    a shared machine; a median over the few runs just before one cell/size is too short a
    window and can put a fraction above 100%.)"""
    return statistics.median(samples) * 1e9


# ------------------------------------------------------------------------ the eviction probe
def eviction_probe(kib=(64, 256, 1024), idle_ms=(1, 5), rounds=100, seed=0):
    """{kib: {ms: median us}}: the time to read a buffer of `kib` KiB again, one 8-byte word per
    64-byte cache line in a random order (so that the hardware prefetchers cannot hide a miss),
    right after reading it (ms = 0) and after busy-waiting `ms` milliseconds (Idle). The
    conditions run in a shuffled order every round. What the first read leaves in the caches
    and the second finds gone, something else on the machine took in between."""
    if not all(isinstance(k, int) and k > 0 for k in kib) or not kib:
        raise ValueError(f"kib must be buffer sizes in KiB (positive ints), got {kib!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    idles = {m: Idle(m) for m in idle_ms}  # Idle rejects a wait that is not > 0
    waits = [0] + list(idles)
    rng = np.random.default_rng(seed)
    out = {}
    for size in kib:
        lines = size * 1024 // 64
        buf = np.zeros(lines * 8, np.int64)
        idx = rng.permutation(lines) * 8
        samples = {m: [] for m in waits}
        order = list(waits)
        perf = time.perf_counter
        for _ in range(rounds):
            rng.shuffle(order)
            for m in order:
                buf[idx].sum()
                if m:
                    idles[m].step()
                t0 = perf()
                buf[idx].sum()
                samples[m].append(perf() - t0)
        out[size] = {m: float(np.median(v)) * 1e6 for m, v in samples.items()}
    return out


SHORT_PROBE = dict(kib=(64,), idle_ms=(1, 5), rounds=60)  # a one-line probe: about 1 s


def probe_json(probe):
    """eviction_probe's result with JSON keys: {"64": {"0": us, "1": us, ...}}."""
    return {str(k): {f"{m:g}": v for m, v in row.items()} for k, row in probe.items()}


def probe_line(probe):
    """One line for a run's header or footer: eviction_probe's figures for its first buffer."""
    kib, row = next(iter(probe.items()))
    waits = ", ".join(f"{row[m]:.0f} after {m:g} ms" for m in sorted(row) if m)
    return (
        f"cache eviction: a {kib} KiB buffer read again one line at a time in random order "
        f"takes {row[0]:.1f} us right after reading it, {waits} of busy-waiting (median us; "
        "what other processes and guests on the host take from the caches meanwhile)"
    )
