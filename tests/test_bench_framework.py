"""benchmarks/bench_framework.py and harness.framework_cost: the protocol (each timed step right
after its predecessor), the interval of a difference of medians, and a small end-to-end run."""

import numpy as np
import pytest

from benchmarks import bench_framework as bf
from benchmarks.harness import agreement, stats, timing
from benchmarks.harness import framework_cost as fc


class _Logged:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def step(self):
        self.log.append(self.name)


def test_time_after_runs_each_predecessor_right_before_the_timed_step(monkeypatch):
    log, timed = [], []
    subjects = {"a": _Logged("a", log), "b": _Logged("b", log)}
    preds = {"p": _Logged("p", log)}
    real = timing.time.perf_counter
    marks = []

    def perf():  # the second perf_counter call of a pair ends a timed step
        marks.append(len(log))
        return real()

    monkeypatch.setattr(timing.time, "perf_counter", perf)
    out = timing.time_after(subjects, preds, rounds=3, warmup=1)
    assert set(out) == {("itself", "a"), ("itself", "b"), ("p", "a"), ("p", "b")}
    assert all(len(v) == 3 for v in out.values())
    # 4 rounds x 4 pairs, each pair: predecessor step, then the timed subject step
    assert len(log) == 4 * 4 * 2
    starts = marks[0::2]
    for i in starts:  # the step timed is the one logged right after i
        timed.append((log[i - 1], log[i]))
    for before, subject in timed:
        assert before in ("p", subject), (before, subject)
    assert sum(1 for b, s in timed if b == "p") == 4 * 2
    # the order rotates: round 0 starts with (itself, a), round 1 with (itself, b)
    assert timed[0] == ("a", "a") and timed[4] == ("b", "b")


def test_diff_interval_of_a_constant_difference_is_that_difference():
    rng = np.random.default_rng(1)
    b = rng.random(50)
    lo, hi = stats.diff_interval(b + 5.0, b)
    assert lo == pytest.approx(5.0) and hi == pytest.approx(5.0)


def test_diff_interval_widens_with_noise_and_contains_the_difference():
    rng = np.random.default_rng(2)
    b = rng.random(200)
    narrow = stats.diff_interval(b + 1 + rng.normal(0, 0.01, 200), b)
    wide = stats.diff_interval(b + 1 + rng.normal(0, 0.5, 200), b)
    assert narrow[0] < 1 < narrow[1] or narrow[0] == pytest.approx(1, abs=0.02)
    assert wide[1] - wide[0] > 5 * (narrow[1] - narrow[0])


