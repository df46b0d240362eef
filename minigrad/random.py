"""The random generator behind parameter initialization and dropout (seedable)."""
import numpy as np

__all__ = ["manual_seed", "default_rng"]

_rng = [np.random.default_rng()]


def manual_seed(seed):
    """Seed minigrad's generator (initializers, dropout) for reproducible runs."""
    _rng[0] = np.random.default_rng(seed)
    return _rng[0]


def default_rng():
    """minigrad's current numpy Generator."""
    return _rng[0]
