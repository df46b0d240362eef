# cython: language_level=3, cdivision=True
"""Compiled optimizer update kernels: one pass over a parameter per step, in place (contract:
docs/kernels.md; NumPy twin with the same names and the rules spelled out: _optim_ops_ref.py).
The loops are C, in csrc/mg_optim.h; this module checks the arrays and picks float32 or float64.
A large parameter's update is split into contiguous chunks across the kernels' threads (_pool):
each element's update depends on that element alone, so the result is the same."""
from libc.math cimport sqrt
from libc.string cimport memset
cimport numpy as cnp

from minigrad._checks cimport _layout, _ptr
from minigrad._pool cimport _parts, _parallel

cnp.import_array()


cdef extern from "csrc/mg_optim.h" nogil:
    # dbl: float64 (else float32) arrays
    void mg_sgd(int dbl, void* p, void* g, void* b, Py_ssize_t n, double lr, double mom,
                double damp, double wd, int nesterov, int first)
    void mg_adam(int dbl, void* p, void* g, void* m, void* v, void* vmax, Py_ssize_t n,
                 double b1, double omb1, double b2, double omb2, double eps, double wd,
                 double decay, double step_size, double bc2, int wd_mode)
    void mg_adagrad(int dbl, void* p, void* g, void* acc, Py_ssize_t n, double clr, double wd,
                    double eps, int decay)
    void mg_rmsprop(int dbl, void* p, void* g, void* v, void* ga, void* b, Py_ssize_t n,
                    double lr, double alpha, double oma, double eps, double wd, double mom,
                    int decay)


cdef enum Rule:
    SGD, ADAM, ADAGRAD, RMSPROP


cdef struct Update:             # one update kernel call: which rule, its arrays and numbers
    Rule rule
    int dbl                     # float64 arrays (else float32)
    void* a[5]                  # p, g, then the rule's state arrays (NULL: unused)
    Py_ssize_t n
    double h[12]                # the hyperparameters, in the order of the mg_* call
    int f[3]                    # its int flags


cdef void _chunk(void* arg, int i, int parts) noexcept nogil:
    """Elements [j0, j1) of an update: part i of `parts`, cut at multiples of 64 elements."""
    cdef Update* u = <Update*>arg
    cdef Py_ssize_t j0 = u.n * i // parts // 64 * 64
    cdef Py_ssize_t j1 = u.n if i == parts - 1 else u.n * (i + 1) // parts // 64 * 64
    cdef Py_ssize_t size = 8 if u.dbl else 4, q
    cdef void* a[5]
    cdef double* h = u.h
    for q in range(5):
        a[q] = NULL if u.a[q] == NULL else <char*>u.a[q] + j0 * size
    if u.rule == SGD:
        mg_sgd(u.dbl, a[0], a[1], a[2], j1 - j0, h[0], h[1], h[2], h[3], u.f[0], u.f[1])
    elif u.rule == ADAM:
        mg_adam(u.dbl, a[0], a[1], a[2], a[3], a[4], j1 - j0, h[0], h[1], h[2], h[3], h[4], h[5],
                h[6], h[7], h[8], u.f[0])
    elif u.rule == ADAGRAD:
        mg_adagrad(u.dbl, a[0], a[1], a[2], j1 - j0, h[0], h[1], h[2], u.f[0])
    else:
        mg_rmsprop(u.dbl, a[0], a[1], a[2], a[3], a[4], j1 - j0, h[0], h[1], h[2], h[3], h[4],
                   h[5], u.f[0])


cdef inline Update _blank(Rule rule) noexcept:
    cdef Update u
    memset(&u, 0, sizeof(Update))
    u.rule = rule
    return u


