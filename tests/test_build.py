"""The kernel backend switch (minigrad/kernels.py) and the built extensions."""
import ast
import os
import subprocess
import sys

import pytest

from minigrad import _gemm, _gemm_ref, _ops, _ops_ref, _optim_ops, _optim_ops_ref, kernels

# each compiled module beside its NumPy twin
PAIRS = [(_ops, _ops_ref), (_gemm, _gemm_ref), (_optim_ops, _optim_ops_ref)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_backend():
    before = kernels.backend()
    yield
    kernels.set_backend(before)


def test_every_kernel_is_exposed_by_both_backends():
    assert sorted(kernels.NAMES) == sorted(n for _, twin in PAIRS for n in twin.__all__)
    assert len(set(kernels.NAMES)) == len(kernels.NAMES) == 18
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
        if isinstance(node, ast.ImportFrom) and node.level == 1 and (node.module or "").endswith("_ref"):
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
    monkeypatch.setitem(kernels._MODULES, "cython",
                        ("minigrad._gemm", "minigrad._no_such_extension", "minigrad._optim_ops"))
    with pytest.raises(ImportError, match=r"pip install \..*build_ext --inplace.*MINIGRAD_BACKEND=numpy"):
        kernels.set_backend("cython")
    assert kernels.backend() == "numpy"          # a failed switch changes nothing


@pytest.mark.parametrize("value,expected", [("numpy", "numpy"), ("cython", "cython"), ("", "cython")])
def test_environment_variable_picks_the_backend(value, expected):
    env = dict(os.environ, MINIGRAD_BACKEND=value)
    out = subprocess.run([sys.executable, "-c", "from minigrad import kernels; print(kernels.backend())"],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_bad_environment_variable_fails_at_import():
    env = dict(os.environ, MINIGRAD_BACKEND="gpu")
    out = subprocess.run([sys.executable, "-c", "import minigrad.kernels"],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "'cython', 'numpy'" in out.stderr


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
    env = {k: v for k, v in os.environ.items() if k != "MINIGRAD_BACKEND"}
    out = subprocess.run([sys.executable, "-c", MISSING], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["numpy", "minigrad._ops_ref", "1"], out.stdout
    assert lines[3].startswith("RuntimeWarning")
    assert "NumPy twins" in lines[3] and "pip install ." in lines[3] and "build_ext --inplace" in lines[3]


def test_missing_extension_with_cython_asked_for_raises():
    env = dict(os.environ, MINIGRAD_BACKEND="cython")
    out = subprocess.run([sys.executable, "-c", MISSING], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode != 0
    assert "ImportError: minigrad's compiled kernels cannot be imported" in out.stderr
    assert "MINIGRAD_BACKEND=numpy" in out.stderr
