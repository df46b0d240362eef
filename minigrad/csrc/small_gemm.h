/* Small-matrix GEMM for AVX2+FMA CPUs, and the packed panels of op(B) the sequence kernels reuse
   every step (used by minigrad/_gemm.pxd; see the comment there for the method). */
#ifndef MG_SMALL_GEMM_H
#define MG_SMALL_GEMM_H

#include <stddef.h>
#include <stdlib.h>
#if defined(__GNUC__) && defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 6)
#include <immintrin.h>
/* Compiled for AVX2+FMA only and used only where the CPU has them (checked at run time); everywhere
   else mg_gemm_small* return -1 and the caller uses BLAS. GNU vector types with the element's
   alignment, so loads and stores through them may be unaligned. */
typedef float mg_v8f __attribute__((vector_size(32), aligned(4)));
typedef double mg_v4d __attribute__((vector_size(32), aligned(8)));
/* gcc: also generic tuning. With its znver3 tuning (what -march=native picks on this machine's
   EPYC) the k loop of the 6x2 block keeps one panel vector in a register and reads the other from
   memory in each of its six FMAs: 13 loads for 12 FMAs, and the GEMMs of MINIGRAD_NATIVE=1 took
   about 40% longer (LSTM sequence forward at 32x20x50x50 650 us against 485). */
#if defined(__clang__)
#define MG_AVX2 __attribute__((target("avx2,fma")))
#else
#define MG_AVX2 __attribute__((target("avx2,fma,tune=generic")))
#endif

/* C[:mr, :nr] = alpha * op(A)[rows] @ panel + beta * C, for a block of MR rows (mr <= MR valid;
   the others repeat row 0 and are not stored) and NV vectors of W columns (nr <= NV * W valid).
   A row r, column p is a0[r * si + p * sp]; panel row p is bp[p * bs : p * bs + NV * W]. */
