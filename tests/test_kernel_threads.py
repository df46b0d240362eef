"""The compiled kernels on several threads give the results of one thread.

Every kernel (linear, RNN/LSTM/GRU cells and sequences, forward and backward, float32 and
float64, with and without lengths, biases, the recurrent dropout and zoneout masks and layer
norm) runs once on one thread and once on n threads with every problem split as far as its rows
allow (the pool's work threshold set to 1), over hypothesis-drawn shapes including a batch
smaller than the thread count and B = 1. The split changes no reduction order: with the
small-matrix GEMM kernel the outputs are equal bit for bit. OpenBLAS may sum a product of another
shape in another order (a one-row product as a GEMV, its float32 kernels by size), so on BLAS
the outputs agree within the kernel-vs-twin tolerance of test_kernels.
The optimizer updates are elementwise: bit for bit.
"""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_kernels import (
    KINDS,
    LN_KINDS,
    assert_same,
    backward,
    forward,
    named_cache,
    ops,
    problems,
    twin_backward_error,
    with_layer_norm,
)

import minigrad as mg
from minigrad import _gemm, _pool, threads


@contextlib.contextmanager
def setting(n, gemm_path):
    """n threads, every kernel split (work threshold 1), the GEMM path forced: 'small' (the C
    kernel everywhere) or 'blas' (BLAS everywhere)."""
    before, work = mg.get_num_threads(), _pool._set_min_part_work(1)
    small = _gemm._set_small_gemm(1 << 40 if gemm_path == "small" else 0)
    mg.set_num_threads(n)
    try:
        yield
    finally:
        mg.set_num_threads(before)
        _pool._set_min_part_work(work)
        _gemm._set_small_gemm(small)


def run(problem, n, gemm_path):
    """Forward outputs and backward gradients (on the forward's own cache), by name."""
    with setting(n, gemm_path):
        out = forward(ops, problem)
        grads = backward(ops, problem, out.get("cache"))
    arrays = {"raw cache": out.get("cache")}
    for name, a in out.items():
        for cname, c in named_cache(problem.kind, a) if name == "cache" else [(name, a)]:
            arrays[cname] = c
    return arrays, grads


def exact(problem, gemm_path):
    return gemm_path == "small"


@pytest.mark.parametrize("gemm_path", ["small", "blas"])
@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_n_threads_match_one_thread(kind, gemm_path, data):
    problem = data.draw(problems(kind, max_size=13, max_T=6), label="problem")
    n = data.draw(st.integers(2, 5), label="threads")
    assert_n_threads_match_one_thread(problem, n, gemm_path)


@pytest.mark.parametrize("gemm_path", ["small", "blas"])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "linear"])
@given(data=st.data())
def test_n_threads_match_one_thread_with_dropout_and_zoneout_masks(kind, gemm_path, data):
    """Recurrent dropout (the masked state each step's GEMM reads, the masked gradient after it,
    the masked states of the deferred dW_hh) and zoneout (per row) on the threads' row slices."""
    problem = data.draw(problems(kind, max_size=13, max_T=6, masked=True), label="problem")
    assert problem.values["masks"] is not None
    n = data.draw(st.integers(2, 5), label="threads")
    assert_n_threads_match_one_thread(problem, n, gemm_path)


@pytest.mark.parametrize("gemm_path", ["small", "blas"])
@pytest.mark.parametrize("kind", LN_KINDS)
@given(data=st.data())
def test_n_threads_match_one_thread_with_layer_norm(kind, gemm_path, data):
    """Layer norm (the per-row norms in the fused passes, their cache rows, the gain and shift
    gradients summed over all rows after the loop), with and without the masks. On BLAS in
    float64 only: OpenBLAS rounds a float32 product of another row count differently, and the
    norms over a few units amplify that rounding past any tolerance tied to the twin's own
    error (seen: 3e-5 on a gain gradient at H = 4); the float32 split is held bit for bit on the
    small-GEMM path."""
    dtypes = (np.float64,) if gemm_path == "blas" else (np.float32, np.float64)
    problem = data.draw(
        problems(kind, max_size=13, max_T=6, min_H=4, dtypes=dtypes), label="problem"
    )
    problem = with_layer_norm(problem, data.draw(st.integers(0, 2**32 - 1), label="ln seed"))
    n = data.draw(st.integers(2, 5), label="threads")
    assert_n_threads_match_one_thread(problem, n, gemm_path)


