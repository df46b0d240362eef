"""Smoke test of examples/keras_notes.py: the notes' tables, the comparison and the window
model run through main([...]) on a little data, and bad command-line input is refused."""
import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "keras_notes.py"


@pytest.fixture(scope="module")
def notes():
    spec = importlib.util.spec_from_file_location("examples_keras_notes", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run(notes, capsys):
    res = notes.main(["--quick", "--epochs", "1"])
    out = capsys.readouterr().out
    assert res["totals"] == {"SimpleRNN": 500000 + 5050 + 1632 + 33,
                             "LSTM": 500000 + 20200 + 1632 + 33,
                             "GRU": 500000 + 15300 + 1632 + 33}
    assert "Total params: 506,715" in out
    assert set(res["accuracy"]) == {"Embedding + Dense", "SimpleRNN", "LSTM", "GRU",
                                    "GRU 2-layer"}
    assert all(0.0 <= a <= 1.0 for a in res["accuracy"].values())
    mae, naive = res["time_series"]
    assert mae > 0 and naive > 0
    assert "test accuracy" in out and "time series: test MAE" in out


def test_window_model_learns(notes):
    early, _ = notes.time_series(300, 1)
    late, _ = notes.time_series(300, 30)
    assert late < 0.7 * early


def test_bad_arguments(notes):
    with pytest.raises(SystemExit):
        notes.main(["--epochs", "0"])
    with pytest.raises(SystemExit):
        notes.main(["--verbose", "3"])
