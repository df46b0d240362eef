"""benchmarks/bench_lm.py: a tiny run end to end, the agreement check that guards its timings,
and its refusals. No timing is asserted: timings depend on the machine and its load."""

import numpy as np
import pytest

import minigrad as mg
from benchmarks import bench_lm
from benchmarks.harness import lm_step

TINY = ["--vocab", "7", "--embed", "3", "--hidden", "4", "--batch", "2", "--seq-len", "3"]
TINY += ["--min-time", "0.01", "--warmup", "0"]


def test_a_tiny_run_prints_both_tables_and_restores_the_threads(capsys):
    before = mg.get_num_threads()
    results = bench_lm.main(TINY + ["--cells", "gru", "--threads", "1", "--profile-threads", "1"])
    assert mg.get_num_threads() == before
    out = capsys.readouterr().out
    assert out.count("legend: ") == 3  # totals, the shapes of the floor, the parts
    totals = [r for r in results if "part" not in r]
    parts = [r["part"] for r in results if "part" in r]
    assert [(r["cell"], r["threads"]) for r in totals] == [("gru", 1)]
    assert parts == list(lm_step.PARTS)
    assert all(v > 0 for r in results for v in (r.get("ms") or r["us"]).values())
    assert "sum of parts" in out and "Embedding(7, 3) -> 2 x GRU(4)" in out


@pytest.mark.parametrize("k", [1, 3])
def test_the_profile_runs_each_part_k_times_a_turn(monkeypatch, k):
    from benchmarks.harness import timing

    seen = []
    real = timing.time_interleaved

    def spy(runs, warmup, **kw):
        seen.append((tuple(runs), kw.get("run_length", 1)))
        return real(runs, warmup, **kw)

    monkeypatch.setattr(timing, "time_interleaved", spy)
    bench_lm.main(
        TINY
        + ["--cells", "gru", "--threads", "1", "--profile-threads", "1", "--no-torch"]
        + ["--part-run-length", str(k)]
    )
    # the whole step one run a turn, each of the parts k
    assert [n for _, n in seen] == [1] + [k] * len(lm_step.PARTS)


def test_without_torch_only_minigrad_is_timed(capsys):
    results = bench_lm.main(
        TINY + ["--cells", "lstm", "--threads", "1", "--no-torch", "--no-profile"]
    )
    assert [set(r["ms"]) for r in results] == [{"minigrad"}]
    out = capsys.readouterr().out
    assert "torch left out (--no-torch)" in out and "not installed" not in out


def test_the_models_agree_and_a_different_weight_is_caught():
    pytest.importorskip("torch")
    pb = lm_step.LMProblem("lstm", vocab=7, embed=3, hidden=4, layers=2, batch=2, seq=3)
    models = lm_step.build(pb, ["minigrad", "torch"])
    lm_step.check_agreement(models)  # the same model in both frameworks
    with np.errstate(all="ignore"):
        models["torch"].P["rnn.weight_hh_l1"].data += 0.1
    with pytest.raises(AssertionError, match="torch: "):
        lm_step.check_agreement(models)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0"], "thread settings are 'own' or integers >= 1, got '0'"),
        (["--cells", "rnn"], "cells must be among ('lstm', 'gru')"),
        (["--hidden", "0"], "--hidden must be >= 1, got 0"),
        (["--min-time", "0"], "--min-time must be > 0, got 0.0"),
        (["--part-run-length", "0"], "--part-run-length must be >= 1, got 0"),
    ],
)
def test_bad_options_are_refused_naming_them(capsys, argv, message):
    with pytest.raises(SystemExit):
        bench_lm.main(argv + ["--no-torch"])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3)])
def test_gemm_flops_counts_every_product_of_the_step(cell, gates):
    V, E, H, L, B, T = 7, 3, 5, 2, 2, 4
    pb = lm_step.LMProblem(cell, vocab=V, embed=E, hidden=H, layers=L, batch=B, seq=T)
    N, G = B * T, gates * H
    products = []  # (m, n, k) of each product, forward and backward
    for inp in (E, H):  # layer 0 reads the embedding, layer 1 the layer below
        products += [(N, G, inp), (N, G, H)]  # x W_ih^T (all steps), h W_hh^T (per step)
        products += [(N, inp, G), (G, inp, N)]  # dx = dG W_ih, dW_ih = dG^T x
        products += [(N, H, G), (G, H, N)]  # dh = dG W_hh (per step), dW_hh = dG^T h
    products += [(N, V, H), (N, H, V), (V, H, N)]  # head: logits, dh, dW
    assert pb.gemm_flops() == sum(2 * m * n * k for m, n, k in products)


def test_the_gemm_bound_column_is_the_flops_at_the_measured_rate():
    results = bench_lm.main(
        TINY + ["--cells", "lstm", "--threads", "1", "--no-profile", "--sgemm-n", "32"]
    )
    (row,) = results
    pb = lm_step.LMProblem("lstm", vocab=7, embed=3, hidden=4, batch=2, seq=3)
    assert row["sgemm_gflops"] > 0
    assert row["gemm_bound_ms"] == pytest.approx(pb.gemm_flops() / row["sgemm_gflops"] / 1e6)


def test_the_matmul_head_computes_what_the_linear_head_does():
    kw = dict(vocab=7, embed=3, hidden=4, layers=2, batch=2, seq=3)
    lin = lm_step.build(lm_step.LMProblem("gru", **kw), ["minigrad"])["minigrad"]
    mat = lm_step.build(lm_step.LMProblem("gru", head="matmul", **kw), ["minigrad"])["minigrad"]
    (l1, g1), (l2, g2) = lin.loss_and_grads(), mat.loss_and_grads()
    assert l1 == pytest.approx(l2, rel=1e-6)
    assert set(g1) == set(g2)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-5, atol=1e-7, err_msg=k)
    with pytest.raises(ValueError, match="head must be one of linear, matmul, got 'dense'"):
        lm_step.LMProblem("gru", head="dense", **kw)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_shapes_of_the_floor_are_the_products_counted(cell):
    pb = lm_step.LMProblem(cell, vocab=7, embed=3, hidden=5, layers=3, batch=2, seq=4)
    shapes = pb.gemm_shapes()
    assert sum(2 * m * n * k * times for _, m, n, k, _, times in shapes) == pb.gemm_flops()
    total, rows = bench_lm.shape_floor(pb, 1, repeats=1, passes=2)
    assert [r[0] for r in rows] == [s[0] for s in shapes]
    assert total == pytest.approx(sum(r[3] for r in rows))
    assert all(r[3] > 0 and r[5] in ("numpy", "minigrad", "packed") for r in rows)
    assert {r[5] for r in rows if r[2] == 1} <= {"numpy", "minigrad"}  # packed: per step only
