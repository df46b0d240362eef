/* Scalar math of the float32 kernels (vectorizable exp, sigmoid, tanh) and the target macros
   of the loops over them. Included by every compiled kernel module. */
#ifndef MG_MATH_H
#define MG_MATH_H

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
/* One entry point of a row kernel for both dtypes, name(dbl, ...): name##d (double) when dbl,
   else name##f (float). The Cython bodies pass a constant in each of their specializations
   (`floating is double`, `Cell is CellD`), so the branch folds away; the pointers arrive as
   void * and convert to the element type of the version called. params must start with
   `int dbl`. */
#define MG_BOTH(name, params, args) \
    static inline void name params { if (dbl) name##d args; else name##f args; }
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

#endif
