/* The row kernels of the RNN, LSTM and GRU bodies (minigrad/_ops.pyx) */
#ifndef MG_CELLS_H
#define MG_CELLS_H

#include <math.h>
#include <stddef.h>
#include "mg_math.h"

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
/* The body of a forward row over nb gate blocks of g: span(args..., 0, m) over the vector-length
   multiple m, then, when H is not one, span(args..., H - 8, H) from the saved inputs (mg_last8). */
#define MG_FWD_ROW(T, S, nb, g, H, span, ...)                                                           \
    T sv[nb][8];                                                                                         \
    ptrdiff_t m = mg_last8##S(g, H, nb, sv, 0);                                                          \
    span(__VA_ARGS__, 0, m);                                                                             \
    if (m < H) {                                                                                         \
        mg_last8##S(g, H, nb, sv, 1);                                                                    \
        span(__VA_ARGS__, H - 8, H);                                                                     \
    }
#define MG_CELL_ROWS(T, S, SIG, TANH)                                                                       \
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
    MG_FWD_ROW(T, S, 4, g, H, mg_lstm_fwd_span##S, g, bias, cp, ct, ht, H)                               \
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
    MG_FWD_ROW(T, S, 3, g, H, mg_gru_fwd_span##S, g, gh, bias, hp, ht, H)                                \
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
    }                                                                                                       \
}
MG_CELL_ROWS(float, f, mg_sigmoidf, mg_tanhf)
MG_CELL_ROWS(double, d, mg_sigmoid, tanh)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* entry points for both dtypes (MG_BOTH, mg_math.h) */
MG_BOTH(mg_rnn_act, (int dbl, void *p, int relu, ptrdiff_t n), (p, relu, n))
MG_BOTH(mg_rnn_bwd_row, (int dbl, const void *dh, const void *y, void *da, int relu, ptrdiff_t H),
        (dh, y, da, relu, H))
MG_BOTH(mg_lstm_fwd_row, (int dbl, void *g, const void *bias, const void *cp, void *ct, void *ht,
                          ptrdiff_t H),
        (g, bias, cp, ct, ht, H))
MG_BOTH(mg_lstm_bwd_row, (int dbl, const void *g, const void *dh, const void *dc, const void *cp,
                          void *dg, void *dcp, ptrdiff_t H),
        (g, dh, dc, cp, dg, dcp, H))
MG_BOTH(mg_gru_fwd_row, (int dbl, void *g, const void *gh, const void *bias, const void *hp,
                         void *ht, ptrdiff_t H),
        (g, gh, bias, hp, ht, H))
MG_BOTH(mg_gru_bwd_row, (int dbl, const void *g, const void *dh, const void *hp, void *dgi,
                         void *dghn, void *dhp, ptrdiff_t H),
        (g, dh, hp, dgi, dghn, dhp, H))

#endif
