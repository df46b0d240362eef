# cython: language_level=3, cdivision=True
"""Compiled GEMM layer and the linear kernels (contract: docs/kernels.md; NumPy twin: _gemm_ref.py).
The linear kernels split their GEMMs across the kernels' threads (pgemm).

The GEMM itself (gemm, gemm_p, _pack) is declared inline in _gemm.pxd, so that the cell kernels
(_ops.pyx) compile it into their own loops; this module holds the one setting they share
(SMALL_GEMM), a private test hook onto that GEMM, and linear_forward / linear_backward.
"""
cimport numpy as cnp
import numpy as np

from minigrad._arrays cimport _typed, _add_rows, _colsum, _alpha, _scale
from minigrad._checks cimport _anchor, _check, _empty, _verify, _data, _grads_out

cnp.import_array()

SMALL_GEMM = (1 << 21) if MG_HAVE_SMALL_GEMM else 0


def _set_small_gemm(n=None):
    """Private: the m*n*k limit of the small-GEMM kernel (set it when n is given; 0 = always
    BLAS). Returns the limit in force before the call. For tests and benchmarks."""
    global SMALL_GEMM
    old = SMALL_GEMM
    if n is not None:
        SMALL_GEMM = n if MG_HAVE_SMALL_GEMM else 0
    return old


def _gemm(bint ta, bint tb, a, b, c, double alpha=1.0, double beta=0.0, bint packed=False,
          int repeat=1):
    """Private (tests): c = alpha * op(a) @ op(b) + beta * c, in place, through the kernels' gemm
    (the small-matrix kernel or BLAS, as _set_small_gemm decides), or with packed=True through
    _pack + gemm_p as the sequence kernels' per-step GEMMs run; op(x) = x.T when tx. a, b, c are
    2-D arrays of one dtype with contiguous rows; each row stride is the leading dimension.
    repeat > 1 runs the same GEMM that many times in one call (benchmarks: no Python overhead)."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"a must be a float32 or float64 ndarray, got {type(a).__name__} "
                         f"{getattr(a, 'dtype', '')}")
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>a)
    cdef Py_ssize_t isz = cnp.PyArray_ITEMSIZE(<cnp.ndarray>a)
    cdef int ld[3]
    for i, (name, arr) in enumerate((("a", a), ("b", b), ("c", c))):
        if (not isinstance(arr, np.ndarray) or arr.ndim != 2 or cnp.PyArray_TYPE(arr) != tn
                or arr.dtype.kind != "f" or arr.strides[1] != isz or arr.strides[0] % isz
                or arr.strides[0] // isz < max(arr.shape[1], 1) or 0 in arr.shape
                or not arr.flags.aligned or not arr.flags.writeable):
            raise ValueError(f"{name} must be a 2-D float array of a's dtype with contiguous rows, "
                             f"got {type(arr).__name__} {getattr(arr, 'dtype', '')} "
                             f"{getattr(arr, 'shape', '')} strides {getattr(arr, 'strides', '')}")
        ld[i] = arr.strides[0] // isz
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    kb, n = (b.shape[1], b.shape[0]) if tb else b.shape
    if kb != k or c.shape != (m, n):
        raise ValueError(f"shapes do not chain: op(a) {(m, k)}, op(b) {(kb, n)}, c {c.shape}")
    cdef void* pa = cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef void* pb = cnp.PyArray_DATA(<cnp.ndarray>b)
    cdef void* pc = cnp.PyArray_DATA(<cnp.ndarray>c)
    cdef int im = m, ini = n, ik = k, r
    cdef float* pkf
    cdef double* pkd
    cdef void* buf = NULL
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if packed and SMALL_GEMM != 0:
        pbuf = _empty(tn, mg_packed_lenf(ini, ik) if tn == cnp.NPY_FLOAT else mg_packed_lend(ini, ik))
        buf = _data(pbuf)
    if tn == cnp.NPY_FLOAT:
        with nogil:
            pkf = _pack(tb, ini, ik, <float*>pb, ld[1], <float*>buf)
            for r in range(repeat):
                gemm_p(pkf, ta, tb, im, ini, ik, <float>alpha, <float*>pa, ld[0], <float*>pb,
                       ld[1], <float>beta, <float*>pc, ld[2])
    else:
        with nogil:
            pkd = _pack(tb, ini, ik, <double*>pb, ld[1], <double*>buf)
            for r in range(repeat):
                gemm_p(pkd, ta, tb, im, ini, ik, alpha, <double*>pa, ld[0], <double*>pb, ld[1],
                       beta, <double*>pc, ld[2])
    _verify()
    return c


# -- Linear ------------------------------------------------------------------------------------


cdef struct LinearF:            # float32
    int n, n_in, n_out          # rows N, in-features I, out-features O (I: a macro of complex.h)
    float* x                    # (N, I)
    float* w                    # (O, I)
    float* b                    # (O,), NULL without bias
    float* y                    # (N, O): forward output
    float* dy                   # (N, O): backward input
    float* dx                   # (N, I), NULL when not needed
    float* dw                   # (O, I)
    float* db                   # (O,), NULL without bias
    double s_w, s_b             # the factors of dw and db (1, or the scale of an out array)


cdef struct LinearD:            # float64, the same fields
    int n, n_in, n_out
    double* x
    double* w
    double* b
    double* y
    double* dy
    double* dx
    double* dw
    double* db
    double s_w, s_b


ctypedef fused Linear:
    LinearF
    LinearD


cdef void _linear_fwd(Linear* k) noexcept nogil:
    pgemm(False, True, k.n, k.n_out, k.n_in, 1, k.x, k.n_in, k.w, k.n_in, 0, k.y, k.n_out)
    if k.b != NULL:
        _add_rows(k.y, k.b, k.n, k.n_out)


cdef void _linear_bwd(Linear* k) noexcept nogil:
    if k.dx != NULL:
        pgemm(False, False, k.n, k.n_in, k.n_out, 1, k.dy, k.n_out, k.w, k.n_in, 0, k.dx, k.n_in)
    pgemm(True, False, k.n_out, k.n_in, k.n, _alpha(k.dy, k.s_w), k.dy, k.n_out, k.x, k.n_in, 0,
          k.dw, k.n_in)
    if k.db != NULL:
        _colsum(k.dy, k.n, k.n_out, k.db)
        _scale(k.db, k.n_out, k.s_b)


cdef void _fill(Linear* k, int N, int I, int O, void* x, void* w, void* b, void* y, void* dy,
                void* dx, void* dw, void* db, double s_w, double s_b) noexcept:
    k.n, k.n_in, k.n_out = N, I, O
    k.s_w, k.s_b = s_w, s_b
    _typed(&k.x, x)
    _typed(&k.w, w)
    _typed(&k.b, b)
    _typed(&k.y, y)
    _typed(&k.dy, dy)
    _typed(&k.dx, dx)
    _typed(&k.dw, dw)
    _typed(&k.db, db)


cdef void _go(Linear* k, bint backward) noexcept:
    with nogil:
        if backward:
            _linear_bwd(k)
        else:
            _linear_fwd(k)


cdef int _run(bint backward, int tn, int N, int I, int O, void* x, void* w, void* b, void* y,
              void* dy, void* dx, void* dw, void* db, double s_w=1, double s_b=1) except -1:
    """Type the pointers for the dtype tn, run the forward or backward body without the GIL, and
    check the debug build's guards."""
    cdef LinearF f
    cdef LinearD d
    if tn == cnp.NPY_FLOAT:
        _fill(&f, N, I, O, x, w, b, y, dy, dx, dw, db, s_w, s_b)
        _go(&f, backward)
    else:
        _fill(&d, N, I, O, x, w, b, y, dy, dx, dw, db, s_w, s_b)
        _go(&d, backward)
    return _verify()


