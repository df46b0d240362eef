"""minigrad.data: DataLoader order and batching, padding with lengths, and the BPTT batcher's
stream layout (every token once per epoch, rows continuing across chunks, resume)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import nn
from minigrad.data import BPTTBatcher, DataLoader, TensorDataset, default_collate, pad_collate


@given(st.integers(1, 40), st.integers(1, 9), st.booleans(), st.booleans(), st.integers(0, 99))
def test_loader_visits_every_sample_once(n, bs, shuffle, drop_last, seed):
    ds = TensorDataset(np.arange(n), np.arange(n) * 10.0)
    loader = DataLoader(ds, batch_size=bs, shuffle=shuffle, drop_last=drop_last, seed=seed)
    seen = []
    batches = 0
    for xb, yb in loader:
        assert len(xb) <= bs
        if drop_last:
            assert len(xb) == bs
        np.testing.assert_array_equal(yb, xb * 10.0)
        seen.extend(xb.tolist())
        batches += 1
    assert batches == len(loader)
    want = n - n % bs if drop_last else n
    assert len(seen) == want and len(set(seen)) == want
    if not shuffle:
        assert seen == list(range(want))


def test_shuffle_is_seeded_and_differs_between_epochs():
    ds = TensorDataset(np.arange(50))
    a = DataLoader(ds, batch_size=50, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=50, shuffle=True, seed=3)
    e1a, e2a = [next(iter(a))[0].tolist() for _ in range(2)]
    e1b, e2b = [next(iter(b))[0].tolist() for _ in range(2)]
    assert e1a == e1b and e2a == e2b
    assert e1a != e2a
    assert sorted(e1a) == list(range(50))


def test_tensors_in_give_tensors_out():
    ds = TensorDataset(mg.tensor(np.ones((6, 3))), np.zeros(6, dtype=np.int64))
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert isinstance(xb, mg.Tensor) and xb.shape == (4, 3)
    assert isinstance(yb, np.ndarray) and yb.dtype == np.int64


def test_collate_fn_and_sampler():
    ds = list(range(10))
    loader = DataLoader(ds, batch_size=3, sampler=[9, 8, 7, 1], collate_fn=lambda b: sum(b))
    assert list(loader) == [24, 1]
    assert len(loader) == 2


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
        (dict(batch_size=2.0), ValueError, "batch_size must be a positive integer"),
        (dict(shuffle=True, sampler=[0]), ValueError, "sampler and shuffle"),
        (dict(seed=1, generator=np.random.default_rng()), ValueError, "seed or generator"),
        (dict(generator=3), TypeError, "numpy.random.Generator, got int"),
        (dict(collate_fn=5), TypeError, "collate_fn must be callable"),
    ],
)
def test_loader_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        DataLoader(list(range(4)), **kwargs)


def test_numpy_integer_batch_size_counts_like_an_int():
    loader = DataLoader(list(range(5)), batch_size=np.int64(2))
    assert loader.batch_size == 2 and type(loader.batch_size) is int
    assert list(loader)[-1].tolist() == [4]
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got True"):
        DataLoader(list(range(5)), batch_size=True)


def test_dataset_checks():
    with pytest.raises(ValueError, match="input 0 has 3 rows, input 1 has 4"):
        TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(ValueError, match="sample 0 has shape \\(2,\\), sample 1 has \\(3,\\)"):
        default_collate([np.zeros(2), np.zeros(3)])


@given(st.lists(st.integers(1, 7), min_size=1, max_size=6), st.booleans())
def test_pad_collate(lengths, batch_first):
    rng = np.random.default_rng(len(lengths))
    seqs = [rng.normal(size=(n, 2)) for n in lengths]
    padded, lens, labels = pad_collate(
        [(s, i) for i, s in enumerate(seqs)], padding_value=-1, batch_first=batch_first
    )
    np.testing.assert_array_equal(lens, lengths)
    assert lens.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(len(seqs)))
    p = padded if batch_first else np.swapaxes(padded, 0, 1)
    assert p.shape == (len(seqs), max(lengths), 2)
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(p[i, : len(s)], s)
        assert np.all(p[i, len(s) :] == -1)


def test_pad_collate_feeds_lstm_lengths():
    """A padded batch with its lengths gives each sequence's own final state."""
    mg.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 2, 4)]
    padded, lengths = pad_collate(seqs)
    _, (h, _) = lstm(padded, lengths=lengths)
    for i, s in enumerate(seqs):
        _, (hi, _) = lstm(s[None])
        np.testing.assert_allclose(h.data[:, i], hi.data[:, 0], rtol=1e-5, atol=1e-6)


