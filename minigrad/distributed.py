"""Data-parallel training over MPI: the same model on several processes, each with its part of
the batch, gradients averaged across them after every backward pass.

    # train.py, run as:  mpiexec -n 4 python train.py
    import minigrad as mg
    from minigrad import distributed as dist

    dist.init()                                   # MPI.COMM_WORLD; one process per rank
    mg.set_num_threads(1)                         # one thread per rank (kernels, BLAS)
    model = dist.DistributedDataParallel(MyModel())   # rank 0's weights everywhere
    opt = mg.optim.Adam(model.parameters())
    for x, y in my_shard_of_the_batches:          # DistributedSampler / BPTTBatcher(rank=...)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()                           # returns with the gradients averaged
        opt.step()
    if dist.rank() == 0:
        mg.save(model.state_dict(), "model.npz")  # or dist.save(...): rank 0 writes

How it works: ``DistributedDataParallel`` registers a post-accumulate grad hook on every
parameter.  During ``backward`` a hook fires as soon as a parameter's gradient is complete;
the parameters are grouped into buckets of about ``bucket_mb`` megabytes, each a flat buffer
with a place for every gradient, where the backward kernels write them (scaled by 1 / number
of ranks; gradients made otherwise are copied there).  When every parameter of the next
bucket is ready a non-blocking ``Iallreduce`` (sum) of its buffer starts, while the engine
goes on with the rest of the tape.  When backward has finished, the outstanding
reductions are waited for (with a timeout) and each ``.grad`` becomes its view of the bucket.
Every rank then holds the same averaged gradient, so any optimizer, ``clip_grad_norm_`` (which
then clips the global gradient) and schedulers keep parameters and optimizer state identical on
all ranks.

mpi4py is an optional dependency: ``pip install "minigrad[distributed]"`` (it installs mpi4py
and the MPICH wheel, which brings ``mpiexec``).  ``import minigrad`` never needs it; the
functions here raise an ImportError naming the extra when it is missing.  See
docs/distributed.md for the design, launching on several machines and the measured costs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback

import numpy as np

from . import autograd
from .nn.module import Module
from .tensor import Tensor

__all__ = [
    "DistributedError",
    "init",
    "is_initialized",
    "rank",
    "world_size",
    "barrier",
    "broadcast",
    "broadcast_parameters",
    "broadcast_buffers",
    "all_reduce",
    "save",
    "DistributedDataParallel",
]

_EXTRA_HINT = (
    "minigrad.distributed needs mpi4py and an MPI library: pip install "
    '"minigrad[distributed]" (or: pip install mpi4py mpich)'
)


class DistributedError(RuntimeError):
    """A collective operation failed or did not complete in time (another rank raised, hung,
    or runs different code), or the ranks hold different models."""


_state = {"comm": None, "hook": None}


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{_EXTRA_HINT} ({e})") from None
    return MPI


def init(comm=None, abort_on_exception=True):
    """Start using MPI (``MPI.COMM_WORLD`` unless another communicator is given) and return it.

    With ``abort_on_exception`` (the default) an exception that ends this process's program
    is printed with its rank and then aborts every rank (``MPI_Abort``): the other processes
    end at once instead of waiting forever in a collective operation for this one.  Calling
    ``init`` again changes nothing and returns the same communicator."""
    if _state["comm"] is not None:
        return _state["comm"]
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    elif not isinstance(comm, MPI.Comm):
        raise TypeError(f"init(comm=...) expects an mpi4py communicator, got {type(comm).__name__}")
    _state["comm"] = comm
    if abort_on_exception and comm.Get_size() > 1 and _state["hook"] is None:

        def hook(kind, value, tb):
            r, n = comm.Get_rank(), comm.Get_size()
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write(
                f"{text}minigrad.distributed: rank {r} of {n} raised {kind.__name__}: {value}; "
                "aborting all ranks\n"
            )
            sys.stderr.flush()
            time.sleep(0.2)  # let the launcher forward the message before the abort ends all
            comm.Abort(1)
            os._exit(1)  # pragma: no cover - Abort does not return

        _state["hook"] = hook
        sys.excepthook = hook
    return comm


def is_initialized() -> bool:
    """True once ``init()`` has run in this process."""
    return _state["comm"] is not None


def _comm():
    comm = _state["comm"]
    if comm is None:
        raise RuntimeError(
            "minigrad.distributed is not initialized: call minigrad.distributed.init() first"
        )
    return comm


def rank() -> int:
    """This process's rank, 0 to world_size() - 1."""
    return _comm().Get_rank()


