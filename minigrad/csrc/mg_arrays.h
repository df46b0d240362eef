/* Whole-array helpers of the kernels: add, column sums, a row added to every row */
#ifndef MG_ARRAYS_H
#define MG_ARRAYS_H

#include <stddef.h>
#include "mg_math.h"

#define MG_ARRAYS(T, S)                                                                                     \
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
}
MG_ARRAYS(float, f)
MG_ARRAYS(double, d)

#endif
