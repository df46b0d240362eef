"""Session state of ``minigrad.keras``: automatic layer names, and the masks that travel with
tensors (Keras's ``_keras_mask``).

Keras names layers from their class (``SimpleRNN`` -> ``simple_rnn``, then ``simple_rnn_1``,
...), counting per session; ``clear_session()`` starts the counts again, as in Keras.
A mask produced by a layer (``Embedding(mask_zero=True)``) is remembered for the tensor it
produced, so a later layer called on that tensor receives it, also outside a model.
"""

import re
import weakref

import numpy as np

__all__ = ["clear_session", "floatx", "get_mask", "set_mask", "unique_name"]

_counts: dict[str, int] = {}
# id(tensor) -> (weakref to tensor, mask ndarray)
_masks: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def floatx():
    """The float dtype of weights and layer outputs: 'float32'."""
    return "float32"


def clear_session():
    """Reset the automatic names (``dense``, ``dense_1``, ...) as Keras's ``clear_session``."""
    _counts.clear()


def snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix):
    """``prefix`` the first time in a session, then ``prefix_1``, ``prefix_2``, ..."""
    n = _counts.get(prefix, 0)
    _counts[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def set_mask(tensor, mask):
    """Attach a boolean mask (B, T) to ``tensor`` (None removes it)."""
    key = id(tensor)
    if mask is None:
        _masks.pop(key, None)
        return
    try:
        ref = weakref.ref(tensor, lambda _r, k=key: _masks.pop(k, None))
    except TypeError:  # an object without weak references (a plain ndarray): no mask travels
        return
    _masks[key] = (ref, np.asarray(mask, dtype=bool))


def get_mask(tensor):
    """The mask attached to ``tensor`` by the layer that produced it, or None."""
    entry = _masks.get(id(tensor))
    if entry is None or entry[0]() is not tensor:
        return None
    return entry[1]
