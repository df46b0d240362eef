"""Shared pytest configuration: hypothesis profiles.

HYPOTHESIS_PROFILE selects one of the profiles below; without it, `ci` is used when the CI
environment variable is set and `dev` otherwise.

    ci     derandomized (same examples every run), no deadline, 30 examples per test
    dev    random examples, no deadline, 50 examples per test
    heavy  2000 examples per test, run by hand or nightly:
           HYPOTHESIS_PROFILE=heavy python -m pytest tests
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=30)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("heavy", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(params=["blas", "small"])
def gemm_path(request):
    """Force one of the compiled kernels' two GEMM paths: BLAS, or the small-matrix kernel."""
    from minigrad import _gemm

    old = _gemm._set_small_gemm()
    _gemm._set_small_gemm(0 if request.param == "blas" else 1 << 40)
    yield request.param
    _gemm._set_small_gemm(old)


@pytest.fixture(params=["cython", "numpy"])
def backend(request):
    """Run the test once on each kernel backend (minigrad.kernels.set_backend), restoring the
    one before it afterwards."""
    from minigrad import kernels

    before = kernels.backend()
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(before)
