# cython: language_level=3, cdivision=True
"""Compiled GEMM layer and the linear kernels (contract: docs/kernels.md; NumPy twin: _gemm_ref.py).
The linear kernels split their GEMMs across the kernels' threads (pgemm).

The GEMM itself (gemm, gemm_p, _pack) is declared inline in _gemm.pxd, so that the cell kernels
(_ops.pyx) compile it into their own loops; this module holds the one setting they share
(SMALL_GEMM), a private test hook onto that GEMM, and linear_forward / linear_backward.
"""
cimport numpy as cnp
from libc.string cimport memset
import numpy as np

from minigrad._arrays cimport _typed, _add_rows, _colsum, _alpha, _scale
from minigrad._checks cimport _anchor, _check, _empty, _verify, _data, _grads_out, INT_MAX
from minigrad._pool cimport MIN_PART_WORK

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


def _pgemm_split(int m, int n, int k):
    """Private (tests): how pgemm splits an (m, k) @ (k, n) product at the current thread
    setting: ('rows' or 'columns', number of parts)."""
    cdef bint cols
    cdef int parts = _pgemm_parts(m, n, k, &cols)
    return ("columns" if cols else "rows"), parts


def _gemm_kernel(bint ta, int m, int n, int k, int itemsize):
    """Private (tests): which GEMM gemm() runs an (m, k) @ (k, n) product of elements of
    `itemsize` bytes on, op(A) = A.T when ta: 'small' (the C kernel) or 'blas'."""
    return "small" if _small(ta, m, n, k, itemsize) and SMALL_GEMM != 0 else "blas"


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


# -- matmul ------------------------------------------------------------------------------------
# np.matmul's products on the kernels' GEMM and threads: F.matmul (and so Keras's Dense, the
# attention layers) would otherwise run on NumPy's OpenBLAS, whose threads keep spinning after
# each call and take the cores from the kernels' own threads (a char-LSTM whose Dense ran on them
# stepped 1.1x faster on 2 threads than on 1; on the kernels' threads, 1.8x).


cdef struct MatMul:             # `count` products C_q = op(A_q) @ op(B_q)
    _Split g                    # their GEMM (pgemm's fields; alpha 1, beta 0, ldc n), C_0 at cf/cd
    Py_ssize_t count
    Py_ssize_t* aoff            # element offsets of A_q and B_q from af/ad and bf/bd
    Py_ssize_t* boff            # (C_q starts at q * m * n)


