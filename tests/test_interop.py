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
        nn.Sequential(
            nn.Linear(4, 5),
            nn.Tanh(),
            nn.Dropout(0.1),
            nn.Linear(5, 5),
            nn.Sigmoid(),
            nn.ReLU(),
            nn.Flatten(),
            nn.Identity(),
        ),
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


@pytest.mark.parametrize(
    "return_sequences, return_state", [(False, False), (True, False), (False, True)]
)
def test_keras_style_layers_keep_their_conventions_in_torch(return_sequences, return_state):
    torch = pytest.importorskip("torch")
    mg.manual_seed(1)
    model = nn.Sequential(
        nn.Embedding(20, 4),
        nn.LSTM(
            4,
            3,
            num_layers=2,
            bidirectional=True,
            batch_first=True,
            return_sequences=return_sequences,
            return_state=return_state,
        ),
    ).double()
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


# ----- module trees: any container whose leaves are supported layers --------------------------
class _MgLM(nn.Module):
    def __init__(self, hidden=6):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.rnn = nn.LSTM(4, hidden, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 11)

    def forward(self, x):
        y, _ = self.rnn(self.embed(x))
        return self.head(self.norm(y))


def _torch_lm(torch, hidden=6):
    class TorchLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 4)
            self.rnn = torch.nn.LSTM(4, hidden, batch_first=True)
            self.norm = torch.nn.LayerNorm(hidden)
            self.head = torch.nn.Linear(hidden, 11)

        def forward(self, x):
            y, _ = self.rnn(self.embed(x))
            return self.head(self.norm(y))

    return TorchLM()


def test_custom_tree_to_torch_and_into():
    torch = pytest.importorskip("torch")
    mg.manual_seed(3)
    model = _MgLM()
    tree = interop.to_torch(model)
    ours = model.state_dict()
    theirs = tree.state_dict()
    assert list(theirs) == list(ours)
    for k in ours:
        np.testing.assert_array_equal(theirs[k].numpy(), ours[k], err_msg=k)
    with pytest.raises(NotImplementedError, match="into="):
        tree(torch.zeros(2, 3, dtype=torch.int64))
    target = interop.to_torch(model, into=_torch_lm(torch))
    x = np.random.default_rng(0).integers(0, 11, size=(2, 5))
    np.testing.assert_allclose(
        model(x).data, target(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_custom_tree_from_torch_and_into():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = _torch_lm(torch)
    tree = interop.from_torch(tmodel)
    assert isinstance(tree, interop.ModuleTree)
    assert list(tree.state_dict()) == list(tmodel.state_dict())
    with pytest.raises(NotImplementedError, match="into="):
        tree(np.zeros((1, 2), dtype=np.int64))
    model = interop.from_torch(tmodel, into=_MgLM())
    x = np.random.default_rng(1).integers(0, 11, size=(3, 4))
    np.testing.assert_allclose(
        model(x).data, tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_into_refuses_a_different_tree_and_writes_nothing():
    torch = pytest.importorskip("torch")
    model = _MgLM(hidden=6)
    other = _torch_lm(torch, hidden=7)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="nothing was copied") as e:
        interop.to_torch(model, into=other)
    assert "'rnn.weight_hh_l0': source (24, 6) float32, target (28, 7) float32" in str(e.value)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k]), k
    mine = _MgLM(hidden=7)
    snapshot = {k: v.copy() for k, v in mine.state_dict().items()}
    with pytest.raises(ValueError, match="nothing was copied"):
        interop.from_torch(_torch_lm(torch, hidden=6), into=mine)
    for k, v in mine.state_dict().items():
        np.testing.assert_array_equal(v, snapshot[k])
    with pytest.raises(TypeError, match="into must be a torch.nn.Module"):
        interop.to_torch(model, into=_MgLM())


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.LayerNorm((2, 3)),
        lambda: nn.MultiheadAttention(4, 2, batch_first=True),
        lambda: nn.MultiheadAttention(4, 1, kdim=3, vdim=2, add_bias_kv=True),
    ],
)
def test_new_layers_round_trip(make):
    pytest.importorskip("torch")
    mg.manual_seed(5)
    m = make()
    back = interop.from_torch(interop.to_torch(m))
    assert type(back) is type(m)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)
