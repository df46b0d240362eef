"""Smoke tests of examples/: each runs a few steps through its main([...]) and must learn a bit,
produce outputs of the right shape, and refuse bad command-line input with a clear message."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from load_script import ROOT, load_script, script_fixture

import minigrad as mg

EXAMPLES = ROOT / "examples"
NAMES = ["adding_problem", "char_rnn", "seq2seq_addition", "sequence_classification"]


char_rnn = script_fixture("examples/char_rnn.py")
adding = script_fixture("examples/adding_problem.py")
seqcls = script_fixture("examples/sequence_classification.py")
seq2seq = script_fixture("examples/seq2seq_addition.py")


# ------------------------------------------------------------------------------ --help
def _help_blocks(name):
    """`python examples/<name>.py --help`, run as a user would, cut into one block of text per
    option (its invocation and help, whitespace collapsed), keyed by the option's first flag."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\noptions:\n", 1)[1].splitlines()
    blocks, key = {}, None
    for line in lines:
        m = re.match(r"  (-[-\w]+)", line)  # an option's first line; help lines go deeper
        if m:
            key = m.group(1).rstrip(",")
            blocks[key] = line
        elif key is not None:
            blocks[key] += " " + line
    return {k: " ".join(v.split()) for k, v in blocks.items()}


@pytest.mark.parametrize("name", NAMES)
def test_help_states_each_default_once_as_the_parser_has_it(name):
    module = load_script(f"examples/{name}.py")
    parser = module.build_parser()
    blocks = _help_blocks(name)
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.option_strings[0] for a in actions} <= set(blocks)
    for a in actions:
        block = blocks[a.option_strings[0]]
        said = re.findall(r"\bdefault\b", block, flags=re.IGNORECASE)
        if a.const is True and a.default is False:  # a store_true flag: off
            assert a.help and not said, block
            continue
        assert len(said) == 1, block
        m = re.search(r"\(default: ([^()]+)\)$", block)
        assert m, f"the default is not the closing '(default: ...)': {block}"
        stated = m.group(1)
        if a.default is None:  # no value: the help says in words what happens
            assert stated != "None" and len(stated) > 3, block
        elif isinstance(a.default, list):
            assert stated == " ".join(map(str, a.default)), block
        else:
            assert stated in (str(a.default), repr(a.default)), block