#define MG_BLOCK(T, V, W, MR, NV, NAME)                                                                  \
MG_AVX2 static inline void NAME(int k, const T *restrict a0, ptrdiff_t si, ptrdiff_t sp, int mr,         \
                                const T *restrict bp, ptrdiff_t bs, int nr, T alpha, T beta,             \
                                T *restrict c, int ldc) {                                                \
    const T *ar[MR];                                                                                     \
    V acc[MR][NV];                                                                                       \
    for (int r = 0; r < MR; r++) {                                                                       \
        ar[r] = a0 + (r < mr ? r : 0) * si;                                                              \
        for (int v = 0; v < NV; v++) acc[r][v] = (V){0};                                                 \
    }                                                                                                    \
    for (int p = 0; p < k; p++, bp += bs) {                                                              \
        V bv[NV];                                                                                        \
        for (int v = 0; v < NV; v++) bv[v] = *(const V *)(bp + v * W);                                   \
        for (int r = 0; r < MR; r++) {                                                                   \
            T x = ar[r][p * sp];                                                                         \
            for (int v = 0; v < NV; v++) acc[r][v] += x * bv[v];                                         \
        }                                                                                                \
    }                                                                                                    \
    for (int r = 0; r < mr; r++) {                                                                       \
        T *cr = c + (ptrdiff_t)r * ldc;                                                                  \
        if (nr == NV * W) {                                                                              \
            for (int v = 0; v < NV; v++)                                                                 \
                *(V *)(cr + v * W) = beta == 0 ? alpha * acc[r][v]                                       \
                                               : alpha * acc[r][v] + beta * *(V *)(cr + v * W);          \
        } else {                                                                                         \
            for (int q = 0; q < nr; q++) {                                                               \
                T y = alpha * acc[r][q / W][q % W];                                                      \
                cr[q] = beta == 0 ? y : y + beta * cr[q];                                                \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
}
MG_BLOCK(float, mg_v8f, 8, 6, 2, mg_blk6x2f)
MG_BLOCK(float, mg_v8f, 8, 4, 2, mg_blk4x2f)
MG_BLOCK(float, mg_v8f, 8, 6, 1, mg_blk6x1f)
MG_BLOCK(float, mg_v8f, 8, 4, 1, mg_blk4x1f)
MG_BLOCK(double, mg_v4d, 4, 6, 2, mg_blk6x2d)
MG_BLOCK(double, mg_v4d, 4, 4, 2, mg_blk4x2d)
MG_BLOCK(double, mg_v4d, 4, 6, 1, mg_blk6x1d)
MG_BLOCK(double, mg_v4d, 4, 4, 1, mg_blk4x1d)

/* Pack the full panel of columns j0 .. j0+P of op(B) = B.T (B stored (n, k), row stride ldb)
   into k rows of P: dst[p * P + q] = b[(j0 + q) * ldb + p]. */
MG_AVX2 static void mg_pack_td(const double *restrict b, int ldb, int j0, int k, double *restrict dst) {
    for (int q = 0; q < 8; q++) {
        const double *src = b + (ptrdiff_t)(j0 + q) * ldb;
        for (int p = 0; p < k; p++) dst[(ptrdiff_t)p * 8 + q] = src[p];
    }
}
/* float: by 8x8 register transposes, then the rows left over one by one */
MG_AVX2 static void mg_pack_tf(const float *restrict b, int ldb, int j0, int k, float *restrict dst) {
    int p = 0;
    for (; p + 8 <= k; p += 8) {
        for (int h = 0; h < 2; h++) {
            const float *s = b + (ptrdiff_t)(j0 + 8 * h) * ldb + p;
            ptrdiff_t l = ldb;
            __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + l);
            __m256 r2 = _mm256_loadu_ps(s + 2 * l), r3 = _mm256_loadu_ps(s + 3 * l);
            __m256 r4 = _mm256_loadu_ps(s + 4 * l), r5 = _mm256_loadu_ps(s + 5 * l);
            __m256 r6 = _mm256_loadu_ps(s + 6 * l), r7 = _mm256_loadu_ps(s + 7 * l);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + (ptrdiff_t)p * 16 + 8 * h;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 16, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 32, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 48, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 64, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 80, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 96, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 112, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    for (int q = 0; q < 16 && p < k; q++) {
        const float *src = b + (ptrdiff_t)(j0 + q) * ldb;
        for (int pp = p; pp < k; pp++) dst[(ptrdiff_t)pp * 16 + q] = src[pp];
    }
}

/* the first n (0 < n < W) elements at p, zeros after them; reads nothing past p[n - 1] */
MG_AVX2 static inline mg_v8f mg_loadpartf(const float *p, int n) {
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return (mg_v8f)_mm256_maskload_ps(p, mask);
}
MG_AVX2 static inline mg_v4d mg_loadpartd(const double *p, int n) {
    __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    return (mg_v4d)_mm256_maskload_pd(p, mask);
}
/* s[i] = the sum of the lanes of v[i], i < 8 (pairwise, by horizontal adds) */
MG_AVX2 static inline void mg_hsum8f(const mg_v8f *v, float *s) {
    __m256 h0 = _mm256_hadd_ps((__m256)v[0], (__m256)v[1]);
    __m256 h1 = _mm256_hadd_ps((__m256)v[2], (__m256)v[3]);
    __m256 h2 = _mm256_hadd_ps((__m256)v[4], (__m256)v[5]);
    __m256 h3 = _mm256_hadd_ps((__m256)v[6], (__m256)v[7]);
    __m256 g0 = _mm256_hadd_ps(h0, h1), g1 = _mm256_hadd_ps(h2, h3);
    _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(g0), _mm256_extractf128_ps(g0, 1)));
    _mm_storeu_ps(s + 4, _mm_add_ps(_mm256_castps256_ps128(g1), _mm256_extractf128_ps(g1, 1)));
}
MG_AVX2 static inline void mg_hsum8d(const mg_v4d *v, double *s) {
    for (int i = 0; i < 8; i++) s[i] = (v[i][0] + v[i][1]) + (v[i][2] + v[i][3]);
}
/* The last panel when it is narrow (1 .. W/2 columns: n mod 16 = 2 at H = 50). Blocks over it
   would compute a whole vector of columns with too few accumulators to hide the FMA latency,
   costing as much as a full panel (32x50 @ 50xn: n = 48 1.96 us, n = 50 2.45, n = 64 2.59).
   Instead these columns run two at a time over all rows: when A is transposed (stored k x m,
   the weight gradients dG.T @ X), with vectors along the rows of C; otherwise as dot products
   of rows of A with the columns, 4 rows x 2 columns at a time. The columns are read where they
   lie: column j of the last panel, element p, is bs[j * cs + p * ks] (the packed panel: ks =
   PT, cs = 1; an unpacked B: ks = ldb, cs = 1, or ks = 1, cs = ldb when transposed). C columns
   j0, j0 + 1 (nq = 1 or 2 of them stored). */
#define MG_TAIL_K 1024
#define MG_TA_KC 128         /* k chunk of a GEMM with A transposed (see mg_gemm_run) */
#define MG_TAIL_T_STEPS(T, V, W, NV)                                                                     \
for (int p = 0; p < kf; p++) {                                                                           \
    const T *ap = a + (ptrdiff_t)p * lda + i0;                                                           \
    T b0 = q0[(ptrdiff_t)p * ks], b1 = q1[(ptrdiff_t)p * ks];                                            \
    for (int v = 0; v < NV; v++) {                                                                       \
        V x = *(const V *)(ap + v * W);                                                                  \
        acc[v][0] += x * b0;                                                                             \
        acc[v][1] += x * b1;                                                                             \
    }                                                                                                    \
}
#define MG_TAIL(T, V, W, S)                                                                              \
MG_AVX2 static void mg_tail_t##S(int m, int k, T alpha, const T *restrict a, int lda,                    \
                                 const T *restrict q0, const T *restrict q1, ptrdiff_t ks, int nq,       \
                                 T beta, T *restrict c, int ldc) {                                       \
    for (int i0 = 0; i0 < m; i0 += 4 * W) {                                                              \
        int rows = m - i0 < 4 * W ? m - i0 : 4 * W, nv = (rows + W - 1) / W;                             \
        V acc[4][2];                                                                                     \
        T out[4][2][W];                                                                                  \
        for (int v = 0; v < 4; v++) acc[v][0] = acc[v][1] = (V){0};                                      \
        /* a full vector past row m of A reads into the next row of storage (unused lanes), so           \
              it may run on every step but the last, which loads the partial vector masked */            \
        int kf = (rows % W == 0) ? k : (lda >= W ? k - 1 : 0);                                           \
        switch (nv) {                                                                                    \
        case 4: MG_TAIL_T_STEPS(T, V, W, 4) break;                                                       \
        case 3: MG_TAIL_T_STEPS(T, V, W, 3) break;                                                       \
        case 2: MG_TAIL_T_STEPS(T, V, W, 2) break;                                                       \
        default: MG_TAIL_T_STEPS(T, V, W, 1) break;                                                      \
        }                                                                                                \
        for (int p = kf; p < k; p++) {                                                                   \
            const T *ap = a + (ptrdiff_t)p * lda + i0;                                                   \
            T b0 = q0[(ptrdiff_t)p * ks], b1 = q1[(ptrdiff_t)p * ks];                                    \
            for (int v = 0; v < 4; v++) {             /* constant indices keep acc in registers */       \
                int left = rows - v * W;                                                                 \
                V x = left >= W ? *(const V *)(ap + v * W)                                               \
                    : left > 0 ? mg_loadpart##S(ap + v * W, left) : (V){0};                              \
                acc[v][0] += x * b0;                                                                     \
                acc[v][1] += x * b1;                                                                     \
            }                                                                                            \
        }                                                                                                \
        for (int v = 0; v < 4; v++)                                                                      \
            for (int q = 0; q < 2; q++) *(V *)out[v][q] = acc[v][q];                                     \
        for (int r = 0; r < rows; r++)                                                                   \
            for (int q = 0; q < nq; q++) {                                                               \
                T *cp = c + (ptrdiff_t)(i0 + r) * ldc + q;                                               \
                T y = alpha * out[r / W][q][r % W];                                                      \
                *cp = beta == 0 ? y : y + beta * *cp;                                                    \
            }                                                                                            \
    }                                                                                                    \
}                                                                                                        \
MG_AVX2 static void mg_tail_n##S(int m, int k, T alpha, const T *restrict a, int lda,                    \
                                 const T *restrict b0, const T *restrict b1, int nq, T beta,             \
                                 T *restrict c, int ldc) {                                               \
    int k8 = k / W * W;                                                                                  \
    for (int i0 = 0; i0 < m; i0 += 4) {                                                                  \
        const T *ar[4];                                                                                  \
        V acc[8];                                     /* row r, column q: acc[2 * r + q] */              \
        T s[8];                                                                                          \
        for (int r = 0; r < 4; r++) {                                                                    \
            ar[r] = a + (ptrdiff_t)(i0 + (i0 + r < m ? r : 0)) * lda;                                    \
            acc[2 * r] = acc[2 * r + 1] = (V){0};                                                        \
        }                                                                                                \
        for (int p = 0; p < k8; p += W) {                                                                \
            V u0 = *(const V *)(b0 + p), u1 = *(const V *)(b1 + p);                                      \
            for (int r = 0; r < 4; r++) {                                                                \
                V x = *(const V *)(ar[r] + p);                                                           \
                acc[2 * r] += x * u0;                                                                    \
                acc[2 * r + 1] += x * u1;                                                                \
            }                                                                                            \
        }                                                                                                \
        if (k8 < k) {                /* the last k % W steps: nothing read past b0[k - 1], b1[k - 1] */  \
            V u0 = mg_loadpart##S(b0 + k8, k - k8), u1 = mg_loadpart##S(b1 + k8, k - k8);                \
            for (int r = 0; r < 4; r++) {                                                                \
                V x = mg_loadpart##S(ar[r] + k8, k - k8);                                                \
                acc[2 * r] += x * u0;                                                                    \
                acc[2 * r + 1] += x * u1;                                                                \
            }                                                                                            \
        }                                                                                                \
        mg_hsum8##S(acc, s);                                                                             \
        for (int r = 0; r < 4 && i0 + r < m; r++)                                                        \
            for (int q = 0; q < nq; q++) {                                                               \
                T *cp = c + (ptrdiff_t)(i0 + r) * ldc + q;                                               \
                *cp = beta == 0 ? alpha * s[2 * r + q] : alpha * s[2 * r + q] + beta * *cp;              \
            }                                                                                            \
    }                                                                                                    \
}                                                                                                        \
/* C[:, :tw] (tw <= W/2) = alpha * op(A) @ the last panel's columns (bs, ks, cs as above) +              \
   beta * C. When A is not transposed, columns strided along k are first copied to the stack             \
   (k <= MG_TAIL_K); contiguous ones (a transposed B: the rows of W in x @ W.T) are read in place. */    \
