"""Function transforms with the names and semantics of ``torch.func``: grad, grad_and_value,
vjp, jvp, jacobian (reverse mode), hessian, and hvp.

They take a plain Python function of Tensors (arguments may be given as Tensors, ndarrays or
numbers; the function receives Tensors) and return a new function, or values, computed with
the tape.  They nest: ``hessian(f)`` is ``jacobian(jacobian(f))``, and ``grad(grad(f))`` is a
second derivative, because an argument that already carries a graph is differentiated with
``create_graph=True``.

Costs, for f with n input and m output elements:
  grad / vjp     one forward pass and one backward pass
  jacobian       one forward pass and m backward passes (reverse mode, one row at a time)
  hessian        jacobian of jacobian (scalar f): one recorded backward pass, then n backward
                 passes through it
  hvp            one forward pass, one recorded backward, one backward through it
  jvp            the double-vjp trick (minigrad has no forward mode): u -> J^T u is linear in
                 u, so J t is the gradient of (J^T u) . t with respect to u.  That is one
                 forward pass, one recorded backward pass (J^T u with u as a variable) and one
                 backward pass through it: about three times the cost of f, where true forward
                 mode would take about two.
"""

from __future__ import annotations

import numpy as np

from . import autograd
from .autograd import enable_grad
from .tensor import Tensor, _wrap

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "jacobian", "hessian", "hvp"]


def _as_input(p, what):
    """The tensor the transformed function receives for primal ``p``, and whether ``p`` carries
    a graph (then results are recorded too, so an outer transform can differentiate them)."""
    if isinstance(p, Tensor):
        if p.data.dtype.kind != "f":
            raise TypeError(f"{what} must be a floating point Tensor, got dtype {p.data.dtype}")
        if p.requires_grad:
            # A node of its own on p's graph: the inner derivative is taken with respect to it,
            # and stays differentiable with respect to p.
            return p.reshape(p.shape), True
        return Tensor(p.data, requires_grad=True, dtype=p.data.dtype), False
    arr = np.asarray(p)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a Tensor, an array or a number, got {type(p).__name__}")
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{what} must be floating point to be differentiated, got dtype {arr.dtype}"
        )
    return Tensor(arr, requires_grad=True), False


def _argnums(argnums, n):
    single = isinstance(argnums, (int, np.integer))
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise ValueError("argnums must be an int or a non-empty tuple of ints")
    out = []
    for a in nums:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"argnums must be ints, got {type(a).__name__}")
        if not -n <= a < n:
            raise ValueError(
                f"argnums {a} is out of range for a function called with {n} positional argument(s)"
            )
        out.append(int(a) % n)
    if len(set(out)) != len(out):
        raise ValueError(f"argnums {argnums} repeats an argument")
    return out, single


def _split_aux(res, has_aux, name):
    if not has_aux:
        return res, None
    if not (isinstance(res, tuple) and len(res) == 2):
        raise ValueError(f"{name}(has_aux=True) needs the function to return a pair (output, aux)")
    return res


def _out_tensor(out, name):
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: the function must return a Tensor, got {type(out).__name__}")
    return out


