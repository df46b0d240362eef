"""Data-parallel training over MPI (minigrad.distributed) on this machine: throughput, the cost
of the gradient all-reduce, and all-reduce time vs message size for the scaling model in
docs/distributed.md.

    python benchmarks/bench_distributed.py            # under a minute
    python benchmarks/bench_distributed.py --quick    # about 10 seconds

1. Char-LM training throughput (the model of examples/char_rnn.py: embedding 64, one LSTM
   layer of 256, vocabulary 100; Adam, gradient clipping; batch 32 x 64 characters), one BLAS
   thread per process: one process on the whole batch vs ``mpiexec -n 2`` with
   DistributedDataParallel (16 streams per rank), and 2 ranks without the all-reduce (the
   bound set by compute alone).  Contenders run in turn, round after round (A B C A B C ...);
   each run's median step time after warm-up; the medians of the runs are compared.  Also the
   share of a DDP step spent waiting for the all-reduce after backward.
2. The all-reduce of all the char-LM's gradients by DDP, as in a training step (backward's
   kernels write each gradient into DDP's bucket; then the hooks, the Iallreduce and the wait),
   vs mpi4py's raw ``Allreduce`` of one flat float32 buffer of the same size, interleaved, 2
   ranks; DDP from gradients given as separate arrays (``sync_gradients``: a copy into the
   bucket first); and DDP's own work alone (the same calls on 1 rank).
3. Raw ``Allreduce`` time vs message size (2 ranks), the latency + bandwidth fit, and the
   one-process step time per local batch size: the inputs of the scaling model.

Needs mpi4py and mpiexec (``pip install "minigrad[distributed]"``).  Timings on a loaded machine
are noisy; the ratios from interleaved runs are the figures to read.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

VOCAB, EMBED, HIDDEN, SEQ, BATCH = 100, 64, 256, 64, 32


# ----------------------------------------------------------------------------- workers
def _model():
    import minigrad as mg
    from minigrad import nn

    mg.manual_seed(0)

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.rnn = nn.LSTM(EMBED, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, ids, state=None):
            ys, state = self.rnn(self.embed(ids), state)
            return self.head(ys), state

    return CharLM()


def _train_worker(args):
    """Median step time (and DDP's wait for the all-reduce) of one run, printed by rank 0."""
    import minigrad as mg
    import minigrad.functional as F
    from minigrad import nn

    mg.set_num_threads(1)
    world, rank, dist = 1, 0, None
    if args.mode != "single":
        from minigrad import distributed as dist

        dist.init()
        world, rank = dist.world_size(), dist.rank()
    model = _model()
    net = dist.DistributedDataParallel(model) if dist else model
    opt = mg.optim.Adam(model.parameters(), lr=1e-3)
    local = args.batch // world
    rng = np.random.default_rng(rank)
    tokens = rng.integers(0, VOCAB, size=(local, SEQ * (args.steps + args.warmup) + 1))
    state, steps, waits = None, [], []
    for k in range(args.warmup + args.steps):
        x = tokens[:, k * SEQ : (k + 1) * SEQ]
        y = tokens[:, k * SEQ + 1 : (k + 1) * SEQ + 1]
        t0 = time.perf_counter()
        logits, state = net(x, state)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        if args.mode == "nosync":
            with net.no_sync():
                loss.backward()
        else:
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        state = nn.utils.detach_state(state)
        if args.mode == "nosync":  # the ranks in step, as the all-reduce would keep them
            dist.barrier()
        if k >= args.warmup:
            steps.append(time.perf_counter() - t0)
            waits.append(net.comm_wait_seconds if args.mode == "ddp" else 0.0)
    if rank == 0:
        print(
            json.dumps({"step": statistics.median(steps), "wait": statistics.median(waits)}),
            flush=True,
        )


def _reduce_worker(args):
    """DDP's all-reduce of the char-LM's gradients vs one raw Allreduce; Allreduce vs size.

    "ddp": the path of a training step.  Backward's kernels write each gradient, scaled by
    1 / ranks, into its place in DDP's bucket (their GEMMs' output: no extra pass), so what
    DDP adds to backward is what follows: the engine stores each ``.grad`` as soon as it is
    complete and runs DDP's hooks, which start the bucket's Iallreduce; the end of backward
    waits for it.  A stand-in node plays the kernels: its backward hands back the destinations
    the engine offers, filled before the clock starts.  Its cost with DDP minus its cost on the
    bare model ("plain": the engine storing seven gradients, there with or without DDP) is
    DDP's all-reduce.  "copy": gradients given as separate arrays (``sync_gradients``): each
    is copied into the bucket first."""
    from mpi4py import MPI

    from minigrad import autograd
    from minigrad import distributed as dist

    comm = dist.init()
    model, bare = _model(), _model()
    ddp = dist.DistributedDataParallel(model)
    params, bare_params = list(model.parameters()), list(bare.parameters())
    n = sum(p.data.size for p in params)
    rng = np.random.default_rng(comm.Get_rank())
    grads = [rng.standard_normal(p.data.shape).astype(np.float32) for p in params]
    flat = np.empty(n, dtype=np.float32)
    index = {id(p): i for i, p in enumerate(params)}

    class Kernels(autograd.Function):
        """Every parameter's gradient from one node, written where the engine offers (a new
        array, as a kernel's output, where it offers nothing)."""

        takes_grad_out = True
        fresh_grads = True
        saves_inputs = False

        def forward(self, *ws):
            return np.zeros((), np.float32)

        def backward(self, g):
            offers = self.grad_out or {}
            return tuple(offers[i][0] if i in offers else grads[i] for i in range(len(grads)))

    every = np.concatenate([g.ravel() for g in grads])

    def fill():  # the kernels' output, before the clock starts (raw's buffer: the same values)
        for p, q in zip(params, bare_params):
            p.grad = q.grad = None
        for b in ddp._buckets:
            for p, view in zip(b.params, b.views):
                np.multiply(grads[index[id(p)]], b.scale, out=view)
        np.multiply(every, ddp._buckets[0].scale, out=flat)

    def ddp_reduce():
        Kernels()(*params).backward()

    def plain():
        Kernels()(*bare_params).backward()

    def copy_reduce():
        for p, g in zip(params, grads):
            p.grad = g
        ddp.sync_gradients()

    def raw_reduce():
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)

    contenders = (("ddp", ddp_reduce), ("plain", plain), ("copy", copy_reduce), ("raw", raw_reduce))
    times = {name: [] for name, _ in contenders}
    copied = []
    for r in range(args.reps + 3):
        for name, fn in contenders:
            ts = []
            for _ in range(10):
                fill()
                comm.Barrier()
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            if name == "ddp":
                copied.append(ddp.copied_grads)
            if r >= 3:
                times[name].append(statistics.median(ts))
    added = [a - b for a, b in zip(times["ddp"], times["plain"])]
    sizes = [2**k for k in range(10, 25, 2)]  # 1 KiB .. 16 MiB
    by_size = []
    for nbytes in sizes:
        buf = np.zeros(nbytes // 4, dtype=np.float32)
        inner = max(3, min(200, int(2e6 // nbytes)))
        ts = []
        for r in range(args.reps + 2):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(inner):
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            if r >= 2:
                ts.append((time.perf_counter() - t0) / inner)
        by_size.append((nbytes, statistics.median(ts)))
    if comm.Get_rank() == 0:
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "params": n,
                    **med,
                    "added": statistics.median(added),
                    "ratio": statistics.median([a / b for a, b in zip(added, times["raw"])]),
                    "copy_ratio": statistics.median(
                        [a / b for a, b in zip(times["copy"], times["raw"])]
                    ),
                    "copied": max(copied),
                    "by_size": by_size,
                }
            ),
            flush=True,
        )


def _compute_worker(args):
    """One process, one thread: median training step time at each local batch size."""
    import minigrad as mg
    import minigrad.functional as F
    from minigrad import nn

    mg.set_num_threads(1)
    model = _model()
    opt = mg.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    out = {}
    for b in (32, 16, 8, 4, 2):
        ts = []
        for k in range(args.warmup + args.steps):
            ids = rng.integers(0, VOCAB, size=(b, SEQ + 1))
            t0 = time.perf_counter()
            logits, _ = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if k >= args.warmup:
                ts.append(time.perf_counter() - t0)
        out[b] = statistics.median(ts)
    print(json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- driver
def _run(cmd, timeout=600):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scaling_table(by_size, compute, grad_bytes, latency=50e-6, gbit=10.0):
    """Predicted step time (s) at p nodes on a ``gbit`` Gbit/s network: compute at the local
    batch + a ring all-reduce, 2 (p - 1) messages of grad_bytes / p, each costing the network
    latency + this machine's per-message software cost + its bytes on the wire (no overlap
    with backward credited: an upper bound on the communication).  This machine's costs: the
    smallest message's time is the per-message cost, the largest one's gives the cost per
    byte (a least-squares line is pulled about by the noise of a loaded machine)."""
    (small, t_small), (large, t_large) = by_size[0], by_size[-1]
    software = t_small
    slope = max(t_large - t_small, 0.0) / (large - small)
    per_byte = 8 / (gbit * 1e9)
    rows = []
    for p in (1, 2, 4, 8, 16):
        msg = grad_bytes / p
        comm = 0.0 if p == 1 else 2 * (p - 1) * (latency + software + msg * per_byte)
        strong_b = max(BATCH // p, 2)
        strong = compute[strong_b] + comm
        weak = compute[BATCH] + comm
        rows.append((p, comm, strong, BATCH * SEQ / strong, weak, p * BATCH * SEQ / weak))
    return software, slope, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    ap.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 5; 2 with --quick)"
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps per run (default 30; 12 with --quick)"
    )
    ap.add_argument("--worker", choices=["train", "reduce", "compute"], help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="single", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    args.steps = args.steps or (12 if args.quick else 30)
    args.reps = args.reps or (5 if args.quick else 15)
    if args.worker:
        {"train": _train_worker, "reduce": _reduce_worker, "compute": _compute_worker}[args.worker](
            args
        )
        return None
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise SystemExit(
            'this benchmark needs mpi4py: pip install "minigrad[distributed]"'
        ) from None
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec on PATH (pip install mpich)")
    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--steps", str(args.steps), "--reps", str(args.reps)]
    contenders = {
        "1 process x 1 thread, batch 32": me + ["--worker", "train", "--mode", "single"],
        "2 ranks x 1 thread, DDP, 16 each": [mpiexec, "-n", "2"]
        + me
        + ["--worker", "train", "--mode", "ddp"],
        "2 ranks x 1 thread, no all-reduce": [mpiexec, "-n", "2"]
        + me
        + ["--worker", "train", "--mode", "nosync"],
    }
    res = {k: [] for k in contenders}
    t_start = time.perf_counter()
    for _ in range(rounds):
        for name, cmd in contenders.items():
            res[name].append(_run(cmd + common))
    single = [r["step"] for r in res["1 process x 1 thread, batch 32"]]
    tokens = BATCH * SEQ
    print(
        f"char-LM training step, batch {BATCH} x {SEQ} (global), {rounds} interleaved rounds "
        f"of {args.steps} steps; medians"
    )
    print(
        f"{'contender':38s} {'step ms':>9s} {'tokens/s':>10s} {'vs 1 process':>13s} "
        f"{'comm wait':>10s}"
    )
    for name, rs in res.items():
        step = statistics.median(r["step"] for r in rs)
        speed = statistics.median(s / r["step"] for s, r in zip(single, rs))
        wait = statistics.median(r["wait"] / r["step"] for r in rs)
        print(f"{name:38s} {step * 1e3:9.1f} {tokens / step:10,.0f} {speed:12.2f}x {wait:9.1%}")

    red = _run([mpiexec, "-n", "2"] + me + ["--worker", "reduce"] + common)
    print(
        f"\nall-reduce of the char-LM's {red['params']:,} gradients (float32, 2 ranks), "
        "interleaved; medians"
    )
    print(
        f"  DDP as in training, what it adds to backward:          {red['added'] * 1e6:8.0f} us"
        f"   (backward {red['ddp'] * 1e6:.0f} us with DDP, {red['plain'] * 1e6:.0f} us without;"
        f" {red['copied']} gradients copied)"
    )
    print(f"  raw MPI Allreduce, one flat buffer:                      {red['raw'] * 1e6:8.0f} us")
    print(f"  ratio DDP / raw:                                         {red['ratio']:8.2f}x")
    print(
        f"  DDP from separate arrays (sync_gradients: copy first):   {red['copy'] * 1e6:8.0f} us"
        f"   ({red['copy_ratio']:.2f}x raw)"
    )
    own = _run([mpiexec, "-n", "1"] + me + ["--worker", "reduce"] + common)
    print(
        f"  DDP's own work (1 rank, an empty all-reduce): {own['added'] * 1e6:.0f} us as in "
        f"training, {own['copy'] * 1e6:.0f} us from separate arrays"
    )
    print("\nraw Allreduce time vs message size (2 ranks, this machine)")
    for nbytes, t in red["by_size"]:
        print(f"  {nbytes:>10,d} bytes {t * 1e6:10.1f} us  {nbytes / t / 1e9:6.2f} GB/s")

    compute = _run(me + ["--worker", "compute"] + common)
    compute = {int(k): v for k, v in compute.items()}
    software, slope, rows = scaling_table(red["by_size"], compute, red["params"] * 4)
    print(
        "\none-process step time by local batch: "
        + ", ".join(f"{b}: {t * 1e3:.1f} ms" for b, t in sorted(compute.items(), reverse=True))
    )
    print(f"fit here: {software * 1e6:.1f} us per message + {slope * 1e9:.3f} ns per byte")
    print("\nESTIMATE for 10 Gbit/s, 50 us latency, ring all-reduce, no overlap credited:")
    print(f"{'nodes':>5s} {'all-reduce ms':>14s} | {'global batch 32':^24s} | {'32 per node':^24s}")
    print(
        f"{'':5s} {'':14s} | {'step ms':>10s} {'tokens/s':>12s} | "
        f"{'step ms':>10s} {'tokens/s':>12s}"
    )
    for p, comm, strong, strong_tps, weak, weak_tps in rows:
        print(
            f"{p:5d} {comm * 1e3:14.2f} | {strong * 1e3:10.1f} {strong_tps:12,.0f} | "
            f"{weak * 1e3:10.1f} {weak_tps:12,.0f}"
        )
    print(
        f"\n({time.perf_counter() - t_start:.0f} s; on a loaded machine the absolute times are "
        "noisy)"
    )
    return {"runs": res, "reduce": red, "compute": compute, "scaling": rows}


if __name__ == "__main__":
    main()
