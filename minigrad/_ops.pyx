# cython: language_level=3, cdivision=True
"""Compiled kernels: linear, RNN/LSTM/GRU cells and whole sequences (contract: docs/kernels.md).

Layout of this file:
  1. scalar math (vectorizable float32 exp/sigmoid/tanh in C, libm for float64)
  2. `gemm`: row-major GEMM on scipy's BLAS, or a C kernel for small problems on AVX2+FMA CPUs
  3. row helpers (one pass over a gate row) and the nogil bodies, one `floating` body per kernel;
     a cell is the sequence body with T = 1
  4. argument validation (shared, runs before any pointer is touched)
  5. the `def` wrappers, one per kernel

All bodies read their arguments from one struct `K` of untyped pointers plus sizes; the `floating`
tag argument picks the float32 or float64 specialization.
"""
from libc.math cimport tanh, exp, sqrt
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm
from cython cimport floating
cimport numpy as cnp
import numpy as np

cnp.import_array()

# ---------------------------------------------------------------------------------------------
# 1. scalar math
#
# float32: branch-free polynomial exp (Cephes coefficients, < 1 ulp, argument clamped to
# [-87, 88] so one power-of-two scaling suffices), so gcc vectorizes the gate loops (libm calls
# cannot be vectorized without -ffast-math, which we never use). tanh is a minimax polynomial for
# |x| < 0.625 (accurate near 0) and (1 - e) / (1 + e), e = exp(-2|x|), above (<= 1.5 ulp);
# sigmoid is 1 / (1 + exp(-x)) (<= 2.5 ulp); tests/test_kernels.py measures both in ulps. The
# row loops over these are compiled twice on x86-64 Linux (AVX2+FMA and baseline SSE2) and the
# loader picks one per machine (gcc target_clones), so the default build stays portable.
# float64: libm exp and tanh, scalar.
cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>
    /* Not when the build's own target already has AVX2 and FMA (MINIGRAD_NATIVE=1 on such a CPU):
       there is nothing to clone, and a clone would be slower. gcc inlines a function only into
       code whose target includes the function's, and x86-64-v3 does not include -march=native's
       (znver3 here), so the exp, sigmoid and tanh helpers below would stay calls, one per element,
       inside the x86-64-v3 clone of every row loop (LSTM sequence forward at 32x20x50x50: 1.7 ms
       instead of 0.65, before the tuning fix below). */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
        && !(defined(__AVX2__) && defined(__FMA__))
    #define MG_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
    #else
    #define MG_CLONES
    #endif
    /* helpers of the MG_CLONES functions: inlined into each clone, so compiled for its target */
    #if defined(__GNUC__)
    #define MG_INLINE static inline __attribute__((always_inline))
    #else
    #define MG_INLINE static inline
    #endif
    /* exp(x) for x in [-87, 88] (< 1 ulp); outside, the argument is clamped to that range. Every
       caller divides by 1 + exp(...), where the clamp moves a result by less than 1e-38. The
       clamps are written as min/max (vminps/vmaxps: a NaN becomes 88, and the result is x again
       at the end); adding 1.5 * 2**23 rounds x / ln 2 to the integer n, which then sits in the
       low bits of t, so n << 23 added to the bits of p scales p by 2**n (p * 2**n is normal for
       every n here). Against converting n and multiplying: LSTM forward row pass 11.0 -> 9.9 us
       for 32 x 50 (C harness), sequence forwards at 32x20x50x50 2-3% faster. */
    static inline float mg_expf_core(float xc) {    /* xc in [-87, 88], not NaN */
        float t = xc * 1.44269504088896341f + 12582912.0f;
        float fn = t - 12582912.0f;                 /* round(x / ln 2): -126 .. 127 */
        float r = xc - fn * 0.693359375f;
        r = r + fn * 2.12194440e-4f;
        float z = r * r;
        float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                    + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * z
                  + r + 1.0f;
        union { float f; unsigned int i; } ut = { t }, up = { p };
        up.i += ut.i << 23;
        return up.f;
    }
    static inline float mg_expf(float x) {
        float xc = x < 88.0f ? x : 88.0f;
        xc = xc > -87.0f ? xc : -87.0f;
        float e = mg_expf_core(xc);
        return (x == x) ? e : x;
    }
    /* 1 / (1 + exp(-x)): one division; for x < 0, exp(-x) > 1 carries its < 1 ulp into the
       quotient (<= 2.5 ulp in all). Below x = -88 (true value < 6e-39) it returns 0. */
    static inline float mg_sigmoidf(float x) {
        float s = 1.0f / (1.0f + mg_expf(-x));
        return x < -88.0f ? 0.0f : s;
    }
    /* |x| is capped at 10 before the exp (tanh(10) rounds to 1 in float32, as does every larger
       value), so the exp needs neither clamps nor a NaN check: NaN in, NaN out by the last select.
       Results are those of the uncapped formula. */
    static inline float mg_tanhf(float x) {
        float ax = fabsf(x);
        float e = mg_expf_core(-2.0f * (ax < 10.0f ? ax : 10.0f));
        float big = (1.0f - e) / (1.0f + e);
        float z = x * x;
        float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                        + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * ax + ax;
        float t = copysignf(ax < 0.625f ? small : big, x);
        return (x == x) ? t : x;
    }
    static inline double mg_sigmoid(double x) {
        double e;
        if (x >= 0.0) { e = exp(-x); return 1.0 / (1.0 + e); }
        e = exp(x);
        return e / (1.0 + e);
    }
    /* The row kernels: one batch row of one step of a cell body, forward or backward, in one pass
       (restrict pointers, so gcc vectorizes each loop without run-time alias checks). Generated for
       float (suffix f, with the polynomial exp above) and double (suffix d, libm). No branch may
       sit inside these loops: one (say, on an optional pointer) stops gcc vectorizing them (8x
       slower). Caches: LSTM g = [i | f | g | o | tanh(c1)], GRU g = [r | z | n | W_hn h + b_hn]. */
    /* gcc (-march=native builds: the rows inlined into the Cython loops) says the row-tail buffer sv
       of the forward rows "is used uninitialized". It is not: both mg_last8 calls test the same
       m < H, and the one that reads sv runs only after the one that writes it. Zero-filling sv to
       silence it cost the default build 1-2% of its sequence forwards, so only the warning goes. */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wuninitialized"
    #pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    #endif
    #define MG_ROWS(T, S, SIG, TANH, SQRT)                                                                   \
    /* The forward rows rewrite their gate blocks in place. When H is not a multiple of 8 (H = 50), the      \
       last H % 8 elements would run one at a time after the vector loop (22% of the LSTM row's time at      \
       H = 50). Instead the row runs its vector loop up to the last multiple of 8, m, which this returns     \
       (H when H < 8 or H % 8 == 0: nothing left), and then once more over H - 8 .. H - 1, recomputing       \
       a few elements. Called with restore = 0 before the first pass, it saves the last 8 inputs of each     \
       of the nb blocks of H (g + b H); with restore = 1, it puts them back for the second pass. */          \
    MG_INLINE ptrdiff_t mg_last8##S(T *restrict g, ptrdiff_t H, int nb, T (*restrict sv)[8],                 \
                                        int restore) {                                                       \
        ptrdiff_t m = H < 8 ? H : H - H % 8;                                                                 \
        if (m < H)                                                                                           \
            for (int b = 0; b < nb; b++)                                                                     \
                for (int q = 0; q < 8; q++) {                                                                \
                    T *p = g + b * H + H - 8 + q;                                                            \
                    if (restore) *p = sv[b][q]; else sv[b][q] = *p;                                          \
                }                                                                                            \
        return m;                                                                                            \
    }                                                                                                        \
    MG_CLONES static void mg_add##S(T *restrict dst, const T *restrict src, ptrdiff_t n) {                   \
        for (ptrdiff_t j = 0; j < n; j++) dst[j] += src[j];                                                  \
    }                                                                                                        \
    /* out (n) = a (rows, n) summed over the rows, in order (as NumPy reduces axis 0) */                     \
    MG_CLONES static void mg_colsum##S(const T *restrict a, ptrdiff_t rows, ptrdiff_t n, T *restrict out) {  \
        for (ptrdiff_t j = 0; j < n; j++) out[j] = 0;                                                        \
        for (ptrdiff_t r = 0; r < rows; r++, a += n)                                                         \
            for (ptrdiff_t j = 0; j < n; j++) out[j] += a[j];                                                \
    }                                                                                                        \
    /* dst (rows, n) += row, in one call (per-row calls here and in the column sums: 0.5 us a cell) */       \
    MG_CLONES static void mg_add_rows##S(T *restrict dst, const T *restrict row, ptrdiff_t rows,             \
                                        ptrdiff_t n) {                                                       \
        for (ptrdiff_t r = 0; r < rows; r++, dst += n)                                                       \
            for (ptrdiff_t j = 0; j < n; j++) dst[j] += row[j];                                              \
    }                                                                                                        \
    /* One SGD step on n elements in place (sgd_update). Each branch picks a whole loop, so none sits        \
       inside one; products are FMA-contracted where the target has FMA (an ulp or two from the twin). */    \
    MG_CLONES static void mg_sgd##S(T *restrict p, const T *restrict g, T *restrict b, ptrdiff_t n, T lr,    \
                                    T mom, T damp, T wd, int nesterov, int first) {                          \
        if (b == NULL && wd == 0) {                                                                          \
            for (ptrdiff_t j = 0; j < n; j++) p[j] -= g[j] * lr;                                             \
        } else if (b == NULL) {                                                                              \
            for (ptrdiff_t j = 0; j < n; j++) p[j] -= (p[j] * wd + g[j]) * lr;                               \
        } else if (first) {                           /* the buffer starts as the (decayed) gradient */      \
            for (ptrdiff_t j = 0; j < n; j++) {                                                              \
                T gj = wd == 0 ? g[j] : p[j] * wd + g[j];                                                    \
                b[j] = gj;                                                                                   \
                p[j] -= (nesterov ? gj * mom + gj : gj) * lr;                                                \
            }                                                                                                \
        } else {                                                                                             \
            for (ptrdiff_t j = 0; j < n; j++) {                                                              \
                T gj = wd == 0 ? g[j] : p[j] * wd + g[j];                                                    \
                T bj = b[j] * mom + (damp == 1 ? gj : gj * damp);                                            \
                b[j] = bj;                                                                                   \
                p[j] -= (nesterov ? bj * mom + gj : bj) * lr;                                                \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    /* One Adam step on n elements in place (adam_update). wd_mode: 0 none, 1 L2 (g += wd p), 2              \
       decoupled (p *= decay first); vmax NULL without amsgrad (two loops: a branch on it inside one         \
       would stop gcc vectorizing). step_size = lr / (1 - beta1^t) and bc2 = sqrt(1 - beta2^t) come          \
       from the caller. The amsgrad max keeps a NaN of either side, as np.maximum does. mg_adam_mv: the      \
       moments of element j, shared by both loops (*pj: p[j] after a decoupled decay). */                    \
    MG_INLINE T mg_adam_mv##S(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,              \
                              ptrdiff_t j, T b1, T omb1, T b2, T omb2, T wd, T decay, int wd_mode,           \
                              T *pj) {                                                                       \
        T pd = wd_mode == 2 ? p[j] * decay : p[j];                                                           \
        T gj = wd_mode == 1 ? pd * wd + g[j] : g[j];                                                         \
        T mj = m[j] * b1 + gj * omb1, vj = v[j] * b2 + (gj * gj) * omb2;                                     \
        m[j] = mj; v[j] = vj; *pj = pd;                                                                      \
        return vj;                                                                                           \
    }                                                                                                        \
    MG_CLONES static void mg_adam##S(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,       \
                                     T *restrict vmax, ptrdiff_t n, T b1, T omb1, T b2, T omb2, T eps,       \
                                     T wd, T decay, T step_size, T bc2, int wd_mode) {                       \
        T pj;                                                                                                \
        if (vmax == NULL) {                                                                                  \
            for (ptrdiff_t j = 0; j < n; j++) {                                                              \
                T vj = mg_adam_mv##S(p, g, m, v, j, b1, omb1, b2, omb2, wd, decay, wd_mode, &pj);            \
                p[j] = pj - m[j] / (SQRT(vj) / bc2 + eps) * step_size;                                       \
            }                                                                                                \
        } else {                                                                                             \
            for (ptrdiff_t j = 0; j < n; j++) {                                                              \
                T vj = mg_adam_mv##S(p, g, m, v, j, b1, omb1, b2, omb2, wd, decay, wd_mode, &pj);            \
                T w = vmax[j];                                                                               \
                w = (w > vj || w != w) ? w : vj;                                                             \
                vmax[j] = w;                                                                                 \
                p[j] = pj - m[j] / (SQRT(w) / bc2 + eps) * step_size;                                        \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    /* One Adagrad step on n elements in place (adagrad_update); clr = lr / (1 + (t - 1) lr_decay)           \
       comes from the caller. */                                                                             \
    MG_CLONES static void mg_adagrad##S(T *restrict p, const T *restrict g, T *restrict acc,                 \
                                        ptrdiff_t n, T clr, T wd, T eps, int decay) {                        \
        for (ptrdiff_t j = 0; j < n; j++) {                                                                  \
            T gj = decay ? p[j] * wd + g[j] : g[j];                                                          \
            T a = acc[j] + gj * gj;                                                                          \
            acc[j] = a;                                                                                      \
            p[j] -= gj / (SQRT(a) + eps) * clr;                                                              \
        }                                                                                                    \
    }                                                                                                        \
    /* One RMSprop step on n elements in place (rmsprop_update): ga (centered) and b (momentum)              \
       NULL when unused. The loop is inlined with constant flags, one loop per combination, so no            \
       branch is left inside any of them. */                                                                 \
    MG_INLINE void mg_rmsprop_loop##S(T *restrict p, const T *restrict g, T *restrict v,                     \
                                      T *restrict ga, T *restrict b, ptrdiff_t n, T lr, T alpha,             \
                                      T oma, T eps, T wd, T mom, int decay, const int centered,              \
                                      const int momentum) {                                                  \
        for (ptrdiff_t j = 0; j < n; j++) {                                                                  \
            T gj = decay ? p[j] * wd + g[j] : g[j];                                                          \
            T vj = v[j] * alpha + (gj * gj) * oma, den;                                                      \
            v[j] = vj;                                                                                       \
            if (centered) {                                                                                  \
                T aj = ga[j] * alpha + gj * oma;                                                             \
                ga[j] = aj;                                                                                  \
                den = SQRT(vj - aj * aj) + eps;                                                              \
            } else {                                                                                         \
                den = SQRT(vj) + eps;                                                                        \
            }                                                                                                \
            T u = gj / den;                                                                                  \
            if (momentum) {                                                                                  \
                T bj = b[j] * mom + u;                                                                       \
                b[j] = bj;                                                                                   \
                p[j] -= bj * lr;                                                                             \
            } else {                                                                                         \
                p[j] -= u * lr;                                                                              \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    MG_CLONES static void mg_rmsprop##S(T *restrict p, const T *restrict g, T *restrict v,                   \
                                        T *restrict ga, T *restrict b, ptrdiff_t n, T lr, T alpha,           \
                                        T oma, T eps, T wd, T mom, int decay) {                              \
        if (ga != NULL && b != NULL)                                                                         \
            mg_rmsprop_loop##S(p, g, v, ga, b, n, lr, alpha, oma, eps, wd, mom, decay, 1, 1);                \
        else if (ga != NULL)                                                                                 \
            mg_rmsprop_loop##S(p, g, v, ga, b, n, lr, alpha, oma, eps, wd, mom, decay, 1, 0);                \
        else if (b != NULL)                                                                                  \
            mg_rmsprop_loop##S(p, g, v, ga, b, n, lr, alpha, oma, eps, wd, mom, decay, 0, 1);                \
        else                                                                                                 \
            mg_rmsprop_loop##S(p, g, v, ga, b, n, lr, alpha, oma, eps, wd, mom, decay, 0, 0);                \
    }                                                                                                        \
    MG_CLONES static void mg_rnn_act##S(T *restrict p, int relu, ptrdiff_t n) {                              \
        if (relu)                                      /* NaN stays NaN, as np.maximum(v, 0) */              \
            for (ptrdiff_t j = 0; j < n; j++) { T v = p[j]; p[j] = v <= 0 ? 0 : v; }                         \
        else                                                                                                 \
            for (ptrdiff_t j = 0; j < n; j++) p[j] = TANH(p[j]);                                             \
    }                                                                                                        \
    MG_CLONES static void mg_rnn_bwd_row##S(const T *restrict dh, const T *restrict y,                       \
                                           T *restrict da, int relu, ptrdiff_t H) {                          \
        if (relu)                                                                                            \
            for (ptrdiff_t j = 0; j < H; j++) da[j] = y[j] > 0 ? dh[j] : 0;                                  \
        else                                                                                                 \
            for (ptrdiff_t j = 0; j < H; j++) da[j] = dh[j] * (1 - y[j] * y[j]);                             \
    }                                                                                                        \
    /* The LSTM forward row in two passes over j0 <= j < j1: the gates (i, f, u, o: in place, independent    \
       of c), then c1 = f c + i u, tanh(c1) and h1; two shorter dependency chains than the whole cell.       \
       mg_lstm_fwd_row runs them over a vector-length multiple, then over the last 8 (see mg_last8). */      \
    MG_INLINE void mg_lstm_fwd_span##S(T *restrict g, const T *restrict bias, const T *restrict cp,          \
                                           T *restrict ct, T *restrict ht, ptrdiff_t H, ptrdiff_t j0,        \
                                           ptrdiff_t j1) {                                                   \
        T *restrict gi = g, *restrict gf = g + H, *restrict gg = g + 2 * H, *restrict go = g + 3 * H;        \
        T *restrict gt = g + 4 * H;                                                                          \
        const T *restrict bi = bias, *restrict bf = bias + H, *restrict bg = bias + 2 * H;                   \
        const T *restrict bo = bias + 3 * H;                                                                 \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                                \
            gi[j] = SIG(gi[j] + bi[j]); gf[j] = SIG(gf[j] + bf[j]);                                          \
            gg[j] = TANH(gg[j] + bg[j]); go[j] = SIG(go[j] + bo[j]);                                         \
        }                                                                                                    \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                                \
            T c = gf[j] * cp[j] + gi[j] * gg[j], t = TANH(c);                                                \
            ct[j] = c; gt[j] = t; ht[j] = go[j] * t;                                                         \
        }                                                                                                    \
    }                                                                                                        \
    MG_CLONES static void mg_lstm_fwd_row##S(T *restrict g, const T *restrict bias, const T *restrict cp,    \
                                            T *restrict ct, T *restrict ht, ptrdiff_t H) {                   \
        T sv[4][8];                                                                                          \
        ptrdiff_t m = mg_last8##S(g, H, 4, sv, 0);                                                           \
        mg_lstm_fwd_span##S(g, bias, cp, ct, ht, H, 0, m);                                                   \
        if (m < H) {                                                                                         \
            mg_last8##S(g, H, 4, sv, 1);                                                                     \
            mg_lstm_fwd_span##S(g, bias, cp, ct, ht, H, H - 8, H);                                           \
        }                                                                                                    \
    }                                                                                                        \
    /* dg = gradient w.r.t. the gate pre-activations; dcp = w.r.t. the previous c */                         \
    MG_CLONES static void mg_lstm_bwd_row##S(const T *restrict g, const T *restrict dh,                      \
                                            const T *restrict dc, const T *restrict cp, T *restrict dg,      \
                                            T *restrict dcp, ptrdiff_t H) {                                  \
        const T *restrict gi = g, *restrict gf = g + H, *restrict gg = g + 2 * H, *restrict go = g + 3 * H;  \
        const T *restrict gt = g + 4 * H;                                                                    \
        T *restrict dgi = dg, *restrict dgf = dg + H, *restrict dgg = dg + 2 * H, *restrict dgo = dg + 3 * H; \
        for (ptrdiff_t j = 0; j < H; j++) {                                                                  \
            T d = dh[j];                                                                                     \
            T i = gi[j], f = gf[j], u = gg[j], o = go[j], t = gt[j];                                         \
            T dct = dc[j] + d * o * (1 - t * t);                                                             \
            dgo[j] = d * t * o * (1 - o);                                                                    \
            dgi[j] = dct * u * i * (1 - i);                                                                  \
            dgg[j] = dct * i * (1 - u * u);                                                                  \
            dgf[j] = dct * cp[j] * f * (1 - f);                                                              \
            dcp[j] = dct * f;                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    /* g holds the input projection [gi_r | gi_z | gi_n] on entry; gh = h @ w_hh.T (no bias);                \
       bias = [b_ir + b_hr | b_iz + b_hz | b_in | b_hn] */                                                   \
    MG_INLINE void mg_gru_fwd_span##S(T *restrict g, const T *restrict gh, const T *restrict bias,           \
                                          const T *restrict hp, T *restrict ht, ptrdiff_t H, ptrdiff_t j0,   \
                                          ptrdiff_t j1) {                                                    \
        T *restrict r = g, *restrict z = g + H, *restrict n = g + 2 * H, *restrict ghn = g + 3 * H;          \
        for (ptrdiff_t j = j0; j < j1; j++) {                                                                \
            T rj = SIG((r[j] + gh[j]) + bias[j]), zj = SIG((z[j] + gh[H + j]) + bias[H + j]);                \
            T hn = gh[2 * H + j] + bias[3 * H + j];                                                          \
            T nj = TANH(n[j] + bias[2 * H + j] + rj * hn);                                                   \
            r[j] = rj; z[j] = zj; n[j] = nj; ghn[j] = hn;                                                    \
            ht[j] = (1 - zj) * nj + zj * hp[j];                                                              \
        }                                                                                                    \
    }                                                                                                        \
    MG_CLONES static void mg_gru_fwd_row##S(T *restrict g, const T *restrict gh, const T *restrict bias,     \
                                           const T *restrict hp, T *restrict ht, ptrdiff_t H) {              \
        T sv[3][8];                                                                                          \
        ptrdiff_t m = mg_last8##S(g, H, 3, sv, 0);                                                           \
        mg_gru_fwd_span##S(g, gh, bias, hp, ht, H, 0, m);                                                    \
        if (m < H) {                                                                                         \
            mg_last8##S(g, H, 3, sv, 1);                                                                     \
            mg_gru_fwd_span##S(g, gh, bias, hp, ht, H, H - 8, H);                                            \
        }                                                                                                    \
    }                                                                                                        \
    /* dgi = gradient w.r.t. gi; w.r.t. gh it is the same in the r and z blocks, and in the n block          \
       dghn = dgi_n * r (H columns); dhp = the direct part of the gradient w.r.t. h (dh * z) */              \
    MG_CLONES static void mg_gru_bwd_row##S(const T *restrict g, const T *restrict dh,                       \
                                           const T *restrict hp, T *restrict dgi, T *restrict dghn,          \
                                           T *restrict dhp, ptrdiff_t H) {                                   \
        const T *restrict r = g, *restrict z = g + H, *restrict n = g + 2 * H, *restrict ghn = g + 3 * H;    \
        for (ptrdiff_t j = 0; j < H; j++) {                                                                  \
            T d = dh[j];                                                                                     \
            T rj = r[j], zj = z[j], nj = n[j];                                                               \
            T dn = d * (1 - zj) * (1 - nj * nj);                                                             \
            T dz = d * (hp[j] - nj) * zj * (1 - zj);                                                         \
            T dr = dn * ghn[j] * rj * (1 - rj);                                                              \
            dhp[j] = d * zj;                                                                                 \
            dgi[j] = dr; dgi[H + j] = dz; dgi[2 * H + j] = dn;                                               \
            dghn[j] = dn * rj;                                                                               \
        }                                                                                                    \
    }
    MG_ROWS(float, f, mg_sigmoidf, mg_tanhf, sqrtf)
    MG_ROWS(double, d, mg_sigmoid, tanh, sqrt)
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC diagnostic pop
    #endif
    """
    void mg_addf(float* dst, float* src, Py_ssize_t n) noexcept nogil
    void mg_addd(double* dst, double* src, Py_ssize_t n) noexcept nogil
    void mg_colsumf(float* a, Py_ssize_t rows, Py_ssize_t n, float* out) noexcept nogil
    void mg_colsumd(double* a, Py_ssize_t rows, Py_ssize_t n, double* out) noexcept nogil
    void mg_add_rowsf(float* dst, float* row, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
    void mg_add_rowsd(double* dst, double* row, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
    void mg_sgdf(float* p, float* g, float* b, Py_ssize_t n, float lr, float mom, float damp,
                 float wd, int nesterov, int first) noexcept nogil
    void mg_sgdd(double* p, double* g, double* b, Py_ssize_t n, double lr, double mom, double damp,
                 double wd, int nesterov, int first) noexcept nogil
    void mg_adamf(float* p, float* g, float* m, float* v, float* vmax, Py_ssize_t n, float b1,
                  float omb1, float b2, float omb2, float eps, float wd, float decay,
                  float step_size, float bc2, int wd_mode) noexcept nogil
    void mg_adamd(double* p, double* g, double* m, double* v, double* vmax, Py_ssize_t n,
                  double b1, double omb1, double b2, double omb2, double eps, double wd,
                  double decay, double step_size, double bc2, int wd_mode) noexcept nogil
    void mg_adagradf(float* p, float* g, float* acc, Py_ssize_t n, float clr, float wd, float eps,
                     int decay) noexcept nogil
    void mg_adagradd(double* p, double* g, double* acc, Py_ssize_t n, double clr, double wd,
                     double eps, int decay) noexcept nogil
    void mg_rmspropf(float* p, float* g, float* v, float* ga, float* b, Py_ssize_t n, float lr,
                     float alpha, float oma, float eps, float wd, float mom,
                     int decay) noexcept nogil
    void mg_rmspropd(double* p, double* g, double* v, double* ga, double* b, Py_ssize_t n,
                     double lr, double alpha, double oma, double eps, double wd, double mom,
                     int decay) noexcept nogil
    void mg_rnn_actf(float* p, int relu, Py_ssize_t n) noexcept nogil
    void mg_rnn_actd(double* p, int relu, Py_ssize_t n) noexcept nogil
    void mg_rnn_bwd_rowf(float* dh, float* y, float* da, int relu, Py_ssize_t H) noexcept nogil
    void mg_rnn_bwd_rowd(double* dh, double* y, double* da, int relu, Py_ssize_t H) noexcept nogil
    void mg_lstm_fwd_rowf(float* g, float* bias, float* cp, float* ct, float* ht,
                          Py_ssize_t H) noexcept nogil
    void mg_lstm_fwd_rowd(double* g, double* bias, double* cp, double* ct, double* ht,
                          Py_ssize_t H) noexcept nogil
    void mg_lstm_bwd_rowf(float* g, float* dh, float* dc, float* cp, float* dg, float* dcp,
                          Py_ssize_t H) noexcept nogil
    void mg_lstm_bwd_rowd(double* g, double* dh, double* dc, double* cp, double* dg, double* dcp,
                          Py_ssize_t H) noexcept nogil
    void mg_gru_fwd_rowf(float* g, float* gh, float* bias, float* hp, float* ht,
                         Py_ssize_t H) noexcept nogil
    void mg_gru_fwd_rowd(double* g, double* gh, double* bias, double* hp, double* ht,
                         Py_ssize_t H) noexcept nogil
    void mg_gru_bwd_rowf(float* g, float* dh, float* hp, float* dgi, float* dghn, float* dhp,
                         Py_ssize_t H) noexcept nogil
    void mg_gru_bwd_rowd(double* g, double* dh, double* hp, double* dgi, double* dghn, double* dhp,
                         Py_ssize_t H) noexcept nogil


# ---------------------------------------------------------------------------------------------
# 2. GEMM
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
# the limit, except the weight gradients of short sequences and input projections with k <= 256
# (see gemm). One macro body gives float and double.
cdef extern from *:
    """
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
        int mc = mg_packed_len##S(n, k) * sizeof(T) <= 262144 ? m                                            \
                 : (mc0 < 12 ? 12 : (mc0 > (size_t)m ? m : (int)mc0));                                       \
        for (int p0 = 0; nb > 0 && p0 < k; p0 += kc) {                                                       \
            int kk = k - p0 < kc ? k - p0 : kc;                                                              \
            T bt = p0 == 0 ? beta : 1;                                                                       \
            const T *ak = a + (ptrdiff_t)p0 * sp;                                                            \
            for (int ic = 0; ic < m; ic += mc) {             /* nb = 0: all in mg_tail */                    \
                int me = m - ic < mc ? m : ic + mc;                                                          \
                if (mc == m) {                                                                               \
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

    /* C (m, n) = alpha * op(A) @ op(B) + beta * C, row-major; op(X) = X.T when tX: op(B) packed
       (on the stack up to 64 KiB), then mg_gemm_packed. Returns -1 (and does nothing) when the panel
       buffer cannot be allocated. (Reading a non-transposed B in place instead of packing it was
       measured 1.5x slower at 32 x 50 @ 50 x 200.) */
    #define MG_GEMM_SMALL(T, W, S, NAME)                                                                     \
    MG_AVX2 static int NAME(int ta, int tb, int m, int n, int k, T alpha,                                    \
                            const T *restrict a, int lda, const T *restrict b, int ldb,                      \
                            T beta, T *restrict c, int ldc) {                                                \
        size_t need = mg_packed_len##S(n, k);                                                                \
        T stack[16384 / sizeof(T) * 4];                                                                      \
        T *pk = need <= sizeof stack / sizeof(T) ? stack : (T *)malloc(need * sizeof(T));                    \
        if (pk == NULL) return -1;                                                                           \
        mg_pack_panels##S(tb, n, k, b, ldb, pk, !mg_narrow##S(ta, n, k));                                    \
        mg_gemm_run##S(ta, m, n, k, alpha, a, lda, pk, b, tb, ldb, beta, c, ldc);                            \
        if (pk != stack) free(pk);                                                                           \
        return 0;                                                                                            \
    }
    MG_GEMM_SMALL(float, 8, f, mg_gemm_smallf_avx2)
    MG_GEMM_SMALL(double, 4, d, mg_gemm_smalld_avx2)
    static int mg_have_avx2(void) {
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
    """
    int MG_HAVE_SMALL_GEMM
    int mg_gemm_smallf_avx2(int ta, int tb, int m, int n, int k, float alpha, float* a, int lda,
                            float* b, int ldb, float beta, float* c, int ldc) noexcept nogil
    size_t mg_packed_lenf(int n, int k) noexcept nogil
    size_t mg_packed_lend(int n, int k) noexcept nogil
    void mg_pack_bf(int tb, int n, int k, float* b, int ldb, float* pk) noexcept nogil
    void mg_pack_bd(int tb, int n, int k, double* b, int ldb, double* pk) noexcept nogil
    void mg_gemm_packedf(int ta, int m, int n, int k, float alpha, float* a, int lda, float* pk,
                         float beta, float* c, int ldc) noexcept nogil
    void mg_gemm_packedd(int ta, int m, int n, int k, double alpha, double* a, int lda, double* pk,
                         double beta, double* c, int ldc) noexcept nogil
    int mg_gemm_smalld_avx2(int ta, int tb, int m, int n, int k, double alpha, double* a,
                            int lda, double* b, int ldb, double beta, double* c,
                            int ldc) noexcept nogil

# m*n*k at or below which the C kernel runs (0: never, on CPUs without AVX2+FMA; gemm also runs
# it on transposed-A products with k <= 1024 up to 4x this)
cdef Py_ssize_t SMALL_GEMM = (1 << 21) if MG_HAVE_SMALL_GEMM else 0


def _set_small_gemm(n=None):
    """Private: the m*n*k limit of the small-GEMM kernel (set it when n is given; 0 = always
    BLAS). Returns the limit in force before the call. For tests and benchmarks."""
    global SMALL_GEMM
    old = SMALL_GEMM
    if n is not None:
        SMALL_GEMM = n if MG_HAVE_SMALL_GEMM else 0
    return old


cdef inline void gemm(bint ta, bint tb, int m, int n, int k, floating alpha,
                      floating* a, int lda, floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Row-major C (m, n) = alpha * op(A) @ op(B) + beta * C, op(A) = A.T when ta (A stored (k, m)).

    Fortran BLAS sees a row-major matrix as its transpose, so compute C.T = op(B).T @ op(A).T:
    pass B first and swap m and n; each leading dimension is the stored matrix's row stride.
    """
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
    cdef Py_ssize_t mnk = <Py_ssize_t>m * n * k
    # the weight gradients dG.T @ X of short sequences (transposed A, k = T * B <= 1024) up to 4x
    # the limit: 1.1-1.3x OpenBLAS's speed at 200x640 @ 640x50 (LSTM, H = 50), where k = 3200
    # (50x3200 @ 3200x50) runs at 0.7x. And the input projections X @ W_ih.T (A not transposed,
    # k <= 256, op(B) packed in at most 256 KiB) up to 2**28: 1.03-1.08x OpenBLAS's speed from
    # 640x50 @ 50x200 (LSTM, H = 50) to 3200x256 @ 256x256; past 2**28 or a bigger op(B), 0.85-1.0x.
    if (mnk <= SMALL_GEMM or (ta and k <= 1024 and mnk <= 4 * SMALL_GEMM)
            or (not ta and k <= 256 and <Py_ssize_t>n * k * sizeof(floating) <= 262144
                and mnk <= 128 * SMALL_GEMM)):                               # BLAS if malloc fails
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


cdef inline floating* _pack(bint tb, int n, int k, floating* b, int ldb, void* buf) noexcept nogil:
    """Pack op(B) (k x n) into buf (mg_packed_len elements, from _packed_w) for the per-step GEMMs
    of a sequence, which all multiply by the same weight: packed once per call, the GEMMs run at
    85-95 GFLOP/s where BLAS, re-packing the weight every step, reaches 45-65 (64 x 512 @
    512 x 2048: 90 against 46). Returns buf; NULL stays NULL (then gemm_p runs gemm)."""
    if buf != NULL:
        if floating is float:
            mg_pack_bf(tb, n, k, b, ldb, <float*>buf)
        else:
            mg_pack_bd(tb, n, k, b, ldb, <double*>buf)
    return <floating*>buf


cdef inline Py_ssize_t _packed_len(floating* tag, int n, int k) noexcept nogil:
    """Elements of op(B) (k x n) packed by _pack (tag: picks float or double)."""
    if floating is float:
        return mg_packed_lenf(n, k)
    else:
        return mg_packed_lend(n, k)


cdef inline void gemm_p(floating* pk, bint ta, bint tb, int m, int n, int k, floating alpha,
                        floating* a, int lda, floating* b, int ldb,
                        floating beta, floating* c, int ldc) noexcept nogil:
    """gemm() with op(B) packed by _pack when pk is not NULL."""
    if pk == NULL:
        gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    elif floating is float:
        mg_gemm_packedf(ta, m, n, k, alpha, a, lda, pk, beta, c, ldc)
    else:
        mg_gemm_packedd(ta, m, n, k, alpha, a, lda, pk, beta, c, ldc)


# ---------------------------------------------------------------------------------------------
# 3. row helpers and bodies

cdef struct K:
    int T, B, nI, H, relu      # nI: complex.h defines a macro I
    void *x
    void *h0
    void *c0
    void *w_ih
    void *w_hh
    void *b_ih
    void *b_hh
    int64_t *lengths          # NULL: every step real
    # forward outputs
    void *hs                  # (T, B, H): state after each step (a sequence passes hs[1:])
    void *cs                  # (T, B, H): LSTM cell state after each step
    void *gates               # (T, B, L): per-step cell cache
    void *ys                  # (T, B, H) or NULL (cells)
    void *ws                  # workspace
    void *pw                  # W_hh packed for the per-step GEMMs (_packed_w), or NULL
    # backward inputs (also x, w_ih, w_hh, hs, gates, lengths)
    void *dys                 # (T, B, H), or NULL (cells; sequences given dys=None)
    void *dh_n
    void *dc_n
    void *hprev               # (T, B, H): state before each step (hs[:T], or h for a cell)
    void *cprev
    # backward outputs
    void *dx                  # NULL: skip the dx GEMM (a sequence's need_dx=False)
    void *dh0
    void *dc0
    void *dw_ih
    void *dw_hh
    void *db_ih               # NULL: no bias
    void *db_hh


cdef inline bint _real(K* k, Py_ssize_t t, Py_ssize_t b) noexcept nogil:
    return k.lengths == NULL or t < k.lengths[b]


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


cdef inline floating* _first(floating* given, floating* buf, Py_ssize_t n, bint copy) noexcept nogil:
    """The state gradient a backward time loop starts from: the caller's array itself when the
    loop only reads it (no dys to add in place), else a copy in buf."""
    if not copy:
        return given
    _copy(buf, given, n)
    return buf


cdef inline floating* _target(Py_ssize_t t, floating* cur, floating* w0, floating* w1,
                              floating* out) noexcept nogil:
    """Where step t of a backward time loop writes the gradient w.r.t. the state before it: the
    output array at t = 0 (no copy after the loop), else (or without one: need_dh0 false) the
    workspace buffer cur is not."""
    if t == 0 and out != NULL:
        return out
    return w1 if cur == w0 else w0


cdef inline void _deferred_grads(K* k, floating* dG, floating* dGhn, floating* hprev, int TB,
                                 int G) noexcept nogil:
    """After a backward time loop, over all steps at once: dx = dG W_ih (unless skipped),
    dW_ih = dG^T X, dW_hh = dG_h^T Hprev (one GEMM each), and the biases as column sums.
    dG_h, the gradient w.r.t. h @ W_hh.T, is dG itself but for the GRU's n block, dGhn
    (TB, H; NULL for the RNN and LSTM): dW_hh and db_hh take their last H rows from it."""
    cdef int I = k.nI, iH = k.H, Gh = G if dGhn == NULL else G - k.H
    if k.w_ih == NULL:          # a cell on its input projection (x = xw): dxw = dG, no dW_ih
        if k.dx != NULL:
            _copy(<floating*>k.dx, dG, <Py_ssize_t>TB * G)
    else:
        if k.dx != NULL:
            gemm(False, False, TB, I, G, 1, dG, G, <floating*>k.w_ih, I, 0, <floating*>k.dx, I)
        gemm(True, False, G, I, TB, 1, dG, G, <floating*>k.x, I, 0, <floating*>k.dw_ih, I)
    gemm(True, False, Gh, iH, TB, 1, dG, G, hprev, iH, 0, <floating*>k.dw_hh, iH)
    if dGhn != NULL:
        gemm(True, False, iH, iH, TB, 1, dGhn, iH, hprev, iH, 0, <floating*>k.dw_hh + Gh * iH, iH)
    if k.db_ih != NULL:
        _colsum(dG, TB, G, <floating*>k.db_ih)
        _copy(<floating*>k.db_hh, <floating*>k.db_ih, Gh)
    elif k.db_hh != NULL:       # input projection given: b_hh's gradient only
        _colsum(dG, TB, G, <floating*>k.db_hh)
    if k.db_hh != NULL and dGhn != NULL:
        _colsum(dGhn, TB, iH, <floating*>k.db_hh + Gh)


cdef inline void _bias_sum(K* k, floating* out, Py_ssize_t n) noexcept nogil:
    """out[:n] = b_ih[:n] + b_hh[:n]; b_hh alone on an input projection (b_ih is in it); zeros
    without bias (so the row loops never branch)."""
    cdef floating* bi = <floating*>k.b_ih
    cdef floating* bh = <floating*>k.b_hh
    cdef Py_ssize_t j
    if bh == NULL:
        _zero(out, n)
    elif bi == NULL:
        _copy(out, bh, n)
    else:
        for j in range(n):
            out[j] = bi[j] + bh[j]


cdef inline void _project(K* k, int G, floating* out, int ld) noexcept nogil:
    """out (T*B rows, row stride ld) [:, :G] = x @ W_ih.T, one GEMM for all steps; or, for a cell
    on its input projection (no W_ih), x's rows themselves."""
    cdef Py_ssize_t r, TB = k.T * k.B
    cdef int I = k.nI
    if k.w_ih == NULL:
        for r in range(TB):
            _copy(out + r * ld, <floating*>k.x + r * G, G)
    else:
        gemm(False, True, k.T * k.B, G, I, 1, <floating*>k.x, I, <floating*>k.w_ih, I, 0, out, ld)


cdef inline void _carry_rows(K* k, Py_ssize_t t, floating* prev, floating* cur) noexcept nogil:
    """Padded rows of step t keep the previous state."""
    cdef Py_ssize_t b, H = k.H
    if k.lengths != NULL:
        for b in range(k.B):
            if t >= k.lengths[b]:
                _copy(cur + b * H, prev + b * H, H)


cdef inline void _write_ys(K* k, Py_ssize_t t, floating* cur) noexcept nogil:
    """ys[t] = state after step t, zero at padded rows."""
    cdef floating* y
    cdef Py_ssize_t b, H = k.H, BH = <Py_ssize_t>k.B * k.H
    if k.ys == NULL:
        return
    y = <floating*>k.ys + t * BH
    _copy(y, cur, BH)
    if k.lengths != NULL:
        for b in range(k.B):
            if t >= k.lengths[b]:
                _zero(y + b * H, H)


# -- RNN ---------------------------------------------------------------------------------------

cdef void _rnn_fwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, t, b
    cdef int I = k.nI, iH = k.H
    cdef floating* hs = <floating*>k.hs
    cdef floating* bias = <floating*>k.ws          # (H,)
    cdef floating* hp
    cdef floating* ht
    cdef floating* pw = _pack(True, iH, iH, <floating*>k.w_hh, iH, k.pw)
    _project(k, iH, hs, iH)
    if k.b_hh != NULL:       # the biases join the input projection, so that each step's activation
        _bias_sum(k, bias, H)   # is one pass over B*H elements (no per-row calls, no row tails)
        _add_rows(hs, bias, T * B, H)
    for t in range(T):
        hp = <floating*>k.h0 if t == 0 else hs + (t - 1) * BH
        ht = hs + t * BH
        gemm_p(pw, False, True, k.B, iH, iH, 1, hp, iH, <floating*>k.w_hh, iH, 1, ht, iH)
        if floating is float:
            mg_rnn_actf(ht, k.relu, BH)
        else:
            mg_rnn_actd(ht, k.relu, BH)
        _carry_rows(k, t, hp, ht)
        _write_ys(k, t, ht)


cdef inline void _rnn_bwd_row(floating* dh, floating* y, floating* da, bint relu,
                              Py_ssize_t H) noexcept nogil:
    """da = gradient w.r.t. the pre-activation, from dh and the output y."""
    if floating is float:
        mg_rnn_bwd_rowf(dh, y, da, relu, H)
    else:
        mg_rnn_bwd_rowd(dh, y, da, relu, H)


cdef void _rnn_bwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, t, b
    cdef int I = k.nI, iH = k.H, TB = k.T * k.B
    cdef floating* dA = <floating*>k.ws                 # (T, B, H) pre-activation gradients
    cdef floating* w0 = dA + T * BH                       # (B, H) x 2: the gradient w.r.t. the
    cdef floating* w1 = w0 + BH                           # state after and before each step
    cdef floating* dys = <floating*>k.dys
    cdef floating* dh = _first(<floating*>k.dh_n, w0, BH, dys != NULL)
    cdef floating* dhn
    cdef floating* hs = <floating*>k.hs
    cdef floating* pw = _pack(False, iH, iH, <floating*>k.w_hh, iH, k.pw)
    for t in range(T - 1, -1, -1):
        dhn = _target(t, dh, w0, w1, <floating*>k.dh0)
        if k.lengths == NULL:            # every row real: one pass over the B*H elements
            if dys != NULL:
                _add(dh, dys + t * BH, BH)
            _rnn_bwd_row(dh, hs + t * BH, dA + t * BH, k.relu, BH)
        else:
            for b in range(B):
                if _real(k, t, b):
                    if dys != NULL:
                        _add(dh + b * H, dys + t * BH + b * H, H)
                    _rnn_bwd_row(dh + b * H, hs + t * BH + b * H, dA + t * BH + b * H, k.relu, H)
                    _zero(dhn + b * H, H)
                else:
                    _zero(dA + t * BH + b * H, H)
                    _copy(dhn + b * H, dh + b * H, H)
        if t > 0 or k.dh0 != NULL:      # dh0 = dA_0 W_hh only when asked for (need_dh0)
            gemm_p(pw, False, False, k.B, iH, iH, 1, dA + t * BH, iH, <floating*>k.w_hh, iH,
                   0 if k.lengths == NULL else 1, dhn, iH)
        dh = dhn
    _deferred_grads(k, dA, NULL, <floating*>k.hprev, TB, iH)


# -- LSTM: gates row (5H) = [i | f | g | o | tanh(c1)] -------------------------------------------

cdef inline void _lstm_fwd_row(floating* g, floating* bias, floating* cp, floating* ct,
                               floating* ht, Py_ssize_t H) noexcept nogil:
    """g: the gate pre-activations (without bias) in, [i | f | g | o | tanh(c1)] out."""
    if floating is float:
        mg_lstm_fwd_rowf(g, bias, cp, ct, ht, H)
    else:
        mg_lstm_fwd_rowd(g, bias, cp, ct, ht, H)


cdef void _lstm_fwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, L = 5 * H, t, b
    cdef int I = k.nI, iH = k.H, G = 4 * k.H, iL = 5 * k.H
    cdef floating* hs = <floating*>k.hs
    cdef floating* cs = <floating*>k.cs
    cdef floating* gates = <floating*>k.gates
    cdef floating* bias = <floating*>k.ws          # (4H,)
    cdef floating* hp
    cdef floating* cp
    cdef floating* gt
    cdef floating* pw = _pack(True, G, iH, <floating*>k.w_hh, iH, k.pw)
    _bias_sum(k, bias, 4 * H)
    # input projection of all T*B rows into the gate columns of the cache (row stride 5H)
    _project(k, G, gates, iL)
    for t in range(T):
        hp = <floating*>k.h0 if t == 0 else hs + (t - 1) * BH
        cp = <floating*>k.c0 if t == 0 else cs + (t - 1) * BH
        gt = gates + t * B * L
        gemm_p(pw, False, True, k.B, G, iH, 1, hp, iH, <floating*>k.w_hh, iH, 1, gt, iL)
        for b in range(B):
            _lstm_fwd_row(gt + b * L, bias, cp + b * H, cs + t * BH + b * H,
                          hs + t * BH + b * H, H)
        _carry_rows(k, t, hp, hs + t * BH)
        _carry_rows(k, t, cp, cs + t * BH)
        _write_ys(k, t, hs + t * BH)


cdef inline void _lstm_bwd_row(floating* g, floating* dh, floating* dc, floating* cp, floating* dg,
                               floating* dcp, Py_ssize_t H) noexcept nogil:
    """dg = gradient w.r.t. the gate pre-activations; dcp = gradient w.r.t. the previous c."""
    if floating is float:
        mg_lstm_bwd_rowf(g, dh, dc, cp, dg, dcp, H)
    else:
        mg_lstm_bwd_rowd(g, dh, dc, cp, dg, dcp, H)


cdef void _lstm_bwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, L = 5 * H, G = 4 * H, t, b
    cdef int I = k.nI, iH = k.H, iG = 4 * k.H, TB = k.T * k.B
    cdef floating* dG = <floating*>k.ws                 # (T, B, 4H)
    cdef floating* wh0 = dG + T * B * G                   # (B, H) x 4: the gradients w.r.t. h
    cdef floating* wh1 = wh0 + BH                         # and c after and before each step
    cdef floating* wc0 = wh1 + BH
    cdef floating* wc1 = wc0 + BH
    cdef floating* dys = <floating*>k.dys
    cdef floating* dh = _first(<floating*>k.dh_n, wh0, BH, dys != NULL)
    cdef floating* dc = <floating*>k.dc_n                 # only read
    cdef floating* dhn
    cdef floating* dcn
    cdef floating* gates = <floating*>k.gates
    cdef floating* cprev = <floating*>k.cprev
    cdef floating* pw = _pack(False, iH, iG, <floating*>k.w_hh, iH, k.pw)
    for t in range(T - 1, -1, -1):
        dhn = _target(t, dh, wh0, wh1, <floating*>k.dh0)
        dcn = _target(t, dc, wc0, wc1, <floating*>k.dc0)
        for b in range(B):
            if _real(k, t, b):
                if dys != NULL:
                    _add(dh + b * H, dys + t * BH + b * H, H)
                _lstm_bwd_row(gates + (t * B + b) * L, dh + b * H, dc + b * H,
                              cprev + t * BH + b * H, dG + (t * B + b) * G, dcn + b * H, H)
                if k.lengths != NULL:
                    _zero(dhn + b * H, H)
            else:
                _zero(dG + (t * B + b) * G, G)
                _copy(dhn + b * H, dh + b * H, H)
                _copy(dcn + b * H, dc + b * H, H)
        if t > 0 or k.dh0 != NULL:
            gemm_p(pw, False, False, k.B, iH, iG, 1, dG + t * B * G, iG, <floating*>k.w_hh, iH,
                   0 if k.lengths == NULL else 1, dhn, iH)
        dh = dhn
        dc = dcn
    _deferred_grads(k, dG, NULL, <floating*>k.hprev, TB, iG)


# -- GRU: gates row (4H) = [r | z | n | gh_n] ----------------------------------------------------

cdef inline void _gru_fwd_row(floating* g, floating* gh, floating* bias, floating* hp,
                              floating* ht, Py_ssize_t H) noexcept nogil:
    """g holds the input projection [gi_r | gi_z | gi_n] on entry, [r | z | n | gh_n] after;
    gh = h @ w_hh.T (no bias); bias = [b_ir + b_hr | b_iz + b_hz | b_in | b_hn]."""
    if floating is float:
        mg_gru_fwd_rowf(g, gh, bias, hp, ht, H)
    else:
        mg_gru_fwd_rowd(g, gh, bias, hp, ht, H)


cdef void _gru_fwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, L = 4 * H, t, b
    cdef int I = k.nI, iH = k.H, G = 3 * k.H, iL = 4 * k.H
    cdef floating* hs = <floating*>k.hs
    cdef floating* gates = <floating*>k.gates
    cdef floating* bias = <floating*>k.ws          # (4H,)
    cdef floating* gh = bias + 4 * H               # (B, 3H)
    cdef floating* bi = <floating*>k.b_ih
    cdef floating* bh = <floating*>k.b_hh
    cdef floating* hp
    cdef floating* gt
    cdef floating* pw = _pack(True, G, iH, <floating*>k.w_hh, iH, k.pw)
    _bias_sum(k, bias, 2 * H)
    if bi == NULL:
        _zero(bias + 2 * H, H)
    else:
        _copy(bias + 2 * H, bi + 2 * H, H)
    if bh == NULL:
        _zero(bias + 3 * H, H)
    else:
        _copy(bias + 3 * H, bh + 2 * H, H)
    _project(k, G, gates, iL)
    for t in range(T):
        hp = <floating*>k.h0 if t == 0 else hs + (t - 1) * BH
        gt = gates + t * B * L
        gemm_p(pw, False, True, k.B, G, iH, 1, hp, iH, <floating*>k.w_hh, iH, 0, gh, G)
        for b in range(B):
            _gru_fwd_row(gt + b * L, gh + b * 3 * H, bias, hp + b * H, hs + t * BH + b * H, H)
        _carry_rows(k, t, hp, hs + t * BH)
        _write_ys(k, t, hs + t * BH)


cdef inline void _gru_bwd_row(floating* g, floating* dh, floating* hp, floating* dgi,
                              floating* dghn, floating* dhp, Py_ssize_t H) noexcept nogil:
    """dgi = gradient w.r.t. gi; w.r.t. gh it is the same but in the n block, dghn = dgi_n * r;
    dhp = the direct part of the gradient w.r.t. the previous state (dh * z)."""
    if floating is float:
        mg_gru_bwd_rowf(g, dh, hp, dgi, dghn, dhp, H)
    else:
        mg_gru_bwd_rowd(g, dh, hp, dgi, dghn, dhp, H)


cdef void _gru_bwd(K* k, floating tag) noexcept nogil:
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H, BH = B * H, L = 4 * H, G = 3 * H, t, b, row
    cdef int I = k.nI, iH = k.H, iG = 3 * k.H, TB = k.T * k.B
    cdef floating* dGi = <floating*>k.ws                # (T, B, 3H) w.r.t. gi (and gh_r, gh_z)
    cdef floating* dGhn = dGi + T * B * G                 # (T, B, H) w.r.t. gh_n
    cdef floating* w0 = dGhn + T * BH                     # (B, H) x 2: the gradient w.r.t. the
    cdef floating* w1 = w0 + BH                           # state after and before each step
    cdef floating* dys = <floating*>k.dys
    cdef floating* dh = _first(<floating*>k.dh_n, w0, BH, dys != NULL)
    cdef floating* dhn
    cdef floating* gates = <floating*>k.gates
    cdef floating* hprev = <floating*>k.hprev
    cdef floating* w_n = <floating*>k.w_hh + 2 * H * H   # W_hh's n rows
    # dh_prev = dG_h @ W_hh = dGi[:, :2H] @ W_hh[:2H] + dGhn @ W_hh[2H:]: two packed weights
    cdef floating* pw = _pack(False, iH, 2 * iH, <floating*>k.w_hh, iH, k.pw)
    cdef floating* pwn = NULL
    if pw != NULL:
        pwn = _pack(False, iH, iH, w_n, iH, pw + _packed_len(pw, iH, 2 * iH))
    for t in range(T - 1, -1, -1):
        dhn = _target(t, dh, w0, w1, <floating*>k.dh0)
        for b in range(B):
            row = t * B + b
            if _real(k, t, b):
                if dys != NULL:
                    _add(dh + b * H, dys + t * BH + b * H, H)
                _gru_bwd_row(gates + row * L, dh + b * H, hprev + t * BH + b * H,
                             dGi + row * G, dGhn + row * H, dhn + b * H, H)
            else:
                _zero(dGi + row * G, G)
                _zero(dGhn + row * H, H)
                _copy(dhn + b * H, dh + b * H, H)
        if t > 0 or k.dh0 != NULL:
            gemm_p(pw, False, False, k.B, iH, 2 * iH, 1, dGi + t * B * G, iG, <floating*>k.w_hh,
                   iH, 1, dhn, iH)
            gemm_p(pwn, False, False, k.B, iH, iH, 1, dGhn + t * BH, iH, w_n, iH, 1, dhn, iH)
        dh = dhn
    _deferred_grads(k, dGi, dGhn, hprev, TB, iG)


# -- Linear ------------------------------------------------------------------------------------

cdef void _linear_fwd(K* k, floating tag) noexcept nogil:
    """x (N, I) = k.x with N = k.B, w (O, I) = k.w_ih with O = k.H, b = k.b_ih, y = k.hs."""
    cdef floating* y = <floating*>k.hs
    gemm(False, True, k.B, k.H, k.nI, 1, <floating*>k.x, k.nI, <floating*>k.w_ih, k.nI, 0, y, k.H)
    if k.b_ih != NULL:
        _add_rows(y, <floating*>k.b_ih, k.B, k.H)


cdef void _linear_bwd(K* k, floating tag) noexcept nogil:
    """dy (N, O) = k.dys."""
    cdef floating* dy = <floating*>k.dys
    if k.dx != NULL:
        gemm(False, False, k.B, k.nI, k.H, 1, dy, k.H, <floating*>k.w_ih, k.nI, 0,
             <floating*>k.dx, k.nI)
    gemm(True, False, k.H, k.nI, k.B, 1, dy, k.H, <floating*>k.x, k.nI, 0, <floating*>k.dw_ih, k.nI)
    if k.db_ih != NULL:
        _colsum(dy, k.B, k.H, <floating*>k.db_ih)


# ---------------------------------------------------------------------------------------------
# 4. validation (Python level, before any pointer is touched)

cdef extern from "limits.h":
    const int INT_MAX


cdef inline str _dtname(int tn):
    return "float32" if tn == cnp.NPY_FLOAT else "float64"


cdef int _layout(cnp.ndarray a, str name) except -1:
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous, got strides {(<object>a).strides} "
                         f"for shape {(<object>a).shape}")
    if not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        raise ValueError(f"{name} must be aligned and in native byte order, got {(<object>a).dtype}")
    return 0


cdef cnp.ndarray _anchor(object a, str name, int nd):
    """The first array of a call: fixes the dtype (float32 or float64) and some sizes, none 0."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
    if cnp.PyArray_NDIM(arr) != nd:
        raise ValueError(f"{name} must be {nd}-D, got shape {(<object>arr).shape}")
    if cnp.PyArray_SIZE(arr) == 0:
        raise ValueError(f"{name} must have no zero-size dimension, got shape {(<object>arr).shape}")
    _layout(arr, name)
    return arr


cdef void* _check(object a, str name, int tn, str ref, int nd,
                  Py_ssize_t d0, Py_ssize_t d1=-2, Py_ssize_t d2=-2, str wild="H") except NULL:
    """Check a's type, dtype (same as `ref`), shape (d = -1: any size, shown as `wild`) and
    layout; return its data pointer."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef cnp.npy_intp* s = cnp.PyArray_DIMS(arr)
    cdef int atn = cnp.PyArray_TYPE(arr)
    cdef Py_ssize_t want[3]
    cdef int i
    cdef bint ok = cnp.PyArray_NDIM(arr) == nd
    want[0], want[1], want[2] = d0, d1, d2
    if ok:
        for i in range(nd):
            if want[i] != -1 and s[i] != want[i]:
                ok = False
    if not ok:
        shape = ", ".join([wild if want[i] == -1 else str(want[i]) for i in range(nd)])
        raise ValueError(f"{name} must have shape ({shape}{',' if nd == 1 else ''}), got {(<object>arr).shape}")
    if atn != tn:
        raise ValueError(f"dtype mismatch: {name} must be {_dtname(tn)} (the dtype of {ref}), "
                         f"got {arr.dtype}")
    _layout(arr, name)
    return cnp.PyArray_DATA(arr)


cdef extern from *:
    """
    #ifndef MINIGRAD_DEBUG
    #define MINIGRAD_DEBUG 0
    #endif
    """
    const int MINIGRAD_DEBUG      # 1 in the MINIGRAD_CYTHON_DEBUG=1 build (set by setup.py)

# Debug build: every array a kernel writes (outputs, caches, workspaces) comes from _empty with
# guard bytes on both sides; _verify() after the nogil body raises if a guard was overwritten.
# (The bodies index raw pointers, which Cython's boundscheck does not see.)
cdef enum:
    _GUARD = 64
cdef list _guarded = []


cdef cnp.ndarray _empty(int tn, Py_ssize_t d0, Py_ssize_t d1=-1, Py_ssize_t d2=-1):
    cdef cnp.npy_intp dims[3]
    cdef int nd = 1 if d1 < 0 else (2 if d2 < 0 else 3)
    dims[0] = d0
    dims[1] = d1
    dims[2] = d2
    if not MINIGRAD_DEBUG:
        return cnp.PyArray_EMPTY(nd, dims, tn, 0)
    shape = tuple([dims[i] for i in range(nd)])
    nbytes = int(np.prod(shape)) * (4 if tn == cnp.NPY_FLOAT else 8)
    buf = np.full(nbytes + 2 * _GUARD, 0xA5, np.uint8)
    _guarded.append((buf, nbytes))
    return buf[_GUARD:_GUARD + nbytes].view(np.float32 if tn == cnp.NPY_FLOAT else np.float64).reshape(shape)


cdef inline int _verify() except -1:
    """Debug build: check (and forget) the guards of the arrays allocated since the last call."""
    if not MINIGRAD_DEBUG:
        return 0
    bad = [n for buf, n in _guarded
           if (buf[:_GUARD] != 0xA5).any() or (buf[_GUARD + n:] != 0xA5).any()]
    _guarded.clear()
    if bad:
        raise RuntimeError(f"kernel wrote out of bounds of an output buffer ({bad[0]} bytes)")
    return 0


# Workspaces (the largest: a sequence backward's gate gradients of all steps) come from one spare
# per dtype, kept between calls: a training loop does not page-fault the big one in anew every
# step, and a cell call skips an allocation (about 0.15 us). A caller takes the spare (under the
# GIL) and hands it back afterwards; a concurrent caller finds none and allocates its own. Two
# module variables rather than a dict: no hashing on the path of a 7 us cell call.
cdef cnp.ndarray _spare_f = None
cdef cnp.ndarray _spare_d = None


cdef cnp.ndarray _borrow(int tn, Py_ssize_t n):
    global _spare_f, _spare_d
    cdef cnp.ndarray w
    if tn == cnp.NPY_FLOAT:
        w, _spare_f = _spare_f, None
    else:
        w, _spare_d = _spare_d, None
    if w is not None and cnp.PyArray_SIZE(w) >= n and not MINIGRAD_DEBUG:
        return w
    return _empty(tn, n)


cdef inline void _give_back(int tn, cnp.ndarray w):
    global _spare_f, _spare_d
    cdef cnp.ndarray old = _spare_f if tn == cnp.NPY_FLOAT else _spare_d
    if old is None or cnp.PyArray_SIZE(old) < cnp.PyArray_SIZE(w):
        if tn == cnp.NPY_FLOAT:
            _spare_f = w
        else:
            _spare_d = w


cdef inline void* _data(cnp.ndarray a, Py_ssize_t offset=0):
    return <char*>cnp.PyArray_DATA(a) + offset * cnp.PyArray_ITEMSIZE(a)


cdef int _prep(K* k, int G, object x, str hname, object h, str cname, object c,
               object w_ih, object w_hh, bint seq) except -1:
    """Validate x, h (, c), w_ih, w_hh; fill sizes and pointers; return the dtype number.

    x is (T, B, I) for a sequence, (B, I) for a cell (T = 1); h, c are (B, H)."""
    cdef cnp.ndarray ax = _anchor(x, "x", 3 if seq else 2)
    cdef int tn = cnp.PyArray_TYPE(ax)
    cdef cnp.npy_intp* s = cnp.PyArray_DIMS(ax)
    cdef Py_ssize_t T = s[0] if seq else 1
    cdef Py_ssize_t B = s[1] if seq else s[0]
    cdef Py_ssize_t I = s[2] if seq else s[1]
    cdef Py_ssize_t H
    k.x = cnp.PyArray_DATA(ax)
    k.h0 = _check(h, hname, tn, "x", 2, B, -1)
    H = cnp.PyArray_DIMS(<cnp.ndarray>h)[1]
    if H < 1:
        raise ValueError(f"{hname} must have shape ({B}, H) with H > 0, got {h.shape}")
    if T * B > INT_MAX or 5 * H > INT_MAX or I > INT_MAX:
        raise ValueError("sizes too large for 32-bit BLAS")
    if cname is not None:
        k.c0 = _check(c, cname, tn, "x", 2, B, H)
    if w_ih is None and not seq:    # a cell on its input projection: x = x_in @ W_ih.T + b_ih
        if I != G * H:
            raise ValueError(f"x must have shape ({B}, {G * H}) when w_ih is None (x is then the "
                             f"input projection, G*H = {G} * {H} columns), got {x.shape}")
        k.w_ih = NULL
    else:
        k.w_ih = _check(w_ih, "w_ih", tn, "x", 2, G * H, I)
    k.w_hh = _check(w_hh, "w_hh", tn, "x", 2, G * H, H)
    k.T, k.B, k.nI, k.H = T, B, I, H
    k.lengths = NULL
    k.pw = NULL
    k.ys = NULL
    k.dys = NULL
    k.db_ih = NULL
    k.db_hh = NULL
    return tn


cdef bint _prep_bias(K* k, int n, object b_ih, object b_hh, int tn) except -1:
    if k.w_ih == NULL:              # input projection given: b_ih is part of it
        if b_ih is not None:
            raise ValueError("b_ih must be None when w_ih is None (x is the input projection, "
                             "b_ih already added), got an array")
        k.b_ih = NULL
        k.b_hh = NULL if b_hh is None else _check(b_hh, "b_hh", tn, "x", 1, n)
        return b_hh is not None
    if b_ih is None and b_hh is None:
        k.b_ih = k.b_hh = NULL
        return False
    if b_ih is None or b_hh is None:
        got = lambda b: "None" if b is None else "an array"
        raise ValueError("b_ih and b_hh must both be arrays or both be None, "
                         f"got b_ih={got(b_ih)} and b_hh={got(b_hh)}")
    k.b_ih = _check(b_ih, "b_ih", tn, "x", 1, n)
    k.b_hh = _check(b_hh, "b_hh", tn, "x", 1, n)
    return True


cdef object _prep_lengths(K* k, object lengths):
    """lengths: None, or integers of shape (B,) in [1, T]; returns the int64 array to keep alive."""
    if lengths is None:
        k.lengths = NULL
        return None
    cdef cnp.ndarray L = lengths if cnp.PyArray_Check(lengths) else np.asarray(lengths)
    if L.dtype.kind not in "iu":
        raise ValueError(f"lengths must be an integer array, got dtype {L.dtype}")
    if cnp.PyArray_NDIM(L) != 1 or cnp.PyArray_DIMS(L)[0] != k.B:
        raise ValueError(f"lengths must have shape ({k.B},), got {(<object>L).shape}")
    if cnp.PyArray_TYPE(L) != cnp.NPY_INT64 or not cnp.PyArray_ISCARRAY_RO(L):
        if L.dtype.kind == "u" and L.max() > k.T:          # before a wrap-around cast
            raise ValueError(f"lengths must lie in [1, {k.T}], got max {L.max()}")
        L = np.ascontiguousarray(L, dtype=np.int64)
    cdef int64_t* p = <int64_t*>cnp.PyArray_DATA(L)
    cdef Py_ssize_t b
    for b in range(k.B):
        if p[b] < 1 or p[b] > k.T:
            raise ValueError(f"lengths must lie in [1, {k.T}], got {p[b]} at index {b}")
    k.lengths = p
    return L


cdef object _packed_w(K* k, int tn, tuple blocks):
    """The buffer _pack fills with W_hh for a sequence's per-step GEMMs: room for each (n, k) in
    blocks, one packed op(B) of k x n after the other, as the body packs them (forward:
    op(B) = W_hh.T, (G*H, H); backward: op(B) = W_hh, (H, G*H); the GRU backward packs the r, z
    rows and the n rows apart). A NumPy array, so tracemalloc counts it and the debug build guards
    it; sets k.pw. None (k.pw = NULL) for a single step or when the small kernel is off: the
    per-step GEMMs then run on gemm()."""
    cdef Py_ssize_t size = 0
    k.pw = NULL
    if k.T < 2 or SMALL_GEMM == 0:
        return None
    for n, kk in blocks:
        size += mg_packed_lenf(n, kk) if tn == cnp.NPY_FLOAT else mg_packed_lend(n, kk)
    buf = _empty(tn, size)
    k.pw = _data(buf)
    return buf


cdef bint _relu(object nonlinearity) except -1:
    if nonlinearity == "tanh":
        return False
    if nonlinearity == "relu":
        return True
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


cdef int _check_cache(object cache, str names) except -1:
    cdef Py_ssize_t n = names.count(",") + 1
    if not isinstance(cache, tuple) or len(<tuple>cache) != n:
        got = (f"a tuple of length {len(<tuple>cache)}" if isinstance(cache, tuple)
               else type(cache).__name__)
        raise ValueError(f"cache must be a tuple of {n} arrays ({names}), got {got}")
    return 0


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
            pkf = _pack(tb, ini, ik, <float*>pb, ld[1], buf)
            for r in range(repeat):
                gemm_p(pkf, ta, tb, im, ini, ik, <float>alpha, <float*>pa, ld[0], <float*>pb,
                       ld[1], <float>beta, <float*>pc, ld[2])
    else:
        with nogil:
            pkd = _pack(tb, ini, ik, <double*>pb, ld[1], buf)
            for r in range(repeat):
                gemm_p(pkd, ta, tb, im, ini, ik, alpha, <double*>pa, ld[0], <double*>pb, ld[1],
                       beta, <double*>pc, ld[2])
    _verify()
    return c


# ---------------------------------------------------------------------------------------------
# 5. wrappers

cdef int _linear_prep(K* k, object x, object w) except -1:
    """Validate x (N, I) and w (O, I); fill k.B = N, k.nI = I, k.H = O, k.x, k.w_ih; return the
    dtype number."""
    cdef cnp.ndarray ax = _anchor(x, "x", 2)
    cdef int tn = cnp.PyArray_TYPE(ax)
    k.B = cnp.PyArray_DIMS(ax)[0]
    k.nI = cnp.PyArray_DIMS(ax)[1]
    k.x = cnp.PyArray_DATA(ax)
    if not cnp.PyArray_Check(w) or cnp.PyArray_NDIM(<cnp.ndarray>w) != 2:
        _check(w, "w", tn, "x", 2, -1, k.nI, -2, "O")
    k.H = cnp.PyArray_DIMS(<cnp.ndarray>w)[0]
    k.w_ih = _check(w, "w", tn, "x", 2, k.H, k.nI)
    if k.H == 0:
        raise ValueError(f"w must have shape (O, {k.nI}) with O > 0, got {w.shape}")
    return tn


def linear_forward(x, w, b):
    """y = x @ w.T + b;  x (N, I), w (O, I), b (O,) or None."""
    cdef K k
    cdef int tn = _linear_prep(&k, x, w)
    k.b_ih = NULL if b is None else _check(b, "b", tn, "x", 1, k.H)
    y = _empty(tn, k.B, k.H)
    k.hs = cnp.PyArray_DATA(y)
    if tn == cnp.NPY_FLOAT:
        with nogil: _linear_fwd(&k, <float>0)
    else:
        with nogil: _linear_fwd(&k, <double>0)
    _verify()
    return y


def linear_backward(dy, x, w, has_bias, need_dx=True):
    """dx = dy @ w (None when need_dx is false: its GEMM skipped), dw = dy.T @ x,
    db = dy.sum(0) (None without bias)."""
    cdef K k
    cdef int tn = _linear_prep(&k, x, w)
    k.dys = _check(dy, "dy", tn, "x", 2, k.B, k.H)
    dx = _empty(tn, k.B, k.nI) if need_dx else None
    dw = _empty(tn, k.H, k.nI)
    db = _empty(tn, k.H) if has_bias else None
    k.dx = cnp.PyArray_DATA(dx) if need_dx else NULL
    k.dw_ih = cnp.PyArray_DATA(dw)
    k.db_ih = cnp.PyArray_DATA(db) if has_bias else NULL
    if tn == cnp.NPY_FLOAT:
        with nogil: _linear_bwd(&k, <float>0)
    else:
        with nogil: _linear_bwd(&k, <double>0)
    _verify()
    return dx, dw, db


cdef tuple _param_grads(K* k, int tn, Py_ssize_t GH, bint has_bias):
    """A backward's weight and bias gradients (dw_ih, dw_hh, db_ih, db_hh), new arrays pointed to
    by k (GH = G * H rows); for a cell on an input projection (no W_ih) dw_ih and db_ih are None
    (they belong to the projection)."""
    proj = k.w_ih == NULL
    dw_ih = None if proj else _empty(tn, GH, k.nI)
    dw_hh = _empty(tn, GH, k.H)
    k.dw_ih = NULL if proj else _data(dw_ih)
    k.dw_hh = _data(dw_hh)
    db_ih = db_hh = None
    k.db_ih = k.db_hh = NULL
    if has_bias:
        db_hh = _empty(tn, GH)
        k.db_hh = _data(db_hh)
        if not proj:
            db_ih = _empty(tn, GH)
            k.db_ih = _data(db_ih)
    return dw_ih, dw_hh, db_ih, db_hh


# -- cells: the sequence bodies with T = 1 ------------------------------------------------------

def rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    """h1 = act(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh); cache = h1, the same array (the twin
    returns a copy; nothing writes to either, and the copy cost 0.4 of the cell's 8 us)."""
    cdef K k
    cdef int tn = _prep(&k, 1, x, "h", h, None, None, w_ih, w_hh, False)
    _prep_bias(&k, k.H, b_ih, b_hh, tn)
    k.relu = _relu(nonlinearity)
    h1 = _empty(tn, k.B, k.H)
    ws = _borrow(tn, k.H)
    k.hs, k.ws = cnp.PyArray_DATA(h1), cnp.PyArray_DATA(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _rnn_fwd(&k, <float>0)
    else:
        with nogil: _rnn_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return h1, h1


def rnn_cell_backward(dh1, x, h, w_ih, w_hh, cache, has_bias, nonlinearity, need_dx=True,
                      need_dh=True):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh when
    need_dh is (its GEMM skipped)."""
    cdef K k
    cdef int tn = _prep(&k, 1, x, "h", h, None, None, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.B, H = k.H
    k.relu = _relu(nonlinearity)
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.hs = _check(cache, "cache", tn, "x", 2, B, H)
    k.hprev = k.h0
    dx = _empty(tn, B, k.nI) if need_dx else None
    dh = _empty(tn, B, H) if need_dh else None
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, H, has_bias)
    ws = _borrow(tn, 3 * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh) if need_dh else NULL
    k.ws = _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _rnn_bwd(&k, <float>0)
    else:
        with nogil: _rnn_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """-> (h1, c1, cache), cache (B, 5H) = [i | f | g | o | tanh(c1)]."""
    cdef K k
    cdef int tn = _prep(&k, 4, x, "h", h, "c", c, w_ih, w_hh, False)
    _prep_bias(&k, 4 * k.H, b_ih, b_hh, tn)
    h1, c1 = _empty(tn, k.B, k.H), _empty(tn, k.B, k.H)
    cache = _empty(tn, k.B, 5 * k.H)
    ws = _borrow(tn, 4 * k.H)
    k.hs, k.cs, k.gates, k.ws = _data(h1), _data(c1), _data(cache), _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _lstm_fwd(&k, <float>0)
    else:
        with nogil: _lstm_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return h1, c1, cache


def lstm_cell_backward(dh1, dc1, x, h, c, w_ih, w_hh, cache, has_bias, need_dx=True,
                       need_dh=True):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh and dc
    when need_dh is (the dh GEMM skipped)."""
    cdef K k
    cdef int tn = _prep(&k, 4, x, "h", h, "c", c, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.B, H = k.H
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.dc_n = _check(dc1, "dc1", tn, "x", 2, B, H)
    k.gates = _check(cache, "cache", tn, "x", 2, B, 5 * H)
    k.hprev, k.cprev = k.h0, k.c0
    dx = _empty(tn, B, k.nI) if need_dx else None
    dh, dc = (_empty(tn, B, H), _empty(tn, B, H)) if need_dh else (None, None)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 4 * H, has_bias)
    ws = _borrow(tn, 8 * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh) if need_dh else NULL
    k.dc0 = _data(dc) if need_dh else NULL
    k.ws = _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _lstm_bwd(&k, <float>0)
    else:
        with nogil: _lstm_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """-> (h1, cache), cache (B, 4H) = [r | z | n | gh_n]."""
    cdef K k
    cdef int tn = _prep(&k, 3, x, "h", h, None, None, w_ih, w_hh, False)
    _prep_bias(&k, 3 * k.H, b_ih, b_hh, tn)
    h1 = _empty(tn, k.B, k.H)
    cache = _empty(tn, k.B, 4 * k.H)
    ws = _borrow(tn, 4 * k.H + 3 * k.B * k.H)
    k.hs, k.gates, k.ws = _data(h1), _data(cache), _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _gru_fwd(&k, <float>0)
    else:
        with nogil: _gru_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return h1, cache


def gru_cell_backward(dh1, x, h, w_ih, w_hh, cache, has_bias, need_dx=True, need_dh=True):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh when
    need_dh is (its GEMM skipped)."""
    cdef K k
    cdef int tn = _prep(&k, 3, x, "h", h, None, None, w_ih, w_hh, False)
    cdef Py_ssize_t B = k.B, H = k.H
    k.dh_n = _check(dh1, "dh1", tn, "x", 2, B, H)
    k.gates = _check(cache, "cache", tn, "x", 2, B, 4 * H)
    k.hprev = k.h0
    dx = _empty(tn, B, k.nI) if need_dx else None
    dh = _empty(tn, B, H) if need_dh else None
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 3 * H, has_bias)
    ws = _borrow(tn, 6 * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh) if need_dh else NULL
    k.ws = _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _gru_bwd(&k, <float>0)
    else:
        with nogil: _gru_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


# -- whole sequences ---------------------------------------------------------------------------

cdef object _seq_states(K* k, int tn, void** first):
    """(T+1, B, H) state array with [0] = the initial state at *first; afterwards *first points
    at row 1 (the state after step 0), where the bodies write."""
    s = _empty(tn, k.T + 1, k.B, k.H)
    memcpy(cnp.PyArray_DATA(s), first[0], k.B * k.H * cnp.PyArray_ITEMSIZE(s))
    first[0] = _data(s, k.B * k.H)
    return s


cdef object _outputs(K* k, int tn, cnp.ndarray hs):
    """The outputs ys (T, B, H). Without lengths they are the states after each step, hs[1:]:
    a view of the cache, not a copy (T*B*H elements less to write and to hold: 13 MB for
    64 x 100 x 512); k.ys stays NULL so the bodies write nothing more. With lengths, padded
    steps output zeros while the state carries on, so ys is its own array (k.ys)."""
    k.ys = NULL
    if k.lengths == NULL:
        return hs[1:]
    ys = _empty(tn, k.T, k.B, k.H)
    k.ys = _data(ys)
    return ys


cdef object _last(cnp.ndarray s, K* k):
    """A copy of s[T] (the final state), shape (B, H)."""
    out = _empty(cnp.PyArray_TYPE(s), k.B, k.H)
    memcpy(cnp.PyArray_DATA(out), _data(s, k.T * k.B * k.H), k.B * k.H * cnp.PyArray_ITEMSIZE(s))
    return out


def rnn_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity):
    """-> (ys, h_n, cache), cache = (hs,), hs (T+1, B, H)."""
    cdef K k
    cdef int tn = _prep(&k, 1, x, "h0", h0, None, None, w_ih, w_hh, True)
    _prep_bias(&k, k.H, b_ih, b_hh, tn)
    L = _prep_lengths(&k, lengths)
    k.relu = _relu(nonlinearity)
    k.hs = k.h0
    pw = _packed_w(&k, tn, ((k.H, k.H),))
    hs = _seq_states(&k, tn, &k.hs)
    ys = _outputs(&k, tn, hs)
    ws = _borrow(tn, k.H)
    k.ws = _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _rnn_fwd(&k, <float>0)
    else:
        with nogil: _rnn_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return ys, _last(hs, &k), (hs,)


def rnn_sequence_backward(dys, dh_n, x, h0, w_ih, w_hh, cache, lengths, has_bias, nonlinearity,
                          need_dx=True, need_dh0=True):
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 when
    need_dh0 is (the last step's GEMM is skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one."""
    cdef K k
    cdef int tn = _prep(&k, 1, x, "h0", h0, None, None, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H
    L = _prep_lengths(&k, lengths)
    k.relu = _relu(nonlinearity)
    _check_cache(cache, "hs")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    k.hs = _data(cache[0], B * H)
    pw = _packed_w(&k, tn, ((H, H),))
    dx = _empty(tn, T, B, k.nI) if need_dx else None
    dh0 = _empty(tn, B, H) if need_dh0 else None
    ws = _borrow(tn, (T + 2) * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh0) if need_dh0 else NULL
    k.ws = _data(ws)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, H, has_bias)
    if tn == cnp.NPY_FLOAT:
        with nogil: _rnn_bwd(&k, <float>0)
    else:
        with nogil: _rnn_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def lstm_sequence_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
    """-> (ys, h_n, c_n, cache), cache = (hs, cs, gates): hs, cs (T+1, B, H), gates (T, B, 5H)."""
    cdef K k
    cdef int tn = _prep(&k, 4, x, "h0", h0, "c0", c0, w_ih, w_hh, True)
    _prep_bias(&k, 4 * k.H, b_ih, b_hh, tn)
    L = _prep_lengths(&k, lengths)
    k.hs, k.cs = k.h0, k.c0
    pw = _packed_w(&k, tn, ((4 * k.H, k.H),))
    hs = _seq_states(&k, tn, &k.hs)
    cs = _seq_states(&k, tn, &k.cs)
    gates = _empty(tn, k.T, k.B, 5 * k.H)
    ys = _outputs(&k, tn, hs)
    ws = _borrow(tn, 4 * k.H)
    k.gates, k.ws = _data(gates), _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _lstm_fwd(&k, <float>0)
    else:
        with nogil: _lstm_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return ys, _last(hs, &k), _last(cs, &k), (hs, cs, gates)


def lstm_sequence_backward(dys, dh_n, dc_n, x, h0, c0, w_ih, w_hh, cache, lengths, has_bias,
                           need_dx=True, need_dh0=True):
    """-> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 and
    dc0 when need_dh0 is (the last step's GEMM is skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one."""
    cdef K k
    cdef int tn = _prep(&k, 4, x, "h0", h0, "c0", c0, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H
    L = _prep_lengths(&k, lengths)
    _check_cache(cache, "hs, cs, gates")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.dc_n = _check(dc_n, "dc_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    k.cprev = _check(cache[1], "cs", tn, "x", 3, T + 1, B, H)
    k.gates = _check(cache[2], "gates", tn, "x", 3, T, B, 5 * H)
    pw = _packed_w(&k, tn, ((H, 4 * H),))
    dx = _empty(tn, T, B, k.nI) if need_dx else None
    dh0, dc0 = (_empty(tn, B, H), _empty(tn, B, H)) if need_dh0 else (None, None)
    ws = _borrow(tn, (4 * T + 4) * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh0) if need_dh0 else NULL
    k.dc0 = _data(dc0) if need_dh0 else NULL
    k.ws = _data(ws)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 4 * H, has_bias)
    if tn == cnp.NPY_FLOAT:
        with nogil: _lstm_bwd(&k, <float>0)
    else:
        with nogil: _lstm_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def gru_sequence_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    """-> (ys, h_n, cache), cache = (hs, gates): hs (T+1, B, H), gates (T, B, 4H)."""
    cdef K k
    cdef int tn = _prep(&k, 3, x, "h0", h0, None, None, w_ih, w_hh, True)
    _prep_bias(&k, 3 * k.H, b_ih, b_hh, tn)
    L = _prep_lengths(&k, lengths)
    k.hs = k.h0
    pw = _packed_w(&k, tn, ((3 * k.H, k.H),))
    hs = _seq_states(&k, tn, &k.hs)
    gates = _empty(tn, k.T, k.B, 4 * k.H)
    ys = _outputs(&k, tn, hs)
    ws = _borrow(tn, 4 * k.H + 3 * k.B * k.H)
    k.gates, k.ws = _data(gates), _data(ws)
    if tn == cnp.NPY_FLOAT:
        with nogil: _gru_fwd(&k, <float>0)
    else:
        with nogil: _gru_fwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return ys, _last(hs, &k), (hs, gates)


def gru_sequence_backward(dys, dh_n, x, h0, w_ih, w_hh, cache, lengths, has_bias, need_dx=True,
                          need_dh0=True):
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx is None when need_dx is false, dh0 when
    need_dh0 is (the last step's GEMMs are skipped).
    dys None: no gradient reaches the outputs (only the final state was used); no step adds one."""
    cdef K k
    cdef int tn = _prep(&k, 3, x, "h0", h0, None, None, w_ih, w_hh, True)
    cdef Py_ssize_t T = k.T, B = k.B, H = k.H
    L = _prep_lengths(&k, lengths)
    _check_cache(cache, "hs, gates")
    k.dys = NULL if dys is None else _check(dys, "dys", tn, "x", 3, T, B, H)
    k.dh_n = _check(dh_n, "dh_n", tn, "x", 2, B, H)
    k.hprev = _check(cache[0], "hs", tn, "x", 3, T + 1, B, H)
    k.gates = _check(cache[1], "gates", tn, "x", 3, T, B, 4 * H)
    pw = _packed_w(&k, tn, ((H, 2 * H), (H, H)))
    dx = _empty(tn, T, B, k.nI) if need_dx else None
    dh0 = _empty(tn, B, H) if need_dh0 else None
    ws = _borrow(tn, (4 * T + 2) * B * H)
    k.dx = _data(dx) if need_dx else NULL
    k.dh0 = _data(dh0) if need_dh0 else NULL
    k.ws = _data(ws)
    dw_ih, dw_hh, db_ih, db_hh = _param_grads(&k, tn, 3 * H, has_bias)
    if tn == cnp.NPY_FLOAT:
        with nogil: _gru_bwd(&k, <float>0)
    else:
        with nogil: _gru_bwd(&k, <double>0)
    _verify()
    _give_back(tn, ws)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# -- optimizer update ----------------------------------------------------------------------------

cdef cnp.ndarray _in_place(object a, str name, cnp.ndarray like, bint write):
    """Check an array of the update kernels: float32/float64 (the dtype of p, `like`, when
    given), C-contiguous and aligned, p's shape, writeable when `write` (the twin's order)."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    if like is None:
        if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
            raise ValueError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    elif tn != cnp.PyArray_TYPE(like):
        raise ValueError(f"{name} must have dtype {like.dtype} (the dtype of p), got {arr.dtype}")
    _layout(arr, name)
    if like is not None and (<object>arr).shape != (<object>like).shape:
        raise ValueError(f"{name} must have shape {(<object>like).shape} (that of p), "
                         f"got {(<object>arr).shape}")
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable, got a read-only array")
    return arr


cdef int _disjoint(cnp.ndarray a, str an, cnp.ndarray b, str bn) except -1:
    """The kernel's pointers are restrict: two contiguous arrays must not overlap (the bounds
    test of numpy.may_share_memory)."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    if cnp.PyArray_NBYTES(a) and cnp.PyArray_NBYTES(b) and \
            a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a):
        raise ValueError(f"{an} must not share memory with {bn}")
    return 0


cdef list _update_arrays(object p, object g, tuple names, tuple state):
    """The arrays of an update kernel, checked: p (writeable) fixes shape and dtype; g and each
    state array given (None: unused) match it and are C-contiguous, the state arrays writeable;
    no two overlap. Returns [p, g, *state] as ndarrays (None kept)."""
    cdef cnp.ndarray ap = _in_place(p, "p", None, True)
    cdef list out = [ap, _in_place(g, "g", ap, False)]
    cdef list given = [("p", ap), ("g", out[1])]
    cdef Py_ssize_t i, j
    cdef cnp.ndarray arr
    for i in range(len(names)):
        if state[i] is None:
            out.append(None)
        else:
            arr = _in_place(state[i], names[i], ap, True)
            out.append(arr)
            given.append((names[i], arr))
    for i in range(1, len(given)):
        for j in range(i):
            _disjoint(given[i][1], given[i][0], given[j][1], given[j][0])
    return out


cdef inline void* _ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def sgd_update(p, g, buf, double lr, double momentum, double dampening, double weight_decay,
               bint nesterov, bint first):
    """One SGD step on p, in place, in one pass (the rule is in the twin); buf is the momentum
    buffer, updated in place (None without momentum), first: it holds nothing yet."""
    cdef cnp.ndarray ap
    ap, ag, ab = _update_arrays(p, g, ("buf",), (buf,))
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ap)
    cdef void* pp = _ptr(ap)
    cdef void* gp = _ptr(ag)
    cdef void* bp = _ptr(ab)
    if cnp.PyArray_TYPE(ap) == cnp.NPY_FLOAT:
        with nogil:
            mg_sgdf(<float*>pp, <float*>gp, <float*>bp, n, <float>lr, <float>momentum,
                    <float>(1.0 - dampening), <float>weight_decay, nesterov, first)
    else:
        with nogil:
            mg_sgdd(<double*>pp, <double*>gp, <double*>bp, n, lr, momentum, 1.0 - dampening,
                    weight_decay, nesterov, first)


def adam_update(p, g, m, v, vmax, double lr, double beta1, double beta2, double eps,
                double weight_decay, long step, bint decoupled):
    """One Adam (decoupled: AdamW) step on p, in place, in one pass (the rule is in the twin);
    m, v (and vmax with amsgrad, else None) are the moment buffers, updated in place; step is
    the step number t >= 1 the bias corrections use."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef cnp.ndarray ap
    ap, ag, am, av, ax = _update_arrays(p, g, ("m", "v", "vmax"), (m, v, vmax))
    cdef int mode = 0 if weight_decay == 0 else (2 if decoupled else 1)
    cdef double step_size = lr / (1.0 - beta1 ** step)
    cdef double bc2 = sqrt(1.0 - beta2 ** step)
    cdef double decay = 1.0 - lr * weight_decay
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ap)
    cdef void* pp = _ptr(ap)
    cdef void* gp = _ptr(ag)
    cdef void* mp = _ptr(am)
    cdef void* vp = _ptr(av)
    cdef void* xp = _ptr(ax)
    if cnp.PyArray_TYPE(ap) == cnp.NPY_FLOAT:
        with nogil:
            mg_adamf(<float*>pp, <float*>gp, <float*>mp, <float*>vp, <float*>xp, n, <float>beta1,
                     <float>(1.0 - beta1), <float>beta2, <float>(1.0 - beta2), <float>eps,
                     <float>weight_decay, <float>decay, <float>step_size, <float>bc2, mode)
    else:
        with nogil:
            mg_adamd(<double*>pp, <double*>gp, <double*>mp, <double*>vp, <double*>xp, n, beta1,
                     1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay, decay, step_size, bc2,
                     mode)


def adagrad_update(p, g, acc, double lr, double lr_decay, double weight_decay, double eps,
                   long step):
    """One Adagrad step on p, in place, in one pass (the rule is in the twin); acc is the sum
    of squared gradients, updated in place; step is the step number t >= 1."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef cnp.ndarray ap
    ap, ag, aa = _update_arrays(p, g, ("acc",), (acc,))
    cdef double clr = lr / (1.0 + (step - 1) * lr_decay)
    cdef int decay = weight_decay != 0
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ap)
    cdef void* pp = _ptr(ap)
    cdef void* gp = _ptr(ag)
    cdef void* sp = _ptr(aa)
    if cnp.PyArray_TYPE(ap) == cnp.NPY_FLOAT:
        with nogil:
            mg_adagradf(<float*>pp, <float*>gp, <float*>sp, n, <float>clr, <float>weight_decay,
                        <float>eps, decay)
    else:
        with nogil:
            mg_adagradd(<double*>pp, <double*>gp, <double*>sp, n, clr, weight_decay, eps, decay)


def rmsprop_update(p, g, v, grad_avg, buf, double lr, double alpha, double eps,
                   double weight_decay, double momentum):
    """One RMSprop step on p, in place, in one pass (the rule is in the twin); v is the square
    average, grad_avg the gradient average (centered, else None), buf the momentum buffer
    (momentum > 0, else None), each updated in place."""
    cdef cnp.ndarray ap
    ap, ag, av, aa, ab = _update_arrays(p, g, ("v", "grad_avg", "buf"), (v, grad_avg, buf))
    cdef int decay = weight_decay != 0
    cdef Py_ssize_t n = cnp.PyArray_SIZE(ap)
    cdef void* pp = _ptr(ap)
    cdef void* gp = _ptr(ag)
    cdef void* vp = _ptr(av)
    cdef void* ap_ = _ptr(aa)
    cdef void* bp = _ptr(ab)
    if cnp.PyArray_TYPE(ap) == cnp.NPY_FLOAT:
        with nogil:
            mg_rmspropf(<float*>pp, <float*>gp, <float*>vp, <float*>ap_, <float*>bp, n,
                        <float>lr, <float>alpha, <float>(1.0 - alpha), <float>eps,
                        <float>weight_decay, <float>momentum, decay)
    else:
        with nogil:
            mg_rmspropd(<double*>pp, <double*>gp, <double*>vp, <double*>ap_, <double*>bp, n,
                        lr, alpha, 1.0 - alpha, eps, weight_decay, momentum, decay)
