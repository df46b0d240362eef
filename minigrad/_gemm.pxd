"""The GEMM layer of the kernels: row-major GEMM on scipy's BLAS, or the small-matrix C kernel
(csrc/small_gemm.h) on AVX2+FMA CPUs, and op(B) packed once for the per-step GEMMs of a sequence.

Everything a kernel body calls is a `cdef inline` function here, so it is compiled into each
module that cimports it (no call through a module's function table on the hot path); the one
shared variable is SMALL_GEMM, the size limit _gemm._set_small_gemm sets."""
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm
from minigrad._pool cimport _parts, _parallel

#
# Small problems (the cell steps: 32x50 @ 50x200 at H = 50) run on a C kernel instead of BLAS
# when m*n*k <= SMALL_GEMM (4x that for the weight gradients of short sequences, see gemm) and
# the CPU has AVX2+FMA (checked once at import; the build stays portable: only these functions
# are compiled for AVX2, and elsewhere BLAS runs every GEMM).
# op(B) is packed into panels of k x 16 floats (8 doubles; 8x8 AVX transposes when transposed),
# then C is computed in blocks of 6 rows x 2 vectors: twelve accumulators, so both FMA pipes stay
# busy through the 4-cycle FMA latency. Each k step loads two vectors of a panel row and
# broadcasts op(A)[i, p] against them; each C element is summed over p in order (with FMA; with A
# transposed, in chunks of 128 p, each chunk's sum added to C: MG_TA_KC).
# Edges: the last rows run as 4-row blocks, a last panel of at most one vector on one-vector
# blocks, and a last panel of at most half a vector (the 2 columns left of n = 50) by mg_tail,
# two columns at a time with vectors along k (dot products, lanes then summed pairwise) or, when
# A is transposed, along the rows of C: over it, blocks cost as much as over a full panel. An
# unpacked GEMM does not pack that narrow panel: mg_tail reads its columns from B where they lie
# (the rows of a transposed B in place; strided columns through one stack copy). The GEMMs of a
# step at H = 50 reach 72-75 GFLOP/s (52-53 before mg_tail) where OpenBLAS reaches 42-46; reading
# the narrow panel unpacked took x @ W.T from 2.42 to 2.24 us and dA @ W from 2.29 to 2.15.
# The sequence kernels multiply every step by the same W_hh: they pack it once per call (_pack)
# and run the per-step GEMMs on the packed panels at any size (gemm_p): 85-95 GFLOP/s where BLAS,
# re-packing W_hh at every call, reaches 45-65 (64x512 @ 512x2048: 90 against 46). Their big
# one-off GEMMs (the input projection, the deferred weight gradients) take gemm's rule: BLAS above
# the limit, except the weight gradients of short sequences, input projections with k <= 256 and
# products with few columns (n <= 256: the input gradients), see _small. One macro body gives
# float and double.
cdef extern from "csrc/small_gemm.h" nogil:
    int MG_HAVE_SMALL_GEMM
    int mg_gemm_smallf_avx2(int ta, int tb, int m, int n, int k, float alpha, float* a, int lda,
                            float* b, int ldb, float beta, float* c, int ldc)
    int mg_gemm_smalld_avx2(int ta, int tb, int m, int n, int k, double alpha, double* a,
                            int lda, double* b, int ldb, double beta, double* c, int ldc)
    size_t mg_packed_lenf(int n, int k)
    size_t mg_packed_lend(int n, int k)
    void mg_pack_bf(int tb, int n, int k, float* b, int ldb, float* pk)
    void mg_pack_bd(int tb, int n, int k, double* b, int ldb, double* pk)
    void mg_gemm_packedf(int ta, int m, int n, int k, float alpha, float* a, int lda, float* pk,
                         float beta, float* c, int ldc)
    void mg_gemm_packedd(int ta, int m, int n, int k, double alpha, double* a, int lda, double* pk,
                         double beta, double* c, int ldc)

# m*n*k at or below which the C kernel runs (0: never, on CPUs without AVX2+FMA; gemm also runs
# it on transposed-A products with k <= 1024 up to 4x this). Defined in _gemm.pyx.
cdef Py_ssize_t SMALL_GEMM