def world_size() -> int:
    """The number of processes taking part."""
    return _comm().Get_size()


def barrier():
    """Wait until every rank has reached this call."""
    _comm().Barrier()


# ----------------------------------------------------------------------------- collectives
_OPS = ("sum", "mean", "max", "min", "prod")


def _mpi_op(op):
    if op not in _OPS:
        raise ValueError(f"all_reduce op must be one of {', '.join(_OPS)}; got {op!r}")
    MPI = _mpi()
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}[op]


def _buffer_of(x, what):
    """The ndarray behind an ndarray or Tensor, checked to be one MPI can write in place."""
    arr = x.data if isinstance(x, Tensor) else x
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{what} expects an ndarray or a Tensor, got {type(x).__name__}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{what} expects an integer or floating-point array, got dtype {arr.dtype}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError(
            f"{what} works in place and needs a writeable C-contiguous array; got one that is "
            f"{'not contiguous' if not arr.flags.c_contiguous else 'read-only'} "
            "(pass np.ascontiguousarray(x))"
        )
    return arr


def all_reduce(x, op="sum"):
    """Reduce ``x`` (an ndarray or a Tensor's values) across all ranks, in place, and return it:
    ``op`` is "sum", "mean", "max", "min" or "prod"; every rank ends with the result.  A Python
    number is also accepted; the reduced number is returned."""
    comm = _comm()
    if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
        floats = isinstance(x, float) or op == "mean"  # the mean of numbers is a float
        arr = np.array([x], dtype=np.float64 if floats else np.asarray(x).dtype)
        return all_reduce(arr, op)[0].item()
    mop = _mpi_op(op)
    arr = _buffer_of(x, "all_reduce")
    if op == "mean" and arr.dtype.kind != "f":  # checked before anything is written
        raise TypeError(f"all_reduce op='mean' needs a float array, got dtype {arr.dtype}")
    comm.Allreduce(_mpi().IN_PLACE, arr, op=mop)
    if op == "mean":
        arr /= comm.Get_size()
    if isinstance(x, Tensor):
        x._bump_version("all_reduce")
    return x


def broadcast(x, root=0):
    """Overwrite ``x`` (an ndarray or a Tensor's values) on every rank with rank ``root``'s, in
    place, and return it."""
    comm = _comm()
    root = _check_root(root, comm)
    arr = _buffer_of(x, "broadcast")
    comm.Bcast(arr, root=root)
    if isinstance(x, Tensor):
        x._bump_version("broadcast")
    return x


def _check_root(root, comm):
    n = comm.Get_size()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
        raise TypeError(f"root must be an int rank in [0, {n}), got {type(root).__name__}")
    if not 0 <= root < n:
        raise ValueError(f"root must be a rank in [0, {n}), got {root!r}")
    return int(root)


def broadcast_parameters(module, root=0):
    """Copy rank ``root``'s parameters and buffers into ``module`` on every rank (in place)."""
    if not isinstance(module, Module):
        raise TypeError(f"broadcast_parameters expects a Module, got {type(module).__name__}")
    _check_same_structure(module)
    for p in module.parameters():
        _broadcast_values(p, root)
    broadcast_buffers(module, root)


def broadcast_buffers(module, root=0):
    """Copy rank ``root``'s buffers (running statistics and such) into ``module`` everywhere."""
    for b in module.buffers():
        _broadcast_values(b, root)


def _broadcast_values(t, root):
    arr = t.data if isinstance(t, Tensor) else t
    if arr.flags.c_contiguous and arr.flags.writeable:
        _comm().Bcast(arr, root=root)
    else:
        tmp = np.ascontiguousarray(arr)
        _comm().Bcast(tmp, root=root)
        arr[...] = tmp
    if isinstance(t, Tensor):
        t._bump_version("broadcast_parameters")


def _signature(module):
    rows = [("param", n, p.data.shape, str(p.data.dtype)) for n, p in module.named_parameters()]
    rows += [
        ("buffer", n, np.shape(b.data if isinstance(b, Tensor) else b), str(np.asarray(b).dtype))
        for n, b in module.named_buffers()
    ]
    return rows


