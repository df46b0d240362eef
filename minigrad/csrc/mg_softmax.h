/* The row loops of the softmax cross-entropy kernels (minigrad/_cross_entropy.pyx) */
#ifndef MG_SOFTMAX_H
#define MG_SOFTMAX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "mg_math.h"

/* Per row of x (n, c): p = softmax(x), loss = log(sum exp(x - max)) + max - x[t] (0 where t is
   ignore). The exp loop stands apart from the max and the sum so that it vectorizes. A NaN
   logit makes its row NaN (through its exp, whether or not the max saw it). */
/* partial maxima and sums a row keeps: a vector of floats, two of doubles (the final pairwise
   sum of the lanes below is written for 8). Plain arrays, unlike mg_norm.h's vector type: gcc
   vectorizes these loops as they are (the max as vector compares and blends, the sum as
   vaddps), and gcc's vector types have no ?: in C to write the max with. */
#define MG_SM_LANES 8
#define MG_SOFTMAX_CE(T, S, EXP, LOG)                                                               \
MG_CLONES static void mg_softmax_ce_fwd##S(const T *restrict x, const int64_t *restrict t,          \
                                           ptrdiff_t n, ptrdiff_t c, int64_t ignore,                \
                                           T *restrict loss, T *restrict p) {                       \
    for (ptrdiff_t i = 0; i < n; i++) {                                                             \
        const T *xr = x + i * c;                                                                    \
        T *pr = p + i * c;                                                                          \
        T m = xr[0], s = 0, mv[MG_SM_LANES], sv[MG_SM_LANES];                                       \
        ptrdiff_t j = 1;                                                                            \
        if (c >= MG_SM_LANES) {         /* the max in lanes, then across them */                    \
            for (int k = 0; k < MG_SM_LANES; k++) mv[k] = xr[k];                                    \
            for (j = MG_SM_LANES; j + MG_SM_LANES <= c; j += MG_SM_LANES)                           \
                for (int k = 0; k < MG_SM_LANES; k++) mv[k] = xr[j + k] > mv[k] ? xr[j + k] : mv[k];\
            for (int k = 1; k < MG_SM_LANES; k++) m = mv[k] > m ? mv[k] : m;                        \
            m = mv[0] > m ? mv[0] : m;                                                              \
        }                                                                                           \
        for (; j < c; j++) m = xr[j] > m ? xr[j] : m;                                               \
        for (j = 0; j < c; j++) pr[j] = EXP(xr[j] - m);                                             \
        for (int k = 0; k < MG_SM_LANES; k++) sv[k] = 0;                                            \
        for (j = 0; j + MG_SM_LANES <= c; j += MG_SM_LANES)  /* the sum in lanes, then pairwise */  \
            for (int k = 0; k < MG_SM_LANES; k++) sv[k] += pr[j + k];                               \
        for (; j < c; j++) s += pr[j];                                                              \
        s += ((sv[0] + sv[4]) + (sv[2] + sv[6])) + ((sv[1] + sv[5]) + (sv[3] + sv[7]));             \
        T inv = 1 / s;                                                                              \
        for (ptrdiff_t j = 0; j < c; j++) pr[j] *= inv;                                             \
        loss[i] = t[i] == ignore ? 0 : LOG(s) + m - xr[t[i]];                                       \
    }                                                                                               \
}                                                                                                   \
/* Per row: dx = dy[i] * (p - onehot(t)), zero where t is ignore. */                                \
MG_CLONES static void mg_softmax_ce_bwd##S(const T *restrict p, const int64_t *restrict t,          \
                                           ptrdiff_t n, ptrdiff_t c, int64_t ignore,                \
                                           const T *restrict dy, T *restrict dx) {                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                             \
        T g = t[i] == ignore ? 0 : dy[i];                                                           \
        for (ptrdiff_t j = 0; j < c; j++) dx[i * c + j] = p[i * c + j] * g;                         \
        if (t[i] != ignore) dx[i * c + t[i]] -= g;                                                  \
    }                                                                                               \
}

MG_SOFTMAX_CE(float, f, mg_expf, logf)
MG_SOFTMAX_CE(double, d, exp, log)

/* The entry points: dbl picks float64 (else float32) arrays. */
static void mg_softmax_ce_fwd(int dbl, const void *x, const int64_t *t, ptrdiff_t n, ptrdiff_t c,
                              int64_t ignore, void *loss, void *p) {
    if (dbl)
        mg_softmax_ce_fwdd(x, t, n, c, ignore, loss, p);
    else
        mg_softmax_ce_fwdf(x, t, n, c, ignore, loss, p);
}
static void mg_softmax_ce_bwd(int dbl, const void *p, const int64_t *t, ptrdiff_t n, ptrdiff_t c,
                              int64_t ignore, const void *dy, void *dx) {
    if (dbl)
        mg_softmax_ce_bwdd(p, t, n, c, ignore, dy, dx);
    else
        mg_softmax_ce_bwdf(p, t, n, c, ignore, dy, dx);
}

#endif