MG_AVX2 static void mg_tail##S(int ta, int m, int k, T alpha, const T *restrict a, int lda,              \
                               const T *bs, ptrdiff_t ks, ptrdiff_t cs, int tw, T beta,                  \
                               T *restrict c, int ldc) {                                                 \
    T cols[2 * MG_TAIL_K];                                                                               \
    for (int j0 = 0; j0 < tw; j0 += 2) {                                                                 \
        int nq = tw - j0 < 2 ? tw - j0 : 2;                                                              \
        const T *q0 = bs + j0 * cs, *q1 = nq == 2 ? q0 + cs : q0;   /* one column: its result unused */  \
        if (ta) {                                                                                        \
            mg_tail_t##S(m, k, alpha, a, lda, q0, q1, ks, nq, beta, c + j0, ldc);                        \
            continue;                                                                                    \
        }                                                                                                \
        if (ks != 1) {                                                                                   \
            for (int p = 0; p < k; p++) {                                                                \
                cols[p] = q0[(ptrdiff_t)p * ks];                                                         \
                cols[MG_TAIL_K + p] = q1[(ptrdiff_t)p * ks];                                             \
            }                                                                                            \
            q0 = cols;                                                                                   \
            q1 = cols + MG_TAIL_K;                                                                       \
        }                                                                                                \
        mg_tail_n##S(m, k, alpha, a, lda, q0, q1, nq, beta, c + j0, ldc);                                \
    }                                                                                                    \
}
MG_TAIL(float, mg_v8f, 8, f)
MG_TAIL(double, mg_v4d, 4, d)