def _check_same_structure(module):
    """Raise DistributedError on every rank unless all ranks' modules have the same parameter
    and buffer names, shapes and dtypes (one all-gather of a checksum; the full lists only when
    they differ)."""
    comm = _comm()
    sig = _signature(module)
    digest = hashlib.sha256(repr(sig).encode()).hexdigest()
    digests = comm.allgather(digest)
    if len(set(digests)) == 1:
        return
    sigs = comm.allgather(sig)
    other = next(r for r, d in enumerate(digests) if d != digests[0])
    a, b = sigs[0], sigs[other]
    diff = f"rank 0 has {len(a)} parameters and buffers, rank {other} has {len(b)}"
    for x, y in zip(a, b):
        if x != y:
            diff = (
                f"rank 0 has {x[0]} {x[1]!r} of shape {x[2]} {x[3]}, rank {other} has "
                f"{y[0]} {y[1]!r} of shape {y[2]} {y[3]}"
            )
            break
    raise DistributedError(
        f"the ranks hold different models (checked when wrapping): {diff}. Every rank must "
        "build the same model"
    )


def save(obj, path, root=0):
    """``minigrad.save(obj, path)`` on rank ``root`` only, then a barrier, so that every rank
    may read the file afterwards.  The file is an ordinary minigrad checkpoint: load it with
    ``minigrad.load`` in one process or in any number of ranks."""
    from .serialization import save as _save

    comm = _comm()
    root = _check_root(root, comm)
    error = None
    if comm.Get_rank() == root:
        try:
            _save(obj, path)
        except Exception as e:  # tell the other ranks, then raise here
            error = e
    failed = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=root)
    if error is not None:
        raise error
    if failed is not None:
        raise DistributedError(f"rank {root} could not save the checkpoint {path!r}: {failed}")


