"""Smoke test of examples/keras_notes.py: the notes' tables, the comparison and the window
model run through main([...]) on a little data, and bad command-line input is refused."""

import numpy as np
import pytest
from test_examples import _load


@pytest.fixture(scope="module")
def notes():
    return _load("keras_notes")


def test_quick_run(notes, capsys):
    res = notes.main(["--quick", "--epochs", "1"])
    out = capsys.readouterr().out
    assert res["totals"] == {
        "SimpleRNN": 500000 + 5050 + 1632 + 33,
        "LSTM": 500000 + 20200 + 1632 + 33,
        "GRU": 500000 + 15300 + 1632 + 33,
    }
    assert "Total params: 506,715" in out
    assert set(res["accuracy"]) == {"Embedding + Dense", "SimpleRNN", "LSTM", "GRU", "GRU 2-layer"}
    assert all(0.0 <= a <= 1.0 for a in res["accuracy"].values())
    mae, naive = res["time_series"]
    assert mae > 0 and naive > 0
    assert "test accuracy" in out and "time series: test MAE" in out
    assert res["hello"][0] == "ello" and "hello: 'hell' -> " in out


def test_window_model_learns(notes):
    early, _ = notes.time_series(300, 1)
    late, _ = notes.time_series(300, 30)
    assert late < 0.7 * early


def test_bad_arguments(notes):
    with pytest.raises(SystemExit):
        notes.main(["--epochs", "0"])
    with pytest.raises(SystemExit):
        notes.main(["--verbose", "3"])


def test_hello_model(notes):
    greedy, text = notes.hello(150)
    assert greedy == "ello"
    assert len(text) == 5 and text[0] == "h" and set(text) <= set("helo")


def test_imdb_folder_and_csv(notes, tmp_path, capsys):
    pos = ["a great movie, great acting", "wonderful and great fun", "great great film"]
    neg = ["a bad movie, awful acting", "boring and bad", "bad bad film"]
    for split in ("train", "test"):
        for label, texts in (("pos", pos), ("neg", neg)):
            d = tmp_path / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i, t in enumerate(texts):
                (d / f"{i}_1.txt").write_text(t + "<br />", encoding="utf-8")
    x_train, y_train, x_test, y_test = notes.read_imdb(str(tmp_path / "aclImdb"), 50, 8)
    assert x_train.shape == (6, 8) and x_test.shape == (6, 8)
    assert y_train.tolist() == y_test.tolist() == [1, 1, 1, 0, 0, 0]
    assert (x_train[:, 0] == 0).any()  # short reviews padded in front
    csv = tmp_path / "series.csv"
    csv.write_text("t,value\n" + "".join(f"{i},{np.sin(i / 3):.4f}\n" for i in range(60)))
    s = notes.read_csv_series(str(csv))
    assert s.shape == (60,) and abs(float(s.mean())) < 1e-5
    res = notes.main(
        ["--quick", "--epochs", "1", "--imdb", str(tmp_path / "aclImdb"), "--csv", str(csv)]
    )
    assert set(res["accuracy"]) == {"Embedding + Dense", "SimpleRNN", "LSTM", "GRU", "GRU 2-layer"}
    with pytest.raises(SystemExit):
        notes.main(["--quick", "--imdb", str(tmp_path / "nowhere")])
    capsys.readouterr()
