"""Small helpers shared by the op families."""

import numpy as np


def sum_to(g, shape):
    """Reduce a broadcast gradient back to ``shape`` (the inverse of NumPy broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def normalize_axis(axis, ndim):
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative ints, checked."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def expand_reduced(g, in_shape, axis, keepdims):
    """Give a reduced gradient back its reduced axes (as size 1) so it broadcasts to in_shape."""
    if keepdims:
        return g
    axes = normalize_axis(axis, len(in_shape))
    shape = list(in_shape)
    for a in axes:
        shape[a] = 1
    return g.reshape(shape)


def check_float(name, arr):
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} needs a floating point tensor, got dtype {arr.dtype}")