def test_diff_interval_rejects_unpaired_samples():
    with pytest.raises(ValueError, match="the same number for both .*got 3 and 2"):
        stats.diff_interval([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least one round.*got 0 and 0"):
        stats.diff_interval([], [])


def test_main_small_run_reports_the_difference_of_the_two_subjects(tmp_path):
    path = tmp_path / "f.json"
    res = bf.main(
        [
            "--cells",
            "rnn",
            "--sizes",
            "4x3x5x6",
            "--rounds",
            "5",
            "--warmup",
            "1",
            "--no-torch",
            "--json",
            str(path),
        ]
    )
    (r,) = res
    assert [row["after"] for row in r["rows"]] == ["itself", "numpy"]
    for row in r["rows"]:
        assert row["minigrad_us"] > 0 and row["kernels_us"] > 0
        assert row["framework_us"] == pytest.approx(row["minigrad_us"] - row["kernels_us"])
        lo, hi = row["framework_ci95_us"]
        assert lo <= hi
    assert path.exists() and '"framework_us"' in path.read_text()


def test_main_rejects_bad_rounds():
    with pytest.raises(SystemExit):
        bf.main(["--rounds", "0", "--no-torch"])


def test_timed_kernels_adds_the_time_of_calls_made_through_it():
    class Fake:
        constant = 3

        def slow(self, x):
            timing.time.sleep(0.002)
            return x + 1

        def _private(self):
            return "p"

    tk = fc.TimedKernels(Fake())
    assert tk.slow(1) == 2 and tk.constant == 3 and tk._private() == "p"
    assert tk.inside >= 0.002  # the call's sleep, at least
    before = tk.inside
    tk._private()
    assert tk.inside == before  # private names are passed through untimed


def test_parts_split_the_kernels_step_into_calls_and_glue():
    res = fc.run("gru", (4, 3, 5, 6), rounds=5, use_torch=False, warmup=1, with_parts=True)
    for row in res["rows"]:
        inside, glue = row["kernels_inside_calls_us"], row["kernels_glue_us"]
        # each step's time inside kernel calls is part of that step's time, so per step
        # inside <= total and the medians keep that order (no timing threshold involved)
        assert inside > 0 and glue >= 0
        assert inside <= row["kernels_us"]


def test_stubbed_sequence_kernels_return_one_real_result_and_are_restored():
    from minigrad import kernels

    real = kernels.rnn_sequence_forward
    calls = []
    with fc.StubbedSequenceKernels("rnn"):
        stub = kernels.rnn_sequence_forward
        assert stub is not real
        x = np.ones((2, 1, 3), np.float32)
        h = np.zeros((1, 4), np.float32)
        w_ih, w_hh = np.ones((4, 3), np.float32) * 0.1, np.ones((4, 4), np.float32) * 0.1
        first = stub(x, h, w_ih, w_hh, None, None, None, "tanh")
        again = stub(x * 0, h, w_ih, w_hh, None, None, None, "tanh")  # other input: same result
        calls.append(first is again)
        want = real(x, h, w_ih, w_hh, None, None, None, "tanh")
        np.testing.assert_array_equal(first[1], want[1])
    assert calls == [True]
    assert kernels.rnn_sequence_forward is real


def test_stubbed_run_calls_each_real_sequence_kernel_once(monkeypatch):
    """With stub, the timed steps never reach the real kernels: beyond the agreement check's
    calls (made before the stubs go in), each real sequence kernel runs once, for its stored
    result; without stub, once per step of each subject."""
    from minigrad import kernels

    counts = {}
    for name in ("lstm_sequence_forward", "lstm_sequence_backward"):
        real = getattr(kernels, name)

        def counted(*a, _real=real, _name=name, **kw):
            counts[_name] = counts.get(_name, 0) + 1
            return _real(*a, **kw)

        monkeypatch.setattr(kernels, name, counted)
    size = (2, 3, 4, 5)
    agreement.verify("lstm", size, ["numpy", "minigrad", "kernels"])
    in_verify = dict(counts)
    counts.clear()
    res = fc.run("lstm", size, rounds=4, use_torch=False, warmup=1, stub=True)
    assert res["stub"] is True
    assert counts == {n: in_verify[n] + 1 for n in in_verify}, (counts, in_verify)
    counts.clear()
    fc.run("lstm", size, rounds=4, use_torch=False, warmup=1)
    steps = (4 + 1) * 2 * 2 * 2  # rounds x (itself, numpy) x 2 subjects x 2 steps per timing
    assert all(counts[n] >= in_verify[n] + steps // 2 for n in in_verify), (counts, in_verify)


def test_stubbed_sequence_kernels_reject_an_unknown_cell():
    with pytest.raises(ValueError, match=r"cell must be one of .*got 'lstn'"):
        fc.StubbedSequenceKernels("lstn")


def test_parse_ms_reads_positive_milliseconds():
    assert bf.parse_ms("1,5") == (1.0, 5.0)
    assert bf.parse_ms(" 0.5 , 2") == (0.5, 2.0)
    assert bf.parse_ms("") == ()
    for bad in ("0", "-1", "x", "1,nan", "inf"):
        with pytest.raises(bf.argparse.ArgumentTypeError, match="finite milliseconds > 0"):
            bf.parse_ms(bad)


def test_run_with_numpy_and_idle_gives_ratios_after_each_predecessor():
    res = fc.run(
        "rnn", (4, 3, 5, 6), rounds=5, use_torch=False, warmup=1, idle_ms=(0.2,), with_numpy=True
    )
    assert [row["after"] for row in res["rows"]] == ["itself", "numpy", "idle 0.2 ms"]
    assert res["idle_ms"] == [0.2]
    for row in res["rows"]:
        assert row["numpy_us"] > 0
        for s in ("minigrad", "kernels"):
            assert row[f"{s}_vs_numpy"] == pytest.approx(row[f"{s}_us"] / row["numpy_us"])
            lo, hi = row[f"{s}_vs_numpy_ci95"]
            assert 0 < lo <= hi


def test_main_with_probe_writes_it_to_the_json(tmp_path, capsys):
    path = tmp_path / "p.json"
    bf.main(
        [
            "--cells",
            "gru",
            "--sizes",
            "2x2x3x4",
            "--rounds",
            "3",
            "--warmup",
            "0",
            "--no-torch",
            "--idle",
            "0.1",
            "--numpy",
            "--probe",
            "--json",
            str(path),
        ]
    )
    out = capsys.readouterr().out
    assert "eviction probe" in out and "idle 0.1 ms" in out and "minigrad/numpy" in out
    assert out.count("legend: ") == 2  # the probe's table and the result's, each
    data = bf.json.loads(path.read_text())
    assert sorted(data["eviction_probe_us"]) == ["1024", "256", "64"]
    assert sorted(data["eviction_probe_us"]["64"]) == ["0", "0.1"]  # milliseconds, as given
    assert data["results"][0]["rows"][-1]["after"] == "idle 0.1 ms"