cdef int _linear_prep(object x, object w, int* N, int* I, int* O) except -1:
    """Validate x (N, I) and w (O, I); return the dtype number, set N, I, O."""
    cdef cnp.ndarray ax = _anchor(x, "x", 2)
    cdef int tn = cnp.PyArray_TYPE(ax)
    N[0] = cnp.PyArray_DIMS(ax)[0]
    I[0] = cnp.PyArray_DIMS(ax)[1]
    if not cnp.PyArray_Check(w) or cnp.PyArray_NDIM(<cnp.ndarray>w) != 2:
        _check(w, "w", tn, "x", 2, -1, I[0], -2, "O")
    O[0] = cnp.PyArray_DIMS(<cnp.ndarray>w)[0]
    _check(w, "w", tn, "x", 2, O[0], I[0])
    if O[0] == 0:
        raise ValueError(f"w must have shape (O, {I[0]}) with O > 0, got {w.shape}")
    return tn


def linear_forward(x, w, b):
    """y = x @ w.T + b;  x (N, I), w (O, I), b (O,) or None."""
    cdef int N, I, O
    cdef int tn = _linear_prep(x, w, &N, &I, &O)
    cdef void* pb = NULL if b is None else _check(b, "b", tn, "x", 1, O)
    y = _empty(tn, N, O)
    _run(False, tn, N, I, O, _data(x), _data(w), pb, _data(y), NULL, NULL, NULL, NULL)
    return y


def linear_backward(dy, x, w, has_bias, need_dx=True, out=None, scale=1.0):
    """dx = dy @ w (None when need_dx is false: its GEMM skipped), dw = dy.T @ x,
    db = dy.sum(0) (None without bias).  out: None, or (dw, db) with entries None or arrays
    that receive scale times that gradient (returned in its place)."""
    cdef int N, I, O
    cdef double s
    cdef int tn = _linear_prep(x, w, &N, &I, &O)
    cdef void* pdy = _check(dy, "dy", tn, "x", 2, N, O)
    o = _grads_out(out, ("dw", "db"), ((O, I), (O,) if has_bias else None), tn, (dy, x, w),
                   scale, &s)
    dx = _empty(tn, N, I) if need_dx else None
    dw = _empty(tn, O, I) if o[0] is None else o[0]
    db = (_empty(tn, O) if o[1] is None else o[1]) if has_bias else None
    _run(True, tn, N, I, O, _data(x), _data(w), NULL, NULL, pdy,
         _data(dx) if need_dx else NULL, _data(dw), _data(db) if has_bias else NULL,
         1 if o[0] is None else s, 1 if o[1] is None else s)
    return dx, dw, db
