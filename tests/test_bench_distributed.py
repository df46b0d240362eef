"""benchmarks/bench_distributed.py: the scaling model's arithmetic (the timed runs need MPI and
are the benchmark's own business)."""

import pytest

from benchmarks import bench_distributed as bench


def test_scaling_model_is_compute_plus_a_ring_all_reduce():
    # here: 10 us per message, 1 ns per byte; compute 100 ms at batch 32, halving with it
    by_size = [(1_000, 10e-6), (1_001_000, 10e-6 + 1e-3)]
    compute = {32: 0.1, 16: 0.05, 8: 0.025, 4: 0.0125, 2: 0.00625}
    software, slope, rows = bench.scaling_table(by_size, compute, grad_bytes=4e6)
    assert software == pytest.approx(10e-6) and slope == pytest.approx(1e-9)
    by_p = {r[0]: r for r in rows}
    assert by_p[1][1] == 0 and by_p[1][2] == pytest.approx(0.1)
    # 4 nodes: 6 messages of 1 MB, each 50 us + 10 us + 1e6 B * 0.8 ns/B on 10 Gbit/s
    comm4 = 6 * (50e-6 + 10e-6 + 1e6 * 0.8e-9)
    p, comm, strong, strong_tps, weak, weak_tps = by_p[4]
    assert comm == pytest.approx(comm4)
    assert strong == pytest.approx(0.025 + comm4)  # global batch 32: 8 streams per node
    assert weak == pytest.approx(0.1 + comm4)  # 32 streams per node
    assert weak_tps == pytest.approx(4 * 32 * 64 / weak)
    assert by_p[16][2] == pytest.approx(0.00625 + 30 * (60e-6 + 0.25e6 * 0.8e-9))
