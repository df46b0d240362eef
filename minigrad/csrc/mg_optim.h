/* The optimizer update loops (sgd_update, adam_update, adagrad_update, rmsprop_update), one pass each */
#ifndef MG_OPTIM_H
#define MG_OPTIM_H

#include <stddef.h>
#include "mg_math.h"

#define MG_OPTIM(T, S, SQRT)                                                                                \
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
}
MG_OPTIM(float, f, sqrtf)
MG_OPTIM(double, d, sqrt)

/* The entry points of _optim_ops.pyx: the float32 (dbl = 0) or float64 loop on the arrays' data;
   the hyperparameters, given in double, are rounded to the element type first. */
static void mg_sgd(int dbl, void *p, const void *g, void *b, ptrdiff_t n, double lr, double mom,
                   double damp, double wd, int nesterov, int first) {
    if (dbl)
        mg_sgdd(p, g, b, n, lr, mom, damp, wd, nesterov, first);
    else
        mg_sgdf(p, g, b, n, (float)lr, (float)mom, (float)damp, (float)wd, nesterov, first);
}
static void mg_adam(int dbl, void *p, const void *g, void *m, void *v, void *vmax, ptrdiff_t n,
                    double b1, double omb1, double b2, double omb2, double eps, double wd,
                    double decay, double step_size, double bc2, int wd_mode) {
    if (dbl)
        mg_adamd(p, g, m, v, vmax, n, b1, omb1, b2, omb2, eps, wd, decay, step_size, bc2, wd_mode);
    else
        mg_adamf(p, g, m, v, vmax, n, (float)b1, (float)omb1, (float)b2, (float)omb2, (float)eps,
                 (float)wd, (float)decay, (float)step_size, (float)bc2, wd_mode);
}
static void mg_adagrad(int dbl, void *p, const void *g, void *acc, ptrdiff_t n, double clr,
                       double wd, double eps, int decay) {
    if (dbl)
        mg_adagradd(p, g, acc, n, clr, wd, eps, decay);
    else
        mg_adagradf(p, g, acc, n, (float)clr, (float)wd, (float)eps, decay);
}
static void mg_rmsprop(int dbl, void *p, const void *g, void *v, void *ga, void *b, ptrdiff_t n,
                       double lr, double alpha, double oma, double eps, double wd, double mom,
                       int decay) {
    if (dbl)
        mg_rmspropd(p, g, v, ga, b, n, lr, alpha, oma, eps, wd, mom, decay);
    else
        mg_rmspropf(p, g, v, ga, b, n, (float)lr, (float)alpha, (float)oma, (float)eps, (float)wd,
                    (float)mom, decay);
}

#endif
