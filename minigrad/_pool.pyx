# cython: language_level=3, cdivision=True
"""The thread pool of the compiled kernels (its C: csrc/mg_pool.h). A kernel asks `_parts` how
many parts its work is worth (never more than the thread setting, nor more than it has rows) and
runs them with `_parallel`; the workers wait passively on a condition variable.

The thread setting itself is minigrad.threads' (set_num_threads); this module holds the number
the kernels read: `_set_threads` / `_get_threads` (private)."""

cdef extern from "csrc/mg_pool.h" nogil:
    int MG_HAVE_POOL
    int MG_POOL_MAX
    void mg_pool_run(task fn, void* arg, int n)

HAVE_POOL = bool(MG_HAVE_POOL)
MAX_THREADS = MG_POOL_MAX

cdef int _threads = 1
cdef double _min_work = MIN_PART_WORK


def _set_min_part_work(n=None):
    """Private (tests, benchmarks): the least work worth a thread (default MIN_PART_WORK; 1
    splits every kernel as far as its rows allow). Returns the value in force before the call."""
    global _min_work
    old = _min_work
    if n is not None:
        if n < 1:
            raise ValueError(f"min part work must be >= 1, got {n}")
        _min_work = n
    return old


def _set_threads(int n):
    """Private (minigrad.threads.set_num_threads): the kernels use at most n threads."""
    global _threads
    if n < 1 or n > MG_POOL_MAX:
        raise ValueError(f"thread count must lie in [1, {MG_POOL_MAX}], got {n}")
    _threads = n if MG_HAVE_POOL else 1


def _get_threads():
    """Private: the number of threads the kernels may use."""
    return _threads


cdef int _parts(double work, Py_ssize_t rows) noexcept nogil:
    """How many parts to split a job of `work` into: at most the thread setting, at most `rows`
    (each part gets at least one row), and each part at least MIN_PART_WORK (_min_work)."""
    cdef double n = work / _min_work
    cdef int p = _threads
    if n < p:
        p = <int>n
    if rows < p:
        p = <int>rows
    return p if p > 1 else 1


cdef void _parallel(task fn, void* arg, int n) noexcept nogil:
    """Run fn(arg, i, n) for each part i < n on this thread and the pool's; returns when all are
    done."""
    mg_pool_run(fn, arg, n)


def _parts_for(double work, Py_ssize_t rows):
    """Private (tests): _parts."""
    return _parts(work, rows)
