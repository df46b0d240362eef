"""benchmarks/harness/isolated.py: contenders in worker processes of their own. What the
workers report, how their failures reach the parent, and that time_interleaved takes the time
a worker measured. No timing threshold is asserted."""

import hashlib
import os
import threading
import time

import pytest

from benchmarks.harness import isolated, timing


class Sleeper:
    """A contender whose step sleeps `seconds` (in the worker)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.steps = 0
        self.prepared = []

    def step(self):
        time.sleep(self.seconds)
        self.steps += 1

    def count(self):
        return self.steps

    def pid(self):
        return os.getpid()

    def env(self, name):
        return os.environ.get(name)

    def part_prepare(self, name):
        self.prepared.append(name)

    def part_step(self, name):
        return 0.125 if name == "fixed" else -1.0

    def fail(self):
        raise ValueError("a bad call")

    def run_in_background(self, seconds):
        """Start a thread that keeps a core busy for `seconds` (hashing, which runs without the
        GIL) and return at once, as a framework's spinning workers outlive its step."""
        threading.Thread(target=busy, args=(seconds,), daemon=True).start()


def busy(seconds):
    """Keep this thread running, outside the GIL, for `seconds`."""
    data = b"x" * (1 << 20)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(data).digest()


class Broken:
    def __init__(self):
        raise RuntimeError("cannot build")


def test_a_worker_steps_in_its_own_process_and_reports_its_own_time():
    w = isolated.Isolated(Sleeper, 0.02, env={"MG_TEST_VAR": "42"})
    try:
        assert w.call("pid") != os.getpid()
        assert w.call("env", "MG_TEST_VAR") == "42"
        assert "MG_TEST_VAR" not in os.environ  # the parent's environment is left as it was
        w.step()
        assert w.call("count") == 1 and w.last_seconds >= 0.02
        part = w.part("fixed")
        part.prepare()
        part.step()
        assert part.last_seconds == 0.125 and w.call("count") == 1
    finally:
        w.close()


def test_time_interleaved_takes_the_seconds_a_contender_measured():
    w = isolated.Isolated(Sleeper, 0.0)
    try:
        samples = timing.time_interleaved({"fixed": w.part("fixed")}, warmup=1, repeats=3)
        assert samples == {"fixed": [0.125, 0.125, 0.125]}  # not the pipe's round trip
    finally:
        w.close()


def test_failures_in_the_worker_reach_the_parent_with_their_traceback():
    with pytest.raises(isolated.WorkerError, match="cannot build"):
        isolated.Isolated(Broken)
    w = isolated.Isolated(Sleeper, 0.0)
    try:
        with pytest.raises(isolated.WorkerError, match="ValueError: a bad call"):
            w.call("fail")
        assert w.call("count") == 0  # the worker goes on serving after a failed call
    finally:
        w.close()
    w.close()  # closing twice is harmless


def test_quiet_waits_until_the_workers_threads_stop_running():
    """quiet() returns once no thread of the worker runs: after a call that leaves a thread
    busy for 60 ms it waits for that thread (within timing.QUIET_LIMIT); with nothing running
    it returns at once."""
    assert timing.QUIET_LIMIT > 0.06
    w = isolated.Isolated(Sleeper, 0.0)
    try:
        w.call("run_in_background", 0.06)
        t0 = time.perf_counter()
        waited = w.quiet()
        elapsed = time.perf_counter() - t0
        assert 0.03 <= waited <= elapsed
        assert w.remote(("count", ()), None).quiet() < 0.03  # the thread has ended
    finally:
        w.close()
