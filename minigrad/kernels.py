"""The kernel backend: compiled `_ops` (cython, default) or the NumPy twins `_ops_ref` (numpy).

Chosen by env MINIGRAD_BACKEND=cython|numpy at import, or `set_backend(name)` at run time. Callers
look kernels up as attributes (`kernels.lstm_cell_forward`), so switching rebinds everything.
"""
import importlib
import os

from . import _ops_ref

BACKENDS = ("cython", "numpy")
_MODULES = {"cython": "minigrad._ops", "numpy": "minigrad._ops_ref"}
NAMES = tuple(_ops_ref.__all__)  # the twin's list is the contract; both modules export it
backend = None


def set_backend(name):
    """Bind every kernel name in this module to the `name` backend ('cython' or 'numpy')."""
    global backend
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; allowed: 'cython', 'numpy'")
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as e:
        if name != "cython":
            raise
        raise ImportError(
            f"minigrad's compiled kernels (minigrad._ops) cannot be imported ({e}). Build them with "
            "`pip install .` (or `python setup.py build_ext --inplace` in a source checkout), or "
            "set MINIGRAD_BACKEND=numpy to run on the NumPy twins without the extension."
        ) from e
    globals().update({n: getattr(module, n) for n in NAMES})
    backend = name


set_backend(os.environ.get("MINIGRAD_BACKEND", "cython").strip().lower() or "cython")
