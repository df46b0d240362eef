"""The kernel backend switch (minigrad/kernels.py) and the built extensions."""

import ast
import os
import re
import subprocess
import sys

import pytest

from minigrad import (
    _cross_entropy,
    _cross_entropy_ref,
    _embedding,
    _embedding_ref,
    _gemm,
    _gemm_ref,
    _ops,
    _ops_ref,
    _optim_ops,
    _optim_ops_ref,
    kernels,
)

# each compiled module beside its NumPy twin
PAIRS = [
    (_ops, _ops_ref),
    (_gemm, _gemm_ref),
    (_optim_ops, _optim_ops_ref),
    (_embedding, _embedding_ref),
    (_cross_entropy, _cross_entropy_ref),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_backend():
    before = kernels.backend()
    yield
    kernels.set_backend(before)


def test_every_kernel_is_exposed_by_both_backends():
    assert sorted(kernels.NAMES) == sorted(n for _, twin in PAIRS for n in twin.__all__)
    assert len(set(kernels.NAMES)) == len(kernels.NAMES) == 22
    for compiled, twin in PAIRS:
        for name in twin.__all__:
            assert callable(getattr(compiled, name)), f"{compiled.__name__}.{name} missing"
            assert callable(getattr(twin, name)), f"{twin.__name__}.{name} missing"
            assert callable(getattr(kernels, name)), f"kernels.{name} missing"


def test_kernel_names_are_imported_from_the_twins_for_static_tools():
    """An editor's go-to-definition on kernels.<name> follows kernels.py's own import of it: each
    kernel name is imported there, by name, from its NumPy twin."""
    tree = ast.parse(open(kernels.__file__).read())
    imported = {}
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 1
            and (node.module or "").endswith("_ref")
        ):
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
    twin_of = {n: twin.__name__.rsplit(".", 1)[1] for _, twin in PAIRS for n in twin.__all__}
    assert imported == twin_of


@pytest.mark.usefixtures("restore_backend")
def test_set_backend_rebinds_every_kernel():
    kernels.set_backend("numpy")
    assert kernels.backend() == "numpy"
    for _, twin in PAIRS:
        for name in twin.__all__:
            assert getattr(kernels, name) is getattr(twin, name), name
    kernels.set_backend("cython")
    assert kernels.backend() == "cython"
    for compiled, twin in PAIRS:
        for name in twin.__all__:
            assert getattr(kernels, name) is getattr(compiled, name), name


@pytest.mark.usefixtures("restore_backend")
def test_unknown_backend_raises_value_error_naming_the_allowed_ones():
    kernels.set_backend("numpy")
    with pytest.raises(ValueError, match=r"'fortran'.*'cython'.*'numpy'"):
        kernels.set_backend("fortran")
    assert kernels.backend() == "numpy"
    assert kernels.lstm_cell_forward is _ops_ref.lstm_cell_forward


@pytest.mark.usefixtures("restore_backend")
def test_missing_extension_says_how_to_build_it(monkeypatch):
    kernels.set_backend("numpy")
    monkeypatch.setitem(
        kernels._MODULES,
        "cython",
        ("minigrad._gemm", "minigrad._no_such_extension", "minigrad._optim_ops"),
    )
    with pytest.raises(
        ImportError, match=r"pip install \..*build_ext --inplace.*MINIGRAD_BACKEND=numpy"
    ):
        kernels.set_backend("cython")
    assert kernels.backend() == "numpy"  # a failed switch changes nothing


def _python(code, backend=None, cwd=ROOT, **run):
    """Run ``code`` in a fresh interpreter with MINIGRAD_BACKEND=``backend`` (unset if None)."""
    env = {k: v for k, v in os.environ.items() if k != "MINIGRAD_BACKEND"}
    if backend is not None:
        env["MINIGRAD_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, **run
    )


@pytest.mark.parametrize(
    "value,expected", [("numpy", "numpy"), ("cython", "cython"), ("", "cython")]
)
def test_environment_variable_picks_the_backend(value, expected):
    code = "from minigrad import kernels; print(kernels.backend())"
    out = _python(code, backend=value, check=True)
    assert out.stdout.strip() == expected


def test_bad_environment_variable_fails_at_import():
    out = _python("import minigrad.kernels", backend="gpu")
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "'cython', 'numpy'" in out.stderr


