"""Datasets and batching: PyTorch's ``Dataset``/``DataLoader`` shapes, plus the two batchers a
sequence modeller needs: padding variable-length sequences (with their ``lengths``, which the
recurrent layers take), and cutting one long token stream for truncated BPTT.

    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader: ...

    loader = DataLoader(list_of_(sequence, label), batch_size=16, collate_fn=pad_collate)
    for padded, lengths, labels in loader:
        out, h = lstm(padded, lengths=lengths)

    for x, y in BPTTBatcher(token_ids, batch_size=32, seq_len=64):   # one epoch, in order
        logits, state = model(x, state); ...; state = nn.utils.detach_state(state)

Data-parallel training (minigrad.distributed) gives each rank its own part of every batch:
``DistributedSampler`` for a DataLoader, and ``BPTTBatcher(..., num_replicas=, rank=)``.
"""

from __future__ import annotations

import numpy as np

from ._validate import positive_int
from .tensor import Tensor

__all__ = [
    "Dataset",
    "TensorDataset",
    "DataLoader",
    "default_collate",
    "pad_collate",
    "BPTTBatcher",
    "DistributedSampler",
]


class Dataset:
    """Anything with ``__getitem__(i)`` and ``__len__()``; subclass it or pass a list."""

    def __getitem__(self, index):  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self):  # pragma: no cover - abstract
        raise NotImplementedError


