/* The layer-norm rows of the layer-normalised LSTM and GRU bodies (minigrad/_ops.pyx, with
   layer_norm on). Each runs on one batch row of one step, around the plain cell rows of
   mg_cells.h: the "pre" rows normalise the gate pre-activations in place before the plain
   forward row (which then runs with a zero bias), the "post" rows finish what the plain row
   cannot do (the LSTM's normalised cell state) or take its gate gradients back through the
   norms. LN of a block v of n values: xhat = (v - mean(v)) / sqrt(var(v) + eps), y = gain xhat
   + shift. Per row, the LN cache keeps xhat of every block, then 1/std of every block:
   LSTM [xhat_i | xhat_f | xhat_g | xhat_o | xhat_c | rs (5)], GRU [xhat_r | xhat_z | xhat_nx |
   xhat_nh | rs (4)]. The gradient rows take a row of dy, the gradient w.r.t. each norm's output y,
   from a scratch row, and add the row's share of the gain and shift gradients (dy xhat and dy)
   into that batch row's accumulators acc = [gain part (nb H) | shift part (nb H)], summed over
   the time steps as the loop goes; mg_ln_grads sums them over the batch rows after the loop
   (so the order of every sum is fixed, whatever rows each thread takes). */
#ifndef MG_NORM_H
#define MG_NORM_H

#include <math.h>
#include <stddef.h>
#include "mg_math.h"

#define MG_LN_EPS 1e-5

/* 8 lanes of T for the sums of the norms: one running sum is a chain of dependent adds (4 cycles
   each), which made the norms cost twice as much at H = 128; 8 partial sums (one AVX register of
   floats), added up at the end, fix the order of every sum whatever the target. With gcc or clang
   the lanes are a vector type (gcc 12 turned the same loop written over an array of 8 lanes into
   permutes: the backward norm ran 4x slower); elsewhere, a struct of 8. */
#if defined(__GNUC__)
/* macros, not inline functions: a function taking or returning an AVX vector draws gcc's
   warning about the call ABI (-Wpsabi) even when it is always inlined */
typedef float mg_v8f __attribute__((vector_size(32)));
typedef double mg_v8d __attribute__((vector_size(64)));
#define mg_ld8f(p) ({ mg_v8f v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define mg_ld8d(p) ({ mg_v8d v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define mg_st8f(p, v) do { mg_v8f v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)
#define mg_st8d(p, v) do { mg_v8d v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)
#define mg_add8f(a, b) ((a) + (b))
#define mg_add8d(a, b) ((a) + (b))
#define mg_sub8f(a, b) ((a) - (b))
#define mg_sub8d(a, b) ((a) - (b))
#define mg_mul8f(a, b) ((a) * (b))
#define mg_mul8d(a, b) ((a) * (b))
#define mg_lanef(v, l) ((v)[l])
#define mg_laned(v, l) ((v)[l])
#define mg_zero8f() ((mg_v8f){0})
#define mg_zero8d() ((mg_v8d){0})
#else
#define MG_LANES(T, S)                                                                                   \
typedef struct { T v[8]; } mg_v8##S;                                                                     \
MG_INLINE mg_v8##S mg_ld8##S(const T *p) { mg_v8##S r; for (int l = 0; l < 8; l++) r.v[l] = p[l]; return r; } \
MG_INLINE void mg_st8##S(T *p, mg_v8##S v) { for (int l = 0; l < 8; l++) p[l] = v.v[l]; }                 \
MG_INLINE mg_v8##S mg_add8##S(mg_v8##S a, mg_v8##S b) { for (int l = 0; l < 8; l++) a.v[l] += b.v[l]; return a; } \
MG_INLINE mg_v8##S mg_sub8##S(mg_v8##S a, T b) { for (int l = 0; l < 8; l++) a.v[l] -= b; return a; }    \
MG_INLINE mg_v8##S mg_mul8##S(mg_v8##S a, mg_v8##S b) { for (int l = 0; l < 8; l++) a.v[l] *= b.v[l]; return a; } \
MG_INLINE T mg_lane##S(mg_v8##S v, int l) { return v.v[l]; }                                         \
MG_INLINE mg_v8##S mg_zero8##S(void) { mg_v8##S v = {{0}}; return v; }
MG_LANES(float, f)
MG_LANES(double, d)
#endif

