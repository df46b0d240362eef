"""The random generator behind parameter initialization and dropout (seedable).

``manual_seed(s)`` reseeds the generator every thread shares. A thread that needs its own
reproducible stream (threads draw from the shared one in whatever order they happen to run)
wraps its work in ``with use_generator(np.random.default_rng(s)):``, which that thread's
initializers and dropout then use instead; other threads are not affected.
"""

import threading

import numpy as np

from ._validate import positive_int

__all__ = ["manual_seed", "default_rng", "use_generator", "multinomial"]

_rng = [np.random.default_rng()]
_local = threading.local()  # .gen: this thread's generator inside use_generator, else absent


def manual_seed(seed):
    """Seed minigrad's shared generator (initializers, dropout) for reproducible runs."""
    _rng[0] = np.random.default_rng(seed)
    return _rng[0]


def default_rng():
    """The numpy Generator minigrad draws from in this thread: the one given to an enclosing
    ``use_generator``, else the shared one (see ``manual_seed``)."""
    gen = getattr(_local, "gen", None)
    return _rng[0] if gen is None else gen


class use_generator:
    """``with use_generator(gen):`` makes this thread's initializers and dropout draw from the
    numpy Generator ``gen`` (restored on exit; other threads keep theirs)."""

    def __init__(self, generator):
        if not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"use_generator needs a numpy Generator (np.random.default_rng(seed)), "
                f"got {type(generator).__name__}"
            )
        self.generator = generator

    def __enter__(self):
        self.prev = getattr(_local, "gen", None)
        _local.gen = self.generator
        return self.generator

    def __exit__(self, *exc):
        _local.gen = self.prev
        return False


def multinomial(input, num_samples, replacement=False, generator=None):
    """Draw ``num_samples`` category indices per row of ``input`` (1-D (C,) or 2-D (N, C)
    non-negative weights, normalised per row), as ``torch.multinomial``: without replacement
    each index at most once per row (so num_samples <= the row's non-zero weights). Returns an
    int64 Tensor (num_samples,) or (N, num_samples). ``generator``: a numpy Generator (default:
    minigrad's, see manual_seed)."""
    from .tensor import Tensor

    w = np.asarray(getattr(input, "data", input))
    if w.dtype.kind not in "fiu" or w.ndim not in (1, 2):
        raise ValueError(
            f"multinomial expects 1-D or 2-D numeric weights, got {w.dtype} of shape {w.shape}"
        )
    num_samples = positive_int("multinomial's num_samples", num_samples)
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"multinomial: generator must be a numpy Generator, got {type(generator).__name__}"
        )
    rows = np.atleast_2d(w).astype(np.float64)
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise ValueError("multinomial: weights must be finite and non-negative")
    sums = rows.sum(axis=1)
    if np.any(sums <= 0):
        raise ValueError("multinomial: every row needs a positive total weight")
    if not replacement and num_samples > int((rows > 0).sum(axis=1).min()):
        raise ValueError(
            f"multinomial: cannot draw {num_samples} samples without replacement "
            f"from a row with {int((rows > 0).sum(axis=1).min())} non-zero weights"
        )
    rng = generator if generator is not None else default_rng()
    out = np.stack(
        [
            rng.choice(rows.shape[1], size=int(num_samples), replace=bool(replacement), p=r / s)
            for r, s in zip(rows, sums)
        ]
    ).astype(np.int64)
    return Tensor(out[0] if w.ndim == 1 else out)
