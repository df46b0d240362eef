"""Feed-forward layers, Sequential and the initializers of minigrad.nn.init."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import init


def _x(shape, dtype=np.float64, seed=0, requires_grad=False):
    data = np.random.default_rng(seed).standard_normal(shape)
    return mg.tensor(data, dtype=dtype, requires_grad=requires_grad)


# ----------------------------------------------------------------- Linear
def test_linear_forward_matches_numpy_and_shapes():
    lin = nn.Linear(4, 3).double()
    x = _x((2, 5, 4))
    y = lin(x)
    expected = x.data @ lin.weight.data.T + lin.bias.data
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)
    assert lin.weight.shape == (3, 4) and lin.bias.shape == (3,)
    assert y.dtype == np.float64


def test_linear_gradients_by_finite_differences():
    lin = nn.Linear(3, 2).double()
    x = _x((4, 3), requires_grad=True)
    assert mg.gradcheck(lambda x, w, b: lin(x), [x, lin.weight, lin.bias])


def test_linear_without_bias():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    x = _x((4, 3), dtype=np.float32)
    np.testing.assert_allclose(lin(x).data, x.data @ lin.weight.data.T, rtol=1e-6)


def test_linear_init_is_uniform_within_one_over_sqrt_fan_in():
    mg.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w = lin.weight.data
    assert np.abs(w).max() <= bound and np.abs(lin.bias.data).max() <= bound
    # U(-b, b) has standard deviation b / sqrt(3); 120,000 draws pin it to ~0.3 %
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.01
    assert abs(w.mean()) < 0.01 * bound


def test_manual_seed_makes_init_reproducible():
    mg.manual_seed(3)
    a = nn.Linear(5, 5)
    mg.manual_seed(3)
    b = nn.Linear(5, 5)
    c = nn.Linear(5, 5)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(b.weight.data, c.weight.data)


def test_linear_input_errors():
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="last dimension 3"):
        lin(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dtype must match the weight dtype float32, got float64"):
        lin(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="return_sequences"):
        lin((mg.tensor(np.zeros((2, 3), dtype=np.float32)), None))
    with pytest.raises(ValueError, match="in_features must be > 0"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="out_features must be an int"):
        nn.Linear(2, 2.0)


# ----------------------------------------------------------------- Embedding
def test_embedding_lookup_and_gradient_scatter():
    emb = nn.Embedding(6, 3).double()
    idx = np.array([[1, 4, 1], [0, 5, 4]])
    y = emb(idx)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y.data, emb.weight.data[idx])
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    expected = np.zeros((6, 3))
    for (i, j), k in np.ndenumerate(idx):
        expected[k] += g[i, j]
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12)


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    emb = nn.Embedding(5, 4, padding_idx=-1)
    assert emb.padding_idx == 4
    np.testing.assert_array_equal(emb.weight.data[4], np.zeros(4))
    y = emb(np.array([4, 2, 4]))
    np.testing.assert_array_equal(y.data[0], np.zeros(4))
    y.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[4], np.zeros(4))
    np.testing.assert_array_equal(emb.weight.grad[2], np.ones(4))


def test_embedding_init_is_standard_normal():
    mg.manual_seed(0)
    w = nn.Embedding(1000, 100).weight.data
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01


def test_embedding_errors():
    emb = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="out of range"):
        emb(np.array([0, 5]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)


# ----------------------------------------------------------------- Dropout
def test_dropout_train_masks_and_scales_eval_is_identity():
    mg.manual_seed(0)
    drop = nn.Dropout(0.3)
    x = mg.tensor(np.ones((200, 200)), dtype=np.float64, requires_grad=True)
    y = drop(x)
    kept = y.data != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.where(kept, 1 / 0.7, 0.0))
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x).data, x.data)


def test_dropout_bad_probability():
    for p in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="dropout probability"):
            nn.Dropout(p)


# ----------------------------------------------------------------- activations and friends
@pytest.mark.parametrize(
    "layer, fn",
    [
        (nn.Tanh, np.tanh),
        (nn.Sigmoid, lambda a: 1 / (1 + np.exp(-a))),
        (nn.ReLU, lambda a: np.maximum(a, 0)),
        (nn.Identity, lambda a: a),
    ],
)
def test_activations(layer, fn):
    x = _x((3, 4), requires_grad=True)
    y = layer()(x)
    np.testing.assert_allclose(y.data, fn(x.data), rtol=1e-12)
    if layer is not nn.ReLU:
        assert mg.gradcheck(lambda x: layer()(x), [x])


def test_flatten_default_keeps_batch():
    x = _x((2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    with pytest.raises(ValueError, match="start_dim=3 is out of range"):
        nn.Flatten(3)(x)


# ----------------------------------------------------------------- Sequential
def test_sequential_container_protocol():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    assert [n for n, _ in sub.named_children()] == ["1", "2"]
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)
    with pytest.raises(IndexError, match="out of range"):
        seq[4]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(a, "relu")
    named = nn.Sequential(OrderedDict([("enc", a), ("act", b)]))
    assert [n for n, _ in named.named_parameters()] == ["enc.weight", "enc.bias"]
    assert named.enc is a


def test_sequential_forward_is_the_composition():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = _x((5, 2))
    manual = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).data, manual.data)


def test_sequential_gradients():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = _x((4, 2), requires_grad=True)
    assert mg.gradcheck(lambda x, *ps: seq(x), [x, *seq.parameters()])


# ----------------------------------------------------------------- init
def test_uniform_normal_constant_fill_in_place():
    t = mg.tensor(np.zeros((300, 300)), dtype=np.float32)
    arr = t.data
    assert init.uniform_(t, -2, 3) is t and t.data is arr and t.dtype == np.float32
    assert t.data.min() >= -2 and t.data.max() <= 3 and abs(t.data.mean() - 0.5) < 0.05
    init.normal_(t, 1.0, 0.5)
    assert abs(t.data.mean() - 1.0) < 0.01 and abs(t.data.std() - 0.5) < 0.01
    init.zeros_(t)
    assert not t.data.any()
    init.ones_(t)
    assert (t.data == 1).all()
    init.constant_(t, 0.25)
    assert (t.data == 0.25).all()


def test_xavier_and_kaiming_bounds_and_std():
    w = mg.tensor(np.zeros((200, 300)))
    init.xavier_uniform_(w, gain=2.0)
    bound = 2.0 * math.sqrt(6 / (200 + 300))
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.95 * bound
    init.xavier_normal_(w)
    assert abs(w.data.std() / math.sqrt(2 / 500) - 1) < 0.02
    init.kaiming_uniform_(w, a=math.sqrt(5))  # Linear's default: U(±1/sqrt(fan_in))
    assert np.abs(w.data).max() <= 1 / math.sqrt(300) * (1 + 1e-12)
    assert np.abs(w.data).max() > 0.95 / math.sqrt(300)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.data.std() / (math.sqrt(2) / math.sqrt(200)) - 1) < 0.02
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(mg.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_calculate_gain_table():
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (4, 2, 3)])
def test_orthogonal(shape):
    t = mg.tensor(np.zeros(shape))
    init.orthogonal_(t, gain=1.5)
    q = t.data.reshape(shape[0], -1) / 1.5
    rows, cols = q.shape
    if rows <= cols:
        np.testing.assert_allclose(q @ q.T, np.eye(rows), atol=1e-12)
    else:
        np.testing.assert_allclose(q.T @ q, np.eye(cols), atol=1e-12)


def test_init_reproducible_and_rejects_integer_tensors():
    a, b = mg.tensor(np.zeros((4, 4))), mg.tensor(np.zeros((4, 4)))
    mg.manual_seed(11)
    init.orthogonal_(a)
    mg.manual_seed(11)
    init.orthogonal_(b)
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(TypeError, match="floating point"):
        init.uniform_(mg.tensor(np.zeros(3, dtype=np.int64)))


def test_nn_namespace():
    import minigrad.functional
    import minigrad.nn.functional as F

    assert F is minigrad.functional and nn.functional is minigrad.functional
    for name in nn.__all__:
        assert hasattr(nn, name), name
    assert callable(nn.utils.clip_grad_norm_) and callable(nn.init.orthogonal_)
