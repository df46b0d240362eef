"""examples/seq2seq_attention.py: the date data, beam search against greedy decoding, a short
run of both models, and bad flags."""

import numpy as np
import pytest
from load_script import script_fixture

import minigrad as mg

ex = script_fixture("examples/seq2seq_attention.py")


def test_dates_are_written_correctly(ex):
    assert ex.FORMATS[1](1994, 9, 27) == "Tuesday, September 27, 1994"  # a Tuesday indeed
    assert ex.FORMATS[1](2000, 2, 29) == "Tuesday, February 29, 2000"
    assert ex.FORMATS[8](2001, 3, 4) == "04.03.2001"
    pairs, seen = ex.make_dates(300, np.random.default_rng(0))
    assert len(seen) == 300
    for written, iso in pairs:
        y, m, d = map(int, iso.split("-"))
        assert str(y) in written and 1 <= d <= 31 and 1 <= m <= 12


def _model(ex, attention, n_src=30, n_tgt=13):
    mg.manual_seed(1)
    return ex.Seq2Seq(n_src, n_tgt, 8, 16, attention)


def _log_prob(ex, model, src, lengths, start, seq):
    with mg.no_grad():
        enc, state, pad = model.encode(src, lengths)
        tgt_in = np.concatenate([np.full((len(src), 1), start), seq[:, :-1]], axis=1)
        logits, _, _ = model.decode(tgt_in, state, enc, pad)
        logp = mg.functional.log_softmax(logits, axis=-1).data.astype(np.float64)
    return np.take_along_axis(logp, seq[:, :, None], 2)[..., 0].sum(1)


@pytest.mark.parametrize("attention", [False, True])
def test_beam_search(ex, attention):
    model = _model(ex, attention)
    model.eval()
    rng = np.random.default_rng(2)
    src = rng.integers(1, 30, size=(5, 7))
    lengths = np.array([7, 3, 5, 1, 6])
    greedy, _ = ex.greedy(model, src, lengths, 1, 6)
    np.testing.assert_array_equal(ex.beam_search(model, src, lengths, 1, 6, 1), greedy)
    best = ex.beam_search(model, src, lengths, 1, 6, 4)
    lp_beam = _log_prob(ex, model, src, lengths, 1, best)
    lp_greedy = _log_prob(ex, model, src, lengths, 1, greedy)
    assert np.all(lp_beam >= lp_greedy - 1e-5), (lp_beam, lp_greedy)


def test_short_run_reports_both_models(ex, capsys):
    res = ex.main(
        [
            "--train",
            "400",
            "--test",
            "40",
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--beam",
            "2",
            "--quiet",
        ]
    )
    assert set(res) == {"attention", "no attention"}
    for r in res.values():
        assert 0.0 <= r["greedy"] <= 1.0 and 0.0 <= r["beam"] <= 1.0
    out = capsys.readouterr().out
    assert "attention: exact match" in out and "(beam 2)" in out


def test_bad_flags(ex):
    with pytest.raises(SystemExit, match="--beam must be >= 0, got -1"):
        ex.main(["--beam", "-1", "--quiet"])
    with pytest.raises(SystemExit, match="--epochs must be >= 1, got 0"):
        ex.main(["--epochs", "0", "--quiet"])
