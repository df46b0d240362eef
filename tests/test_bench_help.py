"""Every benchmark script's --help shows each option's default once, and that default is the
parser's own: given back on the command line, it gives what leaving the option out gives."""

import argparse
import os
import re
import subprocess
import sys

import pytest

from benchmarks import (
    bench_dropout,
    bench_framework,
    bench_kernels,
    bench_layernorm,
    bench_lm,
    bench_optim,
    bench_overhead,
    bench_rnn,
    bench_threads,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {  # command line -> the module whose build_parser() it runs
    "bench_rnn.py": ([os.path.join("benchmarks", "bench_rnn.py")], bench_rnn),
    "-m benchmarks": (["-m", "benchmarks"], bench_rnn),
    "bench_framework.py": ([os.path.join("benchmarks", "bench_framework.py")], bench_framework),
    "bench_optim.py": ([os.path.join("benchmarks", "bench_optim.py")], bench_optim),
    "bench_kernels.py": ([os.path.join("benchmarks", "bench_kernels.py")], bench_kernels),
    "bench_overhead.py": ([os.path.join("benchmarks", "bench_overhead.py")], bench_overhead),
    "bench_dropout.py": ([os.path.join("benchmarks", "bench_dropout.py")], bench_dropout),
    "bench_lm.py": ([os.path.join("benchmarks", "bench_lm.py")], bench_lm),
    "bench_threads.py": ([os.path.join("benchmarks", "bench_threads.py")], bench_threads),
    "bench_layernorm.py": ([os.path.join("benchmarks", "bench_layernorm.py")], bench_layernorm),
}


def option_help(text):
    """{first option string: its whole help entry, whitespace collapsed} from --help output."""
    options = text.split("\noptions:\n", 1)[1]
    blocks, cur = {}, None
    for line in options.splitlines():
        m = re.match(r"^  (-[-\w]+)", line)
        if m:
            cur = m.group(1)
            blocks[cur] = [line]
        elif cur is not None and line.startswith("   "):
            blocks[cur].append(line)
        else:
            cur = None
    return {k: " ".join(" ".join(v).split()) for k, v in blocks.items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once_and_it_is_the_parsers(script):
    cmd, module = SCRIPTS[script]
    p = subprocess.run(
        [sys.executable, *cmd, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="400"),
    )
    assert p.returncode == 0, p.stderr
    entries = option_help(p.stdout)
    parser = module.build_parser()
    without = vars(parser.parse_args([]))
    checked = 0
    for action in parser._actions:
        if (
            not action.option_strings
            or action.help in (None, argparse.SUPPRESS)
            or isinstance(action, argparse._HelpAction)
        ):
            continue
        opt = action.option_strings[0]
        assert opt in entries, f"{script}: {opt} missing from --help"
        text = entries[opt]
        n = len(re.findall(r"default", text, re.I))
        if action.nargs == 0:  # a flag: off unless given, no default to show
            assert n == 0, f"{script} {opt}: {text}"
            continue
        assert n == 1, f"{script} {opt}: the default must appear once: {text}"
        assert "default: None" not in text, f"{script} {opt}: {text}"
        if action.default is None:  # said in words: what happens without the option
            continue
        m = re.search(r"\(default: (.*)\)$", text)
        assert m, f"{script} {opt}: {text}"
        shown = m.group(1)
        assert shown == str(action.default), (script, opt, shown, action.default)
        given = vars(parser.parse_args([opt, shown]))[action.dest]
        assert given == without[action.dest], (script, opt, shown, given, without[action.dest])
        checked += 1
    assert checked >= 2, f"{script}: only {checked} options with a default were checked"


def test_option_help_reads_a_wrapped_entry():
    text = (
        "usage: x\n\noptions:\n  -h, --help  show this help message and exit\n"
        "  --rounds ROUNDS  timed\n                   rounds (default:\n"
        "                   300)\n  --flag      on\n"
    )
    assert option_help(text) == {
        "-h": "-h, --help show this help message and exit",
        "--rounds": "--rounds ROUNDS timed rounds (default: 300)",
        "--flag": "--flag on",
    }


def test_every_command_in_the_performance_doc_parses():
    """docs/performance.md's commands name options the scripts have, with values they accept."""
    import shlex

    doc = open(os.path.join(ROOT, "docs", "performance.md"), encoding="utf-8").read()
    modules = {
        "bench_rnn": bench_rnn,
        "bench_framework": bench_framework,
        "bench_optim": bench_optim,
        "bench_kernels": bench_kernels,
        "bench_overhead": bench_overhead,
        "bench_lm": bench_lm,
        "bench_threads": bench_threads,
    }
    found = 0
    for m in re.finditer(
        r"python (?:benchmarks/(\w+)\.py|-m benchmarks(?:\.(\w+))?)"
        r"((?: --?[\w-]+(?: [^\s`#-][^\s`#]*)?)*)",
        doc,
    ):
        name = m.group(1) or m.group(2) or "bench_rnn"
        if name not in modules:  # e.g. python -m benchmarks.harness.memory (a child)
            continue
        modules[name].build_parser().parse_args(shlex.split(m.group(3)))
        found += 1
    assert found >= 10


def test_print_table_sizes_columns_and_ends_in_one_legend_line(capsys):
    from benchmarks.harness import cli

    cli.print_table(["name", "ms"], [["minigrad", "1.5"], ["np", "12.25"]], "ms per step", left=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "name         ms",
        "---------------",
        "minigrad    1.5",
        "np        12.25",
        "legend: ms per step",
    ]


def test_at_least_names_the_option_its_minimum_and_the_value(capsys):
    from benchmarks.harness import cli

    ap = argparse.ArgumentParser()
    cli.at_least(ap, rounds=(1, 1), warmup=(0, 0))  # at the minimums: no error
    with pytest.raises(SystemExit):
        cli.at_least(ap, rounds=(5, 1), run_length=(-2, 1))
    assert "--run-length must be >= 1, got -2" in capsys.readouterr().err
