"""Grad mode is per thread: no_grad, enable_grad, set_grad_enabled, inference_mode."""

import threading

import numpy as np
import pytest

import minigrad as mg


def test_two_threads_one_under_no_grad_each_record_as_they_should():
    barrier = threading.Barrier(2, timeout=20)
    results = {}
    errors = []

    def worker(name, off):
        try:
            x = mg.tensor([1.0, 2.0], requires_grad=True)
            ctx = mg.no_grad() if off else mg.enable_grad()
            with ctx:
                barrier.wait()  # both threads are inside their block now
                y = x * 3
                barrier.wait()  # and both have recorded (or not) an op
                results[name] = (y.requires_grad, y.grad_fn is not None, mg.is_grad_enabled())
                barrier.wait()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=worker, args=("off", True)),
        threading.Thread(target=worker, args=("on", False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results["off"] == (False, False, False)
    assert results["on"] == (True, True, True)
    assert mg.is_grad_enabled()  # the main thread never left grad mode


def test_a_new_thread_starts_with_grad_on_even_if_the_creator_is_under_no_grad():
    seen = []
    with mg.no_grad():
        t = threading.Thread(target=lambda: seen.append(mg.is_grad_enabled()))
        t.start()
        t.join()
        assert not mg.is_grad_enabled()
    assert seen == [True]


def test_no_grad_enable_grad_nest_and_restore():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.no_grad():
        assert not (x * 2).requires_grad
        with mg.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad


def test_set_grad_enabled_as_call_context_and_decorator():
    x = mg.tensor([1.0], requires_grad=True)
    mg.set_grad_enabled(False)
    try:
        assert not mg.is_grad_enabled()
    finally:
        mg.set_grad_enabled(True)
    with mg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert mg.is_grad_enabled()

    @mg.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert mg.is_grad_enabled()
    assert not f(x).requires_grad

    @mg.no_grad()
    def g(t):
        return t * 2

    assert not g(x).requires_grad and g.__name__ == "g"


def test_inference_mode_records_nothing_and_restores():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.inference_mode():
        assert mg.is_inference_mode_enabled() and not mg.is_grad_enabled()
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert mg.is_grad_enabled() and not mg.is_inference_mode_enabled()
    with mg.inference_mode(False):
        assert (x * 2).requires_grad and not mg.is_inference_mode_enabled()

    @mg.inference_mode()
    def predict(t):
        return t * 2, mg.is_inference_mode_enabled()

    out, flag = predict(x)
    assert flag and not out.requires_grad
    # a tensor made inside is a constant later: gradients do not flow back through it
    z = (y * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad, y.data)


def test_inference_mode_restores_after_an_exception():
    with pytest.raises(ValueError):
        with mg.inference_mode():
            raise ValueError("boom")
    assert mg.is_grad_enabled() and not mg.is_inference_mode_enabled()