def assert_n_threads_match_one_thread(problem, n, gemm_path):
    """problem's outputs and gradients on n threads are those of one thread: equal bit for bit
    on the small-GEMM path, within the kernel-vs-twin tolerance on BLAS."""
    one_out, one_grads = run(problem, 1, gemm_path)
    many_out, many_grads = run(problem, n, gemm_path)
    twin_error = {}
    if not exact(problem, gemm_path):
        twin_error = twin_backward_error(problem, one_out.pop("raw cache"), one_grads)
    one_out.pop("raw cache", None)
    for table, got_table in ((one_out, many_out), (one_grads, many_grads)):
        for name, want in table.items():
            got = got_table[name]
            if want is None:
                assert got is None, name
            elif exact(problem, gemm_path):
                np.testing.assert_array_equal(got, want, err_msg=f"{name}: {n} threads vs 1")
            else:
                assert_same(
                    got, want, name, f"{n} threads vs 1", problem.dtype, twin_error.get(name, 0.0)
                )


def test_the_split_runs_on_more_than_one_thread():
    """The comparison above compares something: with the threshold at 1, a batch of 8 rows is
    cut into parts (the pool reports more than one part for it), and at the default threshold a
    small problem is not."""
    with setting(3, "small"):
        assert _pool._parts_for(1000.0, 8) == 3
        assert _pool._parts_for(1000.0, 2) == 2
    _pool._set_min_part_work(None)
    before = mg.get_num_threads()
    mg.set_num_threads(3)
    try:
        assert _pool._parts_for(1000.0, 8) == 1
    finally:
        mg.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_forward_on_n_threads_matches_one_thread(dtype):
    """The forward's rows are split across the threads; each row is computed alone, so the
    loss and the softmax are the same bit for bit, ignored rows included."""
    from minigrad import _cross_entropy

    rng = np.random.default_rng(5)
    for n, c in ((1, 3), (7, 5), (130, 65)):
        x = (rng.standard_normal((n, c)) * 4).astype(dtype)
        t = rng.integers(0, c, n).astype(np.int64)
        t[::3] = -100
        loss1, p1 = _cross_entropy.softmax_cross_entropy_forward(x, t, -100)  # one part
        # the pool's own setting (set_num_threads would also start NumPy's BLAS threads, which
        # spin for a while after they are created)
        before, work = _pool._get_threads(), _pool._set_min_part_work(1)
        try:
            for count in (2, 3, 7):
                _pool._set_threads(count)
                assert _pool._parts_for(n * c * 128.0, n) == min(count, n)
                loss, p = _cross_entropy.softmax_cross_entropy_forward(x, t, -100)
                np.testing.assert_array_equal(loss, loss1)
                np.testing.assert_array_equal(p, p1)
        finally:
            _pool._set_threads(before)
            _pool._set_min_part_work(work)
        assert np.all(loss1[::3] == 0) and np.allclose(p1.sum(1), 1, atol=1e-5)


def test_idle_workers_go_to_sleep():
    """After a threaded kernel the workers watch for the next job only briefly, then sleep: over
    half a second with nothing to do the process uses almost no CPU (a worker that kept spinning
    would use the whole half second)."""
    import time

    with setting(2, "small"):
        x = np.random.default_rng(0).standard_normal((20, 16, 8)).astype(np.float32)
        mg.nn.GRU(8, 8)(mg.tensor(x))  # a threaded sequence kernel: the workers now exist
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(0.5)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
    assert cpu < 0.25 * wall, f"{cpu:.3f} s of CPU while idle for {wall:.3f} s"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ["sgd", "adam", "adagrad", "rmsprop"])
def test_optimizer_updates_on_n_threads_match_one_thread(rule, dtype):
    rng = np.random.default_rng(3)
    n = 64 * 7 + 5  # chunks of 64 elements and a ragged end
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)

    def steps(threads):
        p = p0.copy()
        state = [np.full(n, 0.5, dtype) for _ in range(3)]
        with setting(threads, "small"):
            for t in (1, 2):
                if rule == "sgd":
                    ops.sgd_update(p, g, state[0], 0.1, 0.9, 0.1, 0.01, True, t == 1)
                elif rule == "adam":
                    ops.adam_update(
                        p, g, state[0], state[1], state[2], 1e-2, 0.9, 0.99, 1e-8, 0.01, t, True
                    )
                elif rule == "adagrad":
                    ops.adagrad_update(p, g, state[0], 0.1, 0.01, 0.01, 1e-10, t)
                else:
                    ops.rmsprop_update(
                        p, g, state[0], state[1], state[2], 0.01, 0.99, 1e-8, 0.01, 0.9
                    )
        return p, state

    p1, s1 = steps(1)
    for threads_n in (2, 3, 7):
        pn, sn = steps(threads_n)
        np.testing.assert_array_equal(pn, p1, err_msg=f"{rule}: p, {threads_n} threads")
        for a, b in zip(sn, s1):
            np.testing.assert_array_equal(a, b, err_msg=f"{rule}: state, {threads_n} threads")
    assert not np.array_equal(p1, p0)


