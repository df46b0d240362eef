"""NumPy twin of ``minigrad/_cross_entropy.pyx``: softmax cross-entropy over the last axis of
(N, C) logits with integer targets (``docs/kernels.md``). Forward keeps the softmax, which is
all backward needs."""

import numpy as np

from ._checks_ref import _check_shape, _check_sizes

__all__ = ["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"]


def _check_targets(target, n, c, ignore_index):
    """target (n,) int64, C-contiguous, each in [0, c) or equal to ignore_index."""
    if not isinstance(target, np.ndarray):
        raise ValueError(f"target must be a numpy.ndarray, got {type(target).__name__}")
    if target.dtype != np.int64:
        raise ValueError(f"target must have dtype int64, got {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {target.shape}")
    if not (target.flags.c_contiguous and target.flags.aligned):
        raise ValueError(f"target must be C-contiguous and aligned, got strides {target.strides}")
    bad = (target != ignore_index) & ((target < 0) | (target >= c))
    if bad.any():
        i = int(np.argmax(bad))
        raise IndexError(f"target[{i}] = {target[i]} is out of range [0, {c})")


def softmax_cross_entropy_forward(logits, target, ignore_index):
    """(loss (N,), probs (N, C)) of logits (N, C) float32/float64 (no zero-size dimension) and
    target (N,) int64 class indices (each in [0, C) or equal to ignore_index, whose rows get
    loss 0): probs = softmax(logits) along C, loss = -log probs[target]."""
    n, c = _check_sizes("logits", logits, "NC")
    _check_targets(target, n, c, ignore_index)
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    probs = e / s
    valid = target != ignore_index
    t = np.where(valid, target, 0)
    lse = np.log(s[:, 0]) + m[:, 0]
    loss = np.where(valid, lse - logits[np.arange(n), t], 0).astype(logits.dtype)
    return loss, probs


def softmax_cross_entropy_backward(probs, target, ignore_index, dy):
    """dlogits (N, C) = dy[:, None] * (probs - onehot(target)), zero in the rows whose target
    is ignore_index; probs (N, C) from the forward, dy (N,) the gradient of each row's loss,
    of probs' dtype."""
    n, c = _check_sizes("probs", probs, "NC")
    _check_targets(target, n, c, ignore_index)
    _check_shape("dy", dy, (n,), probs.dtype)
    valid = target != ignore_index
    g = np.where(valid, dy, 0).astype(probs.dtype)
    dx = probs * g[:, None]
    rows = np.flatnonzero(valid)
    dx[rows, target[rows]] -= g[rows]
    return dx