#define MG_NORM_ROWS(T, S, TANH, SQRT)                                                                   \
/* y = gain xhat + shift over v = a + b + c (n values); y may be a (it is written last) */              \
MG_INLINE void mg_ln_fwd##S(T *y, const T *a, const T *b, const T *c, const T *restrict gain,            \
                            const T *restrict shift, T *restrict xh, T *restrict rs, ptrdiff_t n) {      \
    mg_v8##S s8 = mg_zero8##S(), q8 = s8;                                                                \
    T s = 0, q = 0;                                                                                      \
    ptrdiff_t m = n - n % 8, j;                                                                          \
    for (j = 0; j < m; j += 8) {                                                                         \
        mg_v8##S v = mg_add8##S(mg_add8##S(mg_ld8##S(a + j), mg_ld8##S(b + j)), mg_ld8##S(c + j));       \
        mg_st8##S(xh + j, v); s8 = mg_add8##S(s8, v);                                                    \
    }                                                                                                    \
    for (; j < n; j++) { T v = a[j] + b[j] + c[j]; xh[j] = v; s += v; }                                 \
    for (int l = 0; l < 8; l++) s += mg_lane##S(s8, l);                                             \
    T mu = s / (T)n;                                                                                     \
    for (j = 0; j < m; j += 8) {                                                                         \
        mg_v8##S v = mg_sub8##S(mg_ld8##S(xh + j), mu);                                                  \
        mg_st8##S(xh + j, v); q8 = mg_add8##S(q8, mg_mul8##S(v, v));                                     \
    }                                                                                                    \
    for (; j < n; j++) { T v = xh[j] - mu; xh[j] = v; q += v * v; }                                     \
    for (int l = 0; l < 8; l++) q += mg_lane##S(q8, l);                                             \
    T r = (T)1 / SQRT(q / (T)n + (T)MG_LN_EPS);                                                          \
    for (j = 0; j < n; j++) { T v = xh[j] * r; xh[j] = v; y[j] = gain[j] * v + shift[j]; }              \
    *rs = r;                                                                                             \
}                                                                                                        \
/* dv = the gradient w.r.t. v from dy, the gradient w.r.t. y = gain xhat + shift:                       \
   dv = rs (gain dy - mean(gain dy) - xhat mean(gain dy xhat)), and ag += dy xhat, as += dy (this row's  \
   share of the gain and shift gradients); the four arrays distinct. gain dy is stored in               \
   dv, rounded, before the mean is subtracted from it: recomputed there, gcc would fuse it into an fma  \
   with the subtraction, whose unrounded product leaves an error that rs (up to 1/sqrt(eps))           \
   magnifies where the block barely varies (H = 1: 300 ulp instead of 0). */                           \
