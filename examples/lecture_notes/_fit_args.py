"""The command line the notes' training experiments share: --quick, --epochs, --seed, --verbose."""

import argparse


def fit_parser(doc, quick_help, full_epochs):
    """A parser with the shared options; ``full_epochs`` is the default without --quick."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: {full_epochs})")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument(
        "--verbose",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="fit's progress lines, as Keras's verbose (default: 0)",
    )
    return p


def epochs(p, args, quick, full):
    """--epochs if given (refused below 1), else ``quick`` or ``full``."""
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    return args.epochs or (quick if args.quick else full)
