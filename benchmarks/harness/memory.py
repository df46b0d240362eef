"""Peak memory of a contender's training steps (memory_probe), each cell/size measured in a
fresh child process (run_children): ``python -m benchmarks.harness.memory THREADS JOBS NAMES``
is that child (JOBS: JSON [[cell, [B, T, I, H]], ...]; NAMES: contenders, comma-separated); it
prints one JSON line."""

import gc
import json
import os
import re
import subprocess
import sys
import tracemalloc

from benchmarks.harness.contenders import CONTENDERS
from benchmarks.harness.problem import copy_params, make_problem, size_name
from benchmarks.harness.threads import THREAD_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEMORY_STEPS = 2
LEGEND = (
    f"peak MiB: most memory held during the first {MEMORY_STEPS} steps of a fresh model, "
    "above what it held before (numpy, minigrad: tracemalloc; torch: its allocator "
    "records via torch.profiler); RSS MiB: the same for all as peak RSS growth (a child "
    "process per cell/size, MALLOC_MMAP_THRESHOLD_=4096; coarse, +-0.3 MiB)"
)


def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else None


def _reset_peak_rss():
    """Linux: writing 5 to /proc/self/clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _quiet_stderr:
    """Send file descriptor 2 to /dev/null for the duration (C++ logging included)."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _torch_profiled_peak(run):
    """Peak bytes held by torch's CPU allocator during run(), above the level at its start:
    torch.profiler with profile_memory=True records every allocation and free; the events'
    self_cpu_memory_usage (net bytes of each op, children excluded) is summed in order of op
    start and the running maximum taken.  A transient allocated and freed inside one op is not
    seen (a slight underestimate)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return int(peak)


def memory_probe(cell, size, names):
    """Peak memory of training, per contender, in bytes: the most memory held at any moment
    during the first MEMORY_STEPS steps of a freshly built model, minus what was held just
    before them (parameters, input and target are not counted; everything a step allocates,
    including buffers a contender keeps from one step to the next such as gradients or a
    kernel workspace cache, is).  Each contender first runs two steps at a tiny size, so that
    code loading and one-time library set-up are not counted.  Meant to run in a fresh child
    process per cell/size (run_children), started with MALLOC_MMAP_THRESHOLD_=4096.

    peak_bytes, the headline figure:
      numpy, minigrad: tracemalloc (numpy reports its array buffers to it); exact.  It counts
        bytes allocated, not pages touched (np.zeros pages never written count here).
      torch: its own allocator's records through torch.profiler (see _torch_profiled_peak),
        on a second fresh model, since torch's allocator does not report to tracemalloc.
    rss_bytes, the same method for all three (cross-check): peak RSS minus RSS before the
      steps, the peak reset through /proc/self/clear_refs; with MALLOC_MMAP_THRESHOLD_=4096
      every allocation of 4 KiB or more is mapped on allocation and unmapped on free, so RSS
      follows the live buffers.  Coarse: page granularity, allocator slack and the kernel's
      batched counters (about +-0.3 MiB)."""
    params, x, target = make_problem(cell, size)
    tiny = make_problem(cell, (2, 3, 4, 5))
    out = {}
    for n in names:
        warm = CONTENDERS[n](cell, *tiny)
        for _ in range(2):
            warm.step()
        del warm
        c = CONTENDERS[n](cell, copy_params(params), x, target)
        gc.collect()
        res = {}
        rss = _reset_peak_rss()
        base = _proc_status_kib("VmRSS") if rss else None
        traced = n != "torch"
        if traced:
            tracemalloc.start()
            cur0 = tracemalloc.get_traced_memory()[0]
        for _ in range(MEMORY_STEPS):
            c.step()
        if traced:
            res["peak_bytes"] = tracemalloc.get_traced_memory()[1] - cur0
            res["peak_method"] = "tracemalloc"
            tracemalloc.stop()
        if rss:
            res["rss_bytes"] = max(0, _proc_status_kib("VmHWM") - base) * 1024
        del c
        gc.collect()
        if not traced:
            c = CONTENDERS[n](cell, copy_params(params), x, target)
            try:
                with _quiet_stderr():  # the profiler logs to fd 2 on start and stop
                    res["peak_bytes"] = _torch_profiled_peak(
                        lambda c=c: [c.step() for _ in range(MEMORY_STEPS)]
                    )
                res["peak_method"] = "torch.profiler allocation records"
            except Exception as e:  # profiler API differences: keep the RSS figure
                res["peak_error"] = repr(e)
            del c
            gc.collect()
        out[n] = res
    return out


def run_children(jobs, threads, names):
    """{"cell/BxTxIxH": memory_probe(...)} for each (cell, size) of jobs, each in a fresh
    interpreter with `threads` BLAS threads; a failed child is reported on stderr and skipped."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4096")
    for k in THREAD_ENV:
        env[k] = str(threads)
    out = {}
    for job in jobs:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.harness.memory",
            str(threads),
            json.dumps([job]),
            ",".join(names),
        ]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            print(
                f"memory probe {job} failed (exit {p.returncode}):\n{p.stderr[-2000:]}",
                file=sys.stderr,
            )
            continue
        out.update(json.loads(p.stdout.strip().splitlines()[-1]))
    return out


def _child(argv):
    from benchmarks.harness import threads

    threads.apply(int(argv[0]))
    names = argv[2].split(",")
    out = {}
    for cell, size in json.loads(argv[1]):
        out[f"{cell}/{size_name(size)}"] = memory_probe(cell, tuple(size), names)
    print(json.dumps(out))


if __name__ == "__main__":
    _child(sys.argv[1:])
