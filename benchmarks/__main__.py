"""`python -m benchmarks [options]`: the recurrent training-step benchmark, the same run as
`python benchmarks/bench_rnn.py [options]` (see that file for the options).

bench_rnn runs as __main__ here, so it still sets the BLAS thread count before NumPy is
imported (this package's __init__ imports nothing)."""

import runpy

runpy.run_module("benchmarks.bench_rnn", run_name="__main__", alter_sys=True)
