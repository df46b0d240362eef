# cython: language_level=3, cdivision=True
"""Argument checks, the debug build's guarded allocator, the workspace pool and the recycled
forward caches (declared in _checks.pxd; used by _ops, _gemm and _optim_ops). Their NumPy
counterparts are in _checks_ref.py."""
from cpython.ref cimport Py_REFCNT
from libc.math cimport isfinite
cimport numpy as cnp
import numpy as np

cnp.import_array()


cdef inline str _dtname(int tn):
    return "float32" if tn == cnp.NPY_FLOAT else "float64"


cdef int _layout(cnp.ndarray a, str name) except -1:
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous, got strides {(<object>a).strides} "
                         f"for shape {(<object>a).shape}")
    if not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        raise ValueError(f"{name} must be aligned and in native byte order, got {(<object>a).dtype}")
    return 0


cdef cnp.ndarray _anchor(object a, str name, int nd):
    """The first array of a call: fixes the dtype (float32 or float64) and some sizes, none 0."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
    if cnp.PyArray_NDIM(arr) != nd:
        raise ValueError(f"{name} must be {nd}-D, got shape {(<object>arr).shape}")
    if cnp.PyArray_SIZE(arr) == 0:
        raise ValueError(f"{name} must have no zero-size dimension, got shape {(<object>arr).shape}")
    _layout(arr, name)
    return arr


cdef void* _check(object a, str name, int tn, str ref, int nd,
                  Py_ssize_t d0, Py_ssize_t d1=-2, Py_ssize_t d2=-2, str wild="H") except NULL:
    """Check a's type, dtype (same as `ref`), shape (d = -1: any size, shown as `wild`) and
    layout; return its data pointer."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef cnp.npy_intp* s = cnp.PyArray_DIMS(arr)
    cdef int atn = cnp.PyArray_TYPE(arr)
    cdef Py_ssize_t want[3]
    cdef int i
    cdef bint ok = cnp.PyArray_NDIM(arr) == nd
    want[0], want[1], want[2] = d0, d1, d2
    if ok:
        for i in range(nd):
            if want[i] != -1 and s[i] != want[i]:
                ok = False
    if not ok:
        shape = ", ".join([wild if want[i] == -1 else str(want[i]) for i in range(nd)])
        raise ValueError(f"{name} must have shape ({shape}{',' if nd == 1 else ''}), got {(<object>arr).shape}")
    if atn != tn:
        raise ValueError(f"dtype mismatch: {name} must be {_dtname(tn)} (the dtype of {ref}), "
                         f"got {arr.dtype}")
    _layout(arr, name)
    return cnp.PyArray_DATA(arr)




cdef tuple _grads_out(object out, tuple names, tuple shapes, int tn, tuple inputs, object scale,
                      double* s):
    """A backward kernel's ``out`` and ``scale``, checked before anything is written.  out: None,
    or a tuple with one entry per parameter gradient the kernel returns (``names``), each None (a
    new array) or an ndarray to write that gradient into: of its shape (``shapes``; an entry
    None there: the call computes no such gradient, and out must have None), of the call's
    dtype, C-contiguous, writeable, sharing no memory with the call's arrays (``inputs``) nor
    with another entry.  scale: a finite number, the factor of the gradients written into out.
    Returns the entries (all None when out is None) and sets s[0] = scale."""
    cdef Py_ssize_t n = len(names), i, j
    cdef cnp.ndarray arr
    if type(scale) is float:  # the common case, checked without NumPy (every backward call)
        s[0] = scale
        if not isfinite(s[0]):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not np.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    else:
        s[0] = float(scale)
    if out is None:
        return (None,) * n
    if type(out) is not tuple or len(out) != n:
        raise ValueError(f"out must be None or a tuple of {n} entries ({', '.join(names)}), "
                         f"each None or an array, got {_describe(out)}")
    for i in range(n):
        a = out[i]
        if a is None:
            continue
        name = f"out[{i}] ({names[i]})"
        if shapes[i] is None:
            raise ValueError(f"{name} must be None: this call computes no {names[i]}, got an array")
        if not cnp.PyArray_Check(a):
            raise ValueError(f"{name} must be a numpy.ndarray or None, got {type(a).__name__}")
        arr = <cnp.ndarray>a
        if (<object>arr).shape != shapes[i]:
            raise ValueError(f"{name} must have shape {shapes[i]}, got {(<object>arr).shape}")
        if cnp.PyArray_TYPE(arr) != tn:
            raise ValueError(f"dtype mismatch: {name} must be {_dtname(tn)} (the dtype of the "
                             f"gradients), got {arr.dtype}")
        _layout(arr, name)
        if not cnp.PyArray_ISWRITEABLE(arr):
            raise ValueError(f"{name} must be writeable, got a read-only array")
        for b in inputs:
            if b is not None and np.may_share_memory(a, b):
                raise ValueError(f"{name} must not share memory with the kernel's input arrays, "
                                 f"got one that overlaps an input of shape {np.shape(b)}")
        for j in range(i):
            if out[j] is not None and np.may_share_memory(a, out[j]):
                raise ValueError(f"{name} must not share memory with out[{j}] ({names[j]})")
    return out


