"""Argument checks, the debug build's guarded allocator and the workspace pool, shared by the
compiled kernel modules (_ops, _gemm, _optim_ops). Everything here runs with the GIL, before a
kernel enters its nogil body."""
cimport numpy as cnp

cdef extern from "limits.h":
    const int INT_MAX

cdef extern from "csrc/mg_debug.h":
    const int MINIGRAD_DEBUG      # 1 in the MINIGRAD_CYTHON_DEBUG=1 build (set by setup.py)

cdef int _layout(cnp.ndarray a, str name) except -1
cdef cnp.ndarray _anchor(object a, str name, int nd)
cdef void* _check(object a, str name, int tn, str ref, int nd,
                  Py_ssize_t d0, Py_ssize_t d1=*, Py_ssize_t d2=*, str wild=*) except NULL
cdef cnp.ndarray _empty(int tn, Py_ssize_t d0, Py_ssize_t d1=*, Py_ssize_t d2=*)
cdef cnp.ndarray _cache_empty(int tn, Py_ssize_t d0, Py_ssize_t d1=*, Py_ssize_t d2=*)
cdef int _verify_guards() except -1
cdef tuple _grads_out(object out, tuple names, tuple shapes, int tn, tuple inputs, object scale,
                      double* s)
cdef cnp.ndarray _borrow(int tn, Py_ssize_t n)
cdef void _give_back(int tn, cnp.ndarray w)


cdef inline int _verify() except -1:
    """Debug build: check (and forget) the guards of the arrays _empty allocated since the last
    call (raises if a kernel wrote past one). Nothing in the release build."""
    if not MINIGRAD_DEBUG:
        return 0
    return _verify_guards()


cdef inline void* _data(cnp.ndarray a, Py_ssize_t offset=0):
    """a's data pointer, `offset` elements in."""
    return <char*>cnp.PyArray_DATA(a) + offset * cnp.PyArray_ITEMSIZE(a)


cdef inline void* _ptr(object a):
    """The data pointer of an ndarray, NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)
