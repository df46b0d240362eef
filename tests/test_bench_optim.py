"""benchmarks/bench_optim.py: a smoke run, and the agreement check that guards its timings.

No timing is asserted: timings depend on the machine and its load.
"""

import pytest

from benchmarks import bench_optim as bench
from minigrad import kernels


def test_smoke_times_every_setting_on_both_backends(capsys):
    before = kernels.backend()
    results = bench.main(["--repeats", "2", "--warmup", "0", "--sets", "lstm50", "--no-torch"])
    assert kernels.backend() == before  # the backend is restored
    assert [r["optimizer"] for r in results] == [bench.label(n, kw) for n, kw in bench.SETTINGS]
    for r in results:
        assert set(r["median_us"]) == {"compiled", "numpy twin"}
        assert all(v > 0 for v in r["median_us"].values())
    out = capsys.readouterr().out
    assert "Adam(lr=0.001)" in out and "no torch" in out
    assert out.count("legend: ") == 1


@pytest.fixture
def restore_backend():
    before = kernels.backend()  # the contenders set the backend they step on
    yield
    kernels.set_backend(before)


@pytest.mark.usefixtures("restore_backend")
@pytest.mark.parametrize("name,kw", bench.SETTINGS[::2])
def test_agreement_rejects_a_contender_that_steps_differently(name, kw):
    contenders = bench.build(name, kw, bench.SETS["lstm50"])
    bench.check_agreement(contenders)  # the real ones agree
    contenders = bench.build(name, kw, bench.SETS["lstm50"])
    twin = contenders["numpy twin"]
    twin.params[0].grad = twin.params[0].grad + 0.05  # a different problem
    with pytest.raises(AssertionError, match="numpy twin: parameter 0"):
        bench.check_agreement(contenders)


def test_unknown_set_and_bad_counts_are_refused(capsys):
    for argv, msg in (
        (["--sets", "lstm50,nope"], "unknown parameter set(s) ['nope']"),
        (["--repeats", "0"], "--repeats must be >= 1 and --warmup >= 0, got 0 and 5"),
    ):
        with pytest.raises(SystemExit):
            bench.main(argv + ["--no-torch"])
        assert msg in capsys.readouterr().err