MG_INLINE void mg_ln_bwd##S(T *restrict dv, const T *restrict dy, T *restrict ag, T *restrict as,       \
                            const T *restrict gain, const T *restrict xh, T rs, ptrdiff_t n) {           \
    mg_v8##S s8 = mg_zero8##S(), q8 = s8;                                                                \
    T s1 = 0, s2 = 0;                                                                                    \
    ptrdiff_t m = n - n % 8, j;                                                                          \
    for (j = 0; j < m; j += 8) {                                                                         \
        mg_v8##S d = mg_ld8##S(dy + j), x = mg_ld8##S(xh + j), g = mg_mul8##S(mg_ld8##S(gain + j), d);  \
        mg_st8##S(dv + j, g); s8 = mg_add8##S(s8, g); q8 = mg_add8##S(q8, mg_mul8##S(g, x));             \
        mg_st8##S(ag + j, mg_add8##S(mg_ld8##S(ag + j), mg_mul8##S(d, x)));                              \
        mg_st8##S(as + j, mg_add8##S(mg_ld8##S(as + j), d));                                             \
    }                                                                                                    \
    for (; j < n; j++) {                                                                                 \
        T d = dy[j], x = xh[j], g = gain[j] * d;                                                         \
        dv[j] = g; s1 += g; s2 += g * x; ag[j] += d * x; as[j] += d;                                     \
    }                                                                                                    \
    for (int l = 0; l < 8; l++) { s1 += mg_lane##S(s8, l); s2 += mg_lane##S(q8, l); }                    \
    s1 /= (T)n; s2 /= (T)n;                                                                              \
    for (j = 0; j < n; j++) dv[j] = rs * (dv[j] - s1 - xh[j] * s2);                                      \
}                                                                                                        \
/* LSTM, before mg_lstm_fwd_row: the four gate blocks of g (+ bias) normalised in place */               \
MG_CLONES static void mg_lstm_ln_pre##S(T *g, const T *bias, const T *zero, const T *gain,              \
                                        const T *shift, T *xh, ptrdiff_t H) {                            \
    for (int q = 0; q < 4; q++)                                                                          \
        mg_ln_fwd##S(g + q * H, g + q * H, bias + q * H, zero, gain + q * H, shift + q * H,              \
                     xh + q * H, xh + 5 * H + q, H);                                                     \
}                                                                                                        \
/* after it (c1 in ct): tanh(LN(c1)) into the cache's fifth block, h1 = o tanh(LN(c1)) */                \
MG_CLONES static void mg_lstm_ln_post##S(T *g, const T *ct, T *ht, const T *zero, const T *gain,        \
                                         const T *shift, T *xh, ptrdiff_t H) {                           \
    T *t = g + 4 * H;                                                                                    \
    const T *o = g + 3 * H;                                                                              \
    mg_ln_fwd##S(t, ct, zero, zero, gain + 4 * H, shift + 4 * H, xh + 4 * H, xh + 5 * H + 4, H);         \
    for (ptrdiff_t j = 0; j < H; j++) { T v = TANH(t[j]); t[j] = v; ht[j] = o[j] * v; }                 \
}                                                                                                        \
/* before mg_lstm_bwd_row, which adds dh o tanh'(.) to dc as if h1 = o tanh(c1): through LN(c1) that    \
   path is LN's backward of dyc = dh o tanh'(.), so the row is given dcx = dc + ln_bwd(dyc) - dyc as     \
   its dc. dy is the row's scratch (5H: the plain row writes its gate gradients to the first four      \
   blocks, dyc goes to the fifth), acc its accumulators (10H). */                                        \
MG_CLONES static void mg_lstm_ln_bwd_pre##S(const T *g, const T *dh, const T *dc, const T *gain,        \
                                            const T *xh, T *dcx, T *dy, T *acc, ptrdiff_t H) {           \
    const T *o = g + 3 * H, *t = g + 4 * H;                                                              \
    T *dyc = dy + 4 * H;                                                                                 \
    for (ptrdiff_t j = 0; j < H; j++) dyc[j] = dh[j] * o[j] * (1 - t[j] * t[j]);                         \
    mg_ln_bwd##S(dcx, dyc, acc + 4 * H, acc + 9 * H, gain + 4 * H, xh + 4 * H, xh[5 * H + 4], H);        \
    for (ptrdiff_t j = 0; j < H; j++) dcx[j] += dc[j] - dyc[j];                                          \
}                                                                                                        \
/* after it: the gate gradients w.r.t. the normalised blocks (the scratch row dy) taken through each    \
   norm into dg */                                                                                       \
MG_CLONES static void mg_lstm_ln_bwd_post##S(T *dg, const T *dy, T *acc, const T *gain, const T *xh,    \
                                             ptrdiff_t H) {                                              \
    for (int q = 0; q < 4; q++)                                                                          \
        mg_ln_bwd##S(dg + q * H, dy + q * H, acc + q * H, acc + 5 * H + q * H, gain + q * H, xh + q * H, \
                     xh[5 * H + q], H);                                                                  \
}                                                                                                        \
/* GRU, before mg_gru_fwd_row: r and z (gi + gh + bias) normalised into g (their gh zeroed), the input  \
   part of n (gi_n + b_in) into g, its recurrent part (gh_n + b_hn) into gh */                           \
