"""The command-line pieces the example scripts share: an option whose help ends in its default,
and argparse types for the numbers they take. Imported by the scripts next to it
(``from _cli import ...``); not an example itself.

Importing it also prepares the process for a script that imports it before NumPy: one thread
for NumPy's BLAS unless OPENBLAS_NUM_THREADS is set (OpenBLAS' worker threads busy-wait; on a
small or shared machine they slow the small GEMMs of a recurrent step down many times over, and
the setting must come before NumPy loads), and, in a source checkout without ``pip install .``,
the checkout's minigrad on sys.path. minigrad's own kernels still run on their default thread
count (the cores this process may use, or MINIGRAD_NUM_THREADS): their workers wait passively,
and minigrad leaves NumPy's BLAS alone at import unless MINIGRAD_NUM_THREADS is set."""

import argparse
import math
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    import minigrad  # noqa: F401 (only: is it installed?)
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def option(parser, flag, kind, default, text):
    """parser.add_argument(flag, type=kind, default=default), with `text` then
    "(default: X)" as its help, X being the parser's own default."""
    parser.add_argument(flag, type=kind, default=default, help=text + " (default: %(default)s)")


def int_range(low, high=None):
    """An argparse type: a whole number from `low` (to `high`); anything else is the parser's
    usage error (exit status 2), e.g. "argument --digits: must be a whole number from 1 to 6,
    got 9"."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {span}, got {text}")
        return value

    return parse


def positive_float(text):
    """An argparse type: a finite number above 0 (a learning rate, a gradient norm)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


positive_int = int_range(1)  # counts: sizes, steps, samples
