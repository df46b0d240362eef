"""Contenders in processes of their own, still taking turns with each other.

Two frameworks in one process share its memory allocator, and what one of them frees changes
how the other's next allocations are served. glibc raises its mmap threshold (and its trim
threshold with it) when a large block that came from mmap is freed: from then on, blocks up to
that size come from the heap, whose pages stay mapped between steps, instead of fresh pages that
fault on their first write. So a framework that takes turns with one that frees big buffers can
run faster or slower than it would alone. In bench_lm's LSTM step torch took 175 ms per step
next to minigrad's step and 150-166 ms alone, and the ratio moved with changes to minigrad that
did not touch torch at all. A user's training process runs one framework: so does each worker
here.

Within one process, glibc's thresholds move with what was freed before, so even a framework
alone sees its step served from reused pages in some runs and from fresh ones in others:
torch's LSTM step here faulted 254 pages a step in one run and 5,174 in another (151 against
173 ms). ``STEADY_MALLOC`` fixes the thresholds (32 MiB for mmap, 128 MiB for trimming) so
that neither framework's steady-state step pays page faults, whatever ran before; benchmarks
pass it as a worker's ``env`` unless asked for the C library's defaults.

``Isolated(factory, *args, env=None)`` starts a worker process (``multiprocessing``'s spawn: a
fresh interpreter, nothing inherited) that builds ``factory(*args)`` and then serves the
parent's commands: ``step()`` runs the object's step() and reports the seconds it took, timed in
the worker (the pipe's round trip is not counted); ``call(name, *args)`` calls a method and
returns its result; ``quiet()`` waits until the worker's threads have stopped running
(timing.wait_quiet, run there); ``remote(step, prepare)`` is a contender that calls the
object's methods (the step one returns the seconds it measured), ``part(name)`` the one of
``part_prepare(name)`` and ``part_step(name)``. Contenders with ``measures = True`` give
time_interleaved the seconds they measured (``last_seconds``). The parent still decides whose
turn it is, so the rounds interleave as before; while one worker runs, the other waits in a
blocking read of its pipe.
"""

import multiprocessing
import os
import time
import traceback

from benchmarks.harness import timing

STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}


def malloc_env(glibc_malloc):
    """A worker's environment: None (glibc's moving thresholds) or STEADY_MALLOC."""
    return None if glibc_malloc else STEADY_MALLOC


def start(specs, env=None):
    """{name: Isolated(factory, *args, label=name, env=env)} for specs {name: (factory, args)};
    if one fails to start, those already started are closed before the error goes on."""
    workers = {}
    try:
        for name, (factory, args) in specs.items():
            workers[name] = Isolated(factory, *args, label=name, env=env)
    except BaseException:
        close_all(workers)
        raise
    return workers


def close_all(workers):
    """Close every worker of a {name: worker} dict (None: nothing)."""
    for w in (workers or {}).values():
        w.close()


class WorkerError(RuntimeError):
    """A worker process raised: the message holds its traceback."""


def _serve(conn, factory, args):
    try:
        obj = factory(*args)
    except BaseException:  # report the failure to the parent instead of dying silently
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    perf = time.perf_counter
    while True:
        try:
            cmd, name, a = conn.recv()
        except EOFError:  # the parent went away
            return
        if cmd == "close":
            conn.send(("ok", None))
            return
        try:
            if cmd == "quiet":
                res = timing.wait_quiet()
            elif cmd == "step":
                t0 = perf()
                obj.step()
                res = perf() - t0
            else:
                res = getattr(obj, name)(*a)
            conn.send(("ok", res))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class Isolated:
    """A contender built and run in a worker process of its own (module docstring)."""

    measures = True

    def __init__(self, factory, *args, label=None, env=None):
        self.label = label or getattr(factory, "__name__", "worker")
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, factory, args), daemon=True)
        saved = {k: os.environ.get(k) for k in env or {}}
        os.environ.update(env or {})  # the worker's environment from its start (the C library
        try:  # reads its MALLOC_* variables then)
            self._proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.last_seconds = None
        self._reply()

    def _reply(self):
        try:
            status, res = self._conn.recv()
        except EOFError:
            raise WorkerError(f"{self.label}: the worker process ended unexpectedly") from None
        if status != "ok":
            raise WorkerError(f"{self.label} failed in its worker process:\n{res}")
        return res

    def call(self, name, *args):
        """obj.name(*args) in the worker; its result."""
        self._conn.send(("call", name, args))
        return self._reply()

    def step(self):
        self._conn.send(("step", None, ()))
        self.last_seconds = self._reply()

    def quiet(self):
        """Wait until the worker process is quiet (timing.wait_quiet there); the seconds."""
        self._conn.send(("quiet", None, ()))
        return self._reply()

    def remote(self, step, prepare=None):
        """A contender whose step() calls the worker object's method ``step = (name, args)``,
        which returns the seconds it measured, and whose prepare() (untimed) calls ``prepare``
        the same way (None: no prepare)."""
        return _Remote(self, step, prepare)

    def part(self, name):
        """A contender for the object's part `name` (part_prepare / part_step in the worker)."""
        return _Remote(self, ("part_step", (name,)), ("part_prepare", (name,)))

    def close(self):
        if self._proc.is_alive():
            try:
                self._conn.send(("close", None, ()))
                self._reply()
            except (OSError, EOFError, WorkerError):
                pass
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()


class _Remote:
    measures = True

    def __init__(self, worker, step, prepare):
        self.worker, self._step, self._prepare = worker, step, prepare
        self.last_seconds = None

    def quiet(self):
        return self.worker.quiet()

    def prepare(self):
        if self._prepare is not None:
            self.worker.call(self._prepare[0], *self._prepare[1])

    def step(self):
        self.last_seconds = self.worker.call(self._step[0], *self._step[1])
