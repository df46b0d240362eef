"""Attention layers: Bahdanau's additive attention, Luong's dot and general scores, and
PyTorch's ``MultiheadAttention`` (same signature, parameter names and masks).

``AdditiveAttention`` and ``DotAttention`` are the seq2seq kind: a decoder state (the query)
reads an encoder's outputs (the keys, also the values unless given). Both take
``key_padding_mask`` (B, S), True at padded keys, which then get weight 0 and no gradient, and
return ``(context, weights)``. Everything is composed from primitive ops, so gradients of any
order come from the tape.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..functional.attention import attention_with_weights, masked_softmax
from ..tensor import Tensor
from . import init
from .layers import Linear, _float_dtype, _positive_int
from .module import Module, Parameter

__all__ = ["AdditiveAttention", "DotAttention", "MultiheadAttention"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _keys_and_query(query, keys, values, key_dim, query_dim, who):
    q, k = _tensor(query), _tensor(keys)
    v = k if values is None else _tensor(values)
    if k.ndim != 3:
        raise ValueError(
            f"{who}: keys must be (batch, source length, {key_dim}), got shape {k.shape}"
        )
    if k.shape[-1] != key_dim:
        raise ValueError(f"{who}: keys must have {key_dim} features, got {k.shape[-1]}")
    if v.ndim != 3 or v.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"{who}: values must be (batch, source length, features) like keys "
            f"{k.shape[:2]}, got {v.shape}"
        )
    if q.ndim not in (2, 3) or q.shape[0] != k.shape[0] or q.shape[-1] != query_dim:
        raise ValueError(
            f"{who}: query must be (batch, {query_dim}) or (batch, target length, "
            f"{query_dim}) with batch {k.shape[0]}, got {q.shape}"
        )
    single = q.ndim == 2
    if single:
        q = F.unsqueeze(q, 1)
    return q, k, v, single


def _keep(key_padding_mask, B, S, who):
    """key_padding_mask (B, S), True = padded -> keep (B, 1, S) for masked_softmax, or None."""
    if key_padding_mask is None:
        return None
    m = np.asarray(getattr(key_padding_mask, "data", key_padding_mask))
    if m.dtype != np.bool_:
        raise TypeError(
            f"{who}: key_padding_mask must be boolean (True at padded keys), got dtype {m.dtype}"
        )
    if m.shape != (B, S):
        raise ValueError(f"{who}: key_padding_mask must have shape {(B, S)}, got {m.shape}")
    return ~m[:, None, :]


def _finish(scores, keep, v, single):
    w = masked_softmax(scores, keep) if keep is not None else F.softmax(scores, axis=-1)
    context = F.matmul(w, v)
    if single:
        return F.squeeze(context, 1), F.squeeze(w, 1)
    return context, w


class AdditiveAttention(Module):
    """Bahdanau attention: score(q, k) = v^T tanh(W_q q + W_k k + b), weights = softmax over the
    source positions, context = weights @ values.

    ``forward(query, keys, values=None, key_padding_mask=None)``: query (B, query_dim) or
    (B, L, query_dim), keys (B, S, key_dim) -> context (B[, L], value features), weights
    (B[, L], S)."""

    def __init__(self, query_dim, key_dim=None, hidden_dim=None, dtype=None):
        super().__init__()
        self.query_dim = _positive_int("query_dim", query_dim)
        self.key_dim = _positive_int("key_dim", key_dim if key_dim is not None else query_dim)
        self.hidden_dim = _positive_int(
            "hidden_dim", hidden_dim if hidden_dim is not None else query_dim
        )
        self.query_proj = Linear(self.query_dim, self.hidden_dim, bias=False, dtype=dtype)
        self.key_proj = Linear(self.key_dim, self.hidden_dim, bias=True, dtype=dtype)
        self.v = Linear(self.hidden_dim, 1, bias=False, dtype=dtype)

    def forward(self, query, keys, values=None, key_padding_mask=None):
        q, k, v, single = _keys_and_query(
            query, keys, values, self.key_dim, self.query_dim, "AdditiveAttention"
        )
        keep = _keep(key_padding_mask, k.shape[0], k.shape[1], "AdditiveAttention")
        # (B, L, 1, Hd) + (B, 1, S, Hd) -> tanh -> (B, L, S, 1) -> (B, L, S)
        e = F.tanh(F.unsqueeze(self.query_proj(q), 2) + F.unsqueeze(self.key_proj(k), 1))
        scores = F.squeeze(self.v(e), -1)
        return _finish(scores, keep, v, single)

    def extra_repr(self):
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden_dim={self.hidden_dim}"


class DotAttention(Module):
    """Luong attention: ``score="dot"`` q . k (query_dim == key_dim), ``"scaled_dot"`` the same
    divided by sqrt(key_dim), ``"general"`` q^T W k with a learned W (query_dim, key_dim).
    Same call and returns as ``AdditiveAttention``."""

    SCORES = ("dot", "scaled_dot", "general")

    def __init__(self, query_dim, key_dim=None, score="dot", dtype=None):
        super().__init__()
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}")
        self.score = score
        self.query_dim = _positive_int("query_dim", query_dim)
        self.key_dim = _positive_int("key_dim", key_dim if key_dim is not None else query_dim)
        if score == "general":
            self.weight = Parameter(
                np.empty((self.query_dim, self.key_dim), dtype=_float_dtype(dtype))
            )
            init.xavier_uniform_(self.weight)
        elif self.query_dim != self.key_dim:
            raise ValueError(
                f"score={score!r} needs query_dim == key_dim, got "
                f"{self.query_dim} and {self.key_dim} (use score='general')"
            )

    def forward(self, query, keys, values=None, key_padding_mask=None):
        q, k, v, single = _keys_and_query(
            query, keys, values, self.key_dim, self.query_dim, "DotAttention"
        )
        keep = _keep(key_padding_mask, k.shape[0], k.shape[1], "DotAttention")
        if self.score == "general":
            q = F.matmul(q, self.weight)
        scores = F.matmul(q, F.swapaxes(k, -1, -2))
        if self.score == "scaled_dot":
            scores = scores * (1.0 / math.sqrt(self.key_dim))
        return _finish(scores, keep, v, single)

    def extra_repr(self):
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={self.score!r}"


class MultiheadAttention(Module):
    """PyTorch's ``nn.MultiheadAttention``: same arguments, parameter names (``in_proj_weight``
    (3E, E) and ``in_proj_bias``, or ``q/k/v_proj_weight`` when kdim/vdim differ from E;
    ``out_proj``; ``bias_k``/``bias_v``), initialisation, masks and returns.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)``: (L, N, E) inputs (or (N, L, E) with
    ``batch_first=True``, or unbatched (L, E)); a boolean ``key_padding_mask`` (N, S) or
    ``attn_mask`` (L, S) / (N * num_heads, L, S) is True where attention is NOT allowed; float
    masks are added to the scores. Returns ``(output, weights)``, weights (N, L, S) averaged over
    heads (or (N, num_heads, L, S)), None when ``need_weights=False``."""

    def __init__(
        self,
        embed_dim,
        num_heads,
        dropout=0.0,
        bias=True,
        add_bias_kv=False,
        add_zero_attn=False,
        kdim=None,
        vdim=None,
        batch_first=False,
        dtype=None,
    ):
        super().__init__()
        self.embed_dim = _positive_int("embed_dim", embed_dim)
        self.num_heads = _positive_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.kdim = _positive_int("kdim", kdim) if kdim is not None else self.embed_dim
        self.vdim = _positive_int("vdim", vdim) if vdim is not None else self.embed_dim
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout, self.batch_first, self.add_zero_attn = dropout, batch_first, add_zero_attn
        dt = _float_dtype(dtype)
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * E, E), dtype=dt))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.empty((E, E), dtype=dt))
            self.k_proj_weight = Parameter(np.empty((E, self.kdim), dtype=dt))
            self.v_proj_weight = Parameter(np.empty((E, self.vdim), dtype=dt))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.empty((3 * E,), dtype=dt))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(np.empty((1, 1, E), dtype=dt))
            self.bias_v = Parameter(np.empty((1, 1, E), dtype=dt))
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def _projections(self):
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            ws = (w[:E], w[E : 2 * E], w[2 * E :])
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        bs = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        return ws, bs

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        q, k, v = _tensor(query), _tensor(key), _tensor(value)
        unbatched = q.ndim == 2
        if q.ndim not in (2, 3) or k.ndim != q.ndim or v.ndim != q.ndim:
            raise ValueError(
                f"MultiheadAttention expects query, key and value all 3-D (batched) "
                f"or all 2-D (unbatched); got shapes {q.shape}, {k.shape}, "
                f"{v.shape}"
            )
        if unbatched:
            q, k, v = (F.unsqueeze(t, 1) for t in (q, k, v))  # (L, 1, E)
            if key_padding_mask is not None:
                key_padding_mask = np.asarray(getattr(key_padding_mask, "data", key_padding_mask))[
                    None
                ]
        elif self.batch_first:
            q, k, v = (F.swapaxes(t, 0, 1) for t in (q, k, v))
        # now (L, N, E), (S, N, kdim), (S, N, vdim)
        L, N, Eq = q.shape
        S = k.shape[0]
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        if Eq != E:
            raise ValueError(f"query must have embed_dim={E} features, got {Eq}")
        if k.shape[1:] != (N, self.kdim) or v.shape[1:] != (N, self.vdim) or v.shape[0] != S:
            raise ValueError(
                f"key must be (S, N, {self.kdim}) and value (S, N, {self.vdim}) "
                f"with N={N} (batch-first swapped as configured); got "
                f"{k.shape} and {v.shape}"
            )
        mask = self._float_or_bool_mask(
            attn_mask, key_padding_mask, N, L, S, is_causal, q.data.dtype
        )
        (wq, wk, wv), (bq, bk, bv) = self._projections()
        # to batch-first (N, L, E) for the heads
        qp = F.linear(F.swapaxes(q, 0, 1), wq, bq)
        kp = F.linear(F.swapaxes(k, 0, 1), wk, bk)
        vp = F.linear(F.swapaxes(v, 0, 1), wv, bv)
        if self.bias_k is not None:
            kp = F.concatenate([kp, F.expand(self.bias_k, (N, 1, E))], axis=1)
            vp = F.concatenate([vp, F.expand(self.bias_v, (N, 1, E))], axis=1)
            mask = _pad_last(mask)
        heads = [F.swapaxes(F.reshape(t, (N, t.shape[1], H, hd)), 1, 2) for t in (qp, kp, vp)]
        qh, kh, vh = heads  # (N, H, L, hd), (N, H, S', hd)
        if self.add_zero_attn:
            zeros = np.zeros((N, H, 1, hd), dtype=qp.data.dtype)
            kh = F.concatenate([kh, zeros], axis=2)
            vh = F.concatenate([vh, zeros], axis=2)
            mask = _pad_last(mask)
        out, w = attention_with_weights(
            qh,
            kh,
            vh,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            training=self.training,
        )
        out = F.reshape(F.swapaxes(out, 1, 2), (N, L, E))
        out = self.out_proj(out)
        if unbatched:
            out = F.squeeze(out, 0)
        elif not self.batch_first:
            out = F.swapaxes(out, 0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            w = F.mean(w, axis=1)
        if unbatched:
            w = F.squeeze(w, 0)
        return out, w

    def _float_or_bool_mask(self, attn_mask, key_padding_mask, N, L, S, is_causal, dtype):
        """The two masks merged into one, broadcastable to (N, H, L, S): a boolean 'allowed'
        mask, or a float mask to add (PyTorch: a boolean True means NOT allowed)."""
        H = self.num_heads
        if is_causal and attn_mask is None:
            attn_mask = ~np.tril(np.ones((L, S), dtype=bool))
        parts = []
        if attn_mask is not None:
            m = np.asarray(getattr(attn_mask, "data", attn_mask))
            if m.shape == (L, S):
                m = m[None, None]
            elif m.shape == (N * H, L, S):
                m = m.reshape(N, H, L, S)
            else:
                raise ValueError(
                    f"attn_mask must have shape {(L, S)} or {(N * H, L, S)}, got {m.shape}"
                )
            parts.append(m)
        if key_padding_mask is not None:
            m = np.asarray(getattr(key_padding_mask, "data", key_padding_mask))
            if m.shape != (N, S):
                raise ValueError(f"key_padding_mask must have shape {(N, S)}, got {m.shape}")
            parts.append(m[:, None, None, :])
        if not parts:
            return None
        for m in parts:
            if m.dtype != np.bool_ and m.dtype.kind != "f":
                raise TypeError(f"masks must be boolean or floating, got dtype {m.dtype}")
        if all(m.dtype == np.bool_ for m in parts):
            blocked = parts[0] if len(parts) == 1 else parts[0] | parts[1]
            return ~blocked
        total = np.zeros((), dtype=dtype)
        for m in parts:
            add = np.where(m, -np.inf, 0.0) if m.dtype == np.bool_ else m
            total = total + add.astype(dtype)
        return total

    def extra_repr(self):
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
            f", batch_first={self.batch_first}"
        )


def _pad_last(mask):
    """Allow one more key (bias_k or the zero key) at the end of the source axis."""
    if mask is None:
        return None
    pad_shape = mask.shape[:-1] + (1,)
    if mask.dtype == np.bool_:
        return np.concatenate([mask, np.ones(pad_shape, dtype=bool)], axis=-1)
    return np.concatenate([mask, np.zeros(pad_shape, dtype=mask.dtype)], axis=-1)
