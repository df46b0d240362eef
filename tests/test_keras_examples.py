"""Smoke tests of examples/lecture_notes/: the notes' tables, the sentiment comparison, the
window model and the "hello" model run through main([...]) on a little data, and bad
command-line input is refused."""

import numpy as np
import pytest
from load_script import script_fixture

tables = script_fixture("examples/lecture_notes/parameter_tables.py")
sentiment = script_fixture("examples/lecture_notes/sentiment.py")
series = script_fixture("examples/lecture_notes/time_series.py")
hello = script_fixture("examples/lecture_notes/hello.py")


def test_parameter_tables(tables, capsys):
    totals = tables.main([])
    out = capsys.readouterr().out
    assert totals == {
        "SimpleRNN": 500000 + 5050 + 1632 + 33,
        "LSTM": 500000 + 20200 + 1632 + 33,
        "GRU": 500000 + 15300 + 1632 + 33,
    }
    assert "Total params: 506,715" in out and "5050" in out and "20200" in out


def test_sentiment_quick_run(sentiment, capsys):
    acc = sentiment.main(["--quick", "--epochs", "1"])
    assert set(acc) == {"Embedding + Dense", "SimpleRNN", "LSTM", "GRU", "GRU 2-layer"}
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert "test accuracy" in capsys.readouterr().out


def test_window_model_learns(series, capsys):
    early, _ = series.time_series(300, 1)
    late, naive = series.time_series(300, 30)
    assert late < 0.7 * early and naive > 0
    mae, _ = series.main(["--quick", "--epochs", "1"])
    assert mae > 0 and "time series: test MAE" in capsys.readouterr().out


def test_bad_arguments(sentiment, series, hello):
    for module, args in (
        (sentiment, ["--epochs", "0"]),
        (sentiment, ["--verbose", "3"]),
        (series, ["--epochs", "0"]),
        (hello, ["--epochs", "0"]),
    ):
        with pytest.raises(SystemExit):
            module.main(args)


def test_hello_model(hello, capsys):
    greedy, text = hello.main(["--epochs", "150"])
    assert greedy == "ello"
    assert len(text) == 5 and text[0] == "h" and set(text) <= set("helo")
    assert "hello: 'hell' -> " in capsys.readouterr().out


def test_imdb_folder_and_csv(sentiment, series, tmp_path, capsys):
    pos = ["a great movie, great acting", "wonderful and great fun", "great great film"]
    neg = ["a bad movie, awful acting", "boring and bad", "bad bad film"]
    for split in ("train", "test"):
        for label, texts in (("pos", pos), ("neg", neg)):
            d = tmp_path / "aclImdb" / split / label
            d.mkdir(parents=True)
            for i, t in enumerate(texts):
                (d / f"{i}_1.txt").write_text(t + "<br />", encoding="utf-8")
    x_train, y_train, x_test, y_test = sentiment.read_imdb(str(tmp_path / "aclImdb"), 50, 8)
    assert x_train.shape == (6, 8) and x_test.shape == (6, 8)
    assert y_train.tolist() == y_test.tolist() == [1, 1, 1, 0, 0, 0]
    assert (x_train[:, 0] == 0).any()  # short reviews padded in front
    csv = tmp_path / "series.csv"
    csv.write_text("t,value\n" + "".join(f"{i},{np.sin(i / 3):.4f}\n" for i in range(60)))
    s = series.read_csv_series(str(csv))
    assert s.shape == (60,) and abs(float(s.mean())) < 1e-5
    acc = sentiment.main(["--quick", "--epochs", "1", "--imdb", str(tmp_path / "aclImdb")])
    assert set(acc) == {"Embedding + Dense", "SimpleRNN", "LSTM", "GRU", "GRU 2-layer"}
    mae, _ = series.main(["--quick", "--epochs", "1", "--csv", str(csv)])
    assert mae > 0
    with pytest.raises(SystemExit):
        sentiment.main(["--quick", "--imdb", str(tmp_path / "nowhere")])
    capsys.readouterr()
