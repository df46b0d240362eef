"""benchmarks/bench_dropout.py runs and prints its ratio table (timings are never asserted)."""

from benchmarks import bench_dropout


def test_bench_dropout_runs_a_tiny_size_and_prints_one_ratio_table(capsys):
    bench_dropout.main(["--sizes", "2x3x4x5", "--cells", "lstm,gru", "--min-time", "0.01"])
    out = capsys.readouterr().out
    table = out[out.index("cell  ") :]
    rows = [line for line in table.splitlines() if line.startswith(("lstm", "gru"))]
    assert len(rows) == 2 and all("2x3x4x5" in r for r in rows)
    assert "legend: " in table and "rdrop/plain" in table and "zoneout/plain" in table