def _grads(outputs, inputs, grad_outputs, create_graph):
    """autograd.grad with zeros for inputs the outputs do not use (as torch.func)."""
    live = [o for o in outputs if o.requires_grad]
    if not live:
        return [_zeros_like(t) for t in inputs]
    gos = (
        None
        if grad_outputs is None
        else [g for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    )
    res = autograd.grad(
        live, inputs, gos, retain_graph=True, create_graph=create_graph, allow_unused=True
    )
    return [r if r is not None else _zeros_like(t) for r, t in zip(res, inputs)]


def _inputs(values, what, indices=None):
    """(inputs, nested): each value as a graph input (see ``_as_input``), named in errors
    ``f"{what} {i}"`` with i from indices (default 0, 1, ...); nested when any already is one."""
    ins, nested = [], False
    for i, v in zip(range(len(values)) if indices is None else indices, values):
        t, n = _as_input(v, f"{what} {i}")
        ins.append(t)
        nested = nested or n
    return ins, nested


def _like_inputs(values, ins, what, input_name):
    """values (tangents, v, cotangents) as Tensors of the dtype of their partners in ins (the
    inputs, or the outputs), each checked to have its partner's shape; ``what`` and
    ``input_name`` name them in the error."""
    out = []
    for i, (t, x) in enumerate(zip(values, ins)):
        t = t if isinstance(t, Tensor) else _wrap(np.asarray(t, dtype=x.data.dtype), None, 0)
        if t.shape != x.shape:
            raise ValueError(
                f"{what} {i} has shape {t.shape}, {input_name} {i} has shape {x.shape}"
            )
        out.append(t)
    return out


def _call(func, args, kwargs, argnums, has_aux, who):
    """func called (recording) with the positional arguments at argnums made graph inputs:
    (output Tensor, aux, those inputs, nested, single) -- see ``_inputs`` and ``_argnums``."""
    nums, single = _argnums(argnums, len(args))
    ins, nested = _inputs([args[i] for i in nums], "argument", nums)
    args = list(args)
    for i, t in zip(nums, ins):
        args[i] = t
    with enable_grad():
        out, aux = _split_aux(func(*args, **kwargs), has_aux, who)
    return _out_tensor(out, who), aux, ins, nested, single


def _dot(gs, tans):
    """sum_i (gs[i] * tans[i]).sum() over the gs that depend on the inputs (a recorded scalar),
    or None when none does."""
    terms = [(g * t).sum() for g, t in zip(gs, tans) if g.requires_grad]
    if not terms:
        return None
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _zeros_like(t):
    return _wrap(np.zeros_like(t.data), None, 0)


def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning ``(gradient, value)`` of the scalar ``func`` with respect to
    argument ``argnums`` (a tuple of them gives a tuple of gradients).  With ``has_aux=True``
    func returns ``(value, aux)`` and the result is ``(gradient, (value, aux))``."""

    def wrapper(*args, **kwargs):
        out, aux, ins, nested, single = _call(func, args, kwargs, argnums, has_aux, "grad")
        with enable_grad():
            if out.data.size != 1:
                raise RuntimeError(
                    f"grad needs a function with a scalar (one-element) output, "
                    f"got shape {out.shape}; use jacobian or vjp for others"
                )
            gs = _grads([out], ins, None, nested)
        g = gs[0] if single else tuple(gs)
        value = out if nested else out.detach()
        return (g, (value, aux)) if has_aux else (g, value)

    wrapper.__name__ = f"grad_and_value({getattr(func, '__name__', 'f')})"
    return wrapper


def grad(func, argnums=0, has_aux=False):
    """A function returning the gradient of the scalar ``func`` with respect to argument
    ``argnums`` (a tuple of them gives a tuple).  ``grad(grad(f))(x)`` is f'' for scalar x.
    With ``has_aux=True``, func returns ``(value, aux)`` and the result is ``(gradient, aux)``."""
    gv = grad_and_value(func, argnums, has_aux)

    def wrapper(*args, **kwargs):
        g, v = gv(*args, **kwargs)
        return (g, v[1]) if has_aux else g

    wrapper.__name__ = f"grad({getattr(func, '__name__', 'f')})"
    return wrapper


def vjp(func, *primals, has_aux=False):
    """``(output, vjp_fn)``: ``vjp_fn(cotangent)`` gives, for each primal, ``cotangent . d
    output / d primal`` (a tuple, one per primal).  ``output`` may be a Tensor or a tuple of
    Tensors (then cotangents are a tuple too).  With ``has_aux=True`` the result is
    ``(output, vjp_fn, aux)``."""
    ins, nested = _inputs(primals, "primal")
    with enable_grad():
        out, aux = _split_aux(func(*ins), has_aux, "vjp")
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    for o in outs:
        _out_tensor(o, "vjp")

    def vjp_fn(*cotangents):
        cts = (
            cotangents[0] if len(cotangents) == 1 and isinstance(out, (tuple, list)) else cotangents
        )
        cts = list(cts)
        if len(cts) != len(outs):
            raise ValueError(
                f"vjp_fn needs {len(outs)} cotangent(s), one per output; got {len(cts)}"
            )
        gos = _like_inputs(cts, outs, "vjp_fn: cotangent", "output")
        create = nested or any(c.requires_grad for c in gos)
        with enable_grad():
            return tuple(_grads(outs, ins, gos, create))

    shown = (
        out
        if nested
        else (tuple(o.detach() for o in outs) if isinstance(out, (tuple, list)) else out.detach())
    )
    return (shown, vjp_fn, aux) if has_aux else (shown, vjp_fn)


def jvp(func, primals, tangents, has_aux=False):
    """``(output, jvp_out)``: the Jacobian of ``func`` at ``primals`` times ``tangents`` (one
    per primal, same shapes), computed by the double-vjp trick (see the module doc: about
    three times the cost of func).  Returns ``(output, jvp_out, aux)`` with has_aux=True."""
    primals = tuple(primals) if isinstance(primals, (tuple, list)) else (primals,)
    tangents = tuple(tangents) if isinstance(tangents, (tuple, list)) else (tangents,)
    if len(primals) != len(tangents):
        raise ValueError(
            f"jvp needs one tangent per primal: got {len(primals)} primal(s) and "
            f"{len(tangents)} tangent(s)"
        )
    ins, nested = _inputs(primals, "primal")
    tans = _like_inputs(tangents, ins, "jvp: tangent", "primal")
    with enable_grad():
        out, aux = _split_aux(func(*ins), has_aux, "jvp")
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        for o in outs:
            _out_tensor(o, "jvp")
        # u -> J^T u, recorded with the cotangents u as variables; then J t = d/du (J^T u . t).
        us = [Tensor(np.zeros(o.shape, dtype=o.data.dtype), requires_grad=True) for o in outs]
        vj = _grads(outs, ins, us, True)
        total = _dot(vj, tans)
        if total is not None:
            jv = _grads([total], us, None, nested)
        else:  # func does not depend on its inputs
            jv = [_zeros_like(o) for o in outs]
    if not nested:
        outs = [o.detach() for o in outs]
    res_out = tuple(outs) if isinstance(out, (tuple, list)) else outs[0]
    res_jv = tuple(jv) if isinstance(out, (tuple, list)) else jv[0]
    return (res_out, res_jv, aux) if has_aux else (res_out, res_jv)


def jacobian(func, argnums=0, has_aux=False):
    """A function returning the Jacobian of ``func`` (one Tensor output) with respect to
    argument ``argnums``: shape ``output.shape + input.shape``, computed in reverse mode, one
    backward pass per output element.  A tuple argnums gives a tuple of Jacobians; with
    ``has_aux=True`` func returns ``(output, aux)`` and the result is ``(jacobian, aux)``."""
    from . import functional as F

    def wrapper(*args, **kwargs):
        out, aux, ins, nested, single = _call(func, args, kwargs, argnums, has_aux, "jacobian")
        with enable_grad():
            rows = [[] for _ in ins]
            flat = out.reshape((-1,)) if out.ndim != 1 else out
            m = out.data.size
            pieces = F.unbind(flat) if m and out.requires_grad else ()
            for k in range(m):
                gs = (
                    _grads([pieces[k]] if pieces else [out], ins, None, nested)
                    if pieces
                    else [_zeros_like(t) for t in ins]
                )
                for r, g in zip(rows, gs):
                    r.append(g)
            jacs = []
            for r, t in zip(rows, ins):
                if m == 0:
                    jacs.append(_wrap(np.zeros(out.shape + t.shape, dtype=t.data.dtype), None, 0))
                    continue
                J = (
                    F.stack(r)
                    if any(g.requires_grad for g in r)
                    else _wrap(np.stack([g.data for g in r]), None, 0)
                )
                jacs.append(J.reshape(out.shape + t.shape))
        res = jacs[0] if single else tuple(jacs)
        return (res, aux) if has_aux else res

    wrapper.__name__ = f"jacobian({getattr(func, '__name__', 'f')})"
    return wrapper


def hessian(func, argnums=0):
    """A function returning the Hessian of the scalar ``func``: ``jacobian(jacobian(func))``,
    shape ``input.shape + input.shape``; with a tuple ``argnums`` a tuple of tuples, block
    ``[i][j]`` of shape ``input_i.shape + input_j.shape``, as ``torch.func.hessian``."""

    def scalar_output(*args, **kwargs):
        out = func(*args, **kwargs)
        if isinstance(out, Tensor) and out.data.size != 1:
            raise RuntimeError(
                f"hessian needs a function with a scalar output, got shape {out.shape}"
            )
        return out.reshape(()) if isinstance(out, Tensor) else out

    if isinstance(argnums, (tuple, list)):
        nums = tuple(argnums)

        def blocks(*args, **kwargs):
            return tuple(jacobian(jacobian(scalar_output, i), nums)(*args, **kwargs) for i in nums)

        outer = blocks
    elif isinstance(argnums, (int, np.integer)):
        outer = jacobian(jacobian(scalar_output, argnums), argnums)
    else:
        raise TypeError(f"hessian: argnums must be an int or a tuple of ints, got {argnums!r}")
    outer.__name__ = f"hessian({getattr(func, '__name__', 'f')})"
    return outer


def hvp(func, inputs, v):
    """``(output, hvp)``: the Hessian of the scalar ``func`` at ``inputs`` times ``v``, without
    forming the Hessian (one recorded backward pass and one backward pass through it), as
    ``torch.autograd.functional.hvp``.  ``inputs`` and ``v`` are a Tensor each or tuples of
    them; ``hvp`` has the same structure."""
    single = not isinstance(inputs, (tuple, list))
    xs = (inputs,) if single else tuple(inputs)
    vs = (v,) if not isinstance(v, (tuple, list)) else tuple(v)
    if len(xs) != len(vs):
        raise ValueError(f"hvp needs one v per input: got {len(xs)} input(s) and {len(vs)} v")
    ins, nested = _inputs(xs, "input")
    tans = _like_inputs(vs, ins, "hvp: v", "input")
    with enable_grad():
        out = _out_tensor(func(*ins), "hvp")
        if out.data.size != 1:
            raise RuntimeError(f"hvp needs a function with a scalar output, got shape {out.shape}")
        gs = _grads([out], ins, None, True)
        total = _dot(gs, tans)
        if total is not None:
            hs = _grads([total], ins, None, nested)
        else:
            hs = [_zeros_like(t) for t in ins]
    value = out if nested else out.detach()
    return value, (hs[0] if single else tuple(hs))
