"""How many threads the BLAS under minigrad uses: ``set_num_threads(n)`` / ``get_num_threads()``.

NumPy and SciPy each load their own OpenBLAS; minigrad's kernels call SciPy's, and NumPy's runs
everything done with plain arrays (the hoisted input projections, the optimizers' fallbacks).
``set_num_threads`` sets both, through the libraries' own ``openblas_set_num_threads`` entry
points found among the shared libraries this process has loaded (Linux), or through
threadpoolctl where that is installed (other systems). ``OPENBLAS_NUM_THREADS`` set before
NumPy's import does the same for the whole process.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["set_num_threads", "get_num_threads", "blas_libraries"]

# Entry points, by the prefix each OpenBLAS build gives its symbols (NumPy's and SciPy's wheels
# bundle scipy-openblas, the 64-bit-integer one with a "64_" suffix).
_SET = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
)
_GET = (
    "openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "scipy_openblas_get_num_threads64_",
)
_libs = None


def _load_blas():
    import numpy.linalg  # noqa: F401  (make sure both libraries are loaded)
    import scipy.linalg  # noqa: F401


def blas_libraries():
    """The OpenBLAS libraries loaded in this process: a list of (path, set_fn, get_fn)."""
    global _libs
    if _libs is not None:
        return _libs
    _load_blas()
    found = []
    if sys.platform.startswith("linux"):
        with open("/proc/self/maps") as f:
            paths = sorted(
                {
                    line.split()[-1]
                    for line in f
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")
                }
            )
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in _SET if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in _GET if hasattr(lib, n)), None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                found.append((path, setter, getter))
    _libs = found
    return found


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def set_num_threads(n):
    """Use ``n`` threads in the BLAS of both NumPy and SciPy (and so in minigrad's kernels)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads expects a thread count >= 1, got {n}")
    libs = blas_libraries()
    if libs:
        for _, setter, _ in libs:
            setter(n)
        return
    tpc = _threadpoolctl()
    if tpc is None:
        raise RuntimeError(
            "set_num_threads found no OpenBLAS to configure on this system; "
            "install threadpoolctl, or set OPENBLAS_NUM_THREADS before importing "
            "numpy"
        )
    tpc.threadpool_limits(n, user_api="blas")


def get_num_threads():
    """The number of threads the BLAS uses (NumPy's; ``set_num_threads`` keeps both equal)."""
    libs = blas_libraries()
    if libs:
        return int(libs[0][2]())
    tpc = _threadpoolctl()
    if tpc is None:
        raise RuntimeError(
            "get_num_threads found no OpenBLAS on this system; install threadpoolctl"
        )
    info = [d for d in tpc.threadpool_info() if d.get("user_api") == "blas"]
    return int(info[0]["num_threads"]) if info else 1
