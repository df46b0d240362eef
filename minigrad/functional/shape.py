"""Shape and indexing: reshape, flatten, transpose, swapaxes, expand, squeeze, unsqueeze,
getitem, concatenate, stack, unbind, split."""

import numpy as np

from ..autograd import Function
from ._util import normalize_axis, sum_to

__all__ = [
    "reshape",
    "flatten",
    "transpose",
    "permute",
    "swapaxes",
    "expand",
    "broadcast_to",
    "squeeze",
    "unsqueeze",
    "getitem",
    "concatenate",
    "cat",
    "stack",
    "unbind",
    "split",
]


class Reshape(Function):
    saves_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        self.saved = a.shape
        try:
            return a.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                f"into shape {self.shape}"
            ) from None

    def backward(self, g):
        return (g.reshape(self.saved),)

    backward_graph = backward  # a Tensor reshapes the same way


def reshape(a, shape):
    """y = a with a new shape (same elements);  da = dy reshaped back"""
    return Reshape(tuple(shape) if not isinstance(shape, int) else (shape,))(a)


def flatten(a, start_dim=0, end_dim=-1):
    """Merge dimensions start_dim..end_dim into one (PyTorch's flatten)."""
    shape = a.shape
    nd = len(shape)
    if nd == 0:
        return reshape(a, (1,))
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(a, shape[:s] + (-1,) + shape[e + 1 :])


class Transpose(Function):
    saves_inputs = False

    def __init__(self, axes):
        self.axes = axes

    def forward(self, a):
        if self.axes is not None and len(self.axes) != a.ndim:
            raise ValueError(
                f"transpose axes {self.axes} are not a permutation of the {a.ndim} dimensions"
            )
        try:
            return np.transpose(a, self.axes)
        except ValueError:  # np.transpose checks the permutation (repeats, range)
            raise ValueError(
                f"transpose axes {self.axes} are not a permutation of the {a.ndim} dimensions"
            ) from None

    def backward(self, g):
        if self.axes is None:
            return (np.transpose(g),)
        nd = g.ndim
        return (np.transpose(g, np.argsort([x % nd for x in self.axes])),)

    def backward_graph(self, g):
        if self.axes is None:
            return (Transpose(None)(g),)
        nd = g.ndim
        return (Transpose(tuple(int(i) for i in np.argsort([x % nd for x in self.axes])))(g),)


def transpose(a, axes=None):
    """y = a with its axes permuted (reversed when axes is None);  da = dy permuted back"""
    return Transpose(None if axes is None else tuple(axes))(a)


def permute(a, axes):
    """PyTorch's name for a full axis permutation."""
    return Transpose(tuple(axes))(a)


def swapaxes(a, axis1, axis2):
    """y = a with two axes exchanged (PyTorch's transpose(dim0, dim1))."""
    nd = a.ndim
    if not (-nd <= axis1 < nd and -nd <= axis2 < nd):
        raise ValueError(f"swapaxes axes ({axis1}, {axis2}) out of range for {nd} dimensions")
    axes = list(range(nd))
    axes[axis1 % nd], axes[axis2 % nd] = axes[axis2 % nd], axes[axis1 % nd]
    return Transpose(tuple(axes))(a)


class Expand(Function):
    saves_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        self.saved = a.shape
        shape = tuple(
            a.shape[i - (len(self.shape) - a.ndim)] if s == -1 else s
            for i, s in enumerate(self.shape)
        )
        try:
            return np.broadcast_to(a, shape).copy()
        except ValueError:
            raise ValueError(
                f"cannot expand a tensor of shape {a.shape} to shape {self.shape}"
            ) from None

    def backward(self, g):
        return (sum_to(g, self.saved),)

    backward_graph = backward  # sum_to works on Tensors too


def expand(a, shape):
    """y = a broadcast to shape (-1 keeps a dimension);  da = dy summed back to a's shape"""
    return Expand(tuple(shape))(a)


broadcast_to = expand


