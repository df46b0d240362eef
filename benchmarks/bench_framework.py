"""What minigrad's framework costs around its kernels, and how much that depends on what ran
just before a step.

For each cell at one size (default 32x20x50x50), two subjects: minigrad (modules, tape,
optimizer: the whole training step) and kernels (the same step calling minigrad's compiled
kernels by hand: no tape, modules or optimizer objects). The framework's cost is the difference
of their median step times. Each subject's step is timed right after one untimed step of a
predecessor: itself (as in a training loop), the NumPy reference, and torch when installed (as
in bench_rnn's interleaved protocol, where every step follows another library's). The 95%
interval of each difference comes from resampling whole rounds. Before timing, the contenders'
losses and gradients are checked against each other.

    python benchmarks/bench_framework.py [options]

--parts splits the kernels-by-hand step into the time inside its kernel calls and the rest (its
Python and NumPy glue). --stub replaces the sequence kernels by functions returning stored
results while timing: what remains is the framework's cost with no kernel running between its
parts. --idle 1,5 adds predecessors that only busy-wait that many milliseconds: what the mere
passing of time costs a step on this machine. --numpy also times the NumPy reference as a
subject, for ratios to it after the same predecessor. --probe measures the cache eviction
directly: the time to read a buffer again right after reading it and after each --idle wait.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks.harness import threads  # noqa: E402  (imports no numpy)

if __name__ == "__main__":
    threads.set_env(1)  # bench_rnn's default thread setting, before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402

from benchmarks.harness import cli, machine  # noqa: E402
from benchmarks.harness.framework_cost import SUBJECTS, run  # noqa: E402
from benchmarks.harness.problem import parse_cells, parse_sizes, size_name  # noqa: E402
from benchmarks.harness.timing import Idle  # noqa: E402


def print_result(res):
    rows = res["rows"]
    numpy = bool(rows) and "numpy_us" in rows[0]
    parts = bool(rows) and "kernels_glue_us" in rows[0]
    print(
        f"\n{res['cell']} {size_name(tuple(res['size']))}, {res['rounds']} rounds"
        + (", sequence kernels stubbed" if res.get("stub") else "")
    )
    header = ["after", "minigrad us", "kernels us", "framework us (95%)"]
    header += ["numpy us", "minigrad/numpy (95%)", "kernels/numpy (95%)"] if numpy else []
    header += ["kernel calls us", "glue us"] if parts else []
    table = []
    for r in rows:
        lo, hi = r["framework_ci95_us"]
        cells = [
            r["after"],
            f"{r['minigrad_us']:.0f}",
            f"{r['kernels_us']:.0f}",
            f"{r['framework_us']:.0f} ({lo:.0f}-{hi:.0f})",
        ]
        if numpy:
            cells.append(f"{r['numpy_us']:.0f}")
            for s in SUBJECTS:
                lo_s, hi_s = r[f"{s}_vs_numpy_ci95"]
                cells.append(f"{r[s + '_vs_numpy']:.3f} ({lo_s:.2f}-{hi_s:.2f})")
        if parts:
            cells += [f"{r['kernels_inside_calls_us']:.0f}", f"{r['kernels_glue_us']:.0f}"]
        table.append(cells)
    legend = (
        "median us of a step timed right after one step of `after`; framework = minigrad "
        "- kernels, 95% bootstrap interval over rounds"
    )
    if numpy:
        legend += "; minigrad/numpy, kernels/numpy: ratios of medians after the same predecessor"
    if parts:
        legend += "; kernel calls, glue: the kernels step's time inside kernel calls and the rest"
    cli.print_table(header, table, legend)


def print_probe(probe):
    waits = sorted(next(iter(probe.values())))
    print("\neviction probe")
    cli.print_table(
        ["buffer"] + [f"{m:g} ms" for m in waits],
        [[f"{kib} KiB"] + [f"{row[m]:.1f}" for m in waits] for kib, row in probe.items()],
        "median us to read the buffer again, one cache line at a time in random "
        "order, right after reading it (0 ms) and after busy-waiting that long",
        left=0,
    )


def parse_ms(text):
    """'1,5' -> (1.0, 5.0): idle times in milliseconds, each > 0; '' -> ()."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(Idle(float(part)).ms)  # Idle holds the rule: finite and > 0
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"idle times must be finite milliseconds > 0, got {part!r}"
            ) from None
    return tuple(out)


def build_parser():
    ap = cli.parser(__doc__)
    ap.add_argument(
        "--cells",
        default="rnn,lstm,gru",
        type=parse_cells,
        help="cell types to run, comma-separated",
    )
    ap.add_argument(
        "--sizes", default="32x20x50x50", type=parse_sizes, help="BxTxIxH,... sizes to run"
    )
    ap.add_argument("--rounds", type=int, default=300, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=5, help="discarded rounds")
    cli.add_flags(
        ap,
        [
            ("--no-torch", "leave torch out"),
            ("--parts", "also split the kernels-by-hand step into kernel calls and glue"),
            ("--stub", "sequence kernels return stored results: the framework without them"),
            ("--numpy", "time the NumPy reference as a subject too: ratios to it per row"),
        ],
    )
    ap.add_argument(
        "--idle",
        default=None,
        type=parse_ms,
        help="MS,...: also time each step after busy-waiting that long (default: no waits)",
    )
    ap.add_argument(
        "--probe",
        action="store_true",
        help="first measure how fast this machine evicts an untouched buffer "
        "(after the --idle waits, or 1 and 5 ms)",
    )
    ap.add_argument("--json", default=None, help="file for the results as JSON (default: none)")
    return ap


def main(argv=None):
    ap = build_parser()
    a = ap.parse_args(argv)
    cli.at_least(ap, rounds=(a.rounds, 1), warmup=(a.warmup, 0))
    idle = a.idle or ()
    threads.apply(1)
    use_torch = not a.no_torch and threads.torch_available()
    info = machine.machine_info()
    print(
        f"minigrad's framework cost: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
        f"1 thread, git {info.get('git_commit', '?')}, "
        f"torch {info.get('torch') if use_torch else 'not used'}"
    )
    probe = None
    if a.probe:
        probe = machine.eviction_probe(idle_ms=idle or (1, 5))
        print_probe(probe)
    results = []
    for size in a.sizes:
        for cell in a.cells:
            res = run(cell, size, a.rounds, use_torch, a.warmup, a.parts, a.stub, idle, a.numpy)
            print_result(res)
            results.append(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "results": results,
                    "eviction_probe_us": None if probe is None else machine.probe_json(probe),
                },
                f,
                indent=1,
            )
        print(f"JSON: {a.json}")
    return results


if __name__ == "__main__":
    main()
