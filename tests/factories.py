"""A MyGrad-style factory for op property tests: one line per op.

    test_tanh = op_test(F.tanh, np.tanh)
    test_add = op_test(F.add, np.add, n_inputs=2)
    test_sum = op_test(F.sum, np.sum, kwargs=reduce_kwargs)

``op_test`` returns a hypothesis test that, for every drawn example:

1. draws the input shapes (size-1 dims, 0-d, mutually broadcastable shapes for several inputs)
   and float64 values from each input's domain (``real()``, ``positive()``, ``grid()``: values
   on a lattice that keeps away from kinks and ties), plus keyword arguments drawn from the
   shapes (``kwargs=lambda shapes: strategy of dicts``), passed to both op and reference;
2. checks the float64 forward of every output against the NumPy reference (shape, dtype, value);
3. backpropagates a random upstream gradient and asserts: every input that requires grad got a
   gradient of its own shape and dtype; no input array and no upstream array was mutated; no two
   gradients share memory, nor any gradient with the upstream gradient, an input or an output;
4. checks the gradients with ``minigrad.gradcheck`` (central differences, random upstream
   weights, eps 1e-6, atol 1e-5, rtol 1e-3 unless the op asks for tighter), and the second
   derivatives with ``minigrad.gradgradcheck`` (central differences of the first derivative,
   which the tape records with create_graph=True; same tolerances);
5. runs the op on float32 copies of the inputs: float32 outputs and float32 gradients, with
   values close (loosely) to the float64 forward.

Example counts scale with the active hypothesis profile (``examples=0.5`` halves it for an
expensive op), so ``HYPOTHESIS_PROFILE=heavy`` still runs thousands.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad
from minigrad import Tensor
from minigrad.gradcheck import GradcheckError

__all__ = [
    "op_test",
    "check_op",
    "real",
    "positive",
    "grid",
    "nonzero",
    "shapes_for",
    "reduce_kwargs",
    "axis_kwargs",
    "axes",
    "assert_no_shared_memory",
    "profile_examples",
    "GRAD_EPS",
    "GRAD_ATOL",
    "GRAD_RTOL",
]

GRAD_EPS = 1e-6
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-3
MAX_SIDE = 4
MAX_DIMS = 3


# ------------------------------------------------------------------------------------------
# Value domains (element strategies for float64 arrays)
# ------------------------------------------------------------------------------------------


def real(lo=-3.0, hi=3.0):
    """Finite floats in [lo, hi] (hypothesis also tries the ends and repeated values)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def positive(lo=0.1, hi=3.0):
    """Floats in [lo, hi], lo > 0: the domain of log, sqrt, a divisor, a real-power base."""
    return real(lo, hi)


def grid(step=0.1, offset=0.05, lo=-3.0, hi=3.0):
    """Values ``k * step + offset`` in [lo, hi]: never closer than ``min(offset, step - offset)``
    to a multiple of ``step``.  With the default offset half a step, the values keep 0.05 away
    from 0 (relu, abs) and from every clip bound placed on the lattice ``k * step``; two grids
    with different offsets never tie (maximum, minimum); with ``unique=True`` arrays, a max or
    min over any axis has no ties."""
    k_lo = int(np.ceil((lo - offset) / step))
    k_hi = int(np.floor((hi - offset) / step))
    return st.integers(k_lo, k_hi).map(lambda k: k * step + offset)


def nonzero(lo=0.5, hi=3.0):
    """Floats with lo <= |x| <= hi: a divisor or base kept away from 0."""
    return st.tuples(real(lo, hi), st.booleans()).map(lambda t: -t[0] if t[1] else t[0])


# ------------------------------------------------------------------------------------------
# Shapes and keyword arguments
# ------------------------------------------------------------------------------------------


def shapes_for(n_inputs, min_dims=0, max_dims=MAX_DIMS, max_side=MAX_SIDE, broadcast=True):
    """A strategy for a tuple of ``n_inputs`` shapes: mutually broadcastable (with size-1 dims
    and missing leading dims) when ``broadcast``, else all equal."""
    if n_inputs == 1 or not broadcast:
        one = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)
        return one.map(lambda s: (s,) * n_inputs)
    return hnp.mutually_broadcastable_shapes(
        num_shapes=n_inputs, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda r: tuple(r.input_shapes))


@st.composite
def axes(draw, ndim, allow_none=True, allow_tuple=True):
    """None, one axis (maybe negative) or a tuple of distinct axes (maybe negative, any order)."""
    choices = []
    if allow_none:
        choices.append(st.none())
    if ndim > 0:
        choices.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            choices.append(
                st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim).flatmap(
                    lambda picked: st.tuples(*[st.sampled_from([a, a - ndim]) for a in picked])
                )
            )
    return draw(st.one_of(*choices))


def axis_kwargs(shapes, allow_none=True, allow_tuple=True):
    """``{"axis": ...}`` for the first input's shape."""
    return st.fixed_dictionaries({"axis": axes(len(shapes[0]), allow_none, allow_tuple)})


