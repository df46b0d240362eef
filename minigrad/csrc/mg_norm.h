/* The layer-norm rows of the layer-normalised LSTM and GRU bodies (minigrad/_ops.pyx, with
   layer_norm on). Each runs on one batch row of one step, around the plain cell rows of
   mg_cells.h: the "pre" rows normalise the gate pre-activations in place before the plain
   forward row (which then runs with a zero bias), the "post" rows finish what the plain row
   cannot do (the LSTM's normalised cell state) or take its gate gradients back through the
   norms. LN of a block v of n values: xhat = (v - mean(v)) / sqrt(var(v) + eps), y = gain xhat
   + shift. Per row, the LN cache keeps xhat of every block, then 1/std of every block:
   LSTM [xhat_i | xhat_f | xhat_g | xhat_o | xhat_c | rs (5)], GRU [xhat_r | xhat_z | xhat_nx |
   xhat_nh | rs (4)]. The gradient rows keep dy, the gradient w.r.t. each norm's output y (the
   gain and shift gradients are sums over rows of dy xhat and dy, taken after the time loop). */
#ifndef MG_NORM_H
#define MG_NORM_H

#include <math.h>
#include <stddef.h>
#include "mg_math.h"

#define MG_LN_EPS 1e-5

#define MG_NORM_ROWS(T, S, TANH, SQRT)                                                                   \
/* The sums of the norms run in 8 lanes (a vector register of floats; gcc vectorizes the inner   \
   loop), then add the lanes: one running sum is a chain of dependent adds, 4 cycles each, and     \
   made the forward norms cost twice as much at H = 128. */                                         \
/* y = gain xhat + shift over v = a + b + c (n values); y may be a (it is written last) */              \
MG_INLINE void mg_ln_fwd##S(T *y, const T *a, const T *b, const T *c, const T *restrict gain,            \
                            const T *restrict shift, T *restrict xh, T *restrict rs, ptrdiff_t n) {      \
    T s8[8] = {0}, q8[8] = {0}, s = 0, q = 0;                                                            \
    ptrdiff_t m = n - n % 8, j;                                                                          \
    for (j = 0; j < m; j += 8)                                                                           \
        for (int l = 0; l < 8; l++) { T v = a[j + l] + b[j + l] + c[j + l]; xh[j + l] = v; s8[l] += v; } \
    for (; j < n; j++) { T v = a[j] + b[j] + c[j]; xh[j] = v; s += v; }                                 \
    for (int l = 0; l < 8; l++) s += s8[l];                                                              \
    T mu = s / (T)n;                                                                                     \
    for (j = 0; j < m; j += 8)                                                                           \
        for (int l = 0; l < 8; l++) { T v = xh[j + l] - mu; xh[j + l] = v; q8[l] += v * v; }            \
    for (; j < n; j++) { T v = xh[j] - mu; xh[j] = v; q += v * v; }                                     \
    for (int l = 0; l < 8; l++) q += q8[l];                                                              \
    T r = (T)1 / SQRT(q / (T)n + (T)MG_LN_EPS);                                                          \
    for (j = 0; j < n; j++) { T v = xh[j] * r; xh[j] = v; y[j] = gain[j] * v + shift[j]; }              \
    *rs = r;                                                                                             \
}                                                                                                        \
/* dv = the gradient w.r.t. v from dy, the gradient w.r.t. y = gain xhat + shift:                       \
   dv = rs (gain dy - mean(gain dy) - xhat mean(gain dy xhat)); dy is copied to keep on the way (the   \
   gain and shift gradients sum it later); dv and keep may be dy. gain dy is stored,                   \
   rounded, before the mean is subtracted from it: recomputed there, gcc would fuse it into an fma     \
   with the subtraction, whose unrounded product leaves an error that rs (up to 1/sqrt(eps))           \
   magnifies where the block barely varies (H = 1: 300 ulp instead of 0). */                           \
