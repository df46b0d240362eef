"""The kernel backend switch (minigrad/kernels.py) and the built extension."""
import os
import subprocess
import sys

import pytest

from minigrad import _ops, _ops_ref, kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_backend():
    before = kernels.backend
    yield
    kernels.set_backend(before)


def test_every_kernel_is_exposed_by_both_backends():
    for name in kernels.NAMES:
        assert callable(getattr(_ops, name)), f"_ops.{name} missing"
        assert callable(getattr(_ops_ref, name)), f"_ops_ref.{name} missing"
        assert callable(getattr(kernels, name)), f"kernels.{name} missing"


@pytest.mark.usefixtures("restore_backend")
def test_set_backend_rebinds_every_kernel():
    kernels.set_backend("numpy")
    assert kernels.backend == "numpy"
    for name in kernels.NAMES:
        assert getattr(kernels, name) is getattr(_ops_ref, name), name
    kernels.set_backend("cython")
    assert kernels.backend == "cython"
    for name in kernels.NAMES:
        assert getattr(kernels, name) is getattr(_ops, name), name


@pytest.mark.usefixtures("restore_backend")
def test_unknown_backend_raises_value_error_naming_the_allowed_ones():
    kernels.set_backend("numpy")
    with pytest.raises(ValueError, match=r"'fortran'.*'cython'.*'numpy'"):
        kernels.set_backend("fortran")
    assert kernels.backend == "numpy"
    assert kernels.lstm_cell_forward is _ops_ref.lstm_cell_forward


@pytest.mark.usefixtures("restore_backend")
def test_missing_extension_says_how_to_build_it(monkeypatch):
    kernels.set_backend("numpy")
    monkeypatch.setitem(kernels._MODULES, "cython", "minigrad._no_such_extension")
    with pytest.raises(ImportError, match=r"pip install \..*build_ext --inplace.*MINIGRAD_BACKEND=numpy"):
        kernels.set_backend("cython")
    assert kernels.backend == "numpy"          # a failed switch changes nothing


@pytest.mark.parametrize("value,expected", [("numpy", "numpy"), ("cython", "cython"), ("", "cython")])
def test_environment_variable_picks_the_backend(value, expected):
    env = dict(os.environ, MINIGRAD_BACKEND=value)
    out = subprocess.run([sys.executable, "-c", "from minigrad import kernels; print(kernels.backend)"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_bad_environment_variable_fails_at_import():
    env = dict(os.environ, MINIGRAD_BACKEND="gpu")
    out = subprocess.run([sys.executable, "-c", "import minigrad.kernels"],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "'cython', 'numpy'" in out.stderr
