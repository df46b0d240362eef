"""The benchmark harness the ``benchmarks/bench_*.py`` scripts are thin command lines over.

    threads      BLAS/OpenMP thread count: set before NumPy loads, then applied to every pool
    problem      the recurrent training step's sizes, weights, data and GEMM FLOP count
    contenders   the implementations of that step that take turns (minigrad, numpy, torch, ...)
    agreement    the check that the contenders compute the same losses and gradients
    timing       interleaved rounds in balanced orders, batched calls, busy-waiting
    stats        bootstrap intervals of ratios and differences of medians
    machine      machine facts: CPU and versions, the SGEMM rate, the cache-eviction probe
    memory       peak memory of a contender's training steps, each cell/size in a child process
    framework_cost  minigrad's step against the kernels called by hand, after each predecessor
    kernel_cases the compiled-kernel and NumPy-twin calls bench_kernels.py times
    cli          argparse help that shows each default once, and table printing with a legend
    plot         the time-per-step plot of bench_rnn.py (matplotlib, optional)

This file imports nothing, and neither does ``threads``: a script can set the thread count
through ``benchmarks.harness.threads`` before anything imports NumPy.
"""