/* Panels of op(B) (k x n): full ones of P = 2W columns, then a partial last one of PT = W or P
   columns, zero padded. mg_pack_tail copies the partial one (k rows of PT); mg_pack_b packs all
   of op(B), full panels first (panel jp at jp * k * P), into mg_packed_len elements.
   mg_narrow: whether the partial panel is narrow enough for mg_tail (else blocks compute it). */
#define MG_PANELS(T, V, W, S)                                                                            \
static size_t mg_packed_len##S(int n, int k) {                                                           \
    int P = 2 * W, nfull = n / P, tail = n - nfull * P;                                                  \
    return (size_t)k * ((size_t)nfull * P + (tail ? (tail <= W ? W : P) : 0));                           \
}                                                                                                        \
static inline int mg_narrow##S(int ta, int n, int k) {                                                   \
    int tail = n % (2 * W);                                                                              \
    return tail > 0 && 2 * tail <= W && (ta || k <= MG_TAIL_K);                                          \
}                                                                                                        \
MG_AVX2 static void mg_pack_tail##S(int tb, int n, int k, const T *restrict b, int ldb, T *restrict pt) { \
    int P = 2 * W, nfull = n / P, tail = n - nfull * P, PT = tail <= W ? W : P;                          \
    const T *src = b + (ptrdiff_t)nfull * P * (tb ? ldb : 1);                                            \
    for (int p = 0; p < k; p++) {        /* vector stores: plain copy loops became memcpy calls */       \
        const T *s = src + (ptrdiff_t)p * ldb;                                                           \
        V r0 = tb ? (V){0} : tail >= W ? *(const V *)s : mg_loadpart##S(s, tail);                        \
        *(V *)(pt + (ptrdiff_t)p * PT) = r0;                                                             \
        if (PT == P)                                                                                     \
            *(V *)(pt + (ptrdiff_t)p * PT + W) = tb ? (V){0} : mg_loadpart##S(s + W, tail - W);          \
    }                                                                                                    \
    if (tb)                                                                                              \
        for (int q = 0; q < tail; q++)                                                                   \
            for (int p = 0; p < k; p++) pt[(ptrdiff_t)p * PT + q] = src[(ptrdiff_t)q * ldb + p];         \
}                                                                                                        \
/* with_tail = 0: the full panels only (the caller's mg_tail reads the last columns from B) */           \
MG_AVX2 static void mg_pack_panels##S(int tb, int n, int k, const T *restrict b, int ldb,                \
                                      T *restrict pk, int with_tail) {                                   \
    int P = 2 * W, nfull = n / P;                                                                        \
    for (int jp = 0; jp < nfull; jp++) {                                                                 \
        T *d = pk + (ptrdiff_t)jp * k * P;                                                               \
        if (tb) mg_pack_t##S(b, ldb, jp * P, k, d);                                                      \
        else for (int p = 0; p < k; p++) {                                                               \
            const T *s = b + (ptrdiff_t)p * ldb + jp * P;                                                \
            *(V *)(d + (ptrdiff_t)p * P) = *(const V *)s;                                                \
            *(V *)(d + (ptrdiff_t)p * P + W) = *(const V *)(s + W);                                      \
        }                                                                                                \
    }                                                                                                    \
    if (n > nfull * P && with_tail) mg_pack_tail##S(tb, n, k, b, ldb, pk + (ptrdiff_t)nfull * k * P);    \
}                                                                                                        \
MG_AVX2 static void mg_pack_b##S(int tb, int n, int k, const T *restrict b, int ldb, T *restrict pk) {   \
    mg_pack_panels##S(tb, n, k, b, ldb, pk, 1);                                                          \
}                                                                                                        \
/* C = alpha * op(A) @ op(B) + beta * C with op(B) packed by mg_pack_b (n, k as packed). When all        \
   panels fit in L2 (256 KiB), rows outer: each block of 6 (or 4) rows of op(A) passes over every        \
   panel. Otherwise rows in chunks whose slice of op(A) fits 128 KiB, then panels (each stays in         \
   L1/L2 while the chunk's row blocks pass over it): B is read from memory once per chunk, not           \
   once per row block (64 x 512 @ 512 x 2048: 90 GFLOP/s against 46). */                                 \
