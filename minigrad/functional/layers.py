"""Layer ops without weights of their own: embedding lookup, dropout, one_hot."""

import numpy as np

from .. import kernels
from ..autograd import Function
from ..random import default_rng

__all__ = ["embedding", "dropout", "one_hot"]


def _indices(idx, n, what):
    idx = np.asarray(getattr(idx, "data", idx))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{what} indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].ravel()[0]
        raise IndexError(f"{what} index {bad} is out of range [0, {n})")
    return idx


class Embedding(Function):
    saves_inputs = False
    takes_grad_out = True  # the table's gradient can go into a destination (autograd.grad_out)

    def __init__(self, idx, padding_idx):
        self.idx, self.padding_idx = idx, padding_idx

    def forward(self, w):
        self.saved = w.shape
        return np.take(w, self.idx, axis=0)  # w[idx], without fancy indexing's overhead

    def backward(self, g):
        # kernels.embedding_backward: the rows of g summed into the rows their indices name,
        # one pass (np.add.at's unbuffered scatter was 5x slower than torch at 2048 x 64)
        rows, dim = self.saved
        g = np.ascontiguousarray(g.reshape(-1, dim))
        idx = np.ascontiguousarray(self.idx.reshape(-1), dtype=np.int64)
        return (
            kernels.embedding_backward(g, idx, rows, self.padding_idx, **self.grad_out_args((0,))),
        )

    def backward_graph(self, g):
        from .shape import IndexAdd

        dw = IndexAdd(self.idx, self.saved)(g)
        if self.padding_idx is not None:
            keep = np.ones((self.saved[0], 1), dtype=g.dtype)
            keep[self.padding_idx] = 0
            dw = dw * keep
        return (dw,)


def embedding(indices, weight, padding_idx=None):
    """y = weight[indices] (rows of the table);  dweight = dy scattered into the rows used
    (rows at padding_idx get no gradient)"""
    if weight.ndim != 2:
        raise ValueError(
            f"embedding weight must be 2-D (num_embeddings, dim), got shape {weight.shape}"
        )
    n = weight.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"padding_idx must be within [-{n}, {n}), got {padding_idx}")
        padding_idx %= n
    idx = _indices(indices, n, "embedding")
    return Embedding(idx, padding_idx)(weight)


class Dropout(Function):
    saves_inputs = False

    def __init__(self, mask):
        self.mask = mask

    def forward(self, a):
        return a * self.mask

    def backward(self, g):
        return (g * self.mask,)

    backward_graph = backward  # a constant mask


def dropout(a, p=0.5, training=True, rng=None):
    """y = a * m / (1 - p) with m ~ Bernoulli(1 - p) in training, y = a otherwise;
    da = dy * m / (1 - p).  ``rng``: a numpy Generator (default: minigrad's, see manual_seed)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return a
    shape, dtype = a.shape, a.dtype
    if p == 1:
        mask = np.zeros(shape, dtype=dtype)
    else:
        rng = rng or default_rng()
        mask = (rng.random(shape) >= p).astype(dtype) / np.asarray(1 - p, dtype=dtype)
    return Dropout(mask)(a)


def one_hot(indices, num_classes, dtype=np.float32):
    """y[..., k] = 1 where indices == k (no gradient). float32 by default (PyTorch gives int64)."""
    from ..tensor import _wrap

    idx = _indices(indices, num_classes, "one_hot")
    out = np.zeros(idx.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, idx[..., None], 1, axis=-1)
    return _wrap(out, None, 0)