MG_INLINE void mg_ln_bwd##S(T *dv, const T *dy, T *keep, const T *restrict gain, const T *restrict xh,   \
                            T rs, ptrdiff_t n) {                                                         \
    T s8[8] = {0}, q8[8] = {0}, s1 = 0, s2 = 0;                                                          \
    ptrdiff_t m = n - n % 8, j;                                                                          \
    for (j = 0; j < m; j += 8)                                                                           \
        for (int l = 0; l < 8; l++) {                                                                    \
            T d = dy[j + l], g = gain[j + l] * d;                                                        \
            keep[j + l] = d; dv[j + l] = g; s8[l] += g; q8[l] += g * xh[j + l];                          \
        }                                                                                                \
    for (; j < n; j++) { T d = dy[j], g = gain[j] * d; keep[j] = d; dv[j] = g; s1 += g; s2 += g * xh[j]; } \
    for (int l = 0; l < 8; l++) { s1 += s8[l]; s2 += q8[l]; }                                            \
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
   its dc. dyc is the fifth block of the row's dy. */                                                    \
MG_CLONES static void mg_lstm_ln_bwd_pre##S(const T *g, const T *dh, const T *dc, const T *gain,        \
                                            const T *xh, T *dcx, T *dy, ptrdiff_t H) {                   \
    const T *o = g + 3 * H, *t = g + 4 * H;                                                              \
    T *dyc = dy + 4 * H;                                                                                 \
    for (ptrdiff_t j = 0; j < H; j++) dyc[j] = dh[j] * o[j] * (1 - t[j] * t[j]);                         \
    mg_ln_bwd##S(dcx, dyc, dyc, gain + 4 * H, xh + 4 * H, xh[5 * H + 4], H);                             \
    for (ptrdiff_t j = 0; j < H; j++) dcx[j] += dc[j] - dyc[j];                                          \
}                                                                                                        \
/* after it: dg (w.r.t. the normalised gate blocks) kept in dy and taken through each norm */           \
MG_CLONES static void mg_lstm_ln_bwd_post##S(T *dg, T *dy, const T *gain, const T *xh, ptrdiff_t H) {   \
    for (int q = 0; q < 4; q++)                                                                          \
        mg_ln_bwd##S(dg + q * H, dg + q * H, dy + q * H, gain + q * H, xh + q * H, xh[5 * H + q], H);    \
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
/* after mg_gru_bwd_row: dgi (3H) and dghn (H), w.r.t. the four norms' outputs, kept in dy and taken     \
   through the norms */                                                                                  \
MG_CLONES static void mg_gru_ln_bwd_post##S(T *dgi, T *dghn, T *dy, const T *gain, const T *xh,         \
                                            ptrdiff_t H) {                                               \
    for (int q = 0; q < 4; q++) {                                                                        \
        T *d = q < 3 ? dgi + q * H : dghn;                                                               \
        mg_ln_bwd##S(d, d, dy + q * H, gain + q * H, xh + q * H, xh[4 * H + q], H);                      \
    }                                                                                                    \
}                                                                                                        \
/* after the time loop: dgain = sum over rows of dy xhat, dshift = sum of dy (dy rows of n, xhat rows   \
   of ldx) */                                                                                            \
static void mg_ln_grads##S(const T *dy, const T *xh, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ldx,        \
                           T *restrict dgain, T *restrict dshift) {                                      \
    for (ptrdiff_t j = 0; j < n; j++) { dgain[j] = 0; dshift[j] = 0; }                                   \
    for (ptrdiff_t r = 0; r < rows; r++)                                                                 \
        for (ptrdiff_t j = 0; j < n; j++) {                                                              \
            dgain[j] += dy[r * n + j] * xh[r * ldx + j];                                                 \
            dshift[j] += dy[r * n + j];                                                                  \
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
                             const void *gain, const void *xh, void *dcx, void *dy, ptrdiff_t H),
        (g, dh, dc, gain, xh, dcx, dy, H))
MG_BOTH(mg_lstm_ln_bwd_post, (int dbl, void *dg, void *dy, const void *gain, const void *xh,
                              ptrdiff_t H),
        (dg, dy, gain, xh, H))
MG_BOTH(mg_gru_ln_pre, (int dbl, void *g, void *gh, const void *bias, const void *zero,
                        const void *gain, const void *shift, void *xh, ptrdiff_t H),
        (g, gh, bias, zero, gain, shift, xh, H))
MG_BOTH(mg_gru_ln_bwd_post, (int dbl, void *dgi, void *dghn, void *dy, const void *gain,
                             const void *xh, ptrdiff_t H),
        (dgi, dghn, dy, gain, xh, H))
MG_BOTH(mg_ln_grads, (int dbl, const void *dy, const void *xh, ptrdiff_t rows, ptrdiff_t n,
                      ptrdiff_t ldx, void *dgain, void *dshift),
        (dy, xh, rows, n, ldx, dgain, dshift))

#endif
