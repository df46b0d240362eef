"""minigrad.set_num_threads / get_num_threads: the kernels' threads and NumPy's OpenBLAS follow the
setting; SciPy's own OpenBLAS, which only the kernels call (on their own threads), stays at one."""

import os

import pytest

import minigrad as mg
from minigrad import threads


@pytest.fixture
def restore():
    before = mg.get_num_threads()
    yield
    mg.set_num_threads(before)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_set_then_get(restore, n):
    mg.set_num_threads(n)
    assert mg.get_num_threads() == n
    for path, _, getter in threads.blas_libraries():
        assert getter() == (1 if threads.kernels_only_blas(path) else n), path


def test_both_libraries_are_found():
    paths = [p for p, _, _ in threads.blas_libraries()]
    assert len(paths) >= 1
    tpc = pytest.importorskip("threadpoolctl")
    theirs = {d["filepath"] for d in tpc.threadpool_info() if d["internal_api"] == "openblas"}
    assert theirs <= set(paths)


def test_threadpoolctl_sees_the_setting(restore):
    tpc = pytest.importorskip("threadpoolctl")
    mg.set_num_threads(1)
    counts = [d["num_threads"] for d in tpc.threadpool_info() if d["user_api"] == "blas"]
    assert counts and all(c == 1 for c in counts)


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (0, ValueError, ">= 1, got 0"),
        (-2, ValueError, ">= 1, got -2"),
        (1.5, TypeError, "expects an int, got float"),
        (True, TypeError, "expects an int, got bool"),
    ],
)
def test_bad_counts(restore, bad, err, match):
    before = mg.get_num_threads()
    with pytest.raises(err, match=match):
        mg.set_num_threads(bad)
    assert mg.get_num_threads() == before


def test_numpys_own_blas_follows_the_setting_and_scipys_stays_at_one(restore):
    """Told apart by where each wheel puts its library (numpy.libs, scipy.libs), not by the
    classification under test: NumPy's follows n, SciPy's (called by the kernels) stays at 1."""
    mg.set_num_threads(2)
    seen = set()
    for path, _, getter in threads.blas_libraries():
        if f"{os.sep}numpy.libs{os.sep}" in path:
            seen.add("numpy")
            assert getter() == 2, path
            assert not threads.kernels_only_blas(path)
        elif f"{os.sep}scipy.libs{os.sep}" in path:
            seen.add("scipy")
            assert getter() == 1, path
            assert threads.kernels_only_blas(path)
    # wheels bundle each library beside its package; other installs (conda) share one
    assert seen in ({"numpy", "scipy"}, set()), seen
