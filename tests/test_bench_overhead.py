"""benchmarks/bench_overhead.py: a smoke run, the agreement of the three chains, bad counts.

No timing is asserted: timings depend on the machine and its load.
"""

import numpy as np
import pytest

from benchmarks import bench_overhead as bench


def test_smoke_reports_every_contender_per_op(capsys):
    med = bench.main(["--ops", "9", "--repeats", "2", "--warmup", "0", "--no-torch"])
    assert set(med) == {"numpy", "minigrad"} and all(v > 0 for v in med.values())
    out = capsys.readouterr().out
    assert "chain of 9 ops" in out and out.count("legend: ") == 1
    numpy_row = next(line for line in out.splitlines() if line.startswith("numpy "))
    assert numpy_row.split()[4] == "1.00"  # x numpy of numpy itself


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_minigrad_chain_has_the_numpy_chains_gradient(n):
    x0 = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_allclose(
        bench.chain_minigrad(x0, n), bench.chain_numpy(x0, n), rtol=1e-5, atol=1e-7
    )
    # and it is not the identity's: the chain does change the gradient
    assert not np.allclose(bench.chain_numpy(x0, n), 1.0)


@pytest.mark.parametrize(
    "flag,value,low",
    [("--ops", "0", 1), ("--repeats", "0", 1), ("--warmup", "-1", 0), ("--size", "0", 1)],
)
def test_bad_counts_are_refused_naming_the_value(flag, value, low, capsys):
    with pytest.raises(SystemExit):
        bench.main([flag, value, "--no-torch"])
    assert f"{flag} must be >= {low}, got {value}" in capsys.readouterr().err
