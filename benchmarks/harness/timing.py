"""Timing: contenders take turns in interleaved rounds, so that a slow stretch of the machine
hits all of them alike and every contender's step follows every other's equally often.

A contender is any object with step() (and optionally prepare(), run untimed before each timed
step). Wall time is time.perf_counter, around the call; a contender with ``measures = True``
times its step itself and leaves the seconds in ``last_seconds`` (one in a worker process of its
own: harness.isolated).

Before each turn the previous contender is waited on until it is quiet (``wait_quiet``): the
worker threads a framework leaves spinning after its step (torch's OpenMP workers: 7-8 ms after
each step on this machine) would otherwise take the cores from the next
contender's first milliseconds, a cost that one framework training alone never pays.
"""

import itertools
import math
import os
import statistics
import threading
import time

ORDERS = ("balanced", "rotate", "fixed")
ORDER_NOTES = {
    "balanced": "each contender right after every other equally often",
    "rotate": "A B C, B C A, C A B",
    "fixed": "A B C every round",
}


def balanced_orders(n):
    """Orders of range(n) for successive rounds such that, the rounds run one after another and
    the cycle repeated, every contender's turn comes right after every other contender's turn
    equally often (once per cycle) and never right after its own: n - 1 rounds a cycle (one for
    n <= 2), the first in the given order. Found by depth-first search (instant up to n = 6)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of contenders) must be an int >= 1, got {n!r}")
    if n <= 2:
        return [tuple(range(n))]
    perms = list(itertools.permutations(range(n)))

    def extend(rounds, used):
        last = rounds[-1][-1]
        if len(rounds) == n - 1:  # the cycle closes: last turn -> the first round's first
            return rounds if (last, rounds[0][0]) not in used and last != rounds[0][0] else None
        for p in perms:
            new = [(last, p[0])] + list(zip(p, p[1:]))
            if len(set(new)) < len(new) or any(a == b or (a, b) in used for a, b in new):
                continue
            found = extend(rounds + [p], used | set(new))
            if found:
                return found
        return None

    first = tuple(range(n))
    return extend([first], set(zip(first, first[1:])))


QUIET_POLL = 0.0002  # seconds between two looks of wait_quiet
QUIET_LIMIT = 0.1  # seconds wait_quiet waits at most


def running_threads():
    """How many of this process's threads other than the calling one are running or runnable
    (state R in /proc/self/task/*/stat); None where /proc cannot tell."""
    me = threading.get_native_id()
    n = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        if tid == str(me):
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended
            continue
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"R":
            n += 1
    return n


def wait_quiet(poll=QUIET_POLL, limit=QUIET_LIMIT, look=running_threads):
    """Wait until no other thread of this process is running (the worker threads a framework
    leaves spinning after its step have gone to sleep), looking every `poll` seconds, at most
    `limit` seconds (look: how many run, None if unknown); returns the seconds waited (at
    once where /proc cannot tell). The looks are frequent, so a core a spinning thread kept
    busy is handed on before it idles long (a core idle for milliseconds runs the next work
    slower on this virtual machine)."""
    clock = time.perf_counter
    start = clock()
    while True:
        n = look()
        waited = clock() - start
        if not n or waited >= limit:
            return waited
        time.sleep(poll)


def quiet(contender):
    """Wait until `contender` is quiet: its own quiet() (one in a worker process asks the worker
    to wait_quiet), or wait_quiet in this process; returns the seconds waited."""
    fn = getattr(contender, "quiet", None)
    return fn() if fn is not None else wait_quiet()


def round_orders(n, order="balanced"):
    """The cycle of contender orders (tuples of indices) time_interleaved runs its rounds in:
    'balanced' (default): every contender follows every other equally often (balanced_orders);
    'rotate': A B C, B C A, C A B (with three contenders A follows C in two turns of three and
    B in one); 'fixed': A B C every round."""
    if order == "balanced":
        return balanced_orders(n)
    if order == "rotate":
        return [tuple(range(k, n)) + tuple(range(k)) for k in range(n)]
    if order == "fixed":
        return [tuple(range(n))]
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def time_interleaved(
    contenders,
    warmup,
    repeats=None,
    min_time=2.0,
    min_repeats=5,
    max_repeats=200,
    run_length=1,
    order="balanced",
    settle=0.0,
    quiet_turns=True,
    log=None,
):
    """{name: [seconds per step]} over interleaved rounds, one turn of each contender a round,
    the rounds in the orders of round_orders(len(contenders), order): by default a cycle of
    rounds in which every contender's turn follows every other's equally often, so that what
    the preceding step left in the caches weighs on all alike. A contender's turn is
    `run_length` steps back to back, each timed: 1 (the default) puts every step right after
    another contender's; more measures steps as a training loop runs them, mostly after a step
    of their own. The first `warmup` rounds are not kept. Without `repeats`, enough rounds for
    each contender to be sampled ~min_time seconds (at least min_repeats and at most
    max_repeats steps per contender). The timed rounds are rounded up to whole cycles. `settle`
    seconds of sleep (untimed) before each turn idle the machine for that long. With
    `quiet_turns` (the default) each turn starts once the previous contender is quiet (quiet():
    torch's OpenMP workers keep spinning for 7-8 ms after a step on this machine), untimed.
    `log`, a list, receives (name, previous, seconds) for every kept step in the order they ran:
    previous is the contender whose step ran just before it (itself within a turn, None for
    the very first step), for analyses by predecessor (bench_threads --by-previous)."""
    names = list(contenders)
    cycle = [[names[i] for i in o] for o in round_orders(len(names), order)]
    samples = {n: [] for n in names}
    last = {n: 0.0 for n in names}
    perf = time.perf_counter
    r = 0
    total = None
    ran = None  # the contender of the step run last (at a turn's start: the previous turn's)
    while total is None or r < warmup + total:
        for n in cycle[r % len(cycle)]:
            step = contenders[n].step
            prepare = getattr(contenders[n], "prepare", None)
            if quiet_turns and ran is not None:
                quiet(contenders[ran])
            if settle > 0:
                time.sleep(settle)
            measures = getattr(contenders[n], "measures", False)
            for _ in range(run_length):
                if prepare is not None:
                    prepare()
                t0 = perf()
                step()
                dt = perf() - t0
                if measures:  # a contender that times its own step (harness.isolated)
                    dt = contenders[n].last_seconds
                last[n] = dt
                if r >= warmup:
                    samples[n].append(dt)
                    if log is not None:
                        log.append((n, ran, dt))
                ran = n
        r += 1
        if total is None and r >= warmup:
            if repeats is not None:
                total = repeats
            else:
                slowest = max(last.values())
                steps = min(max_repeats, max(min_repeats, math.ceil(min_time / slowest)))
                total = math.ceil(steps / run_length)
            total = math.ceil(total / len(cycle)) * len(cycle)
    return samples


def calibrate(fn, target):
    """Calls of fn per sample so that one sample takes about `target` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 16:
            return max(1, int(round(n * target / max(dt, 1e-9))))
        n *= 4


def time_batched(fns, repeats, warmup, target, clock=time.perf_counter):
    """[(median, min, max) seconds per call] of each fn: samples of a calibrated number of calls
    (about `target` seconds each), interleaved A B A B ..., the first `warmup` rounds not kept.
    For calls too short to time one by one (microseconds)."""
    ns = [calibrate(fn, target) for fn in fns]
    samples = [[] for _ in fns]
    for r in range(warmup + repeats):
        for i, (fn, n) in enumerate(zip(fns, ns)):
            t0 = clock()
            for _ in range(n):
                fn()
            dt = (clock() - t0) / n
            if r >= warmup:
                samples[i].append(dt)
    return [(statistics.median(s), min(s), max(s)) for s in samples]


class Call:
    """A plain function as a contender: step() calls it."""

    def __init__(self, fn):
        self.step = fn


class Idle:
    """Busy-waits `ms` milliseconds on step(), touching no arrays: only time passes (the loop
    keeps the core busy, so no sleep state or frequency drop is involved). A predecessor that
    shows what the mere passing of time costs the next step (machine.eviction_probe)."""

    def __init__(self, ms):
        if not 0 < ms < float("inf"):
            raise ValueError(f"idle time must be a finite number of ms > 0, got {ms!r}")
        self.ms, self.seconds = ms, ms / 1e3

    @property
    def name(self):
        return f"idle {self.ms:g} ms"

    def step(self):
        perf = time.perf_counter
        t0 = perf()
        while perf() - t0 < self.seconds:
            pass


def time_after(subjects, predecessors, rounds, warmup=5, on_timed=None):
    """{(predecessor, subject): [seconds]}: each subject's step timed right after one untimed
    step of each predecessor ("itself": the subject's own step). subjects, predecessors:
    {name: object with step()}. Within a round the (predecessor, subject) pairs run in an order
    that rotates by one every round; the first `warmup` rounds are not kept. on_timed: None, or
    a pair of callables (before, after) of (predecessor, subject, kept) run right around each
    timed step, outside the timer (how framework_cost reads its per-step kernel timers)."""
    pairs = [(p, s) for p in ["itself"] + list(predecessors) for s in subjects]
    out = {pair: [] for pair in pairs}
    perf = time.perf_counter
    for r in range(warmup + rounds):
        k = r % len(pairs)
        for p, s in pairs[k:] + pairs[:k]:
            subject = subjects[s].step
            (subject if p == "itself" else predecessors[p].step)()
            if on_timed is not None:
                on_timed[0](p, s, r >= warmup)
            t0 = perf()
            subject()
            dt = perf() - t0
            if r >= warmup:
                out[(p, s)].append(dt)
            if on_timed is not None:
                on_timed[1](p, s, r >= warmup)
    return out