cdef inline void gemm(bint ta, bint tb, int m, int n, int k, floating alpha,
                      floating* a, int lda, floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = alpha * op(A) @ op(B) + beta * C, op(A) = A.T when ta (A stored (k, m)).

    Fortran BLAS sees a row-major matrix as its transpose, so compute C.T = op(B).T @ op(A).T:
    pass B first and swap m and n; each leading dimension is the stored matrix's row stride.
    """
    gemm_as(_small(ta, m, n, k, sizeof(floating)), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
            c, ldc)


cdef inline bint _small(bint ta, int m, int n, int k, size_t size) noexcept nogil:
    """Whether gemm runs a product of this shape (elements of `size` bytes) on the C kernel."""
    cdef Py_ssize_t mnk = <Py_ssize_t>m * n * k
    # the weight gradients dG.T @ X of short sequences (transposed A, k = T * B <= 1024) up to 4x
    # the limit: 1.1-1.3x OpenBLAS's speed at 200x640 @ 640x50 (LSTM, H = 50), where k = 3200
    # (50x3200 @ 3200x50) runs at 0.7x. And the input projections X @ W_ih.T (A not transposed,
    # k <= 256, op(B) packed in at most 256 KiB) up to 2**28: 1.03-1.08x OpenBLAS's speed from
    # 640x50 @ 50x200 (LSTM, H = 50) to 3200x256 @ 256x256; past 2**28 or a bigger op(B), 0.85-1.0x.
    # And, at any size, the products with few columns (n <= 256, k <= 4096, A not transposed: the
    # input gradients dG @ W_ih of the deferred GEMMs, a narrow output layer): 1.03-1.15x
    # OpenBLAS's float32 speed and 1.05-1.2x its float64 speed from 2048x65 @ 65x256 to
    # 2048x1024 @ 1024x64 and 2048x1024 @ 1024x256. And, at any k, the float32 weight gradients
    # with a small C (A transposed, m*n <= 20480: a narrow output layer's dY^T h): 0.79-0.91x
    # OpenBLAS's time from 100x1000 @ 1000x100 to 65x2048 @ 2048x256 and 65x640 @ 640x256; with
    # a C of 32768 floats, 0.93-1.08x, and in float64 mostly slower.
    return (mnk <= SMALL_GEMM or (ta and k <= 1024 and mnk <= 4 * SMALL_GEMM)
            or (ta and size == 4 and <Py_ssize_t>m * n <= 20480 and SMALL_GEMM != 0)
            or (not ta and k <= 256 and <Py_ssize_t>n * k * size <= 262144
                and mnk <= 128 * SMALL_GEMM)
            or (not ta and n <= 256 and k <= 4096 and SMALL_GEMM != 0))


cdef inline void gemm_as(bint small, bint ta, bint tb, int m, int n, int k, floating alpha,
                         floating* a, int lda, floating* b, int ldb,
                         floating beta, floating* c, int ldc) noexcept nogil:
    """gemm() on the C kernel when small (and SMALL_GEMM is on), else on BLAS: a part of a split
    product runs where the whole would (pgemm), so its elements are the same."""
    cdef char ca = b'N'
    cdef char cb = b'N'
    cdef Py_ssize_t i, j
    if ta:
        ca = b'T'
    if tb:
        cb = b'T'
    if m <= 0 or n <= 0:
        return
    if k <= 0:                                 # empty sum: C = beta * C (BLAS rejects k = 0 lds)
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if small and SMALL_GEMM != 0:                                            # BLAS if malloc fails
        if floating is float:
            if mg_gemm_smallf_avx2(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0:
                return
        else:
            if mg_gemm_smalld_avx2(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == 0:
                return
    if floating is float:
        sgemm(&cb, &ca, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc)
    else:
        dgemm(&cb, &ca, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc)


cdef inline floating* _pack(bint tb, int n, int k, floating* b, int ldb,
                           floating* buf) noexcept nogil:
    """Pack op(B) (k x n) into buf (mg_packed_len elements, from _ops._packed_w) for the per-step
    GEMMs of a sequence, which all multiply by the same weight: packed once per call, the GEMMs run
    at 85-95 GFLOP/s where BLAS, re-packing the weight every step, reaches 45-65 (64 x 512 @
    512 x 2048: 90 against 46). Returns buf; NULL stays NULL (then gemm_p runs gemm)."""
    if buf != NULL:
        if floating is float:
            mg_pack_bf(tb, n, k, b, ldb, buf)
        else:
            mg_pack_bd(tb, n, k, b, ldb, buf)
    return buf


cdef inline Py_ssize_t _packed_len(floating* pk, int n, int k) noexcept nogil:
    """Elements of op(B) (k x n) packed by _pack into pk (its type picks float or double)."""
    if floating is float:
        return mg_packed_lenf(n, k)
    else:
        return mg_packed_lend(n, k)


cdef inline void gemm_p(floating* pk, bint ta, bint tb, int m, int n, int k, floating alpha,
                        floating* a, int lda, floating* b, int ldb,
                        floating beta, floating* c, int ldc) noexcept nogil:
    """gemm() with op(B) packed by _pack when pk is not NULL."""
    if m <= 0:
        return
    if pk == NULL:
        gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    elif floating is float:
        mg_gemm_packedf(ta, m, n, k, alpha, a, lda, pk, beta, c, ldc)
    else:
        mg_gemm_packedd(ta, m, n, k, alpha, a, lda, pk, beta, c, ldc)


# -- GEMMs split across the kernels' threads (_pool) -------------------------------------------


cdef struct _Split:             # one pgemm: the arguments of gemm_as, float32 (f) or float64 (d)
    bint small, ta, tb
    int m, n, k, lda, ldb, ldc
    double alpha, beta
    float* af
    float* bf
    float* cf
    double* ad
    double* bd
    double* cd


cdef inline void _split_part(void* arg, int i, int parts) noexcept nogil:
    """Rows [m i / parts, m (i + 1) / parts) of a pgemm."""
    cdef _Split* s = <_Split*>arg
    cdef int r0 = <int>(<Py_ssize_t>s.m * i // parts), r1 = <int>(<Py_ssize_t>s.m * (i + 1) // parts)
    cdef Py_ssize_t ao = r0 if s.ta else <Py_ssize_t>r0 * s.lda
    if s.af != NULL:
        gemm_as(s.small, s.ta, s.tb, r1 - r0, s.n, s.k, <float>s.alpha, s.af + ao, s.lda, s.bf,
                s.ldb, <float>s.beta, s.cf + <Py_ssize_t>r0 * s.ldc, s.ldc)
    else:
        gemm_as(s.small, s.ta, s.tb, r1 - r0, s.n, s.k, s.alpha, s.ad + ao, s.lda, s.bd, s.ldb,
                s.beta, s.cd + <Py_ssize_t>r0 * s.ldc, s.ldc)


cdef enum:
    COL_BLOCK = 16              # a column split's parts start at multiples of this: the C kernel's
                                # column block (16 floats, 2 blocks of 8 doubles), so every column
                                # but the last few is computed by the same block as in the whole


cdef inline void _split_cols(void* arg, int i, int parts) noexcept nogil:
    """Columns [c0, c1) of a pgemm: the `parts` shares of its COL_BLOCK-wide column blocks."""
    cdef _Split* s = <_Split*>arg
    cdef Py_ssize_t blocks = (s.n + COL_BLOCK - 1) // COL_BLOCK
    cdef int c0 = <int>(COL_BLOCK * (blocks * i // parts))
    cdef int c1 = <int>(COL_BLOCK * (blocks * (i + 1) // parts))
    cdef Py_ssize_t bo = <Py_ssize_t>c0 * s.ldb if s.tb else c0
    if c1 > s.n:
        c1 = s.n
    if s.af != NULL:
        gemm_as(s.small, s.ta, s.tb, s.m, c1 - c0, s.k, <float>s.alpha, s.af, s.lda, s.bf + bo,
                s.ldb, <float>s.beta, s.cf + c0, s.ldc)
    else:
        gemm_as(s.small, s.ta, s.tb, s.m, c1 - c0, s.k, s.alpha, s.ad, s.lda, s.bd + bo, s.ldb,
                s.beta, s.cd + c0, s.ldc)


cdef inline int _pgemm_parts(int m, int n, int k, bint* cols) noexcept nogil:
    """How many parts pgemm splits a product into, and whether by columns (cols[0])."""
    cols[0] = m < n and n >= 2 * COL_BLOCK
    return _parts(<double>m * n * k, (n + COL_BLOCK - 1) // COL_BLOCK if cols[0] else m)


cdef inline void pgemm(bint ta, bint tb, int m, int n, int k, floating alpha,
                       floating* a, int lda, floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """gemm() with C split across the kernels' threads when the product is big enough
    (_pool._parts; BLAS runs one thread in each part): by rows, or by columns when C has fewer
    rows than columns (each part then reads all of op(A), the smaller operand, and its own
    columns of op(B): a narrow weight gradient dY^T X does not pack all of X once per thread).
    Each element of C is computed as the whole product would compute it (the same kernel, the
    same order over k)."""
    cdef bint cols
    cdef int parts = _pgemm_parts(m, n, k, &cols)
    cdef _Split s
    if parts <= 1:
        gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    s.small = _small(ta, m, n, k, sizeof(floating))
    s.ta, s.tb, s.m, s.n, s.k, s.lda, s.ldb, s.ldc = ta, tb, m, n, k, lda, ldb, ldc
    s.alpha, s.beta = alpha, beta
    s.af = s.bf = s.cf = NULL
    s.ad = s.bd = s.cd = NULL
    if floating is float:
        s.af, s.bf, s.cf = a, b, c
    else:
        s.ad, s.bd, s.cd = a, b, c
    _parallel(_split_cols if cols else _split_part, &s, parts)
