"""The thread pool of the compiled kernels (csrc/mg_pool.h, set from minigrad.threads): how many
threads a kernel may use, and running the parts of a job on them. The kernels cimport these."""

ctypedef void (*task)(void* arg, int i, int n) noexcept nogil

# Work (in multiply-adds, or elements for the optimizer updates) below which a part is not worth a
# thread: a wake-up costs microseconds on an idle core (milliseconds on a loaded machine), a part
# of this much work 0.1-0.3 ms.
cdef enum:
    MIN_PART_WORK = 1 << 23

cdef int _parts(double work, Py_ssize_t rows) noexcept nogil
cdef void _parallel(task fn, void* arg, int n) noexcept nogil
