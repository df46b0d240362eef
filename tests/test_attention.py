"""Attention and layer norm: the formulas in NumPy, finite-difference gradients (float64),
masks honoured (zero weight and zero gradient at masked keys), bad input, and torch's
MultiheadAttention / LayerNorm with identical weights when torch is installed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


def t64(a, grad=True):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def np_softmax(s, keep=None):
    s = np.where(keep, s, -np.inf) if keep is not None else s
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def to64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 10**6),
)
def test_additive_attention_formula_and_gradients(B, L, S, H, seed):
    rng = np.random.default_rng(seed)
    mg.manual_seed(seed)
    att = to64(nn.AdditiveAttention(query_dim=3, key_dim=H, hidden_dim=4))
    q, k = rng.normal(size=(B, L, 3)), rng.normal(size=(B, S, H))
    pad = rng.random((B, S)) < 0.3
    pad[:, 0] = False  # at least one real key per row
    ctx, w = att(t64(q, False), t64(k, False), key_padding_mask=pad)
    Wq, Wk, bk, v = (
        att.query_proj.weight.data,
        att.key_proj.weight.data,
        att.key_proj.bias.data,
        att.v.weight.data,
    )
    e = np.tanh((q @ Wq.T)[:, :, None, :] + (k @ Wk.T + bk)[:, None, :, :])
    want_w = np_softmax((e @ v.T)[..., 0], ~pad[:, None, :])
    np.testing.assert_allclose(w.data, want_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ctx.data, want_w @ k, rtol=1e-10, atol=1e-12)
    qt, kt = t64(q), t64(k)
    mg.gradcheck(lambda a, b: att(a, b, key_padding_mask=pad), [qt, kt])


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "general"])
def test_dot_attention(score):
    rng = np.random.default_rng(1)
    mg.manual_seed(1)
    att = to64(nn.DotAttention(4, 4, score=score))
    q, k, vals = rng.normal(size=(2, 4)), rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 3))
    ctx, w = att(t64(q, False), t64(k, False), t64(vals, False))
    qq = q @ att.weight.data if score == "general" else q
    s = np.einsum("bh,bsh->bs", qq, k) / (2.0 if score == "scaled_dot" else 1.0)
    np.testing.assert_allclose(w.data, np_softmax(s), rtol=1e-10)
    np.testing.assert_allclose(ctx.data, np.einsum("bs,bsv->bv", np_softmax(s), vals), rtol=1e-10)
    assert ctx.shape == (2, 3) and w.shape == (2, 6)
    params = [p for p in att.parameters()]
    mg.gradcheck(lambda a, b, c: att(a, b, c), [t64(q), t64(k), t64(vals)] + params[:0])
    if score == "general":
        mg.gradcheck(lambda W: att(t64(q, False), t64(k, False)), [att.weight])


@pytest.mark.parametrize(
    "make", [lambda: nn.AdditiveAttention(4), lambda: nn.DotAttention(4, score="general")]
)
def test_masked_keys_get_zero_weight_and_zero_gradient(make):
    rng = np.random.default_rng(2)
    mg.manual_seed(2)
    att = to64(make())
    k = t64(rng.normal(size=(2, 5, 4)))
    vals = t64(rng.normal(size=(2, 5, 3)))
    pad = np.array([[False, False, True, True, True], [False, False, False, False, True]])
    ctx, w = att(t64(rng.normal(size=(2, 4)), False), k, vals, key_padding_mask=pad)
    assert np.all(w.data[pad] == 0)
    np.testing.assert_allclose(w.data.sum(-1), 1.0)
    (ctx * t64(rng.normal(size=ctx.shape), False)).sum().backward()
    assert np.all(k.grad[pad] == 0) and np.all(vals.grad[pad] == 0)
    assert np.any(k.grad[~pad] != 0) and np.any(vals.grad[~pad] != 0)


def test_fully_masked_query_gets_zero_context():
    att = to64(nn.DotAttention(2))
    ctx, w = att(
        t64(np.ones((1, 2)), False),
        t64(np.ones((1, 3, 2)), False),
        key_padding_mask=np.ones((1, 3), dtype=bool),
    )
    assert np.all(w.data == 0) and np.all(ctx.data == 0) and np.all(np.isfinite(ctx.data))


def test_scaled_dot_product_attention():
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 2))
    allowed = rng.random((3, 5)) < 0.7
    allowed[:, 0] = True
    out = F.scaled_dot_product_attention(
        t64(q, False), t64(k, False), t64(v, False), attn_mask=allowed
    )
    w = np_softmax(q @ k.transpose(0, 2, 1) / 2.0, allowed)
    np.testing.assert_allclose(out.data, w @ v, rtol=1e-10)
    causal = F.scaled_dot_product_attention(
        t64(q[:, :3], False), t64(k[:, :3], False), t64(v[:, :3], False), is_causal=True
    )
    wc = np_softmax(q @ k[:, :3].transpose(0, 2, 1) / 2.0, np.tril(np.ones((3, 3), bool)))
    np.testing.assert_allclose(causal.data, wc @ v[:, :3], rtol=1e-10)
    mg.gradcheck(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=allowed),
        [t64(q), t64(k), t64(v)],
    )


def test_multihead_attention_gradients():
    rng = np.random.default_rng(4)
    mg.manual_seed(4)
    m = nn.MultiheadAttention(4, 2, batch_first=True, dtype=np.float64, add_bias_kv=True)
    q, kv = t64(rng.normal(size=(2, 3, 4))), t64(rng.normal(size=(2, 5, 4)))
    pad = np.array([[False] * 4 + [True], [False] * 5])
    mg.gradcheck(lambda a, b: m(a, b, b, key_padding_mask=pad), [q, kv])
    mg.gradcheck(lambda w: m(q, kv, kv)[0], [m.in_proj_weight])


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.integers(1, 2),
    st.booleans(),
    st.integers(0, 999),
)
def test_layer_norm(shape, n_norm, affine, seed):
    n_norm = min(n_norm, len(shape))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * 3 + 1
    ln = nn.LayerNorm(tuple(shape[-n_norm:]), elementwise_affine=affine, dtype=np.float64)
    if affine:
        ln.weight.data[...] = rng.normal(size=ln.weight.shape)
        ln.bias.data[...] = rng.normal(size=ln.bias.shape)
    axes = tuple(range(len(shape) - n_norm, len(shape)))
    want = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    if affine:
        want = want * ln.weight.data + ln.bias.data
    y = ln(t64(x, False))
    np.testing.assert_allclose(y.data, want, rtol=1e-9, atol=1e-12)
    mg.gradcheck(ln, [t64(x)], atol=1e-5)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: nn.MultiheadAttention(5, 2), ValueError, "divisible by num_heads"),
        (
            lambda: nn.MultiheadAttention(4, 2)(
                np.zeros((3, 2, 4)), np.zeros((5, 3, 4)), np.zeros((5, 3, 4))
            ),
            ValueError,
            "with N=2",
        ),
        (
            lambda: nn.MultiheadAttention(4, 2)(
                np.zeros((3, 2, 4)),
                np.zeros((5, 2, 4)),
                np.zeros((5, 2, 4)),
                key_padding_mask=np.zeros((2, 4), bool),
            ),
            ValueError,
            r"key_padding_mask must have shape \(2, 5\), got \(2, 4\)",
        ),
        (
            lambda: nn.AdditiveAttention(3)(np.zeros((2, 3), np.float32), np.zeros((2, 4, 5))),
            ValueError,
            "keys must have 3 features, got 5",
        ),
        (
            lambda: nn.AdditiveAttention(3)(
                np.zeros((2, 3)), np.zeros((2, 4, 3)), key_padding_mask=np.zeros((2, 4))
            ),
            TypeError,
            "must be boolean",
        ),
        (lambda: nn.DotAttention(3, 4), ValueError, "query_dim == key_dim"),
        (lambda: nn.DotAttention(3, score="cosine"), ValueError, "score must be one of"),
        (lambda: nn.LayerNorm(4)(np.zeros((2, 3))), ValueError, "does not end in normalized_shape"),
        (lambda: nn.LayerNorm(0), ValueError, "normalized_shape must be a positive int"),
    ],
)
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ----- torch as an oracle ------------------------------------------------------------------

MHA_CASES = [
    dict(),
    dict(batch_first=True),
    dict(add_bias_kv=True, add_zero_attn=True),
    dict(kdim=3, vdim=5),
    dict(bias=False),
]


@pytest.mark.parametrize("kw", MHA_CASES)
@pytest.mark.parametrize("masks", ["none", "bool", "float", "causal", "3d"])
def test_multihead_matches_torch(kw, masks):
    torch = pytest.importorskip("torch")
    mg.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, dtype=np.float64, **kw)
    t = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64, **kw)
    sd = m.state_dict()
    assert set(sd) == set(t.state_dict())
    t.load_state_dict({k: torch.tensor(np.array(v)) for k, v in sd.items()})
    rng = np.random.default_rng(0)
    N, L, S = 3, 4, 5 if masks != "causal" else 4
    bf = kw.get("batch_first", False)

    def shp(n, e):
        return (N, n, e) if bf else (n, N, e)

    q = rng.normal(size=shp(L, 8))
    k = rng.normal(size=shp(S, kw.get("kdim", 8)))
    v = rng.normal(size=shp(S, kw.get("vdim", 8)))
    args = {}
    if masks == "bool":
        kpm = np.zeros((N, S), bool)
        kpm[0, 3:] = True
        am = np.zeros((L, S), bool)
        am[1, 2] = True
        args = dict(key_padding_mask=kpm, attn_mask=am)
    elif masks == "float":
        args = dict(attn_mask=rng.normal(size=(L, S)))
    elif masks == "causal":
        args = dict(attn_mask=~np.tril(np.ones((L, S), bool)), is_causal=True)
    elif masks == "3d":
        args = dict(attn_mask=rng.normal(size=(N * 2, L, S)), average_attn_weights=False)
    mine = [t64(a) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    o, w = m(*mine, **args)
    targs = {
        key: torch.tensor(val)
        for key, val in args.items()
        if key != "average_attn_weights" and key != "is_causal"
    }
    if "is_causal" in args:
        targs["is_causal"] = True
    if "average_attn_weights" in args:
        targs["average_attn_weights"] = False
    to, tw = t(*theirs, **targs)
    np.testing.assert_allclose(o.data, to.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.normal(size=o.shape)
    (o * t64(g, False)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)
    tp = dict(t.named_parameters())
    for name, p in m.named_parameters():
        np.testing.assert_allclose(
            p.grad, tp[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_multihead_unbatched_matches_torch():
    torch = pytest.importorskip("torch")
    m = nn.MultiheadAttention(4, 1, dtype=np.float64)
    t = torch.nn.MultiheadAttention(4, 1, dtype=torch.float64)
    t.load_state_dict({k: torch.tensor(np.array(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(5).normal(size=(3, 4))
    o, w = m(x, x, x)
    to, tw = t(*(torch.tensor(x),) * 3)
    np.testing.assert_allclose(o.data, to.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert w.shape == (3, 3)
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_layer_norm_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).normal(size=(2, 3, 4))
    ln = nn.LayerNorm((3, 4), dtype=np.float64)
    ln.weight.data[...] = np.arange(12.0).reshape(3, 4)
    tln = torch.nn.LayerNorm((3, 4), dtype=torch.float64)
    tln.load_state_dict({k: torch.tensor(np.array(v)) for k, v in ln.state_dict().items()})
    np.testing.assert_allclose(
        ln(x).data, tln(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12
    )


def test_masked_softmax_refuses_integer_scores():
    with pytest.raises(TypeError, match="floating point scores, got dtype int64"):
        F.masked_softmax(np.arange(3), np.array([True, False, True]))
