"""The program tests/test_distributed.py runs under ``mpiexec -n 2``; also imported by that test
(without MPI) for the one-process reference runs of the same training cases.

    mpiexec -n 2 python tests/distributed_worker.py main OUTDIR     # every check below
    mpiexec -n 2 python tests/distributed_worker.py raise OUTDIR    # rank 1 raises at step 3
    mpiexec -n 2 python tests/distributed_worker.py hang OUTDIR     # rank 1 stops reducing

Each training case: 20 steps of a small model on a global batch of 8 rows; one process trains
on all 8, rank r of N on its rows [r * 8/N, (r+1) * 8/N).  ``main`` writes each rank's final
parameters and optimizer state to OUTDIR/<case>.rank<r>.npz and its other findings to
OUTDIR/main.rank<r>.json.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
import minigrad.functional as F  # noqa: E402
from minigrad import nn, optim  # noqa: E402
from minigrad.data import BPTTBatcher, DataLoader, DistributedSampler, TensorDataset  # noqa: E402

VOCAB, EMBED, HIDDEN, T, BATCH, STEPS = 12, 5, 8, 7, 8, 20

# name -> (cell, dtype, optimizer, data): data "lm" (next-token loss on every step), "lengths"
# (padded sequences of varied lengths, one label each), "tbptt" (a stream, state carried),
# "sampler" (a DataLoader with a DistributedSampler)
CASES = {
    "lstm64": ("lstm", np.float64, "Adam", "lm"),
    "gru64": ("gru", np.float64, "Adam", "lm"),
    "lstm32": ("lstm", np.float32, "Adam", "lm"),
    "gru_lengths64": ("gru", np.float64, "Adam", "lengths"),
    "lstm_lengths64": ("lstm", np.float64, "Adam", "lengths"),
    "lstm_tbptt64": ("lstm", np.float64, "Adam", "tbptt"),
    "gru_sgd64": ("gru", np.float64, "SGD", "lm"),
    "lstm_rmsprop64": ("lstm", np.float64, "RMSprop", "lm"),
    "lstm_adagrad64": ("lstm", np.float64, "Adagrad", "lm"),
    "gru_adamw64": ("gru", np.float64, "AdamW", "lm"),
    "gru_sampler64": ("gru", np.float64, "Adam", "sampler"),
    # zero_grad(set_to_none=False): backward adds to the .grad it finds, DDP copies each
    # gradient into its bucket (the others' kernels write them there directly)
    "lstm_zeroed64": ("lstm", np.float64, "Adam", "lm"),
}
OPTIMIZERS = {
    "Adam": lambda ps: optim.Adam(ps, lr=0.02),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.02, weight_decay=0.1),
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.5),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
}
CLIP = 0.5  # small enough that clipping acts on most steps


class Model(nn.Module):
    """Embedding -> LSTM/GRU -> Linear: logits per step, or per sequence with ``lengths``."""

    def __init__(self, cell, dtype, hidden=HIDDEN):
        super().__init__()
        self.cell = cell
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(EMBED, hidden, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)
        self.to(dtype)

    def forward(self, ids, state=None, lengths=None):
        ys, state = self.rnn(self.embed(ids), state, lengths)
        if lengths is None:
            return self.head(ys), state
        h = state[0] if self.cell == "lstm" else state
        return self.head(h[-1]), state


def build(name, hidden=HIDDEN):
    cell, dtype, _, _ = CASES[name]
    mg.manual_seed(0)
    return Model(cell, dtype, hidden)


def _rows(world, rank):
    share = BATCH // world
    return slice(rank * share, (rank + 1) * share)


def _lm_batch(step, world, rank):
    rng = np.random.default_rng(100 + step)
    ids = rng.integers(0, VOCAB, size=(BATCH, T + 1))
    ids = ids[_rows(world, rank)]
    return ids[:, :-1], ids[:, 1:]


def _lengths_batch(step, world, rank):
    rng = np.random.default_rng(200 + step)
    ids = rng.integers(1, VOCAB, size=(BATCH, T))
    lengths = rng.integers(1, T + 1, size=BATCH)
    for b, n in enumerate(lengths):
        ids[b, n:] = 0
    labels = rng.integers(0, VOCAB, size=BATCH)
    r = _rows(world, rank)
    return ids[r], lengths[r], labels[r]


def _sampler_loader(world, rank):
    rng = np.random.default_rng(5)
    x = rng.integers(0, VOCAB, size=(BATCH * STEPS // 2, T))
    y = rng.integers(0, VOCAB, size=(BATCH * STEPS // 2,))
    ds = TensorDataset(x, y)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=3)
    return sampler, DataLoader(ds, batch_size=BATCH // world, sampler=sampler)


def _sampler_batches(world, rank):
    sampler, loader = _sampler_loader(world, rank)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(name, world=1, rank=0, wrap=None, hidden=HIDDEN):
    """(model, optimizer, net) after STEPS steps of case ``name`` on rank ``rank``'s share of
    the batch; ``net`` is ``wrap(model)`` (the DDP wrapper) or the model itself."""
    _, _, opt_name, data = CASES[name]
    model = build(name, hidden)
    net = wrap(model) if wrap is not None else model
    opt = OPTIMIZERS[opt_name](model.parameters())
    state = None
    stream = None
    if data == "tbptt":
        tokens = np.random.default_rng(7).integers(0, VOCAB, size=BATCH * (STEPS * T + 3))
        kw = {"num_replicas": world, "rank": rank} if world > 1 else {}
        stream = iter(BPTTBatcher(tokens, BATCH, T, **kw))
    elif data == "sampler":
        stream = _sampler_batches(world, rank)
    for step in range(STEPS):
        if data == "lengths":
            ids, lengths, labels = _lengths_batch(step, world, rank)
            logits, _ = net(ids, None, lengths)
            loss = F.cross_entropy(logits, labels)
        elif data == "sampler":
            ids, labels = next(stream)
            logits, _ = net(ids, None, np.full(len(ids), T))
            loss = F.cross_entropy(logits, labels)
        else:
            ids, targets = next(stream) if data == "tbptt" else _lm_batch(step, world, rank)
            logits, state = net(ids, state if data == "tbptt" else None)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        opt.zero_grad(set_to_none="zeroed" not in name)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        state = nn.utils.detach_state(state)
    return model, opt, net


def flat_state(model, opt):
    """Every parameter and every array of the optimizer state, by a flat name."""
    out = {f"param/{k}": v for k, v in model.state_dict().items()}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)
        elif isinstance(obj, (np.ndarray, float, int)) and not isinstance(obj, bool):
            out[prefix] = np.asarray(obj)

    walk("optim", opt.state_dict()["state"])
    return out


# ----------------------------------------------------------------------------- under MPI
def _main(outdir):
    from minigrad import distributed as dist

    dist.init()
    r, w = dist.rank(), dist.world_size()
    found = {"rank": r, "world": w}

    # A model that differs on one rank is refused at wrap time, on every rank.
    try:
        dist.DistributedDataParallel(build("lstm64", hidden=HIDDEN if r == 0 else HIDDEN + 1))
        found["mismatch"] = None
    except dist.DistributedError as e:
        found["mismatch"] = str(e)
    try:  # same shapes, another dtype
        m = build("lstm64")
        if r == 1:
            m.to(np.float32)
        dist.DistributedDataParallel(m)
        found["mismatch_dtype"] = None
    except dist.DistributedError as e:
        found["mismatch_dtype"] = str(e)

    # Every case, with small buckets (one per parameter) so that several reductions overlap.
    nets = {}
    for name in CASES:
        model, opt, net = train(
            name, w, r, wrap=lambda m: dist.DistributedDataParallel(m, bucket_mb=1e-4)
        )
        nets[name] = net
        np.savez(os.path.join(outdir, f"{name}.rank{r}.npz"), **flat_state(model, opt))
    # The same case with one big bucket: the result must not change.
    model, opt, big = train(
        "lstm64", w, r, wrap=lambda m: dist.DistributedDataParallel(m, bucket_mb=100)
    )
    np.savez(os.path.join(outdir, f"lstm64_bigbucket.rank{r}.npz"), **flat_state(model, opt))
    found["buckets_small"] = len(nets["lstm64"].buckets)
    found["buckets_big"] = len(big.buckets)
    # (bucket, parameters whose gradient was not yet complete) at each launch, last step
    found["launch_log"] = nets["lstm64"].launch_log
    found["params"] = len(list(nets["lstm64"].parameters()))
    # gradients DDP had to copy into its buckets at the last step (0: backward wrote them all)
    found["copied"] = {name: net.copied_grads for name, net in nets.items()}

    # Buffers follow rank 0 at every forward.
    m = build("lstm64")
    m.register_buffer("running", np.full(3, float(r + 1)))
    ddp = dist.DistributedDataParallel(m, broadcast_buffers=True)
    m.running[...] = 10.0 * (r + 1)  # the ranks drift apart...
    ddp(np.zeros((2, 3), dtype=np.int64))  # ...and the forward copies rank 0's
    found["buffer_after_forward"] = m.running.tolist()

    # sync_gradients averages gradients made without backward; None everywhere stays None.
    m = build("lstm64")
    ddp = dist.DistributedDataParallel(m)
    m.head.weight.grad = np.full(m.head.weight.shape, float(r + 1))
    if r == 1:
        m.head.bias.grad = np.ones(m.head.bias.shape)
    ddp.sync_gradients()
    found["synced"] = [
        float(m.head.weight.grad.mean()),
        m.head.bias.grad.tolist()[:2],
        m.embed.weight.grad is None,
    ]

    # Collectives.
    found["sum"] = dist.all_reduce(np.array([r + 1.0, 2.0 * r]), "sum").tolist()
    found["mean"] = dist.all_reduce(mg.tensor(np.array([r + 1.0])), "mean").data.tolist()
    found["max_int"] = dist.all_reduce(r + 5, "max")
    found["broadcast"] = dist.broadcast(np.array([float(r + 7)]), root=1).tolist()

    # Checkpoint: rank 0 writes; every rank reads it back.
    model = nets["gru64"].module
    path = os.path.join(outdir, "ckpt.npz")
    dist.save({"model": model.state_dict()}, path)
    loaded = mg.load(path)["model"]
    found["ckpt_same"] = all(np.array_equal(loaded[k], v) for k, v in model.state_dict().items())
    with open(os.path.join(outdir, f"main.rank{r}.json"), "w") as f:
        json.dump(found, f)


def _fail(mode):
    """Rank 1 raises (``raise``) or stops taking part (``hang``) at step 3; rank 0 goes on."""
    import time

    from minigrad import distributed as dist

    dist.init()
    r = dist.rank()
    model = build("lstm64")
    ddp = dist.DistributedDataParallel(model, timeout=3.0)
    for step in range(STEPS):
        if r == 1 and step == 3:
            if mode == "raise":
                raise ValueError("a bad batch on rank 1")
            time.sleep(120)  # alive, but not reducing: rank 0 must time out
        ids, targets = _lm_batch(step, 2, r)
        logits, _ = ddp(ids)
        F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
    print(f"rank {r} finished", flush=True)


if __name__ == "__main__":
    mode, outdir = sys.argv[1], sys.argv[2]
    if mode == "main":
        _main(outdir)
    else:
        _fail(mode)
