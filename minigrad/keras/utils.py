"""Data helpers from Keras: ``pad_sequences``, ``to_categorical``,
``timeseries_dataset_from_array``."""

import math

import numpy as np

__all__ = [
    "Dataset",
    "pad_sequences",
    "set_random_seed",
    "timeseries_dataset_from_array",
    "to_categorical",
]


def pad_sequences(
    sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0
):
    """Pad (or cut) a list of sequences to one length: a (n, maxlen) array. As Keras, padding
    and truncation happen at the start ('pre') unless 'post' is given."""
    if padding not in ("pre", "post"):
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"truncating must be 'pre' or 'post', got {truncating!r}")
    seqs = [np.asarray(s) for s in sequences]
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise ValueError(f"pad_sequences takes a list of sequences; item {i} is a scalar")
    if maxlen is None:
        maxlen = max((len(s) for s in seqs), default=0)
    tail = next((s.shape[1:] for s in seqs if len(s)), ())
    out = np.full((len(seqs), maxlen) + tail, value, dtype=dtype)
    for i, s in enumerate(seqs):
        if not len(s) or maxlen == 0:
            continue
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if s.shape[1:] != tail:
            raise ValueError(f"sequence {i} has item shape {s.shape[1:]}, the others {tail}")
        if padding == "post":
            out[i, : len(s)] = s
        else:
            out[i, -len(s) :] = s
    return out


def to_categorical(x, num_classes=None):
    """One-hot rows for class indices: shape x.shape + (num_classes,) (a trailing axis of 1 is
    dropped first), float32."""
    x = np.asarray(x)
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.dtype.kind == "f":
        if not np.all(x == np.round(x)):
            raise ValueError("to_categorical takes integer class indices")
        x = x.astype(np.int64)
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes}), got {x.min()}..{x.max()}")
    out = np.zeros(x.shape + (num_classes,), np.float32)
    np.put_along_axis(out, x[..., None], 1, axis=-1)
    return out


class Dataset:
    """Batches of (x, y) windows (or x alone) that ``fit``/``evaluate``/``predict`` iterate."""

    def __init__(self, batches):
        self._batches = batches

    def __iter__(self):
        return iter(self._batches)

    def __len__(self):
        return len(self._batches)

    def as_numpy(self):
        """All batches joined: (x, y) arrays, or x."""
        first = self._batches[0]
        if isinstance(first, tuple):
            return tuple(np.concatenate([b[i] for b in self._batches]) for i in range(2))
        return np.concatenate(self._batches)


def timeseries_dataset_from_array(
    data,
    targets,
    sequence_length,
    sequence_stride=1,
    sampling_rate=1,
    batch_size=128,
    shuffle=False,
    seed=None,
    start_index=None,
    end_index=None,
):
    """Sliding windows over a series, as Keras: window i starts at start_index + i *
    sequence_stride and takes sequence_length steps sampling_rate apart; its target is
    ``targets[start_index + i * sequence_stride]`` (so to predict the value after the window,
    pass ``targets=data[sequence_length:]``)."""
    data = np.asarray(data)
    start_index = start_index or 0
    end_index = len(data) if end_index is None else end_index
    if sequence_length < 1 or sampling_rate < 1 or sequence_stride < 1:
        raise ValueError("sequence_length, sampling_rate and sequence_stride must be >= 1")
    num_seqs = end_index - start_index - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        num_seqs = min(num_seqs, len(targets) - start_index)
    if num_seqs <= 0:
        raise ValueError(
            f"the series of length {end_index - start_index} is too short for "
            f"windows of {sequence_length} steps at sampling_rate {sampling_rate}"
        )
    starts = np.arange(0, num_seqs, sequence_stride)
    if shuffle:
        np.random.RandomState(seed if seed is not None else np.random.randint(10**6)).shuffle(
            starts
        )
    idx = starts[:, None] + np.arange(0, sequence_length * sampling_rate, sampling_rate)[None]
    windows = data[start_index:end_index][idx]
    ys = targets[start_index:][starts] if targets is not None else None
    bs = len(starts) if batch_size is None else int(batch_size)
    batches = []
    for b in range(math.ceil(len(starts) / bs)):
        sl = slice(b * bs, (b + 1) * bs)
        batches.append((windows[sl], ys[sl]) if ys is not None else windows[sl])
    return Dataset(batches)


def set_random_seed(seed):
    """Seed minigrad's generator (weights, dropout, shuffling) and NumPy's."""
    from ..random import manual_seed

    np.random.seed(seed)
    manual_seed(seed)
