"""Whole-array helpers of the kernel bodies (nogil, inlined where cimported): copy, zero, add, a
row added to every row, column sums; the C loops are in csrc/mg_arrays.h."""
from libc.string cimport memcpy, memset
from cython cimport floating

cdef extern from "csrc/mg_arrays.h" nogil:
    void mg_addf(float* dst, float* src, Py_ssize_t n)
    void mg_addd(double* dst, double* src, Py_ssize_t n)
    void mg_colsumf(float* a, Py_ssize_t rows, Py_ssize_t n, float* out)
    void mg_colsumd(double* a, Py_ssize_t rows, Py_ssize_t n, double* out)
    void mg_add_rowsf(float* dst, float* row, Py_ssize_t rows, Py_ssize_t n)
    void mg_add_rowsd(double* dst, double* row, Py_ssize_t rows, Py_ssize_t n)


cdef inline void _typed(floating** dst, void* src) noexcept nogil:
    """*dst = src as a pointer to the element type of *dst: the one place where the untyped data
    pointers the argument checks collect become typed (see _ops._run)."""
    dst[0] = <floating*>src


cdef inline void _copy(floating* dst, floating* src, Py_ssize_t n) noexcept nogil:
    memcpy(dst, src, n * sizeof(floating))


cdef inline void _zero(floating* dst, Py_ssize_t n) noexcept nogil:
    memset(dst, 0, n * sizeof(floating))


cdef inline void _add(floating* dst, floating* src, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_addf(dst, src, n)
    else:
        mg_addd(dst, src, n)


cdef inline void _add_rows(floating* dst, floating* row, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """dst (rows, n) += row (n,), broadcast over the rows."""
    if floating is float:
        mg_add_rowsf(dst, row, rows, n)
    else:
        mg_add_rowsd(dst, row, rows, n)


cdef inline void _colsum(floating* a, Py_ssize_t rows, Py_ssize_t cols, floating* out) noexcept nogil:
    """out = a.sum(0), rows added in order (as NumPy reduces axis 0 of a C array)."""
    if floating is float:
        mg_colsumf(a, rows, cols, out)
    else:
        mg_colsumd(a, rows, cols, out)


cdef inline floating _alpha(floating* like, double s) noexcept nogil:
    """s in the element type of `like` (a GEMM's alpha for arrays of that type)."""
    return <floating>s


cdef inline void _scale(floating* a, Py_ssize_t n, double s) noexcept nogil:
    """a *= s (nothing when s is 1)."""
    cdef Py_ssize_t i
    cdef floating f = <floating>s
    if s != 1.0:
        for i in range(n):
            a[i] *= f


cdef inline void _scaled_copy(floating* dst, floating* src, Py_ssize_t n, double s) noexcept nogil:
    """dst = s * src (a plain copy when s is 1)."""
    cdef Py_ssize_t i
    cdef floating f = <floating>s
    if s == 1.0:
        _copy(dst, src, n)
    else:
        for i in range(n):
            dst[i] = f * src[i]
