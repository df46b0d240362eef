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


# ------------------------------------------------------------------ building without a compiler
def _copy_for_build(dest):
    """setup.py, its metadata files and the package sources (no built modules) in dest."""
    import shutil
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(os.path.join(ROOT, name), dest)
    # generated C is copied with its times, so Cython need not regenerate it
    shutil.copytree(os.path.join(ROOT, "minigrad"), os.path.join(dest, "minigrad"),
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))


def _no_compiler_env(tmp_path):
    """PATH with every C compiler name shadowed by a failing script, and CC/CXX/LDSHARED naming
    those, so neither the environment nor Python's build configuration reaches a real one."""
    bin_dir = tmp_path / "nocc"
    bin_dir.mkdir()
    for name in ("cc", "gcc", "c++", "g++", "clang", "clang++", "x86_64-linux-gnu-gcc",
                 "x86_64-linux-gnu-g++"):
        script = bin_dir / name
        script.write_text("#!/bin/sh\necho \"$0: no compiler (test)\" >&2\nexit 127\n")
        script.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CC="cc",
                CXX="c++", LDSHARED="cc -shared", LDCXXSHARED="c++ -shared")


def _built(src):
    return [f for _, _, files in os.walk(src / "minigrad") for f in files
            if f.endswith((".so", ".pyd"))]


def test_build_without_a_compiler_warns_and_leaves_a_pure_python_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _copy_for_build(src)
    env = _no_compiler_env(tmp_path)
    build = [sys.executable, "setup.py", "build_ext", "--inplace"]

    # asked to require the extension, the same build fails: the compiler really is hidden
    strict = subprocess.run(build, cwd=src, env=dict(env, MINIGRAD_REQUIRE_EXTENSION="1"),
                            capture_output=True, text=True, timeout=600)
    assert strict.returncode != 0 and "no compiler (test)" in strict.stderr
    assert _built(src) == []

    out = subprocess.run(build, cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "WARNING: minigrad._ops not built" in out.stderr
    assert "NumPy kernels" in out.stderr
    assert _built(src) == []

    # the package in the copy: no compiled kernels; it trains on the NumPy twins
    check = f"""
import importlib.util
import numpy as np
import minigrad as mg
from minigrad import nn
assert mg.__file__.startswith({str(src)!r}), mg.__file__
assert importlib.util.find_spec("minigrad._ops") is None
x = mg.tensor(np.ones((2, 5, 3), dtype=np.float32), requires_grad=True)
out, _ = nn.LSTM(3, 4, batch_first=True)(x)
out.sum().backward()
assert x.grad.shape == (2, 5, 3) and np.isfinite(x.grad).all() and np.abs(x.grad).sum() > 0
"""
    run = subprocess.run([sys.executable, "-c", check], cwd=src,
                         env=dict(os.environ, MINIGRAD_BACKEND="numpy"), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
