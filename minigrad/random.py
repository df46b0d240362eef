"""The random generator behind parameter initialization and dropout (seedable).

``manual_seed(s)`` reseeds the generator every thread shares. A thread that needs its own
reproducible stream (threads draw from the shared one in whatever order they happen to run)
wraps its work in ``with use_generator(np.random.default_rng(s)):``, which that thread's
initializers and dropout then use instead; other threads are not affected.
"""
import threading

import numpy as np

__all__ = ["manual_seed", "default_rng", "use_generator"]

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
            raise TypeError(f"use_generator needs a numpy Generator (np.random.default_rng(seed)), "
                            f"got {type(generator).__name__}")
        self.generator = generator

    def __enter__(self):
        self.prev = getattr(_local, "gen", None)
        _local.gen = self.generator
        return self.generator

    def __exit__(self, *exc):
        _local.gen = self.prev
        return False
