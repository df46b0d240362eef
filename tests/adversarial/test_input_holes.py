"""Small input holes: each must raise a clear error (or work), never give a silently wrong
answer."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_cross_entropy_refuses_non_float_logits(dtype):
    logits = mg.Tensor(np.zeros((2, 3), dtype=dtype))
    with pytest.raises(TypeError, match=r"floating point logits.*" + np.dtype(dtype).name):
        F.cross_entropy(logits, np.array([0, 1]))
    loss = F.cross_entropy(logits.float(), np.array([0, 1]))
    assert loss.item() == pytest.approx(np.log(3))


@pytest.mark.parametrize("sizes", [[7, -2], [-1, 6], [2.5, 2.5], [True, 4]])
def test_split_refuses_negative_or_non_integer_sizes(sizes):
    with pytest.raises(ValueError, match="non-negative integers"):
        F.split(mg.Tensor(np.ones(5)), sizes)
    assert [p.shape for p in F.split(mg.Tensor(np.ones(5)), [0, 5])] == [(0,), (5,)]


@pytest.mark.parametrize("which", [0, 1])
def test_lstm_state_with_a_none_member_gets_the_state_message(which):
    lstm = nn.LSTM(3, 4)
    x = mg.Tensor(np.ones((2, 1, 3), np.float32))
    s = mg.Tensor(np.zeros((1, 1, 4), np.float32))
    hx = (None, s) if which == 0 else (s, None)
    with pytest.raises(ValueError, match=r"LSTM: hx must be a tuple \(h_0, c_0\).*NoneType"):
        lstm(x, hx=hx)


def test_complex_is_refused_everywhere_it_could_enter():
    x = mg.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError):
        mg.Tensor(np.ones(3, dtype=np.complex64))
    with pytest.raises(TypeError):
        mg.Tensor([1, 2], dtype=np.complex128)
    with pytest.raises(TypeError):
        x * 1j
    with pytest.raises(TypeError):
        x + np.ones(3, dtype=complex)
    with pytest.raises(TypeError, match=r"real.*complex128"):
        (x * 2).backward(np.ones(3, dtype=complex))
    assert x.grad is None
    c = mg.Tensor(np.ones(3))
    c.data = np.full(3, 1j)  # complex data forced past the constructor
    for y in (x * c, (x * 2) * c):
        with pytest.raises(TypeError, match="complex gradient"):
            y.sum().backward()
    assert x.grad is None


@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 3), (0, 4, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_supports_an_empty_batch_end_to_end(shape, bias):
    layer = nn.Linear(3, 2, bias=bias)
    y = layer(mg.Tensor(np.ones(shape, np.float32)))
    assert y.shape == shape[:-1] + (2,) and y.dtype == np.float32
    (y * 2).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((2, 3), np.float32))
    if bias:
        np.testing.assert_array_equal(layer.bias.grad, np.zeros(2, np.float32))


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: nn.RNNCell(3, 4), (0, 3)),
        (lambda: nn.LSTMCell(3, 4), (0, 3)),
        (lambda: nn.GRUCell(3, 4), (0, 3)),
        (lambda: nn.RNN(3, 4), (5, 0, 3)),
        (lambda: nn.LSTM(3, 4), (0, 2, 3)),
        (lambda: nn.GRU(3, 4), (5, 0, 3)),
    ],
)
def test_zero_size_batches_are_refused_at_forward(make, shape):
    """The compiled layers refuse empty batches and sequences at forward, naming the shape
    (not later, in backward)."""
    with pytest.raises(ValueError, match=r"zero-size|at least one"):
        make()(mg.Tensor(np.ones(shape, np.float32)))


def test_embedding_supports_an_empty_batch_end_to_end():
    emb = nn.Embedding(5, 2)
    y = emb(np.zeros((0, 4), np.int64))
    assert y.shape == (0, 4, 2)
    y.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad, np.zeros((5, 2), np.float32))