MG_AVX2 static inline void mg_block##S(int k, const T *a0, ptrdiff_t si, ptrdiff_t sp, int left,         \
                                       const T *bp, ptrdiff_t bs, int nr, T alpha, T beta, T *cb,        \
                                       int ldc, int *mr) {                                               \
    int six = left >= 6 && left != 8;                       /* 8: two 4-row blocks, not 6 + 2 */         \
    *mr = six ? 6 : (left < 4 ? left : 4);                                                               \
    if (nr > W) {                                                                                        \
        if (six) mg_blk6x2##S(k, a0, si, sp, *mr, bp, bs, nr, alpha, beta, cb, ldc);                     \
        else mg_blk4x2##S(k, a0, si, sp, *mr, bp, bs, nr, alpha, beta, cb, ldc);                         \
    } else {                                                                                             \
        if (six) mg_blk6x1##S(k, a0, si, sp, *mr, bp, bs, nr, alpha, beta, cb, ldc);                     \
        else mg_blk4x1##S(k, a0, si, sp, *mr, bp, bs, nr, alpha, beta, cb, ldc);                         \
    }                                                                                                    \
}                                                                                                        \
/* With A transposed (the weight gradients dG.T @ X, k = T * B), a block reads each op(A) element        \
   from another row of A: a new cache line per k step, used again by the next panels only if it is       \
   still in L1. So such a GEMM runs in chunks of MG_TA_KC steps of k (the first chunk applies beta,      \
   the later ones add to C): 50 x 640 @ 640 x 50 63 -> 73 GFLOP/s, RNN sequence backward at              \
   32x20x50x50 163 -> 148 us; other shapes within +-3%. */                                               \
