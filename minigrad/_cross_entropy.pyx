# cython: language_level=3, cdivision=True
"""Compiled softmax cross-entropy over the last axis of (N, C) logits with integer targets, one
pass per row each way (contract: docs/kernels.md; NumPy twin with the same names and
signatures: _cross_entropy_ref.py). Forward keeps the softmax, which is all backward needs.
The loops are C, in csrc/mg_softmax.h; this module checks the arrays and picks the dtype. The
forward splits its rows across the kernels' threads (each row is independent of the others, so
the result does not depend on the split); the backward, a multiply per element, stays on the
calling thread."""
cimport numpy as cnp
import numpy as np

from minigrad._checks cimport _anchor, _check
from minigrad._pool cimport _parts, _parallel

cnp.import_array()

cdef extern from "csrc/mg_softmax.h" nogil:
    void mg_softmax_ce_fwd(int dbl, const void* x, const cnp.int64_t* t, Py_ssize_t n,
                           Py_ssize_t c, cnp.int64_t ignore, void* loss, void* p)
    void mg_softmax_ce_bwd(int dbl, const void* p, const cnp.int64_t* t, Py_ssize_t n,
                           Py_ssize_t c, cnp.int64_t ignore, const void* dy, void* dx)


cdef const cnp.int64_t* _targets(object target, Py_ssize_t n, Py_ssize_t c,
                                 cnp.int64_t ignore) except NULL:
    """target (n,) int64, C-contiguous, each in [0, c) or equal to ignore: its data pointer."""
    if not cnp.PyArray_Check(target):
        raise ValueError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    cdef cnp.ndarray t = <cnp.ndarray>target
    if cnp.PyArray_TYPE(t) != cnp.NPY_INT64:
        raise ValueError(f"target must have dtype int64, got {t.dtype}")
    if cnp.PyArray_NDIM(t) != 1 or cnp.PyArray_DIM(t, 0) != n:
        raise ValueError(f"target must have shape ({n},), got {(<object>t).shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(t) or not cnp.PyArray_ISALIGNED(t):
        raise ValueError(f"target must be C-contiguous and aligned, got strides "
                         f"{(<object>t).strides}")
    cdef const cnp.int64_t* tp = <const cnp.int64_t*>cnp.PyArray_DATA(t)
    cdef Py_ssize_t i
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            if tp[i] != ignore and (tp[i] < 0 or tp[i] >= c):
                bad = i
                break
    if bad >= 0:
        raise IndexError(f"target[{bad}] = {tp[bad]} is out of range [0, {c})")
    return tp


cdef struct Forward:            # one forward: its arrays and sizes, split by rows across threads
    int dbl
    const char* x
    const cnp.int64_t* t
    Py_ssize_t n, c, isz
    cnp.int64_t ignore
    char* loss
    char* p


cdef void _rows(void* arg, int i, int parts) noexcept nogil:
    """Rows [n i / parts, n (i + 1) / parts) of a forward."""
    cdef Forward* f = <Forward*>arg
    cdef Py_ssize_t r0 = f.n * i // parts, r1 = f.n * (i + 1) // parts
    mg_softmax_ce_fwd(f.dbl, f.x + r0 * f.c * f.isz, f.t + r0, r1 - r0, f.c, f.ignore,
                      f.loss + r0 * f.isz, f.p + r0 * f.c * f.isz)


def softmax_cross_entropy_forward(logits, target, ignore_index):
    """(loss (N,), probs (N, C)) of logits (N, C) float32/float64 (no zero-size dimension) and
    target (N,) int64 class indices (each in [0, C) or equal to ignore_index, whose rows get
    loss 0): probs = softmax(logits) along C, loss = -log probs[target]."""
    cdef cnp.ndarray x = _anchor(logits, "logits", 2)
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), c = cnp.PyArray_DIM(x, 1)
    cdef cnp.int64_t ignore = ignore_index
    cdef const cnp.int64_t* tp = _targets(target, n, c, ignore)
    cdef int dbl = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    cdef cnp.ndarray loss = np.empty(n, dtype=x.dtype)
    cdef cnp.ndarray p = np.empty((n, c), dtype=x.dtype)
    cdef Forward f
    f.dbl, f.x, f.t, f.n, f.c, f.isz, f.ignore = dbl, <const char*>cnp.PyArray_DATA(x), tp, n, c, \
        cnp.PyArray_ITEMSIZE(x), ignore
    f.loss, f.p = <char*>cnp.PyArray_DATA(loss), <char*>cnp.PyArray_DATA(p)
    with nogil:
        # an element (its exp, its share of the max, the sum and the scaling) costs about 60
        # multiply-adds' time (2048 x 65 logits: 160 us on one thread); counted as 128, so that
        # such a batch splits in two (95 us on two threads)
        _parallel(_rows, &f, _parts(<double>n * c * 128, n))
    return loss, p


def softmax_cross_entropy_backward(probs, target, ignore_index, dy):
    """dlogits (N, C) = dy[:, None] * (probs - onehot(target)), zero in the rows whose target
    is ignore_index; probs (N, C) from the forward, dy (N,) the gradient of each row's loss,
    of probs' dtype."""
    cdef cnp.ndarray p = _anchor(probs, "probs", 2)
    cdef Py_ssize_t n = cnp.PyArray_DIM(p, 0), c = cnp.PyArray_DIM(p, 1)
    cdef cnp.int64_t ignore = ignore_index
    cdef const cnp.int64_t* tp = _targets(target, n, c, ignore)
    cdef int tn = cnp.PyArray_TYPE(p)
    cdef void* g = _check(dy, "dy", tn, "probs", 1, n, -2, -2, "N")
    cdef cnp.ndarray dx = np.empty((n, c), dtype=p.dtype)
    with nogil:
        mg_softmax_ce_bwd(tn == cnp.NPY_DOUBLE, cnp.PyArray_DATA(p), tp, n, c, ignore, g,
                          cnp.PyArray_DATA(dx))
    return dx