def reduce_kwargs(shapes):
    """``{"axis": None | int | tuple, "keepdims": bool}`` for the first input's shape."""
    return st.fixed_dictionaries({"axis": axes(len(shapes[0])), "keepdims": st.booleans()})


def profile_examples(scale=1.0):
    """The active profile's max_examples times ``scale`` (at least 1)."""
    return max(1, int(round(settings.default.max_examples * scale)))


# ------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------


def assert_no_shared_memory(named_arrays, what=""):
    """Assert no two of the (name, ndarray) pairs share memory."""
    for (na, a), (nb, b) in itertools.combinations(named_arrays, 2):
        if a is None or b is None or a.size == 0 or b.size == 0:
            continue
        assert not np.shares_memory(a, b), f"{what}: {na} shares memory with {nb}"


def assert_outputs_close(got, expected, what, **tol):
    """Two kernels' output lists agree element by element: arrays within tol (assert_allclose),
    None exactly where the other is None (an output the flags or the missing bias skip)."""
    got, expected = list(got), list(expected)
    assert len(got) == len(expected), f"{what}: {len(got)} outputs against {len(expected)}"
    for i, (a, b) in enumerate(zip(got, expected)):
        if a is None or b is None:
            assert a is None and b is None, f"{what}: output {i} is None on one side only"
        else:
            np.testing.assert_allclose(a, b, **tol, err_msg=f"{what}: output {i}")


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def check_op(
    op,
    ref,
    arrays,
    kwargs=None,
    *,
    requires_grad=None,
    seed=0,
    name=None,
    fwd_rtol=1e-7,
    fwd_atol=1e-10,
    grad=True,
    grad_atol=GRAD_ATOL,
    grad_rtol=GRAD_RTOL,
    gradgrad=True,
    f32=True,
    f32_rtol=1e-3,
    f32_atol=1e-4,
):
    """Run every factory check of ``op`` against ``ref`` on the float64 ``arrays``.

    ``op(*tensors, **kwargs)`` returns a Tensor or a tuple of Tensors; ``ref(*arrays, **kwargs)``
    returns the expected ndarray(s).  ``requires_grad`` (one bool per input, default all True)
    says which inputs are differentiated; the others are passed as Tensors without grad.
    """
    kwargs = kwargs or {}
    name = name or getattr(op, "__name__", repr(op))
    n = len(arrays)
    requires_grad = tuple(requires_grad) if requires_grad is not None else (True,) * n
    originals = [np.array(a, dtype=np.float64, copy=True) for a in arrays]
    ctx = f"{name}(shapes={[a.shape for a in originals]}, kwargs={kwargs})"

    # --- forward, float64, against NumPy ---------------------------------------------
    expected = _as_tuple(ref(*[a.copy() for a in originals], **kwargs))
    tensors = [Tensor(a, requires_grad=rg) for a, rg in zip(originals, requires_grad)]
    outs = _outputs(op(*tensors, **kwargs))
    assert len(outs) == len(expected), (
        f"{ctx}: {len(outs)} outputs, reference gives {len(expected)}"
    )
    for i, (o, e) in enumerate(zip(outs, expected)):
        e = np.asarray(e)
        assert isinstance(o, Tensor), f"{ctx}: output {i} is a {type(o).__name__}, not a Tensor"
        assert o.shape == e.shape, f"{ctx}: output {i} has shape {o.shape}, NumPy gives {e.shape}"
        assert o.dtype == np.float64, f"{ctx}: output {i} has dtype {o.dtype} for float64 inputs"
        np.testing.assert_allclose(
            o.data, e, rtol=fwd_rtol, atol=fwd_atol, err_msg=f"{ctx}: forward output {i} vs NumPy"
        )
    for i, (t, a) in enumerate(zip(tensors, originals)):
        np.testing.assert_array_equal(t.data, a, err_msg=f"{ctx}: forward mutated input {i}")

    out64 = [o.data.copy() for o in outs]
    differentiable = grad and any(requires_grad)
    if differentiable:
        for i, o in enumerate(outs):
            assert o.requires_grad, f"{ctx}: output {i} does not require grad"
        _check_backward(outs, tensors, originals, requires_grad, seed, ctx)

        def finite_differences(check):  # on fresh leaves with the originals' values
            fresh = [Tensor(a, requires_grad=rg) for a, rg in zip(originals, requires_grad)]
            fd = dict(eps=GRAD_EPS, atol=grad_atol, rtol=grad_rtol, seed=seed)
            check(lambda *ts: op(*ts, **kwargs), fresh, **fd)
            return fresh

        fresh = finite_differences(minigrad.gradcheck)
        for i, (t, a) in enumerate(zip(fresh, originals)):
            np.testing.assert_array_equal(
                t.data, a, err_msg=f"{ctx}: gradcheck left input {i} changed"
            )
        if gradgrad:
            try:
                finite_differences(minigrad.gradgradcheck)
            except GradcheckError as e:
                raise AssertionError(f"{ctx}: second derivative: {e}") from None

    # --- float32 in, float32 out, close to float64 -------------------------------------
    if f32:
        t32 = [
            Tensor(a.astype(np.float32), requires_grad=rg)
            for a, rg in zip(originals, requires_grad)
        ]
        outs32 = _outputs(op(*t32, **kwargs))
        for i, (o, o64) in enumerate(zip(outs32, out64)):
            assert o.dtype == np.float32, (
                f"{ctx}: output {i} has dtype {o.dtype} for float32 inputs"
            )
            np.testing.assert_allclose(
                o.data,
                o64,
                rtol=f32_rtol,
                atol=f32_atol,
                err_msg=f"{ctx}: float32 forward output {i} vs float64",
            )
        if differentiable:
            loss = None
            for o in outs32:
                if o.requires_grad and o.numel():
                    term = o.sum()
                    loss = term if loss is None else loss + term
            if loss is not None:
                loss.backward()
                for i, (t, rg) in enumerate(zip(t32, requires_grad)):
                    if rg and t.grad is not None:
                        assert t.grad.dtype == np.float32, (
                            f"{ctx}: float32 input {i} got a {t.grad.dtype} gradient"
                        )