class Squeeze(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        self.saved = a.shape
        if self.axis is None:
            return a.reshape([s for s in a.shape if s != 1])
        axes = normalize_axis(self.axis, a.ndim)
        for ax in axes:
            if a.shape[ax] != 1:
                raise ValueError(
                    f"cannot squeeze axis {ax} of size {a.shape[ax]} (shape {a.shape})"
                )
        return a.reshape([s for i, s in enumerate(a.shape) if i not in axes])

    def backward(self, g):
        return (g.reshape(self.saved),)

    backward_graph = backward


def squeeze(a, axis=None):
    """Remove size-1 axes (all of them, or the given ones)."""
    return Squeeze(axis)(a)


def unsqueeze(a, axis):
    """Insert a size-1 axis at position axis."""
    nd = a.ndim + 1
    if not -nd <= axis < nd:
        raise ValueError(
            f"unsqueeze axis {axis} is out of range for a tensor with {a.ndim} "
            f"dimensions (allowed: {-nd} to {nd - 1})"
        )
    axis %= nd
    return reshape(a, a.shape[:axis] + (1,) + a.shape[axis:])


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


class GetItem(Function):
    saves_inputs = False

    def __init__(self, idx):
        self.idx = idx

    def forward(self, a):
        try:
            y = a[self.idx]
        except IndexError as e:
            raise IndexError(
                f"index {self.idx!r} does not fit a tensor of shape {a.shape}: {e}"
            ) from None
        self.saved = (a.shape, a.dtype)
        return np.array(y, copy=True) if np.ndim(y) else np.asarray(y)

    def backward(self, g):
        shape, dtype = self.saved
        out = np.zeros(shape, dtype=g.dtype)
        if _is_basic(self.idx):
            out[self.idx] = g  # a basic index touches each element at most once
        else:
            np.add.at(out, self.idx, g)  # repeated indices must add up
        return (out,)

    def backward_graph(self, g):
        return (IndexAdd(self.idx, self.saved[0])(g),)


class IndexAdd(Function):
    """y = zeros(shape) with y[idx] += g: the scatter that is the derivative of ``a[idx]``
    (and of an embedding lookup); its own derivative is the gather ``dy[idx]``."""

    saves_inputs = False

    def __init__(self, idx, shape):
        self.idx, self.shape = idx, tuple(shape)

    def forward(self, g):
        out = np.zeros(self.shape, dtype=g.dtype)
        if _is_basic(self.idx):
            out[self.idx] = g
        else:
            np.add.at(out, self.idx, g)
        return out

    def backward(self, gy):
        return (np.array(gy[self.idx], copy=True),)

    def backward_graph(self, gy):
        return (GetItem(self.idx)(gy),)


def getitem(a, idx):
    """y = a[idx] (ints, slices, Ellipsis, None, integer and boolean arrays);  da = dy
    scattered back (np.add.at, so repeated indices accumulate)"""
    if isinstance(idx, tuple):
        idx = tuple(getattr(i, "data", i) for i in idx)
    else:
        idx = getattr(idx, "data", idx)
    if isinstance(idx, list):
        idx = np.asarray(idx)
    return GetItem(idx)(a)


class Concatenate(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        try:
            y = np.concatenate(arrays, axis=self.axis)
        except ValueError as e:
            shapes = [x.shape for x in arrays]
            raise ValueError(
                f"cannot concatenate shapes {shapes} along axis {self.axis}: {e}"
            ) from None
        self.saved = np.cumsum([x.shape[self.axis] for x in arrays])[:-1]
        return y

    def backward(self, g):
        return tuple(np.split(g, self.saved, axis=self.axis))

    def backward_graph(self, g):
        return Split([int(b) for b in self.saved], self.axis, False)(g)


def concatenate(tensors, axis=0):
    """y = the tensors joined along axis;  each input gets its slice of dy"""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    return Concatenate(axis)(*tensors)


cat = concatenate


class Stack(Function):
    saves_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        shapes = {x.shape for x in arrays}
        if len(shapes) != 1:
            raise ValueError(f"stack needs tensors of one shape, got {[x.shape for x in arrays]}")
        return np.stack(arrays, axis=self.axis)

    def backward(self, g):
        return tuple(np.moveaxis(g, self.axis, 0))

    def backward_graph(self, g):
        n = len(self.inputs)
        return Split(list(range(1, n)), self.axis % g.ndim, True)(g)


def stack(tensors, axis=0):
    """y = the tensors stacked along a new axis;  each input gets its slice of dy"""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return Stack(axis)(*tensors)


class Split(Function):
    saves_inputs = False

    """One node with many outputs: the pieces of a along axis (unbind and split)."""

    def __init__(self, bounds, axis, squeeze):
        self.bounds, self.axis, self.squeeze = bounds, axis, squeeze

    def forward(self, a):
        self.saved = (a.shape, a.dtype)
        pieces = np.split(a, self.bounds, axis=self.axis)
        if self.squeeze:
            pieces = [np.squeeze(p, axis=self.axis) for p in pieces]
        return tuple(pieces)

    def backward(self, *gs):
        shape, dtype = self.saved
        out = np.zeros(shape, dtype=dtype)
        view = np.moveaxis(out, self.axis, 0)
        starts = [0] + list(self.bounds)
        ends = list(self.bounds) + [shape[self.axis]]
        for g, s, e in zip(gs, starts, ends):
            if g is None:
                continue
            if self.squeeze:
                view[s] = g
            else:
                view[s:e] = np.moveaxis(g, self.axis, 0)
        return (out,)

    def backward_graph(self, *gs):
        shape, dtype = self.saved
        starts = [0] + list(self.bounds)
        ends = list(self.bounds) + [shape[self.axis]]
        pieces = []
        for g, s, e in zip(gs, starts, ends):
            if g is None:  # an output that got no gradient contributes zeros
                pshape = list(shape)
                if self.squeeze:
                    del pshape[self.axis]
                else:
                    pshape[self.axis] = e - s
                g = np.zeros(pshape, dtype=dtype)
            pieces.append(g)
        if self.squeeze:
            return (Stack(self.axis)(*pieces),)
        return (Concatenate(self.axis)(*pieces),)


def unbind(a, axis=0):
    """The slices of a along axis, as a tuple of tensors (one tape node)."""
    nd = a.ndim
    normalize_axis((axis,), nd)
    n = a.shape[axis]
    return Split(list(range(1, n)), axis % nd, True)(a)


def split(a, size_or_sections, axis=0):
    """PyTorch's split: an int is the size of each piece (the last may be smaller); a list
    gives every piece's size (they must add up to the axis length)."""
    nd = a.ndim
    normalize_axis((axis,), nd)
    axis %= nd
    n = a.shape[axis]
    if isinstance(size_or_sections, (int, np.integer)):
        if size_or_sections <= 0:
            raise ValueError(f"split size must be positive, got {size_or_sections}")
        bounds = list(range(size_or_sections, n, size_or_sections))
    else:
        sizes = list(size_or_sections)
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"split sizes must be non-negative integers, got {sizes}")
        if sum(sizes) != n:
            raise ValueError(
                f"split sizes {sizes} add up to {sum(sizes)}, but axis {axis} has length {n}"
            )
        bounds = list(np.cumsum(sizes)[:-1])
    return Split(bounds, axis, False)(a)
