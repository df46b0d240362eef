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
