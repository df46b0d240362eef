"""Import one of the repository's scripts (examples/, benchmarks/) as a module, by its path."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_script(relative_path):
    """The module run from ``ROOT / relative_path`` (e.g. ``"examples/char_rnn.py"``), named
    ``<folder>_<stem>`` and not entered in sys.modules."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_fixture(relative_path):
    """A module-scoped fixture giving ``load_script(relative_path)``, named by the variable a
    test module binds it to: ``char_rnn = script_fixture("examples/char_rnn.py")``."""
    return pytest.fixture(scope="module")(lambda: load_script(relative_path))
