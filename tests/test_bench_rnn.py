"""benchmarks/bench_rnn.py and the harness under it: a smoke run on a tiny size, the agreement
check that guards it, the interleaving, the bootstrap intervals and the eviction probe.

No timing is asserted anywhere: timings depend on the machine and its load.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest

import minigrad
from benchmarks import bench_rnn
from benchmarks.harness import agreement, contenders, machine, problem, stats, threads, timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = (2, 3, 4, 5)  # B, T, I, H
HAVE_TORCH = threads.torch_available()
NAMES = ["minigrad", "numpy"] + (["torch"] if HAVE_TORCH else [])


ENTRIES = {
    "script": [os.path.join("benchmarks", "bench_rnn.py")],
    "module": ["-m", "benchmarks.bench_rnn"],
    "package": ["-m", "benchmarks"],
}


def run_bench(tmp_path, *args, entry="script"):
    out = tmp_path / "bench.json"
    entry = ENTRIES[entry]
    cmd = [
        sys.executable,
        *entry,
        "--sizes",
        "x".join(map(str, TINY)),
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--sgemm-n",
        "128",
        "--json",
        str(out),
        "--plot",
        str(tmp_path / "bench.png"),
        *args,
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"bench failed:\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    with open(out) as f:
        return json.load(f), p.stdout


def test_smoke_json_has_every_cell_size_and_contender(tmp_path):
    doc, stdout = run_bench(tmp_path)
    assert doc["contenders"] == NAMES
    assert doc["threads"]["requested"] == threads.DEFAULT_THREADS
    # the roofline rate is the median of every SGEMM run: 5 at start-up, 5 before each row
    assert len(doc["sgemm_samples_gflops"]) == 5 + bench_rnn.SGEMM_PER_ROW * len(problem.CELLS)
    assert doc["roofline_rate_gflops"] == pytest.approx(np.median(doc["sgemm_samples_gflops"]))
    assert doc["sgemm_best_gflops_run"] == max(doc["sgemm_samples_gflops"])
    got = {(r["cell"], tuple(r["size"])) for r in doc["results"]}
    assert got == {(c, TINY) for c in problem.CELLS}
    for r in doc["results"]:
        assert r["gemm_flops"] == problem.gemm_flops(TINY, r["cell"])
        assert len(r["sgemm_samples_gflops"]) == bench_rnn.SGEMM_PER_ROW
        assert set(r["sgemm_samples_gflops"]) <= set(doc["sgemm_samples_gflops"])
        assert r["gemm_time_s"] == pytest.approx(
            r["gemm_flops"] / (doc["roofline_rate_gflops"] * 1e9)
        )
        assert set(r["contenders"]) == set(NAMES), r["cell"]
        for name, c in r["contenders"].items():
            where = f"{r['cell']} {name}"
            # --repeats 1, rounded up to one whole cycle of the balanced order
            cycle = max(1, len(NAMES) - 1)
            assert c["repeats"] == cycle and len(c["samples_s"]) == cycle, where
            assert c["min_s"] <= c["median_s"] <= c["max_s"], where
            assert c["roofline_fraction"] == pytest.approx(r["gemm_time_s"] / c["median_s"]), where
            # at the run's best SGEMM rate the GEMM-only time is shorter: a smaller fraction
            assert 0 < c["roofline_fraction_best_rate"] <= c["roofline_fraction"] * (1 + 1e-12), (
                where
            )
            assert "peak_bytes" in c["memory"], where
            if name != "numpy":
                assert c["ratio_vs_numpy"] > 0, where
                lo, hi = c["ratio_vs_numpy_ci95"]
                if cycle == 1:  # one round: every resample is that round, the point itself
                    assert lo == pytest.approx(c["ratio_vs_numpy"]) == pytest.approx(hi), where
                else:
                    assert lo <= c["ratio_vs_numpy"] * (1 + 1e-12) and c["ratio_vs_numpy"] <= hi * (
                        1 + 1e-12
                    ), where
        for name, errs in r["agreement_rel_err"].items():
            assert max(errs.values()) <= agreement.GRAD_RTOL, (r["cell"], name, errs)
    for name in NAMES:
        assert name in stdout
    assert "threads: 1" in stdout
    assert stdout.count("legend: ") == 1  # the table says what its columns mean
    # the cache-eviction probe is opt-in (--probe): not in this run, nor in its JSON
    assert not any(k.startswith("eviction_probe") for k in doc)
    assert "cache eviction" not in stdout


def _agreeing_with_minigrad(cell, name):
    """Checks that contender `name`'s loss and every gradient agree with the NumPy reference's
    and minigrad's on a tiny problem; returns (minigrad, name) contenders built on one copy of
    the same weights and data each, to step side by side."""
    errors = agreement.verify(cell, TINY, ["numpy", "minigrad", name])
    assert max(errors[name].values()) <= agreement.GRAD_RTOL, errors[name]
    params, x, target = problem.make_problem(cell, TINY)
    return tuple(
        contenders.CONTENDERS[n](cell, problem.copy_params(params), x, target)
        for n in ("minigrad", name)
    )


@pytest.mark.parametrize("cell", problem.CELLS)
def test_kernels_contender_computes_the_same_step(cell):
    """--kernels adds minigrad's kernels called by hand (no tape): its loss and every gradient
    agree with the NumPy reference and with minigrad's, and its step updates the weights as
    minigrad's does."""
    mg, kn = _agreeing_with_minigrad(cell, "kernels")
    for _ in range(3):
        mg.step(), kn.step()
    for name, v in kn.p.items():
        np.testing.assert_allclose(v, mg.P[name].data, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("cell", problem.CELLS)
def test_unrolled_contender_is_the_cell_by_cell_tape_and_computes_the_same_step(cell):
    """--unrolled adds minigrad with impl="step" modules: T cell-step nodes on the tape, not one
    sequence node; its loss and gradients agree with the NumPy reference, and its steps update
    the weights as the sequence modules' do."""
    fused, unrolled = _agreeing_with_minigrad(cell, "unrolled")
    assert fused.rnn.impl == "sequence" and unrolled.rnn.impl == "step"
    nodes = set()
    stack = [unrolled._loss()._ctx]
    while stack:
        node = stack.pop()
        nodes.add(type(node).__name__)
        stack.extend(t._ctx for t in node.inputs if t is not None and t._ctx is not None)
    assert f"{cell.upper()}CellStep" in nodes and not any(n.endswith("Sequence") for n in nodes)
    for _ in range(3):
        fused.step(), unrolled.step()
    for name, p in unrolled.P.items():
        np.testing.assert_allclose(p.data, fused.P[name].data, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("entry", ["module", "package"])
def test_module_entry_points_and_filters(tmp_path, entry):
    """python -m benchmarks.bench_rnn and python -m benchmarks: the same run, the threads set
    before NumPy's import; --probe adds the cache-eviction probe at start and end."""
    doc, stdout = run_bench(
        tmp_path,
        "--cells",
        "gru",
        "--threads",
        "2",
        "--no-torch",
        "--no-memory",
        "--no-plot",
        "--run-length",
        "2",
        "--probe",
        entry=entry,
    )
    assert [r["cell"] for r in doc["results"]] == ["gru"]
    assert doc["run_length"] == 2 and "2 steps back to back per turn" in stdout
    assert all(c["repeats"] == 2 for c in doc["results"][0]["contenders"].values())
    assert doc["contenders"] == ["minigrad", "numpy"]
    assert doc["threads"]["requested"] == 2
    assert doc["threads"]["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert doc["threads"]["env_set_before_numpy_import"] is True
    for when in ("start", "end"):  # --probe: the machine's cache eviction, before and after
        probe = doc[f"eviction_probe_{when}_us"]
        assert list(probe) == ["64"] and sorted(probe["64"]) == ["0", "1", "5"], probe
        assert all(v > 0 for v in probe["64"].values())
    assert stdout.count("cache eviction: a 64 KiB buffer") == 2


@pytest.mark.parametrize("cell", problem.CELLS)
def test_agreement_passes_with_the_same_weights(cell):
    errors = agreement.verify(cell, TINY, NAMES)
    assert set(errors) == set(NAMES) - {"numpy"}
    for e in errors.values():
        assert "loss" in e and "weight_hh_l0" in e and "fc.weight" in e and "step_loss" in e


@pytest.mark.parametrize("victim", NAMES)
@pytest.mark.parametrize("cell", problem.CELLS)
def test_agreement_rejects_different_weights(cell, victim):
    params, _, _ = problem.make_problem(cell, TINY)
    wrong = {k: v.copy() for k, v in params.items()}
    wrong["weight_hh_l0"] = wrong["weight_hh_l0"] * np.float32(1.01)  # 1% off: small but real
    with pytest.raises(agreement.MismatchError, match=victim if victim != "numpy" else "disagree"):
        agreement.verify(cell, TINY, NAMES, overrides={victim: wrong})


def test_check_agreement_names_the_wrong_gradient():
    g = {"w": np.ones(4, np.float32), "b": np.ones(2, np.float32)}
    ok = agreement.check_agreement({"numpy": (1.0, g), "x": (1.0 + 1e-6, dict(g))})
    assert ok["x"]["w"] == 0.0
    bad = dict(g, b=np.array([1.0, 1.1], np.float32))
    with pytest.raises(agreement.MismatchError, match="x gradient b"):
        agreement.check_agreement({"numpy": (1.0, g), "x": (1.0, bad)})
    with pytest.raises(agreement.MismatchError, match="x loss"):
        agreement.check_agreement({"numpy": (1.0, g), "x": (1.01, g)})
    with pytest.raises(agreement.MismatchError, match="missing"):
        agreement.check_agreement({"numpy": (1.0, g), "x": (1.0, {"w": g["w"]})})


class _Recorder:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def step(self):
        self.log.append(self.name)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_balanced_orders_put_every_contender_after_every_other_once_a_cycle(n):
    orders = timing.balanced_orders(n)
    assert len(orders) == max(1, n - 1) and orders[0] == tuple(range(n))
    assert all(sorted(o) == list(range(n)) for o in orders)
    seq = [i for o in orders for i in o]
    pairs = list(zip(seq, seq[1:] + seq[:1]))  # the cycle repeats: last -> first
    if n >= 2:
        assert sorted(pairs) == [(a, b) for a in range(n) for b in range(n) if a != b]


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3"])
def test_balanced_orders_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match=r"int >= 1, got"):
        timing.balanced_orders(bad)


def _predecessors(log, run_length):
    turns = log[::run_length]
    assert all(
        log[i : i + run_length] == [turns[i // run_length]] * run_length
        for i in range(0, len(log), run_length)
    )
    return Counter(zip(turns, turns[1:]))


@pytest.mark.parametrize("run_length", [1, 3])
@pytest.mark.parametrize("names", ["ab", "abc", "abcd", "abcde"])
def test_time_interleaved_balances_predecessors_over_turns_of_run_length_steps(run_length, names):
    log = []
    contenders = {n: _Recorder(n, log) for n in names}
    samples = timing.time_interleaved(
        contenders, warmup=0, repeats=2 * len(names), run_length=run_length
    )
    rounds = -(-2 * len(names) // max(1, len(names) - 1)) * max(1, len(names) - 1)
    assert {n: len(s) for n, s in samples.items()} == {n: rounds * run_length for n in names}
    assert all(t >= 0 for s in samples.values() for t in s)
    pred = _predecessors(log, run_length)
    assert all(a != b for a, b in pred)  # never after its own turn
    counts = {(a, b): pred[(a, b)] for a in names for b in names if a != b}
    assert max(counts.values()) - min(counts.values()) <= 1, counts


@pytest.mark.parametrize(
    "order, turns",
    [
        ("rotate", [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]),
        ("fixed", [["a", "b", "c"]] * 4),
        # 3 timed rounds rounded up to 4, two cycles of (a b c, a c b)
        ("balanced", [["a", "b", "c"], ["a", "c", "b"]] * 2 + [["a", "b", "c"]]),
    ],
)
def test_time_interleaved_orders(order, turns):
    """The previous default ('rotate') and A B C every round ('fixed') stay available; with
    three contenders, rotate puts a after c in two turns of three and b after a in two."""
    log = []
    contenders = {n: _Recorder(n, log) for n in "abc"}
    samples = timing.time_interleaved(contenders, warmup=1, repeats=3, order=order)
    assert log == [n for turn in turns for n in turn]
    assert {n: len(s) for n, s in samples.items()} == {n: len(turns) - 1 for n in "abc"}
    with pytest.raises(ValueError, match="order must be one of"):
        timing.round_orders(3, "random")


def test_time_interleaved_settles_before_every_turn_untimed(monkeypatch):
    """settle: one sleep of that length before each turn (not inside a timed step)."""
    log, sleeps = [], []
    monkeypatch.setattr(timing.time, "sleep", lambda s: (sleeps.append(s), log.append("sleep")))
    contenders = {n: _Recorder(n, log) for n in "ab"}
    timing.time_interleaved(
        contenders, warmup=0, repeats=2, run_length=2, settle=0.01, quiet_turns=False
    )
    assert sleeps == [0.01] * 4  # 2 rounds x 2 contenders
    turns = [log[i : i + 3] for i in range(0, len(log), 3)]
    assert len(turns) * 3 == len(log) == 12
    for turn in turns:  # a sleep, then the turn's two steps of one contender
        assert turn[0] == "sleep" and turn[1] == turn[2] in ("a", "b"), log


class _Quiet(_Recorder):
    def quiet(self):
        self.log.append("quiet " + self.name)
        return 0.0


def test_time_interleaved_waits_for_the_previous_contender_before_every_turn(monkeypatch):
    """quiet_turns (the default): before each turn but the first, the previous contender's
    quiet(); a contender without one is waited for in this process (wait_quiet)."""
    log = []
    contenders = {n: _Quiet(n, log) for n in "ab"}
    timing.time_interleaved(contenders, warmup=0, repeats=2, run_length=2)
    assert log == ["a", "a", "quiet a", "b", "b", "quiet b", "a", "a", "quiet a", "b", "b"]
    log.clear()
    timing.time_interleaved(contenders, warmup=0, repeats=2, quiet_turns=False)
    assert log == ["a", "b", "a", "b"]
    looks = iter([2, 1, 0])
    waits = []
    real = timing.wait_quiet
    monkeypatch.setattr(
        timing, "wait_quiet", lambda: waits.append(real(look=lambda: next(looks), poll=0))
    )
    timing.time_interleaved({n: _Recorder(n, log) for n in "ab"}, warmup=0, repeats=1)
    assert len(waits) == 1 and next(looks, "done") == "done"  # looked until nothing ran


def _hash_for(seconds, ended):
    data = b"x" * (1 << 20)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        hashlib.sha256(data).digest()  # runs without the GIL
    ended.append(time.perf_counter())


def test_wait_quiet_waits_for_a_running_thread_and_not_for_sleeping_ones():
    timing.wait_quiet(limit=5)  # whatever earlier tests left running
    assert timing.running_threads() == 0
    ended = []
    th = threading.Thread(target=_hash_for, args=(0.3, ended))
    th.start()
    assert timing.wait_quiet(limit=0.05) >= 0.05  # the limit
    timing.wait_quiet(limit=5)
    returned = time.perf_counter()
    th.join()
    assert ended and returned >= ended[0] - 0.01  # it returned only once the thread had ended
    a = np.ones((256, 256), np.float32)
    old = minigrad.get_num_threads()
    minigrad.set_num_threads(2)
    try:
        minigrad.kernels.matmul(a, a)  # a job on the kernels' pool: its workers go back to sleep
        assert timing.wait_quiet(limit=1) < 0.5
    finally:
        minigrad.set_num_threads(old)

    rng = np.random.default_rng(0)
    drift = np.exp(rng.normal(0, 0.5, 60))  # the machine's speed, round by round
    b = 3.0 * drift
    # a is exactly half of b in every round: however rounds are drawn, the ratio is 0.5
    lo, hi = stats.ratio_interval(0.5 * b, b)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    # independent noise: the interval brackets the point ratio and has width
    a = 1.5 * drift * np.exp(rng.normal(0, 0.2, 60))
    point = np.median(a) / np.median(b)
    lo, hi = stats.ratio_interval(a, b)
    assert lo < point < hi and hi - lo > 0.01
    assert stats.ratio_interval(a, b) == (lo, hi)  # deterministic
    # more noise, wider interval
    a2 = 1.5 * drift * np.exp(rng.normal(0, 0.6, 60))
    lo2, hi2 = stats.ratio_interval(a2, b)
    assert hi2 - lo2 > hi - lo


def test_ratio_interval_resamples_whole_rounds_of_run_length():
    # rounds of 2 steps, a slow step and a fast one for a: drawn by rounds, every resample is
    # half slow, so a's median is always (10 + 1) / 2; drawn step by step it swings from 1 to 10
    a = np.tile([10.0, 1.0], 30)
    b = np.full(60, 2.0)
    assert stats.ratio_interval(a, b, run_length=2) == (2.75, 2.75)
    lo, hi = stats.ratio_interval(a, b, run_length=1)
    assert lo == 0.5 and hi == 5.0
    with pytest.raises(ValueError, match="whole rounds of 2 steps.*got 59 and 60"):
        stats.ratio_interval(a[:-1], b, run_length=2)


def test_gemm_flops_counts_the_gemms_the_step_needs():
    """Forward: input and recurrent GEMMs; backward: dW_ih, dh per step, dW_hh, but no dx (the
    input needs no gradient); the readout forward and backward (dW, dh)."""
    B, T, I, H = 2, 3, 4, 5
    G = 4
    inp = 2 * T * B * I * G * H  # X @ W_ih.T, and dW_ih = dG.T @ X
    rec = 2 * T * B * H * G * H  # h @ W_hh.T; dG @ W_hh; dW_hh = dG.T @ h
    out = 2 * B * H * problem.OUT
    assert problem.gemm_flops((B, T, I, H), "lstm") == 2 * inp + 3 * rec + 3 * out
    assert problem.gemm_flops((B, T, I, H), "gru") == (2 * inp + 3 * rec) * 3 // 4 + 3 * out


@pytest.mark.parametrize("flag", ["--run-length", "--threads"])
def test_nonpositive_counts_are_rejected_naming_the_value(flag, capsys):
    with pytest.raises(SystemExit):
        bench_rnn.main([flag, "0", "--no-plot"])
    err = capsys.readouterr().err
    assert f"{flag} must be >= 1, got 0" in err


def test_parse_sizes_and_cells():
    assert problem.parse_sizes("32x20x50x50,2x3x4x5") == [(32, 20, 50, 50), (2, 3, 4, 5)]
    with pytest.raises(argparse.ArgumentTypeError, match="size must be BxTxIxH"):
        problem.parse_sizes("32x20x50")
    assert problem.parse_cells("lstm,gru") == ["lstm", "gru"]
    with pytest.raises(argparse.ArgumentTypeError, match="cells must be among"):
        problem.parse_cells("lstm,transformer")


def test_idle_busy_waits_its_time_and_names_itself():
    idle = timing.Idle(2)
    assert idle.name == "idle 2 ms"
    t0 = timing.time.perf_counter()
    idle.step()
    assert timing.time.perf_counter() - t0 >= 0.002  # it waits at least that long
    assert timing.Idle(0.5).name == "idle 0.5 ms"
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"idle time must be a finite number of ms > 0, got"):
            timing.Idle(bad)


def test_eviction_probe_times_every_buffer_after_every_wait(monkeypatch):
    waited = []
    monkeypatch.setattr(timing.Idle, "step", lambda self: waited.append(self.ms))
    out = machine.eviction_probe(kib=(4, 16), idle_ms=(1, 3), rounds=7)
    assert sorted(out) == [4, 16]
    for row in out.values():
        assert sorted(row) == [0, 1, 3]
        assert all(v > 0 for v in row.values())
    # each buffer: every round waits once per idle time, never for the 0 ms condition
    assert sorted(waited) == sorted([1] * 14 + [3] * 14)


def test_eviction_probe_rejects_bad_sizes_waits_and_rounds():
    for kib in ((), (0,), (-4,), (1.5,)):
        with pytest.raises(ValueError, match=r"kib must be buffer sizes in KiB .*got"):
            machine.eviction_probe(kib=kib, idle_ms=(1,), rounds=1)
    with pytest.raises(ValueError, match=r"idle time must be .* got 0"):
        machine.eviction_probe(kib=(4,), idle_ms=(0,), rounds=1)
    with pytest.raises(ValueError, match=r"rounds must be >= 1, got 0"):
        machine.eviction_probe(kib=(4,), idle_ms=(1,), rounds=0)


def test_probe_json_and_line_give_every_wait():
    probe = {64: {0: 3.5, 1: 17.25, 5: 46.0}}
    assert machine.probe_json(probe) == {"64": {"0": 3.5, "1": 17.25, "5": 46.0}}
    line = machine.probe_line(probe)
    assert "64 KiB" in line and "3.5 us right after" in line
    assert "17 after 1 ms, 46 after 5 ms" in line


def test_time_interleaved_logs_each_kept_step_with_the_step_before_it():
    log = []
    contenders = {n: _Recorder(n, []) for n in "ab"}
    samples = timing.time_interleaved(
        contenders, warmup=1, repeats=2, run_length=2, order="fixed", quiet_turns=False, log=log
    )
    # round 0 (warm-up) is a a b b; the kept rounds follow its last step (b)
    assert [(n, p) for n, p, _ in log] == [
        ("a", "b"), ("a", "a"), ("b", "a"), ("b", "b"),
        ("a", "b"), ("a", "a"), ("b", "a"), ("b", "b"),
    ]  # fmt: skip
    assert sorted(s for n, _, s in log if n == "a") == sorted(samples["a"])
