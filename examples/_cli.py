"""The command-line pieces the example scripts share: an option whose help ends in its default,
and the check that counts given on the command line are positive. Imported by the scripts next
to it (``from _cli import ...``); not an example itself.

Importing it also prepares the process for a script that imports it before NumPy: one BLAS
thread unless OPENBLAS_NUM_THREADS is set (OpenBLAS' worker threads busy-wait; on a small or
shared machine they slow the small GEMMs of a recurrent step down many times over, and the
setting must come before NumPy loads), and, in a source checkout without ``pip install .``,
the checkout's minigrad on sys.path."""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    import minigrad  # noqa: F401
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def option(parser, flag, kind, default, text):
    """parser.add_argument(flag, type=kind, default=default), with `text` then
    "(default: X)" as its help, X being the parser's own default."""
    parser.add_argument(flag, type=kind, default=default, help=text + " (default: %(default)s)")


def require_positive(parser, args, names):
    """parser.error (exit status 2) naming the first of args' `names` below 1: "--batch-size
    must be positive, got 0"."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