cdef str _describe(object v):
    if type(v) is tuple:
        return f"a tuple of {len(v)}"
    return type(v).__name__

# Debug build: every array a kernel writes (outputs, caches, workspaces) comes from _empty with
# guard bytes on both sides; _verify() after the nogil body raises if a guard was overwritten.
# (The bodies index raw pointers, which Cython's boundscheck does not see.)
cdef enum:
    _GUARD = 64
cdef list _guarded = []


cdef cnp.ndarray _empty(int tn, Py_ssize_t d0, Py_ssize_t d1=-1, Py_ssize_t d2=-1):
    cdef cnp.npy_intp dims[3]
    cdef int nd = 1 if d1 < 0 else (2 if d2 < 0 else 3)
    dims[0] = d0
    dims[1] = d1
    dims[2] = d2
    if not MINIGRAD_DEBUG:
        return cnp.PyArray_EMPTY(nd, dims, tn, 0)
    shape = tuple([dims[i] for i in range(nd)])
    nbytes = int(np.prod(shape)) * (4 if tn == cnp.NPY_FLOAT else 8)
    buf = np.full(nbytes + 2 * _GUARD, 0xA5, np.uint8)
    _guarded.append((buf, nbytes))
    return buf[_GUARD:_GUARD + nbytes].view(np.float32 if tn == cnp.NPY_FLOAT else np.float64).reshape(shape)


cdef int _verify_guards() except -1:
    """Check (and forget) the guards of the arrays allocated since the last call."""
    bad = [n for buf, n in _guarded
           if (buf[:_GUARD] != 0xA5).any() or (buf[_GUARD + n:] != 0xA5).any()]
    _guarded.clear()
    if bad:
        raise RuntimeError(f"kernel wrote out of bounds of an output buffer ({bad[0]} bytes)")
    return 0



# Workspaces (the largest: a sequence backward's gate gradients of all steps) come from one spare
# per dtype, kept between calls: a training loop does not page-fault the big one in anew every
# step, and a cell call skips an allocation (about 0.15 us). A caller takes the spare (under the
# GIL) and hands it back afterwards; a concurrent caller finds none and allocates its own. Two
# module variables rather than a dict: no hashing on the path of a 7 us cell call.
cdef cnp.ndarray _spare_f = None
cdef cnp.ndarray _spare_d = None


cdef cnp.ndarray _borrow(int tn, Py_ssize_t n):
    global _spare_f, _spare_d
    cdef cnp.ndarray w
    if tn == cnp.NPY_FLOAT:
        w, _spare_f = _spare_f, None
    else:
        w, _spare_d = _spare_d, None
    if w is not None and cnp.PyArray_SIZE(w) >= n and not MINIGRAD_DEBUG:
        return w
    return _empty(tn, n)


cdef void _give_back(int tn, cnp.ndarray w):
    global _spare_f, _spare_d
    cdef cnp.ndarray old = _spare_f if tn == cnp.NPY_FLOAT else _spare_d
    if old is None or cnp.PyArray_SIZE(old) < cnp.PyArray_SIZE(w):
        if tn == cnp.NPY_FLOAT:
            _spare_f = w
        else:
            _spare_d = w



