"""Checks of what users pass in, one rule and one message each wherever the same thing is
expected: counts (batch sizes, units, step counts, sample counts) and lists of Tensors."""

import numpy as np


def positive_int(name, value):
    """``value`` as a Python int when it is a positive integer (Python or NumPy, not bool);
    otherwise a ValueError naming ``name`` and the value got."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def tensor_list(value, what):
    """``value``, a Tensor or an iterable of Tensors, as a list of Tensors; otherwise a TypeError
    naming ``what`` (e.g. "grad() inputs") and what was got."""
    # imported here, not above: minigrad.tensor imports autograd, which imports this module
    from .tensor import Tensor

    if isinstance(value, Tensor):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"{what} must be a Tensor or an iterable of Tensors, got {type(value).__name__}"
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, Tensor):
            raise TypeError(f"{what}: item {i} is a {type(item).__name__}; each must be a Tensor")
    return items
