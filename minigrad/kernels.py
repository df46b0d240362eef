"""The kernel backend: the compiled kernels (cython, default) or their NumPy twins (numpy).

Each compiled module has a twin with the same names and signatures (docs/kernels.md):

    cells      minigrad._ops        minigrad._ops_ref
    linear     minigrad._gemm       minigrad._gemm_ref
    optimizer  minigrad._optim_ops  minigrad._optim_ops_ref
    embedding  minigrad._embedding  minigrad._embedding_ref
    loss       minigrad._cross_entropy  minigrad._cross_entropy_ref

The names below are bound to the twins where they are imported, so that an editor's
go-to-definition lands in the readable NumPy code; at import, and on `set_backend(name)`, they are
rebound to the backend in use. Chosen by env MINIGRAD_BACKEND=cython|numpy at import; unset, the
compiled kernels are used when they were built, else the twins (with one warning saying how to
build them). `backend()` tells which is in use. Callers look kernels up as attributes
(`kernels.lstm_cell_forward`), so a switch rebinds everything.
"""

import importlib
import os
import warnings

from . import _cross_entropy_ref, _embedding_ref, _gemm_ref, _ops_ref, _optim_ops_ref

# bound here for go-to-definition only (set_backend rebinds them), hence unused to a linter
from ._cross_entropy_ref import (  # noqa: F401
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from ._embedding_ref import embedding_backward  # noqa: F401
from ._gemm_ref import linear_backward, linear_forward, matmul  # noqa: F401
from ._ops_ref import (  # noqa: F401
    gru_cell_backward,
    gru_cell_forward,
    gru_sequence_backward,
    gru_sequence_forward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_sequence_backward,
    lstm_sequence_forward,
    rnn_cell_backward,
    rnn_cell_forward,
    rnn_sequence_backward,
    rnn_sequence_forward,
)
from ._optim_ops_ref import adagrad_update, adam_update, rmsprop_update, sgd_update  # noqa: F401

BACKENDS = ("cython", "numpy")
# backend -> its modules, in the order of _TWINS (compiled module, twin)
_MODULES = {
    "cython": (
        "minigrad._gemm",
        "minigrad._ops",
        "minigrad._optim_ops",
        "minigrad._embedding",
        "minigrad._cross_entropy",
    ),
    "numpy": (
        "minigrad._gemm_ref",
        "minigrad._ops_ref",
        "minigrad._optim_ops_ref",
        "minigrad._embedding_ref",
        "minigrad._cross_entropy_ref",
    ),
}
_TWINS = (_gemm_ref, _ops_ref, _optim_ops_ref, _embedding_ref, _cross_entropy_ref)
# every kernel name: each twin's list is the contract its compiled module exports too
NAMES = tuple(name for twin in _TWINS for name in twin.__all__)
__all__ = ["BACKENDS", "NAMES", "backend", "set_backend", *NAMES]

_BUILD_HINT = (
    "Build them with `pip install .` (or `python setup.py build_ext --inplace` in a "
    "source checkout)"
)
_backend = None


def backend():
    """The kernel backend in use: 'cython' (the compiled kernels) or 'numpy' (their twins)."""
    return _backend


def set_backend(name):
    """Bind every kernel name in this module to the `name` backend ('cython' or 'numpy').
    Raises ImportError (changing nothing) when 'cython' is asked for and the compiled kernels
    cannot be imported."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; allowed: 'cython', 'numpy'")
    try:
        modules = [importlib.import_module(m) for m in _MODULES[name]]
    except ImportError as e:
        if name != "cython":
            raise
        raise ImportError(
            f"minigrad's compiled kernels cannot be imported ({e}). {_BUILD_HINT}, or set "
            "MINIGRAD_BACKEND=numpy to run on the NumPy twins without the extension."
        ) from e
    namespace = globals()
    for module, twin in zip(modules, _TWINS):
        for n in twin.__all__:
            namespace[n] = getattr(module, n)
    _backend = name


def _choose():
    """The backend at import: MINIGRAD_BACKEND when set (an unbuilt 'cython' raises), else the
    compiled kernels when they import, else the twins with one warning."""
    asked = os.environ.get("MINIGRAD_BACKEND", "").strip().lower()
    if asked:
        set_backend(asked)
        return
    try:
        set_backend("cython")
    except ImportError as e:
        warnings.warn(
            f"minigrad: the compiled kernels are not built ({e.__cause__}); running on the NumPy "
            f"twins, which are slower. {_BUILD_HINT}. Set MINIGRAD_BACKEND=numpy to choose the "
            "twins without this warning.",
            RuntimeWarning,
            stacklevel=3,
        )
        set_backend("numpy")


_choose()
