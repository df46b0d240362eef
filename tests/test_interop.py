"""minigrad.interop: to_torch / from_torch round trips with identical weights and outputs."""
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import interop, nn


def _models():
    mg.manual_seed(0)
    return [
        nn.Linear(4, 3),
        nn.Linear(4, 3, bias=False).double(),
        nn.Embedding(7, 4, padding_idx=2),
        nn.RNN(4, 3, num_layers=2, nonlinearity="relu", bidirectional=True),
        nn.LSTM(4, 3, num_layers=3, batch_first=True, dropout=0.25).double(),
        nn.GRU(4, 3, bias=False, bidirectional=True),
        nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(0.1), nn.Linear(5, 5), nn.Sigmoid(),
                      nn.ReLU(), nn.Flatten(), nn.Identity()),
    ]


def _inputs(model, rng):
    first = model[0] if isinstance(model, nn.Sequential) else model
    if isinstance(first, nn.Embedding):
        return rng.integers(0, first.num_embeddings, size=(3, 5))
    dtype = next(first.parameters()).dtype
    shape = (3, 5, 4) if isinstance(first, (nn.RNN, nn.LSTM, nn.GRU)) else (3, 4)
    return rng.standard_normal(shape).astype(dtype)


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flat(o)]
    return [out.data if isinstance(out, mg.Tensor) else out.detach().numpy()]


@pytest.mark.parametrize("index", range(7))
def test_to_torch_same_weights_and_outputs(index):
    torch = pytest.importorskip("torch")
    model = _models()[index].eval()
    tmod = interop.to_torch(model)
    assert not tmod.training
    theirs = {k: v.detach().numpy() for k, v in tmod.state_dict().items()}
    ours = model.state_dict()
    assert list(theirs) == list(ours)
    for k in ours:
        assert theirs[k].dtype == ours[k].dtype, k
        np.testing.assert_array_equal(theirs[k], ours[k], err_msg=k)
    x = _inputs(model, np.random.default_rng(index))
    a = _flat(model(x))
    b = _flat(tmod(torch.from_numpy(x)))
    assert len(a) == len(b)
    for u, v in zip(a, b):
        tol = 1e-12 if u.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


@pytest.mark.parametrize("index", range(7))
def test_round_trip_through_torch(index):
    pytest.importorskip("torch")
    model = _models()[index]
    back = interop.from_torch(interop.to_torch(model))
    assert type(back) is type(model)
    assert repr(back) == repr(model)
    a, b = model.state_dict(), back.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_from_torch_keeps_torch_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Embedding(11, 4), torch.nn.GRU(4, 6, batch_first=True))
    m = interop.from_torch(t)
    assert isinstance(m[1], nn.GRU) and m[1].batch_first
    np.testing.assert_array_equal(m[0].weight.data, t[0].weight.detach().numpy())
    np.testing.assert_array_equal(m[1].weight_hh_l0.data, t[1].weight_hh_l0.detach().numpy())


@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, False),
                                                              (False, True)])
def test_keras_style_layers_keep_their_conventions_in_torch(return_sequences, return_state):
    torch = pytest.importorskip("torch")
    mg.manual_seed(1)
    model = nn.Sequential(nn.Embedding(20, 4),
                          nn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True,
                                  return_sequences=return_sequences,
                                  return_state=return_state)).double()
    tmod = interop.to_torch(model)
    assert type(tmod[1]).__name__ == "TorchLSTM" and isinstance(tmod[1], torch.nn.LSTM)
    assert "return_sequences" in repr(tmod[1])
    tokens = np.random.default_rng(0).integers(0, 20, size=(3, 6))
    lengths = [6, 2, 4]
    emb = model[0](tokens)
    a = _flat(model[1](emb, lengths=lengths))
    b = _flat(tmod[1](torch.from_numpy(emb.data), lengths=lengths))
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    back = interop.from_torch(tmod)
    assert back[1].return_sequences is return_sequences
    assert back[1].return_state is return_state


def test_unsupported_modules():
    torch = pytest.importorskip("torch")

    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="to_torch does not support Custom"):
        interop.to_torch(nn.Sequential(nn.Linear(2, 2), Custom()))
    with pytest.raises(TypeError, match="from_torch does not support Conv1d"):
        interop.from_torch(torch.nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="float32 and float64"):
        interop.from_torch(torch.nn.Linear(2, 2).half())
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        interop.from_torch(nn.Linear(2, 2))


def test_clear_error_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        interop.to_torch(nn.Linear(2, 2))
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        interop.from_torch(object())