/* braw: NULL, or op(B) unpacked (B, transposed when tb, row stride ldb), from which mg_tail then        \
   reads a narrow last panel (mg_pack_panels left it out) */                                             \
MG_AVX2 static void mg_gemm_run##S(int ta, int m, int n, int k, T alpha, const T *restrict a, int lda,   \
                                   const T *restrict pk, const T *braw, int tb, int ldb, T beta,         \
                                   T *restrict c, int ldc) {                                             \
    ptrdiff_t si = ta ? 1 : lda, sp = ta ? lda : 1;                                                      \
    int P = 2 * W, nfull = n / P, tail = n - nfull * P, npan = nfull + (tail > 0), mr;                   \
    int PT = tail <= W ? W : P;                                                                          \
    int narrow = mg_narrow##S(ta, n, k);                                /* last panel: mg_tail */        \
    int nb = narrow ? nfull : npan;                                     /* panels the blocks compute */  \
    int kc = ta && k > MG_TA_KC ? MG_TA_KC : k;                        /* k in chunks: see MG_TA_KC */   \
    size_t mc0 = (size_t)131072 / ((size_t)kc * sizeof(T));                                              \
    int fits = mg_packed_len##S(n, k) * sizeof(T) <= 262144;           /* all panels in L2 */          \
    int mc = fits ? m : (mc0 < 12 ? 12 : (mc0 > (size_t)m ? m : (int)mc0));                              \
    for (int p0 = 0; nb > 0 && p0 < k; p0 += kc) {                                                       \
        int kk = k - p0 < kc ? k - p0 : kc;                                                              \
        T bt = p0 == 0 ? beta : 1;                                                                       \
        const T *ak = a + (ptrdiff_t)p0 * sp;                                                            \
        for (int ic = 0; ic < m; ic += mc) {             /* nb = 0: all in mg_tail */                    \
            int me = m - ic < mc ? m : ic + mc;                                                          \
            if (fits) {                                                                                  \
                for (int i0 = 0; i0 < m; i0 += mr)                                                       \
                    for (int jp = 0; jp < nb; jp++) {                                                    \
                        int j0 = jp * P, nr = n - j0 < P ? n - j0 : P, bs = jp == nfull ? PT : P;        \
                        mg_block##S(kk, ak + i0 * si, si, sp, m - i0,                                    \
                                    pk + (ptrdiff_t)jp * k * P + (ptrdiff_t)p0 * bs,                     \
                                    bs, nr, alpha, bt, c + (ptrdiff_t)i0 * ldc + j0, ldc, &mr);          \
                    }                                                                                    \
                break;                                                                                   \
            }                                                                                            \
            for (int jp = 0; jp < nb; jp++) {                                                            \
                int j0 = jp * P, nr = n - j0 < P ? n - j0 : P, bs = jp == nfull ? PT : P;                \
                for (int i0 = ic; i0 < me; i0 += mr)                                                     \
                    mg_block##S(kk, ak + i0 * si, si, sp, me - i0,                                       \
                                pk + (ptrdiff_t)jp * k * P + (ptrdiff_t)p0 * bs,                         \
                                bs, nr, alpha, bt, c + (ptrdiff_t)i0 * ldc + j0, ldc, &mr);              \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    if (narrow && braw == NULL)                                                                          \
        mg_tail##S(ta, m, k, alpha, a, lda, pk + (ptrdiff_t)nfull * k * P, W, 1, tail, beta,             \
                   c + nfull * P, ldc);                                                                  \
    else if (narrow)                                                                                     \
        mg_tail##S(ta, m, k, alpha, a, lda, braw + (ptrdiff_t)nfull * P * (tb ? ldb : 1),                \
                   tb ? 1 : ldb, tb ? ldb : 1, tail, beta, c + nfull * P, ldc);                          \
}                                                                                                        \
MG_AVX2 static void mg_gemm_packed##S(int ta, int m, int n, int k, T alpha, const T *restrict a,         \
                                      int lda, const T *restrict pk, T beta, T *restrict c, int ldc) {   \
    mg_gemm_run##S(ta, m, n, k, alpha, a, lda, pk, NULL, 0, 0, beta, c, ldc);                            \
}
MG_PANELS(float, mg_v8f, 8, f)
MG_PANELS(double, mg_v4d, 4, d)