def test_pad_collate_refuses_bad_samples():
    with pytest.raises(ValueError, match="length 0"):
        pad_collate([np.zeros((0, 2))])
    with pytest.raises(ValueError, match="sample 0 has \\(2,\\), sample 1 has \\(3,\\)"):
        pad_collate([np.zeros((1, 2)), np.zeros((1, 3))])


@given(st.integers(2, 300), st.integers(1, 6), st.integers(1, 9), st.booleans())
def test_bptt_batcher_layout(n_tokens, bs, seq_len, drop_last):
    tokens = np.arange(n_tokens, dtype=np.int64)
    row = (n_tokens - 1) // bs
    if row < (seq_len if drop_last else 1):
        with pytest.raises(ValueError, match="too short"):
            BPTTBatcher(tokens, bs, seq_len, drop_last=drop_last)
        return
    b = BPTTBatcher(tokens, bs, seq_len, drop_last=drop_last)
    chunks = list(b)
    assert len(chunks) == len(b)
    xs = np.concatenate([x for x, _ in chunks], axis=1)
    ys = np.concatenate([y for _, y in chunks], axis=1)
    covered = (row // seq_len) * seq_len if drop_last else row
    # each row is one contiguous piece of the stream, continued from chunk to chunk
    for r in range(bs):
        np.testing.assert_array_equal(xs[r], np.arange(r * row, r * row + covered))
    np.testing.assert_array_equal(ys, xs + 1)
    # every used position appears once in the epoch
    assert len(np.unique(xs)) == xs.size
    assert b.position == 0  # the pass ended; the next one starts over
    assert len(list(b)) == len(b)


def test_bptt_resume_continues_where_it_stopped():
    tokens = np.arange(500) % 17
    b = BPTTBatcher(tokens, 4, 10)
    it = iter(b)
    first = [next(it) for _ in range(3)]
    state = b.state_dict()
    rest = list(it)
    b2 = BPTTBatcher(tokens, 4, 10)
    b2.load_state_dict(state)
    rest2 = list(b2)
    assert len(first) + len(rest) == len(b)
    assert len(rest2) == len(rest)
    for (x, y), (x2, y2) in zip(rest, rest2):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="position"):
        b2.load_state_dict({"position": len(b)})


def test_carried_state_equals_one_pass_over_the_rows():
    """Truncated BPTT over the batcher's chunks, carrying the detached state, computes the
    same outputs as the recurrent layer run over each whole row at once."""
    mg.manual_seed(0)
    emb, lstm = nn.Embedding(11, 3), nn.LSTM(3, 5, batch_first=True)
    tokens = np.random.default_rng(0).integers(0, 11, size=203)
    b = BPTTBatcher(tokens, 3, 8)
    outs, state = [], None
    with mg.no_grad():
        for x, _ in b:
            y, state = lstm(emb(x), state)
            state = nn.utils.detach_state(state)
            outs.append(y.data)
        whole, _ = lstm(emb(b._x[:, : len(b) * 8]))
    np.testing.assert_allclose(np.concatenate(outs, axis=1), whole.data, rtol=1e-5, atol=1e-6)


def test_bptt_batcher_bad_input():
    with pytest.raises(ValueError, match="1-D token stream, got shape \\(2, 3\\)"):
        BPTTBatcher(np.zeros((2, 3), dtype=np.int64), 1, 1)
    with pytest.raises(TypeError, match="integer token ids, got dtype float64"):
        BPTTBatcher(np.zeros(10), 1, 1)
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 0"):
        BPTTBatcher(np.zeros(10, dtype=np.int64), 1, 0)