# ----------------------------------------------------------------------------- DDP
class _Bucket:
    __slots__ = ("params", "views", "flat", "flags", "ready", "request", "written", "had", "scale")

    def __init__(self, params, dtype, ranks):
        self.params = params
        self.scale = np.dtype(dtype).type(1.0 / ranks)  # each rank's share of the average
        self.had = [0] * len(params)  # the flags before they go into flat
        n = sum(p.data.size for p in params)
        # one extra element per parameter: how many ranks had a gradient for it
        self.flat = np.empty(n + len(params), dtype=dtype)
        self.flags = self.flat[n:]
        self.views = []  # each parameter's gradient inside flat, in the parameter's shape
        off = 0
        for p in params:
            self.views.append(self.flat[off : off + p.data.size].reshape(p.data.shape))
            off += p.data.size
        self.ready = 0
        self.request = None
        # per parameter: backward wrote its gradient, already scaled, into its view this pass
        self.written = [False] * len(params)


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training: every rank runs it on its own part of the
    batch, and after each ``backward()`` every parameter's ``.grad`` holds the average of all
    ranks' gradients.

    module             the model; every rank builds the same one (checked: parameter names,
                       shapes and dtypes must agree, else DistributedError on every rank)
    bucket_mb          size of the gradient buckets in megabytes: smaller ones start their
                       all-reduce earlier during backward, larger ones send fewer messages
    broadcast_buffers  copy rank 0's buffers to all ranks at every forward (as PyTorch)
    timeout            seconds to wait for the other ranks' gradients at the end of a
                       backward pass before raising DistributedError (a rank that died or
                       runs different code)

    At wrap time rank 0's parameters and buffers are copied to all ranks.  Calling the wrapper
    calls ``module``.  ``state_dict``/``load_state_dict`` are the wrapped module's (same keys,
    no prefix), so a checkpoint loads into the bare model in one process.  ``no_sync()``
    skips the averaging for the backward passes inside it (gradient accumulation: the next
    backward outside averages the accumulated gradients).  A parameter no rank produced a
    gradient for keeps ``.grad`` None.  Backward's kernels write each gradient straight into
    its place in the wrapper's bucket buffer (embedding, linear and recurrent layers; other
    gradients are copied there), and after the averaging each ``.grad`` is a view of that
    place, which the next backward overwrites (as PyTorch's ``gradient_as_bucket_view``):
    copy a gradient to keep it past the next backward.  ``copied_grads``: how many gradients
    the last averaging had to copy into the buckets.
    Because the mean is taken over ranks, each rank's loss must be the mean over an equal
    share of the batch for the result to equal one process on the whole batch."""

    def __init__(self, module, bucket_mb=25.0, broadcast_buffers=True, timeout=300.0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a Module, got {type(module).__name__}")
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)):
            raise TypeError(f"bucket_mb must be a number, got {type(bucket_mb).__name__}")
        if not bucket_mb > 0:
            raise ValueError(f"bucket_mb must be positive, got {bucket_mb}")
        if isinstance(timeout, bool) or not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        comm = _comm()
        self.module = module
        d = self.__dict__
        d["_comm_"] = comm
        d["_MPI_"] = _mpi()
        d["bucket_mb"] = float(bucket_mb)
        d["broadcast_buffers"] = bool(broadcast_buffers)
        d["timeout"] = float(timeout)
        d["_sync"] = True
        d["_pending"] = False
        # what the last synchronized backward did (read by tests and the benchmark)
        d["launch_log"] = []  # (bucket index, parameters still to come in backward) per launch
        d["comm_wait_seconds"] = 0.0  # time spent waiting for reductions after backward
        broadcast_parameters(module, 0)  # checks the structure first
        params = [p for p in module.parameters() if p.requires_grad]
        d["_buckets"] = self._make_buckets(params)
        d["_bucket_of"] = {}
        for bi, b in enumerate(self._buckets):
            for j, p in enumerate(b.params):
                self._bucket_of[id(p)] = (bi, j)  # its bucket and place there
        d["_n_params"] = len(params)
        d["_seen"] = 0
        d["_next"] = 0  # the next bucket to launch: buckets start in index order on all ranks
        d["_handles"] = [
            p.register_post_accumulate_grad_hook(self._ready_hook(*self._bucket_of[id(p)]))
            for p in params
        ]
        # Backward writes each gradient (times 1 / ranks) straight into its bucket view when
        # the kernel that makes it can (autograd.set_grad_destination); the others are copied
        # in when their bucket starts.
        for b in self._buckets:
            for p, view in zip(b.params, b.views):
                autograd.set_grad_destination(p, self._destination(view, float(b.scale)))
        d["copied_grads"] = 0  # gradients the last averaging had to copy into a bucket

    def _make_buckets(self, params):
        # Reverse order of registration: the output layers' gradients are complete first.
        cap = self.bucket_mb * 1e6
        buckets = []
        open_ = {}  # dtype -> (params, bytes)
        for p in reversed(params):
            dt = p.data.dtype
            group, size = open_.get(dt, ([], 0))
            if group and size + p.data.nbytes > cap:
                buckets.append(_Bucket(group, dt, self._comm_.Get_size()))
                group, size = [], 0
            group.append(p)
            open_[dt] = (group, size + p.data.nbytes)
        for dt, (group, _) in open_.items():
            if group:
                buckets.append(_Bucket(group, dt, self._comm_.Get_size()))
        return buckets

    # ----- the module ---------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._pending:
            raise DistributedError(
                "a backward pass through this DistributedDataParallel raised while its "
                "gradients were being reduced: the ranks are out of step and cannot go on"
            )
        if self.broadcast_buffers:
            broadcast_buffers(self.module, 0)
        return self.module(*args, **kwargs)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        return self.module.load_state_dict(state_dict, strict)

    def no_sync(self):
        """``with ddp.no_sync():`` backward passes inside only accumulate local gradients."""
        ddp = self

        class _NoSync:
            def __enter__(self):
                self.prev = ddp._sync
                ddp.__dict__["_sync"] = False

            def __exit__(self, *exc):
                ddp.__dict__["_sync"] = self.prev
                return False

        return _NoSync()

    def sync_gradients(self):
        """Average every parameter's ``.grad`` across the ranks now (all buckets at once), for
        gradients made without ``backward`` (or inside ``no_sync``).  Every rank must call it;
        a parameter with ``.grad`` None on every rank keeps None."""
        if self._pending:
            raise RuntimeError("sync_gradients() cannot be called during backward()")
        self.__dict__["launch_log"] = []
        self.__dict__["copied_grads"] = 0
        self._finish()

    @property
    def buckets(self):
        """The parameter names of each bucket, in launch order."""
        names = {id(p): n for n, p in self.module.named_parameters()}
        return [[names[id(p)] for p in b.params] for b in self._buckets]

    # ----- during backward ----------------------------------------------------------------
    def _destination(self, view, scale):
        d = self.__dict__

        def provider():
            return (view, scale) if d["_sync"] else None

        return provider

    def _ready_hook(self, bi, j):
        """The post-accumulate hook of the j-th parameter of bucket bi."""
        d = self.__dict__
        b = self._buckets[bi]
        view = b.views[j]

        def ready(p):
            # The hot path of backward (once per parameter): plain reads, no MPI lookups.
            if not d["_sync"]:
                return
            if not d["_pending"]:
                self._begin()
            if p.grad is view:  # backward wrote it there (scaled): nothing to copy
                b.written[j] = True
            b.ready += 1
            d["_seen"] += 1
            nxt = d["_next"]
            if bi == nxt:  # buckets start in index order: this one and the complete ones after
                buckets = d["_buckets"]
                while nxt < len(buckets) and buckets[nxt].ready == len(buckets[nxt].params):
                    self._launch(nxt)
                    nxt += 1
            elif 0 < nxt:  # let MPI progress the reductions under way
                d["_MPI_"].Request.Testall([x.request for x in d["_buckets"][:nxt]])

        return ready

    def _begin(self):
        d = self.__dict__
        d["_pending"] = True
        d["launch_log"] = []
        d["copied_grads"] = 0
        autograd.queue_callback(self._finish)

    def _launch(self, bi):
        # Each gradient is scaled by 1 / (number of ranks) on its way into the bucket (by the
        # kernel that wrote it there, or here: a multiply, exact when the number of ranks is a
        # power of two), so the sum the all-reduce makes is already the average.
        d = self.__dict__
        b = d["_buckets"][bi]
        if all(b.written):  # every gradient is in place: each rank had all of them
            b.flags.fill(1)
        else:
            had = b.had
            copied = 0
            k = 0
            for p, view, written in zip(b.params, b.views, b.written):
                g = p.grad
                if g is None:
                    view.fill(0)
                    had[k] = 0
                else:
                    if not written:
                        np.multiply(g, b.scale, out=view)
                        copied += 1
                    had[k] = 1
                k += 1
            b.flags[:] = had
            d["copied_grads"] += copied
        MPI = d["_MPI_"]
        b.request = d["_comm_"].Iallreduce(MPI.IN_PLACE, b.flat, op=MPI.SUM)
        d["launch_log"].append((bi, d["_n_params"] - d["_seen"]))
        d["_next"] = bi + 1

    def _finish(self):
        """After backward: launch what is left, wait, average into .grad."""
        d = self.__dict__
        d["_pending"] = False
        try:
            while self._next < len(self._buckets):
                self._launch(self._next)
            t0 = time.perf_counter()
            self._wait([b.request for b in self._buckets])
            d["comm_wait_seconds"] = time.perf_counter() - t0
            for b in self._buckets:
                if all(b.written):  # every .grad is its view already, now holding the average
                    continue
                # the average, in place in the bucket (no rank had a gradient: None)
                for p, view, has in zip(b.params, b.views, b.flags.tolist()):
                    if not has:
                        p.grad = None
                    elif p.grad is not view:
                        p.grad = view
        finally:
            for b in self._buckets:
                b.ready = 0
                b.request = None
                b.written = [False] * len(b.params)
            d["_seen"] = 0
            d["_next"] = 0

    def _wait(self, reqs):
        # Polled rather than MPI_Waitall, so that a peer that never joins ends in an error
        # instead of a hang; MPI's own waits poll the same way.  The first test is free of
        # clock reads; after that the clock is read every 64 tests.
        testall = self._MPI_.Request.Testall
        if testall(reqs):
            return
        deadline = time.perf_counter() + self.timeout
        spins = 0
        while not testall(reqs):
            spins += 1
            if spins & 63 == 0 and time.perf_counter() > deadline:
                raise DistributedError(
                    f"rank {self._comm_.Get_rank()}: the gradient all-reduce did not complete "
                    f"within {self.timeout:g} s: another rank failed, hung, or does not run the "
                    "same backward passes"
                )
            if spins > 200_000:  # waiting long (a slow peer): stop hogging a shared core
                time.sleep(1e-4)