/* The panel buffer of a call too big for the stack: each thread keeps the largest one it has
   needed (up to MG_SCRATCH_KEEP bytes; freed when the thread ends). A buffer malloc'd and freed
   per call came back as fresh pages whenever glibc had returned it to the system, one page fault
   per 4 KiB: the input-gradient GEMMs of the char-LM step (a 1 MiB buffer each) faulted about
   500 times a step. */
#include <pthread.h>
#define MG_SCRATCH_KEEP ((size_t)16 << 20)
typedef struct { void *p; size_t len; } mg_scratch_t;
static pthread_key_t mg_scratch_key;
static pthread_once_t mg_scratch_once = PTHREAD_ONCE_INIT;
static void mg_scratch_free(void *s) {
    free(((mg_scratch_t *)s)->p);
    free(s);
}
static void mg_scratch_init(void) {
    if (pthread_key_create(&mg_scratch_key, mg_scratch_free) != 0) mg_scratch_key = (pthread_key_t)-1;
}
/* A buffer of `bytes` for this thread: the kept one, or NULL on failure; *own is set when the
   caller must free it (too big to keep). */
static void *mg_scratch_get(size_t bytes, int *own) {
    *own = 0;
    if (bytes > MG_SCRATCH_KEEP) {
        *own = 1;
        return malloc(bytes);
    }
    pthread_once(&mg_scratch_once, mg_scratch_init);
    if (mg_scratch_key == (pthread_key_t)-1) {
        *own = 1;
        return malloc(bytes);
    }
    mg_scratch_t *s = (mg_scratch_t *)pthread_getspecific(mg_scratch_key);
    if (s == NULL) {
        s = (mg_scratch_t *)calloc(1, sizeof *s);
        if (s == NULL || pthread_setspecific(mg_scratch_key, s) != 0) {
            free(s);
            *own = 1;
            return malloc(bytes);
        }
    }
    if (bytes > s->len) {
        void *p = malloc(bytes);  /* not realloc: the old contents are not needed */
        if (p == NULL) return NULL;
        free(s->p);
        s->p = p;
        s->len = bytes;
    }
    return s->p;
}
/* C (m, n) = alpha * op(A) @ op(B) + beta * C, row-major; op(X) = X.T when tX: op(B) packed
   (on the stack up to 64 KiB, else in the thread's scratch buffer), then mg_gemm_packed. Returns
   -1 (and does nothing) when the panel buffer cannot be allocated. (Reading a non-transposed B in
   place instead of packing it was measured 1.5x slower at 32 x 50 @ 50 x 200.) */
