"""bench_rnn.py's plot: time per step against size, one panel per cell, with the GEMM roofline
(matplotlib, optional: without it the plot is skipped with a message)."""

import os

import numpy as np


def plot(results, names, path):
    """Write the PNG to path and return it, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib, or the bench extra)")
        return None
    cells = list(dict.fromkeys(r["cell"] for r in results))
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 4), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        rows = [r for r in results if r["cell"] == cell]
        xs = list(range(len(rows)))
        for n in names:

            def col(key, n=n, rows=rows):
                return [
                    r["contenders"][n][key] * 1e3 if n in r["contenders"] else np.nan for r in rows
                ]

            med, lo, hi = col("median_s"), col("min_s"), col("max_s")
            err = [np.subtract(med, lo), np.subtract(hi, med)]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=n)
        ax.plot(xs, [r["gemm_time_s"] * 1e3 for r in rows], "k--", label="GEMM roofline")
        ax.set_xticks(xs)
        ax.set_xticklabels([r["size_name"] for r in rows], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{cell}: one training step")
        ax.set_xlabel("B x T x I x H")
        ax.set_ylabel("ms per step (median, min-max bars)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
