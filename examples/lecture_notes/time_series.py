"""The lecture notes' time-series window model (seed 001): windows of 5 steps of a series
(``timeseries_dataset_from_array``), split by time, the notes' stacked SimpleRNN(3) ->
SimpleRNN(3) -> Dense(1) trained with the mean absolute error; prints the test MAE beside the
MAE of repeating the window's last value. By default the series is a generated noisy seasonal
one; ``--csv PATH`` takes the last numeric column of a CSV file instead.

    python examples/lecture_notes/time_series.py            # 1,000 steps, 200 epochs
    python examples/lecture_notes/time_series.py --quick    # 200 steps, 4 epochs

A full run printed test MAE 0.124 against 0.170 for repeating the last value.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small GEMMs: one thread is fastest here

import sys

import numpy as np

try:
    import minigrad as mg
except ImportError:  # running from a source checkout without `pip install .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    import minigrad as mg
# the helper next to this script (its folder is on sys.path when run as a script)
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from _fit_args import epochs, fit_parser

from minigrad.keras import layers, models, utils


def time_series(n_steps, epochs, seed=0, window=5, verbose=0, series=None):
    """(test MAE of the notes' stacked SimpleRNN, test MAE of repeating the window's last value)."""
    rng = np.random.default_rng(seed)
    if series is None:
        t = np.arange(n_steps)
        series = 0.5 * np.sin(2 * np.pi * t / 12) + 0.002 * t + 0.05 * rng.standard_normal(n_steps)
    series = np.asarray(series, np.float32)[:, None]
    cut = int(len(series) * 0.8)  # split by time, not at random
    train = utils.timeseries_dataset_from_array(
        series[:cut], series[window:cut], window, batch_size=32
    )
    test = utils.timeseries_dataset_from_array(
        series[cut - window :], series[cut:], window, batch_size=32
    )
    mg.manual_seed(seed)
    model_4 = models.Sequential(name="Stackd_RNN")
    model_4.add(layers.SimpleRNN(3, input_shape=(window, 1), return_sequences=True))
    model_4.add(layers.SimpleRNN(3, input_shape=(window, 1), return_sequences=False))
    model_4.add(layers.Dense(1))
    model_4.compile(loss="mae", optimizer="adam", metrics=["mae"])
    model_4.fit(train, epochs=epochs, verbose=verbose)
    mae = model_4.evaluate(test, verbose=0)[0]
    x_test, y_test = test.as_numpy()
    naive = float(np.mean(np.abs(x_test[:, -1] - y_test)))
    print(f"time series: test MAE {mae:.4f} (repeat-last-value baseline {naive:.4f})")
    return mae, naive


def read_csv_series(path):
    """The last numeric column of a CSV file (a header row is skipped)."""
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().split(",") if c.strip()]
            try:
                values.append(float(cells[-1]))
            except (ValueError, IndexError):
                continue
    if len(values) < 20:
        raise SystemExit(f"--csv: need at least 20 numeric rows in {path}, found {len(values)}")
    v = np.array(values, np.float32)
    return (v - v.mean()) / (v.std() + 1e-8)


def main(argv=None):
    p = fit_parser(__doc__, "200 steps of the series, 4 epochs", 200)
    p.add_argument("--csv", metavar="PATH", help="a CSV file (default: a generated series)")
    args = p.parse_args(argv)
    series = read_csv_series(args.csv) if args.csv else None
    steps = 200 if args.quick else 1000
    n_epochs = epochs(p, args, 4, 200)
    return time_series(steps, n_epochs, args.seed, verbose=args.verbose, series=series)


if __name__ == "__main__":
    main()
