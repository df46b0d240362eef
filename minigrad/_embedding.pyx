# cython: language_level=3, cdivision=True
"""Compiled embedding gradient: the rows of dy summed into the table rows their indices name
(contract: docs/kernels.md; NumPy twin with the same name and signature: _embedding_ref.py).
One pass over dy in index order, a row add per index, instead of NumPy's np.add.at."""
cimport numpy as cnp
import numpy as np

from minigrad._checks cimport _layout, _grads_out

cnp.import_array()

ctypedef fused real:
    float
    double


cdef Py_ssize_t _first_bad(const cnp.int64_t* idx, Py_ssize_t n, Py_ssize_t rows) noexcept nogil:
    """The position of the first index out of [0, rows), or -1."""
    cdef Py_ssize_t i
    for i in range(n):
        if idx[i] < 0 or idx[i] >= rows:
            return i
    return -1


cdef void _scatter(real* dw, const real* dy, const cnp.int64_t* idx, Py_ssize_t n, Py_ssize_t d,
                   Py_ssize_t rows, double scale) noexcept nogil:
    """dw[idx[i]] += dy[i] for each row i < n (dw zeroed and the indices checked by the caller),
    then dw (rows, d) *= scale (unless it is 1)."""
    cdef Py_ssize_t i, j
    cdef real* out
    cdef const real* src
    for i in range(n):
        out = dw + idx[i] * d
        src = dy + i * d
        for j in range(d):
            out[j] += src[j]
    if scale != 1.0:
        for i in range(rows * d):
            dw[i] *= <real>scale


def embedding_backward(dy, idx, num_embeddings, padding_idx=None, out=None, scale=1.0):
    """dw (num_embeddings, D) of dy's dtype: dw[k] = sum of dy[i] over the i with idx[i] == k;
    the row padding_idx (None: no such row) stays zero. dy (N, D) float32/float64 and idx (N,)
    int64, both C-contiguous; every index must lie in [0, num_embeddings) (IndexError).
    out: None, or (dw,) with dw None or an array that receives scale times the gradient (and is
    returned in its place)."""
    if not cnp.PyArray_Check(dy):
        raise ValueError(f"dy must be a numpy.ndarray, got {type(dy).__name__}")
    if not cnp.PyArray_Check(idx):
        raise ValueError(f"idx must be a numpy.ndarray, got {type(idx).__name__}")
    cdef cnp.ndarray g = <cnp.ndarray>dy
    cdef cnp.ndarray ix = <cnp.ndarray>idx
    cdef int tn = cnp.PyArray_TYPE(g)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise ValueError(f"dy must have dtype float32 or float64, got {g.dtype}")
    if cnp.PyArray_NDIM(g) != 2:
        raise ValueError(f"dy must be 2-D (N, D), got shape {(<object>g).shape}")
    _layout(g, "dy")
    if cnp.PyArray_TYPE(ix) != cnp.NPY_INT64:
        raise ValueError(f"idx must have dtype int64, got {ix.dtype}")
    if cnp.PyArray_NDIM(ix) != 1 or cnp.PyArray_DIM(ix, 0) != cnp.PyArray_DIM(g, 0):
        raise ValueError(f"idx must have shape ({cnp.PyArray_DIM(g, 0)},) (one index per row "
                         f"of dy), got {(<object>ix).shape}")
    _layout(ix, "idx")
    if isinstance(num_embeddings, bool) or not isinstance(num_embeddings, (int, np.integer)) \
            or num_embeddings < 1:
        raise ValueError(f"num_embeddings must be an int >= 1, got {num_embeddings!r}")
    cdef Py_ssize_t rows = num_embeddings
    if padding_idx is not None and (
            isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer))
            or not 0 <= padding_idx < rows):
        raise ValueError(f"padding_idx must be None or an int in [0, {rows}), got {padding_idx!r}")
    cdef Py_ssize_t n = cnp.PyArray_DIM(g, 0), d = cnp.PyArray_DIM(g, 1), bad
    cdef double s
    o = _grads_out(out, ("dw",), ((rows, d),), tn, (dy, idx), scale, &s)
    cdef const cnp.int64_t* ip = <const cnp.int64_t*>cnp.PyArray_DATA(ix)
    with nogil:
        bad = _first_bad(ip, n, rows)
    if bad >= 0:  # before anything is written (out included)
        raise IndexError(f"idx[{bad}] = {ip[bad]} is out of range [0, {rows})")
    cdef cnp.ndarray dw
    if o[0] is None:
        dw = np.zeros((rows, d), dtype=g.dtype)
        s = 1.0  # scale applies to out's array only
    else:
        dw = <cnp.ndarray>o[0]
        dw.fill(0)
    with nogil:
        if tn == cnp.NPY_FLOAT:
            _scatter(<float*>cnp.PyArray_DATA(dw), <const float*>cnp.PyArray_DATA(g), ip, n, d,
                     rows, s)
        else:
            _scatter(<double*>cnp.PyArray_DATA(dw), <const double*>cnp.PyArray_DATA(g), ip, n, d,
                     rows, s)
    if padding_idx is not None:
        dw[padding_idx] = 0
    return dw