@pytest.mark.parametrize(
    ("name", "flags", "says"),
    [
        (
            "seq2seq_addition",
            ["--digits", "7"],
            "--digits: must be a whole number from 1 to 6, got 7",
        ),
        ("seq2seq_addition", ["--batch-size", "0"], "--batch-size: must be a whole number of at"),
        ("seq2seq_addition", ["--lr", "nan"], "--lr: must be a finite number above 0, got nan"),
        ("sequence_classification", ["--clip", "0"], "--clip: must be a finite number above 0"),
        ("sequence_classification", ["--epochs", "-1"], "--epochs: must be a whole number of"),
        ("sequence_classification", ["--vocab", "11"], "--vocab must be at least 12"),
        (
            "adding_problem",
            ["--lengths", "5", "1"],
            "--lengths: must be a whole number of at least 2, got 1",
        ),
        ("adding_problem", ["--hidden", "2.5"], "--hidden: must be a whole number of at least 1"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(name, flags, says, capsys):
    module = load_script(f"examples/{name}.py")
    with pytest.raises(SystemExit) as e:
        module.main([*flags, "--quiet"])
    assert e.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize("quick", [False, True])
def test_adding_problem_help_states_the_lengths_and_steps_main_uses(adding, monkeypatch, quick):
    """--lengths and --steps default to None and main picks them (--quick: smaller): the
    numbers --help gives must be the ones a run gets."""
    blocks = _help_blocks("adding_problem")

    def stated(flag):
        text = re.search(r"\(default: ([^()]+)\)$", blocks[flag]).group(1)
        full, with_quick = text.split("; with --quick ")
        return [int(v) for v in (with_quick if quick else full).split()]

    seen = []

    def fake_run_one(cell, T, args, log):
        seen.append((T, args.steps))
        profile = np.ones(T)
        return 0.1, (profile, profile), [0.1]

    monkeypatch.setattr(adding, "run_one", fake_run_one)
    adding.main(["--cells", "lstm", "--quiet"] + (["--quick"] if quick else []))
    assert [T for T, _ in seen] == stated("--lengths")
    assert {steps for _, steps in seen} == set(stated("--steps"))


def _early_late(losses, k=5):
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


# ------------------------------------------------------------------------------ char_rnn
def _small_text(path):
    rng = np.random.default_rng(0)
    words = ["def", "return", "self", "value", "import", "class", "None", "if", "else", "for"]
    lines = [" ".join(rng.choice(words, 5)) + ":" for _ in range(600)]
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def _char_flags(text, steps, extra=()):
    return [
        "--text",
        text,
        "--hidden",
        "32",
        "--embed",
        "8",
        "--seq-len",
        "16",
        "--batch-size",
        "8",
        "--steps",
        str(steps),
        "--eval-every",
        "15",
        "--eval-chars",
        "2000",
        "--final-eval-chars",
        "2000",
        "--sample-len",
        "20",
        "--lr",
        "1e-2",
        "--quiet",
        *extra,
    ]


def test_char_rnn_learns_samples_and_resumes(char_rnn, tmp_path):
    text = _small_text(tmp_path / "corpus.txt")
    ck = tmp_path / "ck.npz"
    r1 = char_rnn.main(_char_flags(text, 30, ["--save", str(ck), "--prime", "def "]))
    first, last = _early_late(r1["losses"])
    assert last < first - 0.3, (first, last)
    assert r1["steps"] == 30 and len(r1["losses"]) == 30
    assert math.isfinite(r1["val_bpc"]) and r1["val_bpc"] < math.log2(r1["vocab_size"])
    assert r1["sample"].startswith("def ") and len(r1["sample"]) == 4 + 20

    saved = mg.load(str(ck))  # .npz written by minigrad.save, no pickle
    assert saved["step"] == 30 and saved["arch"]["hidden"] == 32
    assert {"model", "optim", "vocab", "data_pos"} <= set(saved)

    # resume: the flags ask for another size, the checkpoint's architecture wins; training
    # continues from step 30 with the trained weights (its loss starts where run 1 ended)
    r2 = char_rnn.main(_char_flags(text, 40, ["--resume", str(ck), "--hidden", "48"]))
    assert r2["steps"] == 40 and len(r2["losses"]) == 10
    assert r2["losses"][0] < first - 0.3
    assert r2["params"] == r1["params"]


def test_char_rnn_says_when_it_saves_and_what_resume_overrides(char_rnn, tmp_path, capsys):
    text = _small_text(tmp_path / "corpus.txt")
    ck = tmp_path / "ck.npz"

    def run(steps, extra):
        flags = [f for f in _char_flags(text, steps, extra) if f != "--quiet"]
        r = char_rnn.main(flags + ["--sample-len", "0"])
        out, err = capsys.readouterr()
        return r, out, err

    _, out, err = run(6, ["--save", str(ck)])
    assert f"checkpoint of step 6 written to {ck}" in out and not err

    # more steps, same flags: it continues, and says so and where it saved
    r, out, err = run(8, ["--resume", str(ck), "--save", str(ck)])
    assert r["steps"] == 8 and len(r["losses"]) == 2
    assert f"resumed from {ck} at step 6; training continues to step 8" in out
    assert f"checkpoint of step 8 written to {ck}" in out
    assert not err  # nothing of the flags was replaced

    # --steps not beyond the checkpoint's step, and an architecture flag that differs
    r, out, err = run(8, ["--resume", str(ck), "--hidden", "48", "--cell", "gru"])
    assert r["steps"] == 8 and r["losses"] == []
    assert "is at step 8 and --steps is 8: nothing left to train" in err
    assert "--cell lstm --embed 8 --hidden 32 --layers 1" in err
    assert "replaces --cell gru, --hidden 48" in err
    assert "training continues" not in out

    # --quiet keeps stdout empty, but the notes above still reach stderr
    char_rnn.main(_char_flags(text, 8, ["--resume", str(ck), "--hidden", "48"]))
    out, err = capsys.readouterr()
    assert out == "" and "nothing left to train" in err and "replaces --hidden 48" in err


def test_char_rnn_gru_and_rnn_cells_run(char_rnn, tmp_path):
    text = _small_text(tmp_path / "corpus.txt")
    for cell in ("gru", "rnn"):
        r = char_rnn.main(
            _char_flags(text, 6, ["--cell", cell, "--layers", "2", "--sample-len", "0"])
        )
        assert r["steps"] == 6 and math.isfinite(r["val_bpc"])


def test_char_rnn_default_corpus_is_the_standard_library(char_rnn):
    train, val, desc = char_rnn.stdlib_corpus(200_000)
    assert len(train) > 100_000 and len(val) > 1_000
    assert "def " in train and "standard-library" in desc
    again = char_rnn.stdlib_corpus(200_000)
    assert again[0] == train  # deterministic


def test_char_rnn_rejects_bad_input(char_rnn, tmp_path, capsys):
    with pytest.raises(SystemExit, match="no such file"):
        char_rnn.main(["--text", str(tmp_path / "missing.txt"), "--quiet"])
    with pytest.raises(SystemExit) as e:
        char_rnn.main(["--steps", "0"])
    assert e.value.code == 2 and "must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        char_rnn.main(["--cell", "transformer"])
    assert e.value.code == 2
    bad = tmp_path / "notack.npz"
    bad.write_bytes(b"not a zip")
    text = _small_text(tmp_path / "corpus.txt")
    with pytest.raises(SystemExit, match="--resume"):
        char_rnn.main(_char_flags(text, 2, ["--resume", str(bad)]))
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc", encoding="utf-8")
    with pytest.raises(SystemExit, match="characters"):
        char_rnn.main(["--text", str(tiny), "--quiet"])


# ------------------------------------------------------------------------------ adding problem
def test_adding_problem_batches(adding):
    rng = np.random.default_rng(0)
    x, y = adding.make_batch(rng, 200, 20)
    assert x.shape == (200, 20, 2) and y.shape == (200, 1)
    markers = x[:, :, 1]
    assert np.all(markers.sum(1) == 2)
    assert np.all(markers[:, :10].sum(1) == 1) and np.all(markers[:, 10:].sum(1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(1), rtol=1e-6)
    assert abs(np.var(y) - adding.BASELINE) < 0.05


def test_adding_problem_trains_and_measures_gradients(adding):
    r = adding.main(
        [
            "--lengths",
            "10",
            "--steps",
            "40",
            "--hidden",
            "16",
            "--batch-size",
            "32",
            "--test-size",
            "200",
            "--quiet",
        ]
    )
    for cell in ("rnn", "lstm", "gru"):
        first, last = _early_late(r["losses"][cell][10], 8)
        assert last < first, (cell, first, last)
        assert math.isfinite(r["mse"][cell][10])
        prof = r["grad_profile"][cell][10]
        assert prof.shape == (10,) and np.all(np.isfinite(prof)) and prof[-1] > 0
        assert r["grad_ratio"][cell][10] == pytest.approx(prof[0] / prof[-1])
        assert r["grad_profile_trained"][cell][10].shape == (10,)
    with pytest.raises(SystemExit):
        adding.main(["--lengths", "1", "--quiet"])


def test_adding_problem_plot(adding, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "grads.png"
    r = adding.main(
        [
            "--lengths",
            "6",
            "8",
            "--steps",
            "3",
            "--hidden",
            "8",
            "--test-size",
            "20",
            "--quiet",
            "--plot",
            str(path),
        ]
    )
    assert r["plotted"] and path.stat().st_size > 1000


# ------------------------------------------------------------------------------ many-to-one
def test_sequence_classification_dataset(seqcls):
    rng = np.random.default_rng(0)
    tokens, lengths, labels = seqcls.make_dataset(rng, 300, 30, 3, 12)
    assert tokens.shape == (300, 12) and lengths.min() >= 3 and lengths.max() <= 12
    for row, n, lab in zip(tokens, lengths, labels):
        assert np.all(row[n:] == 0) and np.all(row[:n] > 0)
        pos = np.sum((row >= 1) & (row <= 5))
        neg = np.sum((row >= 6) & (row <= 10))
        assert pos != neg and lab == int(pos > neg)


def test_sequence_classification_learns(seqcls):
    r = seqcls.main(
        [
            "--epochs",
            "3",
            "--train-size",
            "384",
            "--val-size",
            "64",
            "--hidden",
            "24",
            "--max-len",
            "15",
            "--lr",
            "1e-2",
            "--quiet",
        ]
    )
    assert r["loss"][-1] < r["loss"][0]
    assert len(r["val_acc"]) == 3 and 0 <= r["final_val_acc"] <= 1
    assert r["logits_shape"] == (3, 2)
    assert "LSTM" in r["summary"] and "Embedding" in r["summary"]
    with pytest.raises(SystemExit):
        seqcls.main(["--min-len", "9", "--max-len", "4", "--quiet"])


# ------------------------------------------------------------------------------ seq2seq
def test_seq2seq_encoding_round_trip(seq2seq):
    ids, lengths = seq2seq.encode(["57+43", "5+1"], 5)
    assert ids.shape == (2, 5) and list(lengths) == [5, 3]
    assert seq2seq.decode(ids[0]) == "57+43" and seq2seq.decode(ids[1]) == "5+1"
    end = seq2seq.INDEX[seq2seq.END]
    assert seq2seq.decode([seq2seq.INDEX["1"], end, seq2seq.INDEX["2"]]) == "1"
    probs = seq2seq.Problems(2, 100, np.random.default_rng(0))
    train = probs.sample(np.random.default_rng(1), 2000)
    assert not set(train) & probs.val_set  # held-out questions are never trained on


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_seq2seq_trains(seq2seq, cell):
    r = seq2seq.main(
        [
            "--cell",
            cell,
            "--steps",
            "40",
            "--hidden",
            "32",
            "--val-size",
            "40",
            "--eval-every",
            "40",
            "--examples",
            "3",
            "--quiet",
        ]
    )
    assert r["train_loss"] < r["first_loss"] - 0.3
    # (batch, up to 3 answer digits + END, vocab)
    assert r["logits_shape"] == (64, 4, len(seq2seq.CHARS))
    assert 0 <= r["accuracy"] <= 1 and len(r["examples"]) == 3
