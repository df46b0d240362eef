"""NumPy twin of ``minigrad/_embedding.pyx``: the embedding gradient (``docs/kernels.md``).

The rows of dy are summed per table row by sorting the indices and reducing each run of equal
indices (np.add.reduceat), several times faster than np.add.at's unbuffered scatter.
"""

import numpy as np

from ._checks_ref import _check_array, _grads_out, _write_out

__all__ = ["embedding_backward"]


def embedding_backward(dy, idx, num_embeddings, padding_idx=None, out=None, scale=1.0):
    """dw (num_embeddings, D) of dy's dtype: dw[k] = sum of dy[i] over the i with idx[i] == k;
    the row padding_idx (None: no such row) stays zero. dy (N, D) float32/float64 and idx (N,)
    int64, both C-contiguous; every index must lie in [0, num_embeddings) (IndexError).
    out: None, or (dw,) with dw None or an array that receives scale times the gradient (and is
    returned in its place)."""
    _check_array("dy", dy)
    if dy.ndim != 2:
        raise ValueError(f"dy must be 2-D (N, D), got shape {dy.shape}")
    if not isinstance(idx, np.ndarray):
        raise ValueError(f"idx must be a numpy.ndarray, got {type(idx).__name__}")
    if idx.dtype != np.int64:
        raise ValueError(f"idx must have dtype int64, got {idx.dtype}")
    if idx.shape != (dy.shape[0],):
        raise ValueError(
            f"idx must have shape ({dy.shape[0]},) (one index per row of dy), got {idx.shape}"
        )
    if not idx.flags.c_contiguous:
        raise ValueError(
            f"idx must be C-contiguous, got a non-contiguous array of shape {idx.shape} "
            f"with strides {idx.strides}"
        )
    if (
        isinstance(num_embeddings, bool)
        or not isinstance(num_embeddings, (int, np.integer))
        or num_embeddings < 1
    ):
        raise ValueError(f"num_embeddings must be an int >= 1, got {num_embeddings!r}")
    rows = int(num_embeddings)
    if padding_idx is not None and (
        isinstance(padding_idx, bool)
        or not isinstance(padding_idx, (int, np.integer))
        or not 0 <= padding_idx < rows
    ):
        raise ValueError(f"padding_idx must be None or an int in [0, {rows}), got {padding_idx!r}")
    out, scale = _grads_out(out, ("dw",), ((rows, dy.shape[1]),), dy.dtype, (dy, idx), scale)
    outside = (idx < 0) | (idx >= rows)
    if outside.any():
        bad = int(np.argmax(outside))
        raise IndexError(f"idx[{bad}] = {idx[bad]} is out of range [0, {rows})")
    dw = np.zeros((rows, dy.shape[1]), dtype=dy.dtype)
    if idx.size:
        order = np.argsort(idx, kind="stable")  # equal indices stay in order: sums as the loop
        s = idx[order]
        starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
        dw[s[starts]] = np.add.reduceat(dy[order], starts, axis=0)
    if padding_idx is not None:
        dw[padding_idx] = 0
    return _write_out((dw,), out, scale)[0]