class TensorDataset(Dataset):
    """Rows of several arrays or Tensors that share their first dimension: item i is the tuple
    of their i-th rows (Tensors give Tensors, arrays give arrays)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array or Tensor")
        arrays = []
        for i, t in enumerate(tensors):
            a = t.data if isinstance(t, Tensor) else np.asarray(t)
            if a.ndim == 0:
                raise ValueError(
                    f"TensorDataset: input {i} is a scalar; expected an array with "
                    "a first (sample) dimension"
                )
            arrays.append(a)
        n = arrays[0].shape[0]
        for i, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValueError(
                    f"TensorDataset: every input needs the same first dimension; "
                    f"input 0 has {n} rows, input {i} has {a.shape[0]}"
                )
        self.tensors = tuple(tensors)
        self._arrays = arrays
        self._is_tensor = [isinstance(t, Tensor) for t in tensors]

    def __getitem__(self, index):
        return tuple(
            Tensor(a[index]) if is_t else a[index] for a, is_t in zip(self._arrays, self._is_tensor)
        )

    def __len__(self):
        return self._arrays[0].shape[0]


def default_collate(batch):
    """Stack a list of samples into a batch: numbers and arrays into one array, Tensors into one
    Tensor, and tuples, lists and dicts element by element."""
    if not batch:
        raise ValueError("default_collate got an empty batch")
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor(_stack([b.data for b in batch], "Tensor"))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        n = len(first)
        for i, b in enumerate(batch):
            if not isinstance(b, (tuple, list)) or len(b) != n:
                raise ValueError(
                    f"default_collate: sample 0 has {n} fields, sample {i} is {b!r:.60}"
                )
        fields = [default_collate([b[i] for b in batch]) for i in range(n)]
        return tuple(fields) if isinstance(first, tuple) else fields
    return _stack([np.asarray(b) for b in batch], type(first).__name__)


def _stack(arrays, what):
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(
                f"cannot stack {what} samples of different shapes into a batch: "
                f"sample 0 has shape {shape}, sample {i} has {a.shape} (for "
                "variable-length sequences use collate_fn=pad_collate)"
            )
    return np.stack(arrays)


def pad_collate(batch, padding_value=0, batch_first=True):
    """Collate samples ``(sequence, *rest)`` whose sequences differ in length: returns
    ``(padded, lengths, *rest collated)`` with ``padded`` (B, T_max, ...) (or (T_max, B, ...)
    when ``batch_first=False``), padded at the end with ``padding_value``, and ``lengths`` (B,)
    int64, ready for ``nn.LSTM(...)(padded, lengths=lengths)``."""
    if not batch:
        raise ValueError("pad_collate got an empty batch")
    seqs, rests = [], []
    for i, sample in enumerate(batch):
        if isinstance(sample, (tuple, list)):
            if not sample:
                raise ValueError(f"pad_collate: sample {i} is empty; expected (sequence, ...)")
            seq, rest = sample[0], tuple(sample[1:])
        else:
            seq, rest = sample, ()
        a = seq.data if isinstance(seq, Tensor) else np.asarray(seq)
        if a.ndim < 1:
            raise ValueError(
                f"pad_collate: sample {i}'s sequence is a scalar; expected a "
                "sequence (T, ...) of at least one step"
            )
        if a.shape[0] == 0:
            raise ValueError(
                f"pad_collate: sample {i}'s sequence has length 0; the recurrent "
                "layers need lengths >= 1"
            )
        seqs.append(a)
        rests.append(rest)
    tail, dtype = seqs[0].shape[1:], seqs[0].dtype
    for i, a in enumerate(seqs):
        if a.shape[1:] != tail:
            raise ValueError(
                f"pad_collate: every sequence needs the same feature shape; "
                f"sample 0 has {tail}, sample {i} has {a.shape[1:]}"
            )
    lengths = np.array([a.shape[0] for a in seqs], dtype=np.int64)
    out = np.full((len(seqs), int(lengths.max()), *tail), padding_value, dtype=dtype)
    for i, a in enumerate(seqs):
        out[i, : a.shape[0]] = a
    if not batch_first:
        out = np.ascontiguousarray(np.swapaxes(out, 0, 1))
    if isinstance(batch[0], Tensor) or (
        isinstance(batch[0], (tuple, list)) and isinstance(batch[0][0], Tensor)
    ):
        out = Tensor(out)
    if not rests[0]:
        return out, lengths
    return (out, lengths, *default_collate(rests))


class DataLoader:
    """Batches of a dataset: ``batch_size`` samples at a time through ``collate_fn``; with
    ``shuffle`` a new order every pass (``seed`` or ``generator`` make it reproducible), and
    ``drop_last`` drops a last, smaller batch. ``sampler`` (an iterable of indices, or an object
    with ``__iter__``) replaces the built-in order."""

    def __init__(
        self,
        dataset,
        batch_size=1,
        shuffle=False,
        sampler=None,
        drop_last=False,
        collate_fn=None,
        seed=None,
        generator=None,
    ):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DataLoader needs a dataset with __getitem__ and __len__, got "
                f"{type(dataset).__name__}"
            )
        batch_size = positive_int("batch_size", batch_size)
        if sampler is not None and shuffle:
            raise ValueError(
                "sampler and shuffle=True cannot be combined (the sampler decides the order)"
            )
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"generator must be a numpy.random.Generator, got {type(generator).__name__}"
            )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn or default_collate
        self.generator = generator if generator is not None else np.random.default_rng(seed)

    def _indices(self):
        if self.sampler is not None:
            return list(iter(self.sampler))
        n = len(self.dataset)
        return list(self.generator.permutation(n)) if self.shuffle else list(range(n))

    def __iter__(self):
        idx = self._indices()
        bs = self.batch_size
        stop = len(idx) - len(idx) % bs if self.drop_last else len(idx)
        for start in range(0, stop, bs):
            yield self.collate_fn([self.dataset[int(i)] for i in idx[start : start + bs]])

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class BPTTBatcher:
    """One token stream cut into ``batch_size`` contiguous rows, read ``seq_len`` tokens at a
    time, in order: row b of each chunk continues row b of the chunk before, so a hidden state
    carried from chunk to chunk (truncated BPTT) sees each row as one unbroken text.

    Iterating yields ``(x, y)``, both (batch_size, seq_len) arrays, y = x shifted by one token,
    from chunk ``position`` to the end of the pass (one epoch); ``position`` then returns to 0.
    The tokens after the last whole row are not used; with ``drop_last=False`` the last chunk
    may be shorter. ``state_dict()``/``load_state_dict()`` carry ``position`` for resuming.

    With ``num_replicas`` and ``rank`` (data-parallel training; give both, or neither for one
    process), ``batch_size`` is the global batch: the rows are the same as in one process, and
    this rank yields only its contiguous block of ``batch_size // num_replicas`` of them, so
    the ranks' streams are disjoint, each carried state belongs to one rank, and the ranks'
    batches stacked in rank order are the one-process batch.
    """

    def __init__(self, tokens, batch_size, seq_len, drop_last=True, num_replicas=None, rank=None):
        data = tokens.data if isinstance(tokens, Tensor) else np.asarray(tokens)
        if data.ndim != 1:
            raise ValueError(f"BPTTBatcher needs a 1-D token stream, got shape {data.shape}")
        if data.dtype.kind not in "iu":
            raise TypeError(f"BPTTBatcher needs integer token ids, got dtype {data.dtype}")
        batch_size = positive_int("batch_size", batch_size)
        seq_len = positive_int("seq_len", seq_len)
        row = (len(data) - 1) // batch_size
        need = seq_len if drop_last else 1
        if row < need:
            raise ValueError(
                f"a stream of {len(data)} tokens is too short for {batch_size} "
                f"rows of at least {need} tokens (+1 for the targets)"
            )
        num_replicas, rank = _replicas(num_replicas, rank, "BPTTBatcher")
        if batch_size % num_replicas:
            raise ValueError(
                f"BPTTBatcher: the global batch_size {batch_size} must be a multiple of "
                f"num_replicas {num_replicas} (each rank gets an equal share of the rows)"
            )
        self.batch_size, self.seq_len, self.drop_last = batch_size, seq_len, bool(drop_last)
        self.num_replicas, self.rank = num_replicas, rank
        self.local_batch_size = local = batch_size // num_replicas
        self.row_len = row
        rows = (rank * local + np.arange(local))[:, None] * row
        self._x = data[rows + np.arange(row)[None, :]]
        self._y = data[rows + 1 + np.arange(row)[None, :]]
        self.position = 0

    def __len__(self):
        """Chunks in one pass."""
        return self.row_len // self.seq_len if self.drop_last else -(-self.row_len // self.seq_len)

    def __iter__(self):
        n = len(self)
        while self.position < n:
            t = self.position * self.seq_len
            self.position += 1
            yield self._x[:, t : t + self.seq_len], self._y[:, t : t + self.seq_len]
        self.position = 0

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        pos = state.get("position") if isinstance(state, dict) else None
        if hasattr(pos, "item"):
            pos = pos.item()
        if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < len(self):
            raise ValueError(
                f"BPTTBatcher state needs a 'position' in [0, {len(self)}), got {pos!r}"
            )
        self.position = pos


def _replicas(num_replicas, rank, what):
    """(num_replicas, rank), checked; neither given: one process (1, 0)."""
    if num_replicas is None and rank is None:
        return 1, 0
    if num_replicas is None or rank is None:
        raise ValueError(
            f"{what}: give both num_replicas and rank (e.g. minigrad.distributed.world_size() "
            "and minigrad.distributed.rank()), or neither"
        )
    num_replicas = positive_int("num_replicas", num_replicas)
    if (
        isinstance(rank, bool)
        or not isinstance(rank, (int, np.integer))
        or not (0 <= rank < num_replicas)
    ):
        raise ValueError(f"{what}: rank must be an int in [0, {num_replicas}), got {rank!r}")
    return num_replicas, int(rank)


class DistributedSampler:
    """The sample indices of one rank, for ``DataLoader(dataset, sampler=...)`` in
    data-parallel training, as PyTorch's: the dataset's indices (shuffled with ``seed`` +
    epoch when ``shuffle``, the same order on every rank) are dealt out round-robin, rank r
    taking positions r, r + num_replicas, ...  Without ``drop_last`` the list is first padded
    with its own first indices to a multiple of ``num_replicas`` (every rank gets as many
    samples); with it the tail is dropped instead.  Call ``set_epoch(e)`` before each epoch for
    a new shuffle.  ``num_replicas`` and ``rank`` default to ``minigrad.distributed``'s.

    With the DataLoader's ``batch_size`` = global batch / num_replicas, step k's batches of
    the ranks together hold the same samples as one process's step k with the global batch
    and ``sampler=DistributedSampler(dataset, 1, 0, ...)``."""

    def __init__(
        self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False
    ):
        if not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DistributedSampler needs a dataset with __len__, got {type(dataset).__name__}"
            )
        if num_replicas is None and rank is None:
            from . import distributed

            num_replicas, rank = distributed.world_size(), distributed.rank()
        self.num_replicas, self.rank = _replicas(num_replicas, rank, "DistributedSampler")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"DistributedSampler seed must be an int, got {type(seed).__name__}")
        if seed < 0:
            raise ValueError(f"DistributedSampler seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Use the order of epoch ``epoch`` (seed + epoch) from the next iteration on."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch expects an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def _total(self):
        n, w = len(self.dataset), self.num_replicas
        return n - n % w if self.drop_last else -(-n // w) * w

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        total = self._total()
        if total > n:
            order = np.resize(order, total)  # repeats from the start
        order = order[:total]
        return iter(order[self.rank : total : self.num_replicas].tolist())

    def __len__(self):
        return self._total() // self.num_replicas
