"""The check for counts users pass in (batch sizes, units, step counts, sample counts): one rule
and one message wherever a positive integer is expected."""

import numpy as np


def positive_int(name, value):
    """``value`` as a Python int when it is a positive integer (Python or NumPy, not bool);
    otherwise a ValueError naming ``name`` and the value got."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