cdef void _matmul_products(MatMul* s, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    cdef _Split* g = &s.g
    cdef Py_ssize_t q, mn = <Py_ssize_t>g.m * g.n
    for q in range(q0, q1):
        if g.af != NULL:
            gemm(g.ta, g.tb, g.m, g.n, g.k, <float>1, g.af + s.aoff[q], g.lda, g.bf + s.boff[q],
                 g.ldb, <float>0, g.cf + q * mn, g.n)
        else:
            gemm(g.ta, g.tb, g.m, g.n, g.k, <double>1, g.ad + s.aoff[q], g.lda, g.bd + s.boff[q],
                 g.ldb, <double>0, g.cd + q * mn, g.n)


cdef void _matmul_part(void* arg, int i, int parts) noexcept nogil:
    """Products [count i / parts, count (i + 1) / parts) of a matmul, on one thread."""
    cdef MatMul* s = <MatMul*>arg
    _matmul_products(s, s.count * i // parts, s.count * (i + 1) // parts)


cdef void _matmul_run(MatMul* s) noexcept nogil:
    """One product: split across the threads by pgemm (by rows, or by columns when C is wider
    than tall). Several: the products split across the threads, each product on one (each C
    element computed as one thread computes it, so the result is the same at every thread
    count)."""
    cdef _Split* g = &s.g
    cdef int parts
    if s.count == 1:
        if g.af != NULL:
            pgemm(g.ta, g.tb, g.m, g.n, g.k, <float>1, g.af + s.aoff[0], g.lda, g.bf + s.boff[0],
                  g.ldb, <float>0, g.cf, g.n)
        else:
            pgemm(g.ta, g.tb, g.m, g.n, g.k, <double>1, g.ad + s.aoff[0], g.lda, g.bd + s.boff[0],
                  g.ldb, <double>0, g.cd, g.n)
        return
    parts = _parts(<double>s.count * g.m * g.n * g.k, s.count)
    if parts > 1:
        _parallel(_matmul_part, s, parts)
    else:
        _matmul_products(s, 0, s.count)


cdef object _operand(object x, Py_ssize_t rows, Py_ssize_t cols, bint* trans, int* ld):
    """x itself when each of its matrices (rows x cols, the last two axes) is stored row-major
    (trans false) or column-major (trans true, as a transposed view is) with a leading dimension
    BLAS takes, its batch strides whole elements; else a C-contiguous copy. Sets trans and ld."""
    cdef Py_ssize_t isz = x.itemsize, nd = x.ndim, s2, s1, lead
    st = x.strides
    if x.flags.aligned and all(s % isz == 0 for s in st):
        s2, s1 = st[nd - 2] // isz, st[nd - 1] // isz
        if (s1 == 1 or cols == 1) and (rows == 1 or s2 >= cols):
            lead = cols if rows == 1 else s2
            if lead <= INT_MAX:
                trans[0], ld[0] = False, <int>lead
                return x
        if (s2 == 1 or rows == 1) and (cols == 1 or s1 >= rows):
            lead = rows if cols == 1 else s1
            if lead <= INT_MAX:
                trans[0], ld[0] = True, <int>lead
                return x
    trans[0], ld[0] = False, <int>cols
    return np.ascontiguousarray(x)


cdef cnp.ndarray _offsets(object x, tuple batch, Py_ssize_t count):
    """The element offset of each of x's matrices (its batch axes broadcast to `batch`, x's
    strides whole elements), in the C order of `batch`."""
    cdef Py_ssize_t isz = x.itemsize, nd = len(batch), lead = x.ndim - 2, j, q, off = 0
    cdef Py_ssize_t dims[64]
    cdef Py_ssize_t st[64]
    cdef Py_ssize_t idx[64]
    cdef cnp.ndarray out = np.empty(count, np.intp)
    cdef Py_ssize_t* o = <Py_ssize_t*>cnp.PyArray_DATA(out)
    for j in range(nd):
        dims[j], st[j], idx[j] = batch[j], 0, 0
        if j >= nd - lead and x.shape[j - (nd - lead)] != 1:
            st[j] = x.strides[j - (nd - lead)] // isz
    for q in range(count):          # an odometer over the batch axes, the last fastest
        o[q] = off
        j = nd - 1
        while j >= 0:
            idx[j] += 1
            off += st[j]
            if idx[j] < dims[j]:
                break
            off -= st[j] * dims[j]
            idx[j] = 0
            j -= 1
    return out


cdef tuple _batch_shape(tuple sa, tuple sb):
    """The broadcast batch axes of two operands' shapes (their last two axes left out); None
    where they do not broadcast."""
    cdef Py_ssize_t la = len(sa) - 2, lb = len(sb) - 2, nd = max(la, lb), j, da, db
    out = []
    for j in range(nd):
        da = sa[j - (nd - la)] if j >= nd - la else 1
        db = sb[j - (nd - lb)] if j >= nd - lb else 1
        if da != db and da != 1 and db != 1:
            return None
        out.append(db if da == 1 else da)
    return tuple(out)


_ZERO = np.zeros(1, np.intp)      # the offset of a single product's operands
# Products of at most this many multiply-adds, too few of them together to be worth a second
# thread, go to np.matmul: its loop over tiny products costs less per product than a call of
# gemm each (32 products 1x128 @ 128x20: 11 us against 33), and OpenBLAS runs a product this
# small on the calling thread (it threads from a few hundred thousand), waking none of its own.
# The choice depends on the shapes alone, so the result still does not depend on the threads.
TINY_PRODUCT = 65536


def matmul(a, b):
    """a @ b by np.matmul's rules (1-D operands, broadcast batch axes): the products of float32 or
    float64 arrays of one dtype on the kernels' GEMM and threads, without copying transposed
    views; anything else (other or mixed dtypes, shapes np.matmul refuses, sizes past 32-bit
    BLAS) is np.matmul's own result or error."""
    cdef MatMul s
    cdef bint ta, tb
    cdef int lda, ldb, tn
    cdef Py_ssize_t m, n, k, count
    if (type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype
            or a.dtype.type not in (np.float32, np.float64) or not a.dtype.isnative
            or a.ndim == 0 or b.ndim == 0):
        return np.matmul(a, b)
    a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
    b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
    sa, sb = a2.shape, b2.shape
    m, k = sa[len(sa) - 2], sa[len(sa) - 1]
    n = sb[len(sb) - 1]
    if sb[len(sb) - 2] != k or max(m, n, k) > INT_MAX:
        return np.matmul(a, b)
    batch = () if len(sa) == 2 and len(sb) == 2 else _batch_shape(sa, sb)
    if batch is None:
        return np.matmul(a, b)
    final = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())
    count = 1
    for d in batch:
        count *= d
    if count == 0 or m == 0 or n == 0 or k == 0:
        return np.zeros(final, a.dtype)[()]
    if <double>m * n * k <= TINY_PRODUCT and <double>count * m * n * k < MIN_PART_WORK:
        return np.matmul(a, b)
    if len(sb) == 2 and count > 1 and a2.flags.c_contiguous and count * m <= INT_MAX:
        m, count, a2 = count * m, 1, a2.reshape(count * m, k)   # a's matrices stacked: one product
    a2 = _operand(a2, m, k, &ta, &lda)
    b2 = _operand(b2, k, n, &tb, &ldb)
    if count == 1:
        aoff = boff = _ZERO
    else:
        aoff, boff = _offsets(a2, batch, count), _offsets(b2, batch, count)
    tn = cnp.PyArray_TYPE(<cnp.ndarray>a2)
    c = _empty(tn, count * m, n)
    memset(&s, 0, sizeof(MatMul))
    s.g.ta, s.g.tb, s.g.m, s.g.n, s.g.k, s.g.lda, s.g.ldb, s.g.ldc = ta, tb, m, n, k, lda, ldb, n
    s.g.alpha, s.count = 1, count
    s.aoff = <Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>aoff)
    s.boff = <Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>boff)
    if tn == cnp.NPY_FLOAT:
        s.g.af, s.g.bf, s.g.cf = <float*>cnp.PyArray_DATA(<cnp.ndarray>a2), \
            <float*>cnp.PyArray_DATA(<cnp.ndarray>b2), <float*>_data(c)
    else:
        s.g.ad, s.g.bd, s.g.cd = <double*>cnp.PyArray_DATA(<cnp.ndarray>a2), \
            <double*>cnp.PyArray_DATA(<cnp.ndarray>b2), <double*>_data(c)
    with nogil:
        _matmul_run(&s)
    _verify()
    return c.reshape(final)[()]
