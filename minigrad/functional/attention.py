"""Attention and layer normalisation, composed from the primitive ops (matmul, softmax, where,
mean, ...): their backward passes fall out of the tape, to any order.

Mask conventions are PyTorch's: a boolean ``attn_mask`` of ``scaled_dot_product_attention`` is
True where a query may attend; a boolean ``key_padding_mask`` (the modules in ``nn.attention``)
is True at padded keys, which are ignored. Float masks are added to the scores.
"""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from .arithmetic import matmul
from .elementwise import sqrt, where
from .layers import dropout
from .reduction import mean, softmax
from .shape import swapaxes

__all__ = ["masked_softmax", "scaled_dot_product_attention", "layer_norm"]


def _bool_mask(mask, what):
    m = np.asarray(getattr(mask, "data", mask))
    if m.dtype != np.bool_:
        raise TypeError(f"{what} must be a boolean array here, got dtype {m.dtype}")
    return m


def masked_softmax(scores, keep, axis=-1):
    """softmax(scores) over ``axis`` where ``keep`` (boolean, broadcast to scores) is True, and
    exactly 0 elsewhere, with no gradient reaching the dropped scores. A row with nothing kept
    gets all-zero weights (a fully padded query contributes nothing) instead of NaN."""
    keep = _bool_mask(keep, "keep")
    data = scores.data if isinstance(scores, Tensor) else np.asarray(scores)
    keep = np.broadcast_to(keep, data.shape)
    if data.dtype.kind != "f":
        raise TypeError(f"masked_softmax needs floating point scores, got dtype {data.dtype}")
    lowest = np.asarray(np.finfo(data.dtype).min, dtype=data.dtype)
    w = softmax(where(keep, scores, lowest), axis=axis)
    if keep.all():
        return w
    return w * keep.astype(w.data.dtype)


def _attend(scores, attn_mask):
    """Apply a PyTorch-style attn_mask to the scores: (scores, keep) for masked_softmax."""
    if attn_mask is None:
        return scores, None
    m = np.asarray(getattr(attn_mask, "data", attn_mask))
    if m.dtype == np.bool_:
        return scores, m
    if m.dtype.kind != "f":
        raise TypeError(f"attn_mask must be boolean or floating, got dtype {m.dtype}")
    return scores + m.astype(scores.data.dtype), None


def scaled_dot_product_attention(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, training=True
):
    """softmax(Q K^T * scale + mask) V over the last two axes, as torch's function of the same
    name: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev); ``scale``
    defaults to 1/sqrt(E); a boolean ``attn_mask`` (L, S) or broadcastable is True where
    attention is allowed, a float one is added; ``is_causal`` lets query i see keys <= i.
    Returns the output only (``attention_weights`` are not kept)."""
    out, _ = attention_with_weights(
        query, key, value, attn_mask, dropout_p, is_causal, scale, training
    )
    return out


def attention_with_weights(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, training=True
):
    """``scaled_dot_product_attention`` that also returns the weights (..., L, S)."""
    q, k, v = (t if isinstance(t, Tensor) else Tensor(t) for t in (query, key, value))
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            f"attention needs query, key and value of at least 2 dimensions "
            f"(..., L, E); got shapes {q.shape}, {k.shape}, {v.shape}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"query and key must share their last dimension; got {q.shape} and {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"key and value must have as many positions (axis -2); got {k.shape} and {v.shape}"
        )
    if is_causal and attn_mask is not None:
        raise ValueError("give attn_mask or is_causal=True, not both")
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        attn_mask = np.tril(np.ones((L, S), dtype=bool))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = matmul(q, swapaxes(k, -1, -2)) * scale
    scores, keep = _attend(scores, attn_mask)
    w = masked_softmax(scores, keep) if keep is not None else softmax(scores, axis=-1)
    wd = dropout(w, dropout_p, training) if dropout_p > 0 else w
    return matmul(wd, v), w


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing ``normalized_shape``
    axes (biased variance, as torch.nn.functional.layer_norm)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    n = len(shape)
    if n == 0 or x.ndim < n or tuple(x.shape[-n:]) != shape:
        raise ValueError(
            f"layer_norm: input of shape {x.shape} does not end in normalized_shape {shape}"
        )
    axes = tuple(range(x.ndim - n, x.ndim))
    mu = mean(x, axis=axes, keepdims=True)
    d = x - mu
    var = mean(d * d, axis=axes, keepdims=True)
    y = d / sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
