"""What the benchmark scripts share on the command line: help that shows every option's default
once, and tables that end in a legend line saying what their columns mean."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each option's help followed by "(default: X)" from the
    parser's own default, once. Not added to flags (store_true: off unless given) nor where the
    default is None: there the help text says in words what happens without the option."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.option_strings
            and action.nargs != 0
            and action.default is not None
            and action.default is not argparse.SUPPRESS
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def parser(doc, **kw):
    """An ArgumentParser for a benchmark script whose module docstring is `doc`: its first
    paragraph is the description."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0].strip(), formatter_class=HelpFormatter, **kw
    )


def add_flags(ap, flags):
    """ap.add_argument(flag, action="store_true", help=text) for each (flag, text) of `flags`,
    in order: options that are off unless given."""
    for flag, text in flags:
        ap.add_argument(flag, action="store_true", help=text)


def print_table(header, rows, legend, left=1):
    """Print rows (lists of strings) under header, columns sized to fit, the first `left`
    columns left-aligned and the rest right-aligned, then one line: "legend: " + legend."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    head = line(header)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(line(r))
    print("legend: " + legend)


def at_least(ap, **minimums):
    """ap.error naming the first option below its minimum: at_least(ap, rounds=(value, 1)) ->
    "--rounds must be >= 1, got 0"."""
    for name, (value, low) in minimums.items():
        if value < low:
            ap.error(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
