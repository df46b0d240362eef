/* The row loops of recurrent dropout and zoneout in the cell bodies (minigrad/_ops.pyx).
   Recurrent (variational) dropout multiplies the state entering the per-step GEMM by a mask m
   fixed over the sequence; zoneout keeps each unit's previous state with weight z:
   h = z hp + (1 - z) h~.  Each loop is branch-free, so gcc vectorizes it. */
#ifndef MG_DROPOUT_H
#define MG_DROPOUT_H

#include <stddef.h>
#include "mg_math.h"

#define MG_DROPOUT_ROWS(T, S)                                                                           \
/* out = a * m: the masked state a GEMM reads (forward), or dh = (dG W_hh) * m (backward) */            \
MG_INLINE void mg_mask_mul##S(T *restrict out, const T *restrict a, const T *restrict m,                 \
                              ptrdiff_t n) {                                                            \
    for (ptrdiff_t j = 0; j < n; j++) out[j] = a[j] * m[j];                                             \
}                                                                                                       \
/* out += a * m: the masked GEMM result, or zoneout's direct gradient z dh, added to out */             \
MG_INLINE void mg_mask_fma##S(T *restrict out, const T *restrict a, const T *restrict m,                 \
                              ptrdiff_t n) {                                                            \
    for (ptrdiff_t j = 0; j < n; j++) out[j] += a[j] * m[j];                                            \
}                                                                                                       \
/* zoneout forward, in place: h = h~ + z (hp - h~) = z hp + (1 - z) h~ */                               \
MG_INLINE void mg_zone_fwd##S(T *restrict h, const T *restrict hp, const T *restrict z,                  \
                              ptrdiff_t n) {                                                            \
    for (ptrdiff_t j = 0; j < n; j++) h[j] += z[j] * (hp[j] - h[j]);                                    \
}                                                                                                       \
/* zoneout backward: the gradient reaching the cell's new state h~, out = (1 - z) d */                  \
MG_INLINE void mg_zone_bwd##S(T *restrict out, const T *restrict d, const T *restrict z,                 \
                              ptrdiff_t n) {                                                            \
    for (ptrdiff_t j = 0; j < n; j++) out[j] = (1 - z[j]) * d[j];                                       \
}
MG_DROPOUT_ROWS(float, f)
MG_DROPOUT_ROWS(double, d)

#endif
