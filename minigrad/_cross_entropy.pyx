# cython: language_level=3, cdivision=True
"""Compiled softmax cross-entropy over the last axis of (N, C) logits with integer targets, one
pass per row each way (contract: docs/kernels.md; NumPy twin with the same names and
signatures: _cross_entropy_ref.py). Forward keeps the softmax, which is all backward needs.
The loops are C, in csrc/mg_softmax.h; this module checks the arrays and picks the dtype."""
cimport numpy as cnp
import numpy as np

from minigrad._checks cimport _layout

cnp.import_array()

cdef extern from "csrc/mg_softmax.h" nogil:
    void mg_softmax_ce_fwdf(const float* x, const cnp.int64_t* t, Py_ssize_t n, Py_ssize_t c,
                            cnp.int64_t ignore, float* loss, float* p)
    void mg_softmax_ce_fwdd(const double* x, const cnp.int64_t* t, Py_ssize_t n, Py_ssize_t c,
                            cnp.int64_t ignore, double* loss, double* p)
    void mg_softmax_ce_bwdf(const float* p, const cnp.int64_t* t, Py_ssize_t n, Py_ssize_t c,
                            cnp.int64_t ignore, const float* dy, float* dx)
    void mg_softmax_ce_bwdd(const double* p, const cnp.int64_t* t, Py_ssize_t n, Py_ssize_t c,
                            cnp.int64_t ignore, const double* dy, double* dx)


cdef cnp.ndarray _float2d(object a, str name):
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise ValueError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    if cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_DIM(arr, 1) == 0:
        raise ValueError(f"{name} must be 2-D (N, C) with C >= 1, got shape {(<object>arr).shape}")
    _layout(arr, name)
    return arr


cdef const cnp.int64_t* _targets(object target, Py_ssize_t n, Py_ssize_t c,
                                 cnp.int64_t ignore, int* ok):
    """target (n,) int64, C-contiguous, each in [0, c) or equal to ignore: its data pointer
    (*ok = 1), or an exception raised (*ok = 0)."""
    ok[0] = 0
    if not cnp.PyArray_Check(target):
        raise ValueError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    cdef cnp.ndarray t = <cnp.ndarray>target
    if cnp.PyArray_TYPE(t) != cnp.NPY_INT64:
        raise ValueError(f"target must have dtype int64, got {t.dtype}")
    if cnp.PyArray_NDIM(t) != 1 or cnp.PyArray_DIM(t, 0) != n:
        raise ValueError(f"target must have shape ({n},), got {(<object>t).shape}")
    _layout(t, "target")
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
    ok[0] = 1
    return tp


def softmax_cross_entropy_forward(logits, target, ignore_index):
    """(loss (N,), probs (N, C)) of logits (N, C) float32/float64 and target (N,) int64 class
    indices (each in [0, C) or equal to ignore_index, whose rows get loss 0):
    probs = softmax(logits) along C, loss = -log probs[target]."""
    cdef cnp.ndarray x = _float2d(logits, "logits")
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), c = cnp.PyArray_DIM(x, 1)
    cdef cnp.int64_t ignore = ignore_index
    cdef int ok
    cdef const cnp.int64_t* tp = _targets(target, n, c, ignore, &ok)
    if not ok:
        return None
    cdef cnp.ndarray loss = np.empty(n, dtype=x.dtype)
    cdef cnp.ndarray p = np.empty((n, c), dtype=x.dtype)
    with nogil:
        if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
            mg_softmax_ce_fwdf(<const float*>cnp.PyArray_DATA(x), tp, n, c, ignore,
                     <float*>cnp.PyArray_DATA(loss), <float*>cnp.PyArray_DATA(p))
        else:
            mg_softmax_ce_fwdd(<const double*>cnp.PyArray_DATA(x), tp, n, c, ignore,
                     <double*>cnp.PyArray_DATA(loss), <double*>cnp.PyArray_DATA(p))
    return loss, p


def softmax_cross_entropy_backward(probs, target, ignore_index, dy):
    """dlogits (N, C) = dy[:, None] * (probs - onehot(target)), zero in the rows whose target
    is ignore_index; probs (N, C) from the forward, dy (N,) the gradient of each row's loss,
    of probs' dtype."""
    cdef cnp.ndarray p = _float2d(probs, "probs")
    cdef Py_ssize_t n = cnp.PyArray_DIM(p, 0), c = cnp.PyArray_DIM(p, 1)
    cdef cnp.int64_t ignore = ignore_index
    cdef int ok
    cdef const cnp.int64_t* tp = _targets(target, n, c, ignore, &ok)
    if not ok:
        return None
    if not cnp.PyArray_Check(dy):
        raise ValueError(f"dy must be a numpy.ndarray, got {type(dy).__name__}")
    cdef cnp.ndarray g = <cnp.ndarray>dy
    if cnp.PyArray_TYPE(g) != cnp.PyArray_TYPE(p):
        raise ValueError(f"dy must have dtype {p.dtype} (the dtype of probs), got {g.dtype}")
    if cnp.PyArray_NDIM(g) != 1 or cnp.PyArray_DIM(g, 0) != n:
        raise ValueError(f"dy must have shape ({n},), got {(<object>g).shape}")
    _layout(g, "dy")
    cdef cnp.ndarray dx = np.empty((n, c), dtype=p.dtype)
    with nogil:
        if cnp.PyArray_TYPE(p) == cnp.NPY_FLOAT:
            mg_softmax_ce_bwdf(<const float*>cnp.PyArray_DATA(p), tp, n, c, ignore,
                      <const float*>cnp.PyArray_DATA(g), <float*>cnp.PyArray_DATA(dx))
        else:
            mg_softmax_ce_bwdd(<const double*>cnp.PyArray_DATA(p), tp, n, c, ignore,
                      <const double*>cnp.PyArray_DATA(g), <double*>cnp.PyArray_DATA(dx))
    return dx