def _check_backward(outs, tensors, originals, requires_grad, seed, ctx):
    """Backward with a random upstream: shapes, dtypes, no mutation, no shared memory."""
    rng = np.random.default_rng(seed)
    ups = [rng.standard_normal(o.shape) for o in outs]
    ups_copy = [u.copy() for u in ups]
    if len(outs) == 1:
        outs[0].backward(ups[0])  # the caller's array goes straight into the engine
    else:
        loss = None
        for o, u in zip(outs, ups):
            if o.requires_grad:
                term = (o * u).sum()
                loss = term if loss is None else loss + term
        loss.backward()
    for i, (u, uc) in enumerate(zip(ups, ups_copy)):
        np.testing.assert_array_equal(
            u, uc, err_msg=f"{ctx}: backward mutated upstream gradient {i}"
        )
    named = []
    for i, (t, a, rg) in enumerate(zip(tensors, originals, requires_grad)):
        np.testing.assert_array_equal(t.data, a, err_msg=f"{ctx}: backward mutated input {i}")
        if not rg:
            assert t.grad is None, f"{ctx}: input {i} got a gradient without requires_grad"
            continue
        g = t.grad
        assert g is not None, f"{ctx}: input {i} got no gradient"
        assert isinstance(g, np.ndarray), f"{ctx}: grad {i} is a {type(g).__name__}"
        assert g.shape == t.shape, f"{ctx}: grad {i} has shape {g.shape}, input has {t.shape}"
        assert g.dtype == t.dtype, f"{ctx}: grad {i} has dtype {g.dtype}, input has {t.dtype}"
        assert np.all(np.isfinite(g)), f"{ctx}: grad {i} is not finite: {g}"
        named.append((f"grad {i}", g))
    others = (
        [(f"upstream {i}", u) for i, u in enumerate(ups)]
        + [(f"input {i}", t.data) for i, t in enumerate(tensors)]
        + [(f"output {i}", o.data) for i, o in enumerate(outs)]
    )
    assert_no_shared_memory(named, ctx)
    for gname, g in named:
        for oname, o in others:
            if g.size and o.size:
                assert not np.shares_memory(g, o), f"{ctx}: {gname} shares memory with {oname}"


def op_test(
    op,
    ref,
    n_inputs=1,
    *,
    domain=None,
    shapes=None,
    kwargs=None,
    unique=False,
    min_dims=0,
    max_dims=MAX_DIMS,
    max_side=MAX_SIDE,
    broadcast=True,
    examples=1.0,
    name=None,
    **check,
):
    """A hypothesis test of ``op`` against the NumPy expression ``ref`` (see the module doc).

    domain   an element strategy for every input, or a tuple with one per input (default
             ``real()``)
    shapes   a strategy of shape tuples (default: ``shapes_for(n_inputs, ...)``); its length
             sets the number of inputs, so it may vary (concatenate, stack)
    kwargs   ``lambda shapes: strategy of dicts`` given to both op and ref
    unique   draw arrays without repeated values (max/min without ties)
    examples scale of the profile's max_examples for this test
    name     the op's name in failure messages (default: op.__name__)
    check    passed on to ``check_op`` (requires_grad, tolerances, grad=False, f32=False, ...)
    """
    shape_strategy = (
        shapes
        if shapes is not None
        else shapes_for(n_inputs, min_dims, max_dims, max_side, broadcast)
    )
    if domain is None:
        domain = real()
    name = name or getattr(op, "__name__", "op")

    @settings(
        max_examples=profile_examples(examples),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def test(data):
        shp = data.draw(shape_strategy, label="shapes")
        doms = domain if isinstance(domain, tuple) else (domain,) * len(shp)
        arrays = [
            data.draw(hnp.arrays(np.float64, s, elements=d, unique=unique), label=f"input{i}")
            for i, (s, d) in enumerate(zip(shp, doms))
        ]
        kw = data.draw(kwargs(shp), label="kwargs") if kwargs is not None else {}
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        check_op(op, ref, arrays, kw, seed=seed, name=name, **check)

    test.__name__ = f"test_{name}"
    return test