# Recycled forward caches. A training loop asks for the same large caches (gates, states, layer
# norm statistics) at every step. A fresh array of several megabytes comes from the operating
# system as untouched pages, each zeroed on its first write (one page fault per 4 KB): at
# 32x100x128x128 the layer-normalised LSTM's forward spent a third of its time there (its
# caches outgrew what malloc keeps between steps). A node that lets go of its caches after its
# backward hands them to recycle(); the next forward that needs an array of that dtype and
# shape takes one back (_cache_empty). Only arrays nothing else refers to are kept (an output
# that is a view of a cache keeps that cache out), at most _RECYCLE_MAX bytes in all: past it,
# the shapes asked for or given back least recently go first (a loop whose shapes change does
# not fill the pool with ones it no longer uses). The debug build keeps none (its arrays carry
# guard bytes).
DEBUG_BUILD = bool(MINIGRAD_DEBUG)  # this module was built with MINIGRAD_CYTHON_DEBUG=1
cdef dict _recycled = {}            # (type number, shape) -> [arrays], least recently used first
cdef Py_ssize_t _recycled_bytes = 0
cdef Py_ssize_t _RECYCLE_MAX = 256 * 1024 * 1024


cdef cnp.ndarray _cache_empty(int tn, Py_ssize_t d0, Py_ssize_t d1=-1, Py_ssize_t d2=-1):
    global _recycled_bytes
    cdef list spare
    cdef cnp.ndarray a
    if _recycled:
        key = (tn, d0, d1, d2)
        spare = _recycled.pop(key, None)
        if spare is not None:
            _recycled[key] = spare  # now the most recently used shape
            if spare:
                a = spare.pop()
                _recycled_bytes -= cnp.PyArray_NBYTES(a)
                return a
    return _empty(tn, d0, d1, d2)


cdef int _make_room(Py_ssize_t nb, object keep) except -1:
    """Drop the least recently used recycled arrays (not of shape `keep`) until nb more bytes
    fit under _RECYCLE_MAX."""
    global _recycled_bytes
    cdef cnp.ndarray a
    for key in list(_recycled):
        if _recycled_bytes + nb <= _RECYCLE_MAX:
            break
        if key == keep:
            continue
        for a in _recycled.pop(key):
            _recycled_bytes -= cnp.PyArray_NBYTES(a)
    return 0


def recycle(list arrays):
    """Keep the arrays of the list ``arrays`` that nothing but the list refers to, for the next
    kernel forward that allocates a cache of the same dtype and shape; returns how many were
    kept. The caller must hold no other reference to them (a kept array is written by a later
    forward)."""
    global _recycled_bytes
    cdef Py_ssize_t i, kept = 0, nb
    cdef cnp.ndarray a
    cdef list spare
    cdef int nd
    if MINIGRAD_DEBUG:
        return 0
    for i in range(len(arrays)):
        obj = arrays[i]
        # references: the list's and obj's; a view of it, another list or tuple: more
        if type(obj) is not np.ndarray or Py_REFCNT(obj) != 2:
            continue
        a = <cnp.ndarray>obj
        nd = cnp.PyArray_NDIM(a)
        if (cnp.PyArray_BASE(a) != NULL or not cnp.PyArray_IS_C_CONTIGUOUS(a) or nd > 3
                or not cnp.PyArray_ISWRITEABLE(a)
                or cnp.PyArray_TYPE(a) not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)):
            continue
        nb = cnp.PyArray_NBYTES(a)
        key = (cnp.PyArray_TYPE(a), a.shape[0], a.shape[1] if nd > 1 else -1,
               a.shape[2] if nd > 2 else -1)
        if nb > _RECYCLE_MAX:
            continue  # larger than the whole pool
        if _recycled_bytes + nb > _RECYCLE_MAX:
            _make_room(nb, key)
            if _recycled_bytes + nb > _RECYCLE_MAX:
                continue  # the pool is full of this shape
        spare = _recycled.pop(key, [])
        spare.append(a)
        _recycled[key] = spare  # the most recently used shape
        _recycled_bytes += nb
        kept += 1
    arrays.clear()
    return kept


def recycled_bytes():
    """How many bytes of recycled caches are waiting for reuse."""
    return _recycled_bytes


def _set_recycle_max(Py_ssize_t n):
    """Private (tests): set the pool's limit to n bytes (default 256 MB); returns the old one."""
    global _RECYCLE_MAX
    if n < 0:
        raise ValueError(f"the recycle limit must be >= 0 bytes, got {n}")
    old, _RECYCLE_MAX = _RECYCLE_MAX, n
    return old


def clear_recycled():
    """Drop every recycled cache (their memory goes back to the allocator)."""
    global _recycled_bytes
    _recycled.clear()
    _recycled_bytes = 0