# ------------------------------------------------------------------ building without a compiler
def _copy_for_build(dest):
    """setup.py, its metadata files and the package sources (no built modules) in dest."""
    import shutil

    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(os.path.join(ROOT, name), dest)
    # generated C is copied with its times, so Cython need not regenerate it
    shutil.copytree(
        os.path.join(ROOT, "minigrad"),
        os.path.join(dest, "minigrad"),
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
    )


def _no_compiler_env(tmp_path):
    """PATH with every C compiler name shadowed by a failing script, and CC/CXX/LDSHARED naming
    those, so neither the environment nor Python's build configuration reaches a real one."""
    bin_dir = tmp_path / "nocc"
    bin_dir.mkdir()
    for name in (
        "cc",
        "gcc",
        "c++",
        "g++",
        "clang",
        "clang++",
        "x86_64-linux-gnu-gcc",
        "x86_64-linux-gnu-g++",
    ):
        script = bin_dir / name
        script.write_text('#!/bin/sh\necho "$0: no compiler (test)" >&2\nexit 127\n')
        script.chmod(0o755)
    return dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        CC="cc",
        CXX="c++",
        LDSHARED="cc -shared",
        LDCXXSHARED="c++ -shared",
    )


def _built(src):
    return [
        f for _, _, files in os.walk(src / "minigrad") for f in files if f.endswith((".so", ".pyd"))
    ]


def test_build_without_a_compiler_warns_and_leaves_a_pure_python_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _copy_for_build(src)
    env = _no_compiler_env(tmp_path)
    build = [sys.executable, "setup.py", "build_ext", "--inplace"]

    # asked to require the extension, the same build fails: the compiler really is hidden
    strict = subprocess.run(
        build,
        cwd=src,
        env=dict(env, MINIGRAD_REQUIRE_EXTENSION="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert strict.returncode != 0 and "no compiler (test)" in strict.stderr
    assert _built(src) == []

    out = subprocess.run(build, cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r"WARNING: minigrad\._\w+ not built", out.stderr), out.stderr
    assert "NumPy kernels" in out.stderr
    assert _built(src) == []

    # the package in the copy: no compiled kernels; it trains on the NumPy twins
    # (an editable install of the checkout, as CI's, must not shadow the copy: its finder goes)
    check = f"""
import importlib.util
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, {str(src)!r})
import numpy as np
import minigrad as mg
from minigrad import nn
assert mg.__file__.startswith({str(src)!r}), mg.__file__
assert importlib.util.find_spec("minigrad._ops") is None
import minigrad.kernels as k
assert k.backend() == "numpy", k.backend()
x = mg.tensor(np.ones((2, 5, 3), dtype=np.float32), requires_grad=True)
out, _ = nn.LSTM(3, 4, batch_first=True)(x)
out.sum().backward()
assert x.grad.shape == (2, 5, 3) and np.isfinite(x.grad).all() and np.abs(x.grad).sum() > 0
"""
    run = _python(check, cwd=src, timeout=120)
    assert run.returncode == 0, run.stderr


# The compiled kernels missing, simulated in a fresh interpreter: a None entry in sys.modules makes
# `import minigrad._ops` raise ImportError, as an unbuilt checkout does.
MISSING = """
import sys, warnings
sys.modules["minigrad._ops"] = None
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minigrad
    from minigrad import kernels, nn
    import numpy as np
    out = nn.LSTM(3, 4)(minigrad.Tensor(np.ones((2, 1, 3), np.float32)))
    import minigrad.kernels
print(kernels.backend())
print(kernels.lstm_sequence_forward.__module__)
print(len(caught))
for w in caught:
    print(w.category.__name__, w.message)
"""


def test_missing_extension_falls_back_to_the_twins_and_warns_once():
    out = _python(MISSING)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["numpy", "minigrad._ops_ref", "1"], out.stdout
    assert lines[3].startswith("RuntimeWarning")
    assert (
        "NumPy twins" in lines[3]
        and "pip install ." in lines[3]
        and "build_ext --inplace" in lines[3]
    )


def test_missing_extension_with_cython_asked_for_raises():
    out = _python(MISSING, backend="cython")
    assert out.returncode != 0
    assert "ImportError: minigrad's compiled kernels cannot be imported" in out.stderr
    assert "MINIGRAD_BACKEND=numpy" in out.stderr
