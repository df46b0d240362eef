"""Bootstrap intervals for statistics of two contenders timed in the same interleaved rounds."""

import numpy as np

RATIO_LEVEL = 0.95  # intervals: 95%, from BOOTSTRAP resamples of the timed rounds
BOOTSTRAP = 2000


def round_bootstrap(a, b, combine, run_length=1, level=RATIO_LEVEL, n_boot=BOOTSTRAP, seed=0):
    """Bootstrap interval of combine(median(a), median(b)) for two contenders timed in the same
    rounds. Rounds are resampled with replacement, the same rounds for both (a round's steps of
    the two ran seconds apart, so a slow stretch of the machine moves both): the interval shows
    how much the statistic depends on which rounds were drawn, not the machine's drift over the
    run. `run_length` steps of a contender make one round. Deterministic (fixed seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size != b.size or a.size == 0 or a.size % run_length:
        raise ValueError(
            f"samples must be whole rounds of {run_length} steps, the same number "
            f"for both (at least one round), got {a.size} and {b.size}"
        )
    ra, rb = a.reshape(-1, run_length), b.reshape(-1, run_length)
    rounds = np.random.default_rng(seed).integers(0, len(ra), (n_boot, len(ra)))
    stats = combine(
        np.median(ra[rounds].reshape(n_boot, -1), axis=1),
        np.median(rb[rounds].reshape(n_boot, -1), axis=1),
    )
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def ratio_interval(a, b, run_length=1, level=RATIO_LEVEL, n_boot=BOOTSTRAP, seed=0):
    """Bootstrap interval of median(a) / median(b) (round_bootstrap)."""
    return round_bootstrap(a, b, np.divide, run_length, level, n_boot, seed)


def diff_interval(a, b, run_length=1, level=RATIO_LEVEL, n_boot=BOOTSTRAP, seed=0):
    """Bootstrap interval of median(a) - median(b) (round_bootstrap)."""
    return round_bootstrap(a, b, np.subtract, run_length, level, n_boot, seed)
