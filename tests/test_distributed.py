"""Data-parallel training (minigrad.distributed) under ``mpiexec -n 2`` on this machine.

tests/distributed_worker.py is run by mpiexec (each launch bounded by a timeout) and writes what
each rank ended with; these tests compare that with one process training on the whole batch
(the worker's cases, run here without MPI).  The API at world size 1 is tested in-process."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")

import minigrad as mg  # noqa: E402
import minigrad.functional as F  # noqa: E402
from minigrad import distributed as dist  # noqa: E402
from minigrad import nn  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import distributed_worker as dw  # noqa: E402

WORKER = pathlib.Path(__file__).parent / "distributed_worker.py"
LAUNCH_TIMEOUT = 120  # seconds per mpiexec launch: a hang fails the test instead of CI


def _mpiexec():
    # the mpiexec next to this Python (a venv's), else the first on PATH
    here = pathlib.Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found (pip install mpich)")
    return found


def _launch(mode, outdir, timeout=LAUNCH_TIMEOUT):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(WORKER.parent.parent))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, str(WORKER), mode, str(outdir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc, _ = _launch("main", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = [json.loads((out / f"main.rank{r}.json").read_text()) for r in range(2)]
    return out, found


def _states(out, name):
    return [dict(np.load(out / f"{name}.rank{r}.npz")) for r in range(2)]


@pytest.mark.parametrize("name", sorted(dw.CASES))
def test_two_ranks_equal_one_process_on_the_whole_batch(main_run, name):
    out, _ = main_run
    model, opt, _ = dw.train(name)  # one process, all 8 rows per step
    ref = dw.flat_state(model, opt)
    r0, r1 = _states(out, name)
    assert set(r0) == set(ref) == set(r1)
    for k in r0:  # the ranks end bit-identical: parameters and optimizer state
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    tol = 1e-10 if dw.CASES[name][1] == np.float64 else 1e-4
    for k in ref:
        np.testing.assert_allclose(r0[k], ref[k], rtol=tol, atol=tol, err_msg=k)


def test_the_comparison_can_fail():
    """Training on half the batch without averaging lands far from the reference: the
    tolerance above separates averaged gradients from local ones."""
    ref = dw.flat_state(*dw.train("lstm64")[:2])
    local = dw.flat_state(*dw.train("lstm64", world=2, rank=0)[:2])
    assert max(np.abs(ref[k] - local[k]).max() for k in ref) > 1e-3


def test_results_do_not_depend_on_bucket_size(main_run):
    out, found = main_run
    assert found[0]["buckets_small"] == found[0]["params"] and found[0]["buckets_big"] == 1
    small, big = _states(out, "lstm64")[0], _states(out, "lstm64_bigbucket")[0]
    for k in small:
        np.testing.assert_array_equal(small[k], big[k], err_msg=k)


def test_first_reduce_starts_before_backward_ends(main_run):
    _, found = main_run
    log = found[0]["launch_log"]  # (bucket, gradients not yet complete) at each launch
    assert [b for b, _ in log] == list(range(found[0]["params"]))  # every bucket, in order
    assert log[0][1] > 0  # the first all-reduce started while gradients were still to come
    assert log[-1][1] == 0


def test_backward_writes_the_gradients_into_the_buckets(main_run):
    """The kernels of every layer here (embedding, LSTM/GRU, linear) write their parameters'
    gradients straight into DDP's buckets, already divided by the number of ranks: nothing is
    copied before the all-reduce.  With zero_grad(set_to_none=False) backward adds to the
    .grad it finds instead, and DDP copies every gradient (the training result is the same:
    the equality test above)."""
    _, found = main_run
    params = found[0]["params"]
    for f in found:
        for name, copied in f["copied"].items():
            assert copied == (params if "zeroed" in name else 0), (name, copied)


def test_mismatched_models_are_refused_at_wrap_time_on_every_rank(main_run):
    _, found = main_run
    for f in found:
        assert "different models" in f["mismatch"] and "(32, 5)" in f["mismatch"]
        assert "(36, 5)" in f["mismatch"]
        assert "float32" in f["mismatch_dtype"] and "float64" in f["mismatch_dtype"]


def test_buffers_collectives_and_checkpoint(main_run, tmp_path):
    out, found = main_run
    for f in found:
        assert f["buffer_after_forward"] == [10.0, 10.0, 10.0]  # rank 0's value everywhere
        assert f["sum"] == [3.0, 2.0] and f["mean"] == [1.5] and f["max_int"] == 6
        assert f["broadcast"] == [8.0]
        assert f["synced"] == [1.5, [0.5, 0.5], True]  # a rank without a gradient counts 0
        assert f["ckpt_same"] is True
    # rank 0's checkpoint loads in one process into the bare model
    model = dw.build("gru64")
    model.load_state_dict(mg.load(out / "ckpt.npz")["model"])
    ref = _states(out, "gru64")[0]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, ref[f"param/{k}"])


@pytest.mark.parametrize(
    "mode, message",
    [
        ("raise", "rank 1 of 2 raised ValueError: a bad batch on rank 1; aborting all ranks"),
        ("hang", "the gradient all-reduce did not complete within 3 s"),
    ],
)
def test_a_failing_rank_ends_the_job_with_a_clear_error(tmp_path, mode, message):
    proc, seconds = _launch(mode, tmp_path, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert message in text, text
    assert "finished" not in text  # no rank ran on after the failure
    assert seconds < 50


# ----------------------------------------------------------------------------- world size 1
@pytest.fixture(scope="module")
def comm():
    return dist.init()


def test_world_of_one(comm):
    assert dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.init() is comm
    dist.barrier()
    a = np.array([1.0, 2.0])
    assert dist.all_reduce(a, "mean") is a and a.tolist() == [1.0, 2.0]
    assert dist.all_reduce(3, "sum") == 3


def test_ddp_of_one_rank_is_plain_training(comm):
    ref = dw.flat_state(*dw.train("gru_lengths64")[:2])
    got = dw.flat_state(
        *dw.train("gru_lengths64", wrap=lambda m: dist.DistributedDataParallel(m, bucket_mb=1e-4))[
            :2
        ]
    )
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_ddp_state_dict_is_the_modules_and_no_sync_accumulates(comm):
    model = dw.build("lstm64")
    ddp = dist.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == list(model.state_dict())
    ids, targets = dw._lm_batch(0, 1, 0)
    with ddp.no_sync():
        F.cross_entropy(ddp(ids)[0].reshape(-1, dw.VOCAB), targets.reshape(-1)).backward()
    assert ddp.launch_log == []  # nothing was reduced
    once = [p.grad.copy() for p in model.parameters()]
    F.cross_entropy(ddp(ids)[0].reshape(-1, dw.VOCAB), targets.reshape(-1)).backward()
    assert len(ddp.launch_log) == len(ddp.buckets)
    for g1, p in zip(once, model.parameters()):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-12)


def test_unused_parameter_keeps_no_gradient(comm):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(3, 2))
    dist.DistributedDataParallel(model, bucket_mb=1e-6)
    model[0](mg.tensor(np.ones((1, 3), dtype=np.float32))).sum().backward()
    assert model[0].weight.grad is not None and model[1].weight.grad is None


def test_forward_after_a_failed_backward_raises(comm):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    ddp = dist.DistributedDataParallel(model, bucket_mb=1e-6)

    def fail(g):
        raise ValueError("bad gradient")

    model[0].weight.register_hook(fail)  # runs after the second layer's gradients are done
    x = mg.tensor(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="bad gradient"):
        ddp(x).sum().backward()
    with pytest.raises(dist.DistributedError, match="out of step"):
        ddp(x)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"bucket_mb": 0}, ValueError, "bucket_mb must be positive"),
        ({"bucket_mb": "1"}, TypeError, "bucket_mb must be a number"),
        ({"timeout": -1}, ValueError, "timeout must be a positive"),
        ({"timeout": True}, ValueError, "timeout must be a positive"),
    ],
)
def test_ddp_arguments_are_checked(comm, kwargs, error, text):
    with pytest.raises(error, match=text):
        dist.DistributedDataParallel(nn.Linear(2, 2), **kwargs)


def test_bad_collective_arguments(comm):
    with pytest.raises(TypeError, match="wraps a Module"):
        dist.DistributedDataParallel(object())
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(np.ones(2), "avg")
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.all_reduce(np.ones((3, 3))[:, 0], "sum")
    with pytest.raises(ValueError, match="root must be a rank"):
        dist.broadcast(np.ones(2), root=1)
    with pytest.raises(TypeError, match="ndarray or a Tensor"):
        dist.all_reduce([1.0, 2.0], "sum")
    with pytest.raises(TypeError, match="root must be an int rank"):
        dist.broadcast(np.ones(2), root=0.0)
    with pytest.raises(TypeError, match="integer or floating-point array, got dtype bool"):
        dist.all_reduce(np.ones(2, dtype=bool), "sum")
    with pytest.raises(TypeError, match="op='mean' needs a float array"):
        dist.all_reduce(np.ones(2, dtype=np.int64), "mean")


def test_collectives_take_numpy_ranks_and_numbers(comm):
    """A NumPy integer rank is a rank; the mean of a Python int is a float (one rank here)."""
    a = np.arange(3.0)
    assert dist.broadcast(a, root=np.int64(0)) is a
    assert dist.all_reduce(3, "mean") == 3.0
    assert dist.all_reduce(3, "sum") == 3


def test_broadcast_into_a_tensor_counts_as_a_modification(comm):
    """A tensor overwritten by broadcast after it was saved for backward makes that backward
    fail with the modified-tensor error instead of using the new values silently."""
    w = mg.tensor(np.ones(3), requires_grad=True)
    x = mg.tensor(np.full(3, 2.0))
    y = (w * x).sum()
    dist.broadcast(x)
    with pytest.raises(RuntimeError, match="modified"):
        y.backward()


# ----------------------------------------------------------------------------- the main job
def test_char_rnn_distributed_matches_one_process(tmp_path):
    """`mpiexec -n 2 python examples/char_rnn.py --distributed`: the same validation figures
    as one process with the same global batch, printed once (rank 0), and rank 0's checkpoint
    resumes in one process."""
    from load_script import ROOT, load_script

    rng = np.random.default_rng(0)
    words = ["def", "return", "self", "value", "import", "class", "None", "if", "else"]
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(rng.choice(words, 5)) for _ in range(600)))
    flags = ["--text", str(text), "--hidden", "32", "--embed", "8", "--seq-len", "16"]
    flags += ["--batch-size", "8", "--steps", "12", "--eval-every", "6", "--lr", "1e-2"]
    flags += ["--eval-chars", "2000", "--final-eval-chars", "2000", "--sample-len", "10"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    ck = tmp_path / "ck.npz"
    proc = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "char_rnn.py")]
        + flags
        + ["--distributed", "--save", str(ck)],
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("done:") == 1 and "data-parallel on 2 ranks" in proc.stdout
    got = [
        float(line.split("validation ")[1].split()[0])
        for line in proc.stdout.splitlines()
        if line.startswith("step ") and "validation" in line
    ]
    char_rnn = load_script("examples/char_rnn.py")
    ref = char_rnn.main(flags + ["--quiet"])
    assert len(got) == 2
    np.testing.assert_allclose(got, [bpc for _, bpc in ref["history"]], atol=2e-3)
    resumed = char_rnn.main(flags + ["--quiet", "--resume", str(ck), "--sample-len", "0"])
    assert resumed["steps"] == 12
    np.testing.assert_allclose(resumed["val_bpc"], got[-1], atol=2e-3)
