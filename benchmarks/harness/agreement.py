"""Before any timing, the contenders must compute the same step: the same loss and the same
gradient of every parameter, within float32 tolerance. A benchmark of wrong code is worthless.
"""

import numpy as np

from benchmarks.harness.contenders import build
from benchmarks.harness.problem import make_problem

LOSS_RTOL = 1e-4  # relative error of the loss between contenders
GRAD_RTOL = 2e-3  # relative L2 error of each gradient (float32 BPTT over up to 100 steps)


class MismatchError(AssertionError):
    """The contenders disagree on the loss or a gradient: their timings would be meaningless."""


def rel_err(a, b):
    """Relative L2 error of a against b."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_agreement(results, reference="numpy", loss_rtol=LOSS_RTOL, grad_rtol=GRAD_RTOL):
    """results {contender: (loss, grads)}: every contender against `reference`.

    Returns {contender: {"loss": rel err, param: rel L2 err, ...}}; raises MismatchError naming
    every loss or gradient outside tolerance."""
    ref_loss, ref_grads = results[reference]
    errors, bad = {}, []
    for name, (loss, grads) in results.items():
        if name == reference:
            continue
        e = {"loss": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)}
        if not e["loss"] <= loss_rtol:
            bad.append(
                f"{name} loss {loss!r} vs {reference} {ref_loss!r} "
                f"(rel err {e['loss']:.2e} > {loss_rtol:g})"
            )
        for k, g in ref_grads.items():
            if k not in grads or np.shape(grads[k]) != np.shape(g):
                bad.append(
                    f"{name} gradient {k}: missing or shape {np.shape(grads.get(k))} "
                    f"vs {np.shape(g)}"
                )
                continue
            e[k] = rel_err(grads[k], g)
            if not e[k] <= grad_rtol:
                bad.append(f"{name} gradient {k}: rel L2 err {e[k]:.2e} > {grad_rtol:g}")
        errors[name] = e
    if bad:
        raise MismatchError("contenders disagree:\n  " + "\n  ".join(bad))
    return errors


def verify(cell, size, names, overrides=None, seed=0):
    """The agreement check of one cell/size: losses and gradients (forward + backward), then the
    losses returned by one full training step of each (the timed code path). The reference is
    numpy when among `names`, else the first name."""
    params, x, target = make_problem(cell, size, seed)
    ref_name = "numpy" if "numpy" in names else names[0]
    results = {
        n: c.loss_and_grads() for n, c in build(cell, params, x, target, names, overrides).items()
    }
    errors = check_agreement(results, ref_name)
    stepped = build(cell, params, x, target, names, overrides)
    step_err = check_agreement({n: (c.step(), {}) for n, c in stepped.items()}, ref_name)
    for n, e in step_err.items():
        errors[n]["step_loss"] = e["loss"]
    return errors
