"""Import one of the repository's scripts (examples/, benchmarks/) as a module, by its path."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_script(relative_path):
    """The module run from ``ROOT / relative_path`` (e.g. ``"examples/char_rnn.py"``), named
    ``<folder>_<stem>`` and not entered in sys.modules."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
