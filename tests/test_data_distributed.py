"""Each rank's share of the data: DistributedSampler and BPTTBatcher(num_replicas=, rank=)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigrad.data import BPTTBatcher, DataLoader, DistributedSampler, TensorDataset


@given(
    n=st.integers(1, 40),
    world=st.integers(1, 5),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_sampler_shards_partition_the_epoch(n, world, shuffle, drop_last, epoch):
    ds = list(range(n))
    shards = []
    for r in range(world):
        s = DistributedSampler(ds, world, r, shuffle=shuffle, seed=4, drop_last=drop_last)
        s.set_epoch(epoch)
        shards.append(list(s))
        assert len(shards[-1]) == len(s)
    sizes = {len(x) for x in shards}
    assert len(sizes) == 1  # every rank gets as many samples
    every = [i for x in shards for i in x]
    if drop_last:
        assert len(every) == n - n % world and len(set(every)) == len(every)
    else:
        assert set(every) == set(range(n)) and len(every) == -(-n // world) * world


def test_sampler_reshuffles_per_epoch_with_a_shared_seed():
    ds = list(range(20))
    a, b = DistributedSampler(ds, 2, 0, seed=1), DistributedSampler(ds, 2, 1, seed=1)
    e0 = (list(a), list(b))
    assert set(e0[0]).isdisjoint(e0[1])
    assert list(a) == e0[0]  # same epoch: same order
    a.set_epoch(1)
    b.set_epoch(1)
    e1 = (list(a), list(b))
    assert e1 != e0 and set(e1[0]).isdisjoint(e1[1])
    assert sorted(e1[0] + e1[1]) == list(range(20))
    assert list(DistributedSampler(ds, 2, 0, shuffle=False)) == list(range(0, 20, 2))


def test_ranks_batches_together_are_the_one_process_batch():
    x = np.arange(24).reshape(12, 2)
    ds = TensorDataset(x)
    one = [b[0] for b in DataLoader(ds, 4, sampler=DistributedSampler(ds, 1, 0, seed=2))]
    ranks = [
        [b[0] for b in DataLoader(ds, 2, sampler=DistributedSampler(ds, 2, r, seed=2))]
        for r in range(2)
    ]
    for k, whole in enumerate(one):
        both = np.concatenate([ranks[0][k], ranks[1][k]])
        assert sorted(map(tuple, both)) == sorted(map(tuple, whole))


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"num_replicas": 2}, ValueError, "give both num_replicas and rank"),
        ({"num_replicas": 2, "rank": 2}, ValueError, r"rank must be an int in \[0, 2\)"),
        ({"num_replicas": 0, "rank": 0}, ValueError, "num_replicas"),
        ({"num_replicas": 1, "rank": 0, "seed": 1.5}, TypeError, "seed must be an int"),
        ({"num_replicas": 1, "rank": 0, "seed": -1}, ValueError, "seed must be >= 0, got -1"),
    ],
)
def test_sampler_arguments_are_checked(kwargs, error, text):
    with pytest.raises(error, match=text):
        DistributedSampler(list(range(4)), **kwargs)
    with pytest.raises(ValueError, match="set_epoch expects an int >= 0"):
        DistributedSampler([1], 1, 0).set_epoch(-1)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_bptt_shards_are_disjoint_rows_that_stack_to_the_whole(world):
    tokens = np.arange(1000) % 97
    whole = list(BPTTBatcher(tokens, 8, 5))
    shards = [list(BPTTBatcher(tokens, 8, 5, num_replicas=world, rank=r)) for r in range(world)]
    for k, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([s[k][0] for s in shards]), x)
        np.testing.assert_array_equal(np.concatenate([s[k][1] for s in shards]), y)
        assert all(s[k][0].shape == (8 // world, 5) for s in shards)
    assert all(len(s) == len(whole) for s in shards)


def test_bptt_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="global batch_size 6 must be a multiple of"):
        BPTTBatcher(np.arange(100), 6, 4, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="give both"):
        BPTTBatcher(np.arange(100), 4, 4, rank=1)
