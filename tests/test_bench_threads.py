"""benchmarks/bench_threads.py: its thread-count option, and one tiny run of each table, whose
rows must hold one median per contender and count and ratios consistent with them."""

import re

import pytest

from benchmarks import bench_threads

TINY = "4x3x5x6"


@pytest.mark.parametrize("text, want", [("1,2", [1, 2]), ("2, 1,2", [1, 2]), ("3", [3])])
def test_thread_counts_parse(text, want):
    assert bench_threads.parse_counts(text) == want


@pytest.mark.parametrize("text", ["0,1", "a", ","])
def test_bad_thread_counts_are_rejected(text):
    with pytest.raises(ValueError, match="--threads expects"):
        bench_threads.parse_counts(text)


def table_row(out, cell):
    rows = [line.split() for line in out.splitlines() if line.startswith(cell + " ")]
    assert rows, out
    return rows[-1]


@pytest.mark.parametrize("counts", ["1,2", "2"])  # 1 is always there: the speedups are over it
def test_scaling_table_has_each_count_and_its_speedup(capsys, counts):
    bench_threads.main(
        ["--cells", "gru", "--sizes", TINY, "--threads", counts, "--no-torch", "--min-time", "0.01"]
    )
    out = capsys.readouterr().out
    assert "minigrad@1" in out and "numpy@2" in out and "legend:" in out
    row = table_row(out, "gru")
    mg1, mg2, np1, np2, mg_x2, np_x2 = map(float, row[2:8])
    assert mg_x2 == pytest.approx(mg1 / mg2, rel=0.05, abs=0.01)
    assert np_x2 == pytest.approx(np1 / np2, rel=0.05, abs=0.01)


def test_contention_table_runs_a_spinning_process_and_stops_it(capsys):
    bench_threads.main(
        ["--contention", "--cells", "rnn", "--sizes", TINY, "--no-torch", "--min-time", "0.01"]
    )
    out = capsys.readouterr().out
    pid = int(re.search(r"a process \(pid (\d+)\) spinning", out).group(1))
    row = table_row(out, "rnn")
    mg1, np1, mgd, npd, mg_ratio, np_ratio = map(float, row[2:8])
    assert mg_ratio == pytest.approx(mgd / mg1, rel=0.05, abs=0.01)
    with pytest.raises(ProcessLookupError):  # killed and reaped when the run ended
        import os

        os.kill(pid, 0)


def test_run_length_settle_and_quiet_reach_the_timing(capsys, monkeypatch):
    from benchmarks.harness import timing

    seen = []
    real = timing.time_interleaved

    def spy(runs, **kw):
        seen.append((kw["run_length"], kw["settle"], kw["quiet_turns"]))
        return real(runs, **kw)

    monkeypatch.setattr(timing, "time_interleaved", spy)
    bench_threads.main(
        ["--cells", "rnn", "--sizes", TINY, "--threads", "1", "--no-torch", "--min-time", "0.01"]
        + ["--run-length", "3", "--settle", "0.001"]
    )
    bench_threads.main(
        ["--cells", "rnn", "--sizes", TINY, "--threads", "1", "--no-torch", "--min-time", "0.01"]
        + ["--no-quiet"]
    )
    assert seen == [(3, 0.001, True), (1, 0.0, False)]
    assert table_row(capsys.readouterr().out, "rnn")
    with pytest.raises(SystemExit):
        bench_threads.main(["--run-length", "0", "--sizes", TINY])
    assert "--run-length must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_threads.main(["--settle", "-1", "--sizes", TINY])
    assert "--settle must lie in [0, 10] seconds, got -1.0" in capsys.readouterr().err


@pytest.mark.parametrize("run_length", [1, 2])
def test_by_previous_table_splits_each_contenders_steps_by_the_one_before(capsys, run_length):
    bench_threads.main(
        ["--cells", "gru", "--sizes", TINY, "--threads", "1,2", "--no-torch", "--min-time", "0.01"]
        + ["--by-previous", "--run-length", str(run_length)]
    )
    out = capsys.readouterr().out
    scaling = [r.split() for r in out.splitlines() if re.match(r"gru +4x3x5x6 +[\d.]", r)]
    overall = dict(zip(["minigrad@1", "minigrad@2", "numpy@1", "numpy@2"], scaling[-1][2:6]))
    rows = [r.split() for r in out.splitlines() if re.match(r"gru +4x3x5x6 +\S+@\d +\S+@\d ", r)]
    pairs = {(r[2], r[3]) for r in rows}
    names = set(overall)
    # every contender after every other, and after itself only within turns of several steps
    want = {(a, b) for a in names for b in names if a != b or run_length > 1}
    assert pairs == want, out
    for _, _, name, _, steps, m, ratio in rows:
        assert int(steps) >= 1
        assert float(ratio) == pytest.approx(float(m) / float(overall[name]), rel=0.05, abs=0.01)
