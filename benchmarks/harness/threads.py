"""BLAS/OpenMP/minigrad thread count of a benchmark run.

OpenBLAS sizes its thread pool when NumPy (or SciPy) is first imported, so a script sets the
environment first (``set_env``, before ``import numpy``) and then limits every pool already
loaded (``apply``: threadpoolctl when installed, ``minigrad.set_num_threads`` and
``torch.set_num_threads``). This module
imports neither NumPy nor torch at import time.
"""

import os
import sys

DEFAULT_THREADS = 1  # see docs/performance.md, Method, "Threads"
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MINIGRAD_NUM_THREADS")

_LIMITER = None  # keeps threadpoolctl's limits alive for the process


def from_argv(argv, default=DEFAULT_THREADS):
    """The --threads value of a command line, read before argparse runs (so before NumPy is
    imported); a bad value gives `default` here and argparse reports it later."""
    n = default
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    try:
        return max(1, int(n))
    except ValueError:
        return default


def set_env(n, only_if_unset=False):
    """Set every THREAD_ENV variable to n (keeping values already set when only_if_unset).
    Returns True when NumPy was not imported yet, i.e. when the setting takes effect."""
    for k in THREAD_ENV:
        if only_if_unset:
            os.environ.setdefault(k, str(n))
        else:
            os.environ[k] = str(n)
    return "numpy" not in sys.modules


def set_env_for_script(module_name, argv):
    """What a benchmark script runs first, before importing numpy: as __main__, the --threads
    of its command line (argv) into the environment (set_env); imported (a test), nothing.
    Returns True when NumPy was not imported yet (pass it to apply)."""
    if module_name == "__main__":
        return set_env(from_argv(argv))
    return "numpy" not in sys.modules


def add_option(ap):
    """--threads N on the argparse parser ap (read early by set_env_for_script)."""
    ap.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="BLAS/OpenMP threads of the run"
    )


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def apply(n, env_set_before_numpy=None):
    """Limit every BLAS/OpenMP pool to n threads (threadpoolctl when importable: NumPy's and
    SciPy's separate OpenBLAS and torch's OpenMP), then minigrad.set_num_threads(n) (its kernels
    n threads, SciPy's BLAS, which only they call, one) and torch.set_num_threads(n); returns
    what was set, for the run's header and JSON."""
    global _LIMITER
    info = {
        "requested": n,
        "env_set_before_numpy_import": env_set_before_numpy,
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
    }
    try:
        import threadpoolctl

        _LIMITER = threadpoolctl.threadpool_limits(limits=n)
    except ImportError:
        threadpoolctl = None
    import minigrad  # after threadpoolctl: SciPy's BLAS back to one thread, the kernels' to n

    minigrad.set_num_threads(n)
    info["minigrad_num_threads"] = minigrad.get_num_threads()
    info["threadpoolctl"] = None
    if threadpoolctl is not None:
        info["threadpoolctl"] = [
            {
                "api": d["internal_api"],
                "lib": os.path.basename(d["filepath"]),
                "num_threads": d["num_threads"],
            }
            for d in threadpoolctl.threadpool_info()
        ]
    if torch_available():
        import torch

        torch.set_num_threads(n)
        info["torch_num_threads"] = torch.get_num_threads()
    return info


def describe(info):
    """One header line from apply()'s result."""
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items())
    late = (
        ""
        if info["env_set_before_numpy_import"] is not False
        else " NOT applied: numpy was already imported"
    )
    pools = info["threadpoolctl"]
    pools = (
        "threadpoolctl: " + ", ".join(f"{p['lib']}={p['num_threads']}" for p in pools)
        if pools
        else "threadpoolctl not installed"
    )
    return (
        f"threads: {info['requested']} (env {env}{late}; "
        f"minigrad.set_num_threads({info.get('minigrad_num_threads', '-')}); "
        f"torch.set_num_threads({info.get('torch_num_threads', '-')}); {pools})"
    )
