"""NumPy twin of ``minigrad/_optim_ops.pyx``: the optimizer update kernels, the rules spelled out
(``docs/kernels.md``). Each updates p and its state arrays in place and returns None.
"""

import numpy as np

from ._checks_ref import _check_array

__all__ = ["sgd_update", "adam_update", "adagrad_update", "rmsprop_update"]


def _check_in_place(name, a, like=None, write=False):
    """An array of the update kernels: as _check_array, with the shape and dtype of p (`like`)
    when given, and writeable when `write` (overlaps: _check_disjoint)."""
    _check_array(name, a, None if like is None else like.dtype, "p")
    if like is not None and a.shape != like.shape:
        raise ValueError(f"{name} must have shape {like.shape} (that of p), got {a.shape}")
    if write and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable, got a read-only array")


def _check_disjoint(an, a, bn, b):
    if np.may_share_memory(a, b):
        raise ValueError(f"{an} must not share memory with {bn}")


def _check_update(p, g, **state):
    """The arrays of an update kernel: p (writeable) fixes shape and dtype; g and each state
    array given (None: unused) match it and are C-contiguous, the state arrays writeable; no
    two overlap."""
    _check_in_place("p", p, write=True)
    _check_in_place("g", g, p)
    given = [("p", p), ("g", g)]
    for name, a in state.items():
        if a is not None:
            _check_in_place(name, a, p, write=True)
            given.append((name, a))
    for i in range(1, len(given)):
        for j in range(i):
            _check_disjoint(given[i][0], given[i][1], given[j][0], given[j][1])


def sgd_update(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    """One SGD step on p, in place (optim.SGD; PyTorch's rule).  Returns None.

        g'  = g + weight_decay * p                                  (when weight_decay != 0)
        buf = g'  (first)   or   momentum * buf + (1 - dampening) * g'      (when buf is given)
        u   = g' + momentum * buf  (nesterov)   or   buf  (buf given)   or   g'
        p   = p - lr * u

    buf: the momentum buffer (updated in place), None without momentum; first: buf holds
    nothing yet.  The hyperparameters are rounded to p's dtype first.  p, g and buf have one
    shape and dtype, are C-contiguous and do not overlap; p and buf are writeable.
    """
    _check_update(p, g, buf=buf)
    dt = p.dtype
    lr_, m_, damp_, wd_ = (np.array(v, dt) for v in (lr, momentum, 1.0 - dampening, weight_decay))
    if weight_decay != 0:
        g = p * wd_ + g
    if buf is not None:
        if first:
            buf[...] = g
        else:
            buf *= m_
            buf += g if dampening == 0 else g * damp_
        g = buf * m_ + g if nesterov else buf
    p -= g * lr_


def adam_update(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """One Adam step on p, in place (optim.Adam; optim.AdamW when decoupled).  Returns None.

        p   = p * (1 - lr * weight_decay)                   (decoupled, weight_decay != 0)
        g'  = g + weight_decay * p                          (not decoupled, weight_decay != 0)
        m   = beta1 * m + (1 - beta1) * g'
        v   = beta2 * v + (1 - beta2) * g'^2
        vmax = max(vmax, v)                                 (amsgrad: vmax given, else None)
        p   = p - lr / (1 - beta1^step) * m / (sqrt(v or vmax) / sqrt(1 - beta2^step) + eps)

    m, v (and vmax) are updated in place; step >= 1 is the step number t.  The hyperparameters
    and the two bias corrections are computed in float64, then rounded to p's dtype.  The arrays
    have one shape and dtype, are C-contiguous and do not overlap; all but g are writeable.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    _check_update(p, g, m=m, v=v, vmax=vmax)
    dt = p.dtype
    b1, omb1, b2, omb2, eps_, wd, decay, step_size, bc2 = (
        np.array(x, dt)
        for x in (
            beta1,
            1.0 - beta1,
            beta2,
            1.0 - beta2,
            eps,
            weight_decay,
            1.0 - lr * weight_decay,
            lr / (1.0 - beta1**step),
            np.sqrt(1.0 - beta2**step),
        )
    )
    if weight_decay != 0:
        if decoupled:
            p *= decay
        else:
            g = p * wd + g
    m *= b1
    m += g * omb1
    v *= b2
    v += (g * g) * omb2
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
    p -= m / (np.sqrt(v if vmax is None else vmax) / bc2 + eps_) * step_size


def adagrad_update(p, g, acc, lr, lr_decay, weight_decay, eps, step):
    """One Adagrad step on p, in place (optim.Adagrad).  Returns None.

        clr = lr / (1 + (step - 1) * lr_decay)              (in float64, then p's dtype)
        g'  = g + weight_decay * p                          (when weight_decay != 0)
        acc = acc + g'^2
        p   = p - clr * g' / (sqrt(acc) + eps)

    acc (the sum of squared gradients) is updated in place; step >= 1.  Arrays as in
    sgd_update; p and acc are writeable.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    _check_update(p, g, acc=acc)
    dt = p.dtype
    clr, wd, eps_ = (
        np.array(x, dt) for x in (lr / (1.0 + (step - 1) * lr_decay), weight_decay, eps)
    )
    if weight_decay != 0:
        g = p * wd + g
    acc += g * g
    p -= g / (np.sqrt(acc) + eps_) * clr


def rmsprop_update(p, g, v, grad_avg, buf, lr, alpha, eps, weight_decay, momentum):
    """One RMSprop step on p, in place (optim.RMSprop).  Returns None.

        g'  = g + weight_decay * p                          (when weight_decay != 0)
        v   = alpha * v + (1 - alpha) * g'^2
        ga  = alpha * ga + (1 - alpha) * g'; v~ = v - ga^2  (centered: grad_avg given, else v~ = v)
        u   = g' / (sqrt(v~) + eps)
        buf = momentum * buf + u;  p = p - lr * buf         (buf given: momentum > 0)
        p   = p - lr * u                                    (no buf)

    v, grad_avg and buf are updated in place.  Arrays as in sgd_update; all but g writeable.
    """
    _check_update(p, g, v=v, grad_avg=grad_avg, buf=buf)
    dt = p.dtype
    lr_, alpha_, oma, eps_, wd, mom = (
        np.array(x, dt) for x in (lr, alpha, 1.0 - alpha, eps, weight_decay, momentum)
    )
    if weight_decay != 0:
        g = p * wd + g
    v *= alpha_
    v += (g * g) * oma
    if grad_avg is None:
        den = np.sqrt(v) + eps_
    else:
        grad_avg *= alpha_
        grad_avg += g * oma
        den = np.sqrt(v - grad_avg * grad_avg) + eps_
    u = g / den
    if buf is None:
        p -= u * lr_
    else:
        buf *= mom
        buf += u
        p -= buf * lr_