#define MG_GEMM_SMALL(T, W, S, NAME)                                                                     \
MG_AVX2 static int NAME(int ta, int tb, int m, int n, int k, T alpha,                                    \
                        const T *restrict a, int lda, const T *restrict b, int ldb,                      \
                        T beta, T *restrict c, int ldc) {                                                \
    size_t need = mg_packed_len##S(n, k);                                                                \
    T stack[16384 / sizeof(T) * 4];                                                                      \
    int own = 0;                                                                                         \
    T *pk = need <= sizeof stack / sizeof(T) ? stack : (T *)mg_scratch_get(need * sizeof(T), &own);      \
    if (pk == NULL) return -1;                                                                           \
    mg_pack_panels##S(tb, n, k, b, ldb, pk, !mg_narrow##S(ta, n, k));                                    \
    mg_gemm_run##S(ta, m, n, k, alpha, a, lda, pk, b, tb, ldb, beta, c, ldc);                            \
    if (own) free(pk);                                                                                   \
    return 0;                                                                                            \
}
MG_GEMM_SMALL(float, 8, f, mg_gemm_smallf_avx2)
MG_GEMM_SMALL(double, 4, d, mg_gemm_smalld_avx2)
__attribute__((unused)) static int mg_have_avx2(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return have;
}
#define MG_HAVE_SMALL_GEMM mg_have_avx2()
#else
#define MG_GEMM_SMALL(T, NAME)                                                                           \
static int NAME(int ta, int tb, int m, int n, int k, T alpha, const T *a, int lda,                       \
                const T *b, int ldb, T beta, T *c, int ldc) { return -1; }
MG_GEMM_SMALL(float, mg_gemm_smallf_avx2)
MG_GEMM_SMALL(double, mg_gemm_smalld_avx2)
#define MG_PANELS(T, S)                                                                                  \
static size_t mg_packed_len##S(int n, int k) { return 0; }                                               \
static void mg_pack_b##S(int tb, int n, int k, const T *b, int ldb, T *pk) {}                            \
static void mg_gemm_packed##S(int ta, int m, int n, int k, T alpha, const T *a, int lda,                 \
                              const T *pk, T beta, T *c, int ldc) {}
MG_PANELS(float, f)
MG_PANELS(double, d)
#define MG_HAVE_SMALL_GEMM 0
#endif

#endif