cdef void _update(Update* u) noexcept nogil:
    """Run an update on the kernels' threads: one chunk per thread, each of at least
    _pool.MIN_PART_WORK / 32 elements (an element costs about 32 multiply-adds' time)."""
    _parallel(_chunk, u, _parts(u.n * 32.0, u.n // 64))


cdef cnp.ndarray _in_place(object a, str name, cnp.ndarray like, bint write):
    """Check an array of the update kernels: float32/float64 (the dtype of p, `like`, when
    given), C-contiguous and aligned, p's shape, writeable when `write` (the twin's order)."""
    if not cnp.PyArray_Check(a):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    if like is None:
        if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
            raise ValueError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    elif tn != cnp.PyArray_TYPE(like):
        raise ValueError(f"{name} must have dtype {like.dtype} (the dtype of p), got {arr.dtype}")
    _layout(arr, name)
    if like is not None and (<object>arr).shape != (<object>like).shape:
        raise ValueError(f"{name} must have shape {(<object>like).shape} (that of p), "
                         f"got {(<object>arr).shape}")
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable, got a read-only array")
    return arr


cdef int _disjoint(cnp.ndarray a, str an, cnp.ndarray b, str bn) except -1:
    """The kernel's pointers are restrict: two contiguous arrays must not overlap (the bounds
    test of numpy.may_share_memory)."""
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    if cnp.PyArray_NBYTES(a) and cnp.PyArray_NBYTES(b) and \
            a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a):
        raise ValueError(f"{an} must not share memory with {bn}")
    return 0


cdef int _update_arrays(object p, object g, tuple names, tuple state, void** data,
                        Py_ssize_t* n) except -1:
    """The arrays of an update kernel, checked: p (writeable) fixes shape and dtype; g and each
    state array given (None: unused) match it and are C-contiguous, the state arrays writeable;
    no two overlap. Sets data[:] to the data pointers of p, g, *state (NULL for None) and *n to
    p's size; returns 1 for float64 arrays, 0 for float32."""
    cdef cnp.ndarray ap = _in_place(p, "p", None, True)
    cdef cnp.ndarray ag = _in_place(g, "g", ap, False)
    cdef list given = [("p", ap), ("g", ag)]
    cdef Py_ssize_t i, j
    cdef cnp.ndarray arr
    data[0], data[1] = _ptr(ap), _ptr(ag)
    for i in range(len(names)):
        data[2 + i] = NULL
        if state[i] is not None:
            arr = _in_place(state[i], names[i], ap, True)
            data[2 + i] = _ptr(arr)
            given.append((names[i], arr))
    for i in range(1, len(given)):
        for j in range(i):
            _disjoint(given[i][1], given[i][0], given[j][1], given[j][0])
    n[0] = cnp.PyArray_SIZE(ap)
    return cnp.PyArray_TYPE(ap) == cnp.NPY_DOUBLE


def sgd_update(p, g, buf, double lr, double momentum, double dampening, double weight_decay,
               bint nesterov, bint first):
    """One SGD step on p, in place, in one pass (the rule is in the twin); buf is the momentum
    buffer, updated in place (None without momentum), first: it holds nothing yet."""
    cdef Update u = _blank(SGD)
    u.dbl = _update_arrays(p, g, ("buf",), (buf,), u.a, &u.n)
    u.h[:4] = [lr, momentum, 1.0 - dampening, weight_decay]
    u.f[:2] = [nesterov, first]
    with nogil:
        _update(&u)


def adam_update(p, g, m, v, vmax, double lr, double beta1, double beta2, double eps,
                double weight_decay, long step, bint decoupled):
    """One Adam (decoupled: AdamW) step on p, in place, in one pass (the rule is in the twin);
    m, v (and vmax with amsgrad, else None) are the moment buffers, updated in place; step is
    the step number t >= 1 the bias corrections use."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef Update u = _blank(ADAM)
    u.dbl = _update_arrays(p, g, ("m", "v", "vmax"), (m, v, vmax), u.a, &u.n)
    cdef int mode = 0 if weight_decay == 0 else (2 if decoupled else 1)
    cdef double step_size = lr / (1.0 - beta1 ** step)
    cdef double bc2 = sqrt(1.0 - beta2 ** step)
    cdef double decay = 1.0 - lr * weight_decay
    u.h[:9] = [beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay, decay, step_size, bc2]
    u.f[0] = mode
    with nogil:
        _update(&u)


def adagrad_update(p, g, acc, double lr, double lr_decay, double weight_decay, double eps,
                   long step):
    """One Adagrad step on p, in place, in one pass (the rule is in the twin); acc is the sum
    of squared gradients, updated in place; step is the step number t >= 1."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    cdef Update u = _blank(ADAGRAD)
    u.dbl = _update_arrays(p, g, ("acc",), (acc,), u.a, &u.n)
    u.h[:3] = [lr / (1.0 + (step - 1) * lr_decay), weight_decay, eps]
    u.f[0] = weight_decay != 0
    with nogil:
        _update(&u)


def rmsprop_update(p, g, v, grad_avg, buf, double lr, double alpha, double eps,
                   double weight_decay, double momentum):
    """One RMSprop step on p, in place, in one pass (the rule is in the twin); v is the square
    average, grad_avg the gradient average (centered, else None), buf the momentum buffer
    (momentum > 0, else None), each updated in place."""
    cdef Update u = _blank(RMSPROP)
    u.dbl = _update_arrays(p, g, ("v", "grad_avg", "buf"), (v, grad_avg, buf), u.a, &u.n)
    u.h[:6] = [lr, alpha, 1.0 - alpha, eps, weight_decay, momentum]
    u.f[0] = weight_decay != 0
    with nogil:
        _update(&u)
