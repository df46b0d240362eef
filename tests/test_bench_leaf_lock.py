"""benchmarks/bench_leaf_lock.py: a smoke run (no timing is asserted)."""

import pytest

from benchmarks import bench_leaf_lock as bench
from minigrad import autograd


def test_smoke_restores_the_engine_lock(capsys):
    real = autograd._LEAF_LOCK
    med = bench.main(["--layers", "2", "--repeats", "2", "--warmup", "0", "--steps", "2"])
    assert autograd._LEAF_LOCK is real
    assert set(med) == {"lock", "no-op", "no-op again"} and all(v > 0 for v in med.values())
    assert "lock vs no-op" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