MG_CLONES static void mg_gru_ln_pre##S(T *g, T *gh, const T *bias, const T *zero, const T *gain,        \
                                       const T *shift, T *xh, ptrdiff_t H) {                             \
    for (int q = 0; q < 2; q++) {                                                                        \
        mg_ln_fwd##S(g + q * H, g + q * H, gh + q * H, bias + q * H, gain + q * H, shift + q * H,        \
                     xh + q * H, xh + 4 * H + q, H);                                                     \
        for (ptrdiff_t j = 0; j < H; j++) gh[q * H + j] = 0;                                             \
    }                                                                                                    \
    mg_ln_fwd##S(g + 2 * H, g + 2 * H, bias + 2 * H, zero, gain + 2 * H, shift + 2 * H, xh + 2 * H,      \
                 xh + 4 * H + 2, H);                                                                     \
    mg_ln_fwd##S(gh + 2 * H, gh + 2 * H, bias + 3 * H, zero, gain + 3 * H, shift + 3 * H, xh + 3 * H,    \
                 xh + 4 * H + 3, H);                                                                     \
}                                                                                                        \
/* after mg_gru_bwd_row, which wrote its gradients w.r.t. the four norms' outputs to the scratch row dy    \
   (4H: dgi, then dghn): taken through the norms into dgi (3H) and dghn (H); acc (8H) */                  \
MG_CLONES static void mg_gru_ln_bwd_post##S(T *dgi, T *dghn, const T *dy, T *acc, const T *gain,        \
                                            const T *xh, ptrdiff_t H) {                                  \
    for (int q = 0; q < 4; q++)                                                                          \
        mg_ln_bwd##S(q < 3 ? dgi + q * H : dghn, dy + q * H, acc + q * H, acc + 4 * H + q * H,           \
                     gain + q * H, xh + q * H, xh[4 * H + q], H);                                        \
}                                                                                                        \
/* after the time loop: dgain and dshift (n each) = the sums over the rows of the accumulators (acc     \
   rows of 2n, ldacc apart: [gain part | shift part]) */                                                 \
static void mg_ln_grads##S(const T *acc, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ldacc,                  \
                           T *restrict dgain, T *restrict dshift) {                                      \
    for (ptrdiff_t j = 0; j < n; j++) { dgain[j] = 0; dshift[j] = 0; }                                   \
    for (ptrdiff_t r = 0; r < rows; r++)                                                                 \
        for (ptrdiff_t j = 0; j < n; j++) {                                                              \
            dgain[j] += acc[r * ldacc + j];                                                              \
            dshift[j] += acc[r * ldacc + n + j];                                                         \
        }                                                                                                \
}
MG_NORM_ROWS(float, f, mg_tanhf, sqrtf)
MG_NORM_ROWS(double, d, tanh, sqrt)

/* entry points for both dtypes (MG_BOTH, mg_math.h) */
MG_BOTH(mg_lstm_ln_pre, (int dbl, void *g, const void *bias, const void *zero, const void *gain,
                         const void *shift, void *xh, ptrdiff_t H),
        (g, bias, zero, gain, shift, xh, H))
MG_BOTH(mg_lstm_ln_post, (int dbl, void *g, const void *ct, void *ht, const void *zero,
                          const void *gain, const void *shift, void *xh, ptrdiff_t H),
        (g, ct, ht, zero, gain, shift, xh, H))
MG_BOTH(mg_lstm_ln_bwd_pre, (int dbl, const void *g, const void *dh, const void *dc,
                             const void *gain, const void *xh, void *dcx, void *dy, void *acc,
                             ptrdiff_t H),
        (g, dh, dc, gain, xh, dcx, dy, acc, H))
MG_BOTH(mg_lstm_ln_bwd_post, (int dbl, void *dg, const void *dy, void *acc, const void *gain,
                              const void *xh, ptrdiff_t H),
        (dg, dy, acc, gain, xh, H))
MG_BOTH(mg_gru_ln_pre, (int dbl, void *g, void *gh, const void *bias, const void *zero,
                        const void *gain, const void *shift, void *xh, ptrdiff_t H),
        (g, gh, bias, zero, gain, shift, xh, H))
MG_BOTH(mg_gru_ln_bwd_post, (int dbl, void *dgi, void *dghn, const void *dy, void *acc,
                             const void *gain, const void *xh, ptrdiff_t H),
        (dgi, dghn, dy, acc, gain, xh, H))
MG_BOTH(mg_ln_grads, (int dbl, const void *acc, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ldacc,
                      void *dgain, void *dshift),
        (acc, rows, n, ldacc, dgain, dshift))

#endif
