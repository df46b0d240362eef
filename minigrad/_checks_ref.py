"""NumPy twin of ``minigrad/_checks.pyx``: the argument checks every twin shares.

A failed check raises ``ValueError("<name> must <expected>, got <got>")``, the message the
compiled kernels raise for the same argument.
"""

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_array(name, a, dtype=None, ref="x"):
    """a is a C-contiguous ndarray of dtype float32/float64 (exactly `dtype`, that of the
    argument `ref`, when given)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype} (the dtype of {ref}), got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous, got a non-contiguous array "
            f"of shape {a.shape} with strides {a.strides}"
        )
    if not a.flags.aligned:  # as the compiled kernels: they read whole aligned elements
        raise ValueError(f"{name} must be aligned and in native byte order, got {a.dtype}")


def _check_sizes(name, a, letters, dtype=None):
    """a defines sizes: check it as an array of len(letters) non-zero dims; return its shape."""
    _check_array(name, a, dtype)
    dims = "(" + ", ".join(letters) + ")"
    if a.ndim != len(letters):
        raise ValueError(f"{name} must be {len(letters)}-D {dims}, got shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} must have no zero-size dimension {dims}, got shape {a.shape}")
    return a.shape


def _check_shape(name, a, shape, dtype):
    """a is a C-contiguous array of `dtype` with exactly this shape."""
    _check_array(name, a, dtype)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")


def _grads_out(out, names, shapes, dtype, inputs, scale):
    """A backward kernel's ``out`` and ``scale``, checked before anything is written.  out: None,
    or a tuple with one entry per parameter gradient the kernel returns (``names``), each None (a
    new array) or an ndarray to write that gradient into: of its shape (``shapes``; an entry
    None there: the call computes no such gradient, and out must have None), of the call's
    dtype, C-contiguous, writeable, sharing no memory with the call's arrays (``inputs``) nor
    with another entry.  scale: a finite number, the factor of the gradients written into out.
    Returns the entries (all None when out is None) and scale as a float."""
    n = len(names)
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float, np.integer, np.floating))
        or not np.isfinite(scale)
    ):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    if out is None:
        return (None,) * n, float(scale)
    if type(out) is not tuple or len(out) != n:
        got = f"a tuple of {len(out)}" if type(out) is tuple else type(out).__name__
        raise ValueError(
            f"out must be None or a tuple of {n} entries ({', '.join(names)}), "
            f"each None or an array, got {got}"
        )
    for i, a in enumerate(out):
        if a is None:
            continue
        name = f"out[{i}] ({names[i]})"
        if shapes[i] is None:
            raise ValueError(f"{name} must be None: this call computes no {names[i]}, got an array")
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} must be a numpy.ndarray or None, got {type(a).__name__}")
        if a.shape != shapes[i]:
            raise ValueError(f"{name} must have shape {shapes[i]}, got {a.shape}")
        if a.dtype != dtype:
            raise ValueError(
                f"dtype mismatch: {name} must be {dtype} (the dtype of the gradients), "
                f"got {a.dtype}"
            )
        if not a.flags.c_contiguous:
            raise ValueError(
                f"{name} must be C-contiguous, got strides {a.strides} for shape {a.shape}"
            )
        if not a.flags.aligned:
            raise ValueError(f"{name} must be aligned and in native byte order, got {a.dtype}")
        if not a.flags.writeable:
            raise ValueError(f"{name} must be writeable, got a read-only array")
        for b in inputs:
            if b is not None and np.may_share_memory(a, b):
                raise ValueError(
                    f"{name} must not share memory with the kernel's input arrays, "
                    f"got one that overlaps an input of shape {np.shape(b)}"
                )
        for j in range(i):
            if out[j] is not None and np.may_share_memory(a, out[j]):
                raise ValueError(f"{name} must not share memory with out[{j}] ({names[j]})")
    return out, float(scale)


def _write_out(grads, out, scale):
    """Each gradient with an ``out`` entry written there times scale (that array returned in its
    place); the others returned as they are."""
    res = []
    for g, o in zip(grads, out):
        if o is not None and g is not None:
            np.multiply(g, scale, out=o)
            g = o
        res.append(g)
    return tuple(res)
