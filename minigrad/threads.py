"""How many threads minigrad uses: ``set_num_threads(n)`` / ``get_num_threads()``.

One setting governs all of minigrad's threads:

- the compiled kernels (recurrent cells and sequences, linear, matmul, the softmax
  cross-entropy forward, the optimizer updates) split their own work across up to ``n``
  threads: each thread runs a recurrent layer's whole time loop for a slice of the batch rows,
  and the big GEMMs before and after it (the input projection, the weight gradients), the
  products of ``F.matmul``, the cross-entropy's rows and large optimizer updates are split by
  rows (a GEMM wider than tall by columns) or by whole products. The worker threads wait
  passively (a condition variable), never spinning, so on a loaded machine ``n`` threads are not
  much slower than one. Small problems stay on one thread.
- NumPy's OpenBLAS runs ``n`` threads, for the user's own array code: no operation of minigrad's
  tape calls it (``F.matmul`` runs on the kernels). Its threads spin for a while after each
  call, holding cores the kernels' threads then wait for, so a large ``np.matmul`` of one's own
  between training steps slows the next step's kernels.
- SciPy's OpenBLAS, which only minigrad's kernels call inside minigrad, runs one thread: the
  kernels split their GEMMs themselves, each part a one-thread BLAS call, so the two thread
  pools never multiply. (Where NumPy and SciPy share one BLAS library, it runs ``n``.)

The default is the number of cores this process may run on (``os.sched_getaffinity``, else
``os.cpu_count()``), or the environment variable ``MINIGRAD_NUM_THREADS`` when it is set (read
when minigrad is imported; it must be a whole number >= 1). The BLAS libraries are found among
the shared libraries this process has loaded (Linux: their ``openblas_set_num_threads`` entry
points), or through threadpoolctl where that is installed (other systems).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["set_num_threads", "get_num_threads", "blas_libraries", "default_num_threads"]

ENV = "MINIGRAD_NUM_THREADS"

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
_threads = 1  # the setting, when the compiled kernels are not built


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


def kernels_only_blas(path):
    """Whether the BLAS library at `path` is SciPy's own (in a scipy wheel's library folder), so
    that inside minigrad only the compiled kernels call it."""
    folder = os.path.basename(os.path.dirname(path)).lower()
    return "scipy" in folder and "numpy" not in folder


def _pool():
    try:
        from . import _pool
    except ImportError:
        return None
    return _pool


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def _check_count(n, what):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} expects an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{what} expects a thread count >= 1, got {n}")


def default_num_threads(environ=None):
    """The thread count minigrad starts with: MINIGRAD_NUM_THREADS when set, else the number of
    cores this process may run on."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV)
    if value is not None and value.strip():
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number >= 1, got {value!r}") from None
        if n < 1:
            raise ValueError(f"{ENV} must be a whole number >= 1, got {value!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _set_blas(n, numpy_too=True):
    """NumPy's OpenBLAS (when numpy_too) to n threads, SciPy's own (kernels only) to one."""
    libs = blas_libraries()
    if libs:
        for path, setter, _ in libs:
            if kernels_only_blas(path):
                setter(1)
            elif numpy_too:
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


def set_num_threads(n):
    """Use up to ``n`` threads: in minigrad's compiled kernels and in NumPy's BLAS (SciPy's BLAS,
    which the kernels call on their own threads, stays at one)."""
    global _threads
    _check_count(n, "set_num_threads")
    pool = _pool()
    if pool is not None and n > pool.MAX_THREADS:
        raise ValueError(f"set_num_threads expects a thread count <= {pool.MAX_THREADS}, got {n}")
    _set_blas(n)
    if pool is not None:
        pool._set_threads(n)
    _threads = n


def get_num_threads():
    """The number of threads minigrad's kernels may use (``set_num_threads``)."""
    return _threads


def _init():
    """At import: the default thread count (MINIGRAD_NUM_THREADS or the cores this process may
    use) for the kernels; NumPy's BLAS follows only an explicit MINIGRAD_NUM_THREADS."""
    global _threads
    n = default_num_threads()
    explicit = bool(os.environ.get(ENV, "").strip())
    pool = _pool()
    if pool is not None:
        if explicit and n > pool.MAX_THREADS:
            raise ValueError(f"{ENV} must be at most {pool.MAX_THREADS}, got {n}")
        n = min(n, pool.MAX_THREADS)  # the cores of a bigger machine: as many as the pool has
        pool._set_threads(n)
    try:
        _set_blas(n, numpy_too=explicit)
    except RuntimeError:  # no BLAS to configure: the kernels' own threads still follow n
        pass
    _threads = n


_init()