def test_two_python_threads_in_the_kernels_at_once():
    """A second caller while a job runs gets its parts run on its own thread: same results."""
    import threading

    rng = np.random.default_rng(5)
    T, B, I, H = 6, 9, 7, 11
    x = rng.standard_normal((T, B, I))
    h0 = np.zeros((B, H))
    w_ih, w_hh = rng.standard_normal((4 * H, I)) * 0.3, rng.standard_normal((4 * H, H)) * 0.3
    want = ops.lstm_sequence_forward(x, h0, h0, w_ih, w_hh, None, None, None)[0]
    results = []
    with setting(3, "small"):

        def work():
            for _ in range(20):
                results.append(
                    ops.lstm_sequence_forward(x, h0, h0, w_ih, w_hh, None, None, None)[0]
                )

        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert len(results) == 60
    for r in results:
        np.testing.assert_array_equal(r, want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_threaded_kernels():
    rng = np.random.default_rng(6)
    x, h0 = rng.standard_normal((4, 6, 5)), np.zeros((6, 8))
    w_ih, w_hh = rng.standard_normal((24, 5)), rng.standard_normal((24, 8)) * 0.3
    with setting(2, "small"):
        want = ops.gru_sequence_forward(x, h0, w_ih, w_hh, None, None, None)[0]  # pool started
        pid = os.fork()
        if pid == 0:  # the child: its pool has no workers yet, and must not wait for the parent's
            ok = np.array_equal(
                ops.gru_sequence_forward(x, h0, w_ih, w_hh, None, None, None)[0], want
            )
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- the setting ---------------------------------------------------------------------------------


def test_default_is_the_cores_this_process_may_use():
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads.default_num_threads({}) == want


@pytest.mark.parametrize("value, want", [("3", 3), (" 1 ", 1), ("", None)])
def test_default_from_the_environment(value, want):
    got = threads.default_num_threads({"MINIGRAD_NUM_THREADS": value})
    assert got == (threads.default_num_threads({}) if want is None else want)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_environment_value_is_rejected(value):
    with pytest.raises(
        ValueError, match=f"MINIGRAD_NUM_THREADS must be a whole number >= 1, got '{value}'"
    ):
        threads.default_num_threads({"MINIGRAD_NUM_THREADS": value})


def _python(code, **env):
    """Run code in a fresh interpreter that imports this tree's minigrad, with env set (and
    MINIGRAD_NUM_THREADS unset unless given)."""
    full = {k: v for k, v in os.environ.items() if k != "MINIGRAD_NUM_THREADS"}
    full.update(PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), **env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120
    )


def test_the_environment_sets_kernels_and_numpys_blas_at_import():
    code = (
        "import minigrad\nfrom minigrad import threads\n"
        "print(minigrad.get_num_threads(), sorted((threads.kernels_only_blas(p), g())"
        " for p, _, g in threads.blas_libraries()))"
    )
    r = _python(code, MINIGRAD_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    n, libs = r.stdout.split(" ", 1)
    assert n == "3"
    for kernels_only, count in eval(libs):
        assert count == (1 if kernels_only else 3)


def test_a_bad_environment_value_stops_the_import_with_a_clear_error():
    r = _python("import minigrad", MINIGRAD_NUM_THREADS="many")
    assert r.returncode != 0
    assert "MINIGRAD_NUM_THREADS must be a whole number >= 1, got 'many'" in r.stderr


def test_an_environment_count_above_the_pools_limit_is_refused_as_set_num_threads_does():
    too_many = str(_pool.MAX_THREADS + 1)
    r = _python("import minigrad", MINIGRAD_NUM_THREADS=too_many)
    assert r.returncode != 0
    assert f"MINIGRAD_NUM_THREADS must be at most {_pool.MAX_THREADS}, got {too_many}" in r.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_the_default_follows_the_affinity_mask():
    code = (
        "import os\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "import minigrad\n"
        "print(minigrad.get_num_threads())"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_examples_keep_numpys_blas_at_one_thread_and_the_kernels_at_the_default():
    """examples/_cli.py, imported before NumPy, sets OPENBLAS_NUM_THREADS=1: NumPy's BLAS stays
    at one thread (no busy-waiting pool on small GEMMs) while minigrad's kernels run on their
    default count."""
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    code = (
        f"import sys\nsys.path.insert(0, {examples!r})\nimport _cli\n"
        "import minigrad\nfrom minigrad import threads\n"
        "print(minigrad.get_num_threads(), threads.default_num_threads(),"
        " sorted(g() for _, _, g in threads.blas_libraries()))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MINIGRAD_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    n, default, counts = r.stdout.split(" ", 2)
    assert n == default
    assert eval(counts) and set(eval(counts)) == {1}
