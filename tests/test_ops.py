"""Property tests of every differentiable op (issue 2's list), built with tests/factories.py.

Each ``test_<op> = op_test(...)`` line draws shapes and values, checks the forward against a
NumPy expression written here, the gradients against central differences (minigrad.gradcheck),
non-mutation, non-aliasing, and float32 behaviour.  Below the one-liners: ops that need a
hand-written property (dropout, one_hot, embedding's padding row, ties), operand mixing with
scalars and ndarrays, numerical stability at ±1e4, and bad-input errors.
"""

import warnings

import numpy as np
import pytest
from factories import (
    GRAD_ATOL,
    GRAD_EPS,
    GRAD_RTOL,
    axes,
    axis_kwargs,
    grid,
    nonzero,
    op_test,
    positive,
    profile_examples,
    real,
    reduce_kwargs,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
import minigrad.functional as F
from minigrad import Tensor


def method_test(call, ref, kwargs, examples=0.5, **check):
    """``op_test`` of a Tensor method, written as it is called: ``"sum(axis, keepdims)"`` gives
    the drawn keyword values in that order, ``"reshape(*shape)"`` gives the one drawn tuple
    spread (the empty tuple whole: ``a.reshape(())``).  By default on half the examples of its
    functional twin."""
    method, _, params = call.rstrip(")").partition("(")
    names = [p.strip() for p in params.split(",")]
    spread = names[0].startswith("*")

    def run(a, **kw):
        bound = getattr(a, method)
        if spread:
            arg = kw[names[0][1:]]
            return bound(*arg) if arg else bound(())
        return bound(*(kw[n] for n in names))

    return op_test(run, ref, kwargs=kwargs, name=f"Tensor.{method}", examples=examples, **check)


# ==========================================================================================
# Arithmetic
# ==========================================================================================

test_add = op_test(F.add, np.add, 2)
test_sub = op_test(F.sub, np.subtract, 2)
test_mul = op_test(F.mul, np.multiply, 2)
test_div = op_test(F.div, np.divide, 2, domain=(real(), nonzero()))
test_neg = op_test(F.neg, np.negative)
test_add_operator = op_test(lambda a, b: a + b, np.add, 2, name="a+b")
test_sub_operator = op_test(lambda a, b: a - b, np.subtract, 2, name="a-b")
test_mul_operator = op_test(lambda a, b: a * b, np.multiply, 2, name="a*b")
test_div_operator = op_test(
    lambda a, b: a / b, np.divide, 2, domain=(real(), nonzero()), name="a/b"
)
test_neg_operator = op_test(lambda a: -a, np.negative, name="-a")

# pow: tensor exponent (base > 0 so that d/db = y log a exists), scalar exponents (real
# exponents on a positive base; integer exponents on a base of either sign), scalar base.
test_pow_tensor = op_test(F.pow, np.power, 2, domain=(positive(0.5, 2.0), real(-2, 2)))
test_pow_scalar = op_test(
    lambda a, p: a**p,
    lambda a, p: np.power(a, p),
    domain=positive(0.5, 2.0),
    kwargs=lambda s: st.fixed_dictionaries(
        {"p": st.sampled_from([0, 1, 2, 3, 0.5, -1, 1.5, -2.5])}
    ),
    name="a**p",
)
test_pow_int_exponent_negative_base = op_test(
    lambda a, p: a**p,
    lambda a, p: np.power(a, float(p)),
    domain=nonzero(0.5, 2.0),
    kwargs=lambda s: st.fixed_dictionaries({"p": st.sampled_from([1, 2, 3, -2])}),
    name="a**int",
)
test_rpow = op_test(
    lambda a, base: base**a,
    lambda a, base: np.power(base, a),
    domain=real(-2, 2),
    kwargs=lambda s: st.fixed_dictionaries({"base": st.sampled_from([2.0, 0.5, 3])}),
    name="base**a",
)

# matmul: NumPy's signature (n?,k),(k,m?)->(n?,m?): 1-D on either side, 2-D, batched with
# broadcast batch dimensions.
_matmul_shapes = hnp.mutually_broadcastable_shapes(
    signature=np.matmul.signature, max_dims=2, max_side=4
).map(lambda r: tuple(r.input_shapes))
test_matmul = op_test(F.matmul, np.matmul, shapes=_matmul_shapes)
test_matmul_operator = op_test(lambda a, b: a @ b, np.matmul, shapes=_matmul_shapes, name="a@b")


@st.composite
def _linear_shapes(draw):
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shapes = (lead + (i,), (o, i))
    return shapes + ((o,),) if draw(st.booleans()) else shapes


def _linear_ref(x, w, b=None):
    return x @ w.T + (0 if b is None else b)


test_linear = op_test(lambda *t: F.linear(*t), _linear_ref, shapes=_linear_shapes(), name="linear")


def test_cast_values_dtypes_and_gradient():
    x = Tensor(np.array([[0.5, -1.25], [3.0, 2.0]]), requires_grad=True)
    y = F.cast(x, np.float32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, x.data.astype(np.float32), err_msg="cast f64->f32 values")
    w = np.array([[1.0, 2.0], [-3.0, 0.25]], dtype=np.float32)
    y.backward(w)
    assert x.grad.dtype == np.float64, f"cast backward: grad dtype {x.grad.dtype}, expected float64"
    np.testing.assert_array_equal(x.grad, w.astype(np.float64), err_msg="cast grad = upstream")
    z = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    d = z.double()
    assert d.dtype == np.float64 and z.float().dtype == np.float32
    d.sum().backward()
    assert z.grad.dtype == np.float32, f"grad of float32 leaf through double(): {z.grad.dtype}"
    c = x.copy()
    assert not np.shares_memory(c.data, x.data), "Tensor.copy() shares memory with its source"


test_cast_gradcheck = op_test(
    lambda a: F.cast(a, np.float64), lambda a: a.astype(np.float64), f32=False, name="cast"
)


# ==========================================================================================
# Elementwise
# ==========================================================================================

test_exp = op_test(F.exp, np.exp)
test_log = op_test(F.log, np.log, domain=positive())
test_sqrt = op_test(F.sqrt, np.sqrt, domain=positive())
test_abs = op_test(F.abs, np.abs, domain=grid())
test_tanh = op_test(F.tanh, np.tanh)
test_sigmoid = op_test(F.sigmoid, lambda a: 1 / (1 + np.exp(-a)), domain=real(-6, 6))
test_relu = op_test(F.relu, lambda a: np.where(a > 0, a, 0.0), domain=grid())
test_softplus = op_test(F.softplus, lambda a: np.log(1 + np.exp(a)), domain=real(-5, 5))


@st.composite
def _clip_bounds(draw, shapes):
    # bounds on the lattice k * 0.1; values are on k * 0.1 + 0.05, so none sits on a bound
    lo = draw(st.one_of(st.none(), st.integers(-20, 20).map(lambda k: k / 10)))
    hi = draw(
        st.one_of(
            st.none() if lo is not None else st.nothing(),
            st.integers(-20, 20).map(lambda k: k / 10),
        )
    )
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return {"lo": lo, "hi": hi}


test_clip = op_test(
    F.clip, lambda a, lo, hi: np.clip(a, lo, hi), domain=grid(), kwargs=_clip_bounds
)
test_clamp_method = method_test(
    "clamp(lo, hi)", lambda a, lo, hi: np.clip(a, lo, hi), _clip_bounds, domain=grid(), examples=1.0
)

# maximum / minimum: the two inputs live on interleaved lattices, so they never tie
test_maximum = op_test(F.maximum, np.maximum, 2, domain=(grid(0.1, 0.0), grid(0.1, 0.05)))
test_minimum = op_test(F.minimum, np.minimum, 2, domain=(grid(0.1, 0.0), grid(0.1, 0.05)))


@st.composite
def _where_cond(draw, shapes):
    out_shape = np.broadcast_shapes(*shapes)
    cshape = draw(hnp.broadcastable_shapes(out_shape, min_dims=0, max_dims=len(out_shape)))
    return {"cond": draw(hnp.arrays(np.bool_, cshape))}


test_where = op_test(
    lambda a, b, cond: F.where(cond, a, b),
    lambda a, b, cond: np.where(cond, a, b),
    2,
    kwargs=_where_cond,
    name="where",
)


def test_where_accepts_bool_tensor_condition_and_constant_branch():
    x = Tensor(np.array([-1.0, 2.0, -3.0, 4.0]), requires_grad=True)
    y = F.where(x > 0, x, 0.0)
    np.testing.assert_array_equal(y.data, [0.0, 2.0, 0.0, 4.0], err_msg="where(x > 0, x, 0)")
    y.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 0.0, 4.0], err_msg="where grad")


# ==========================================================================================
# Reductions and normalizers
# ==========================================================================================

_distinct = grid(0.05, 0.025, -4.0, 4.0)  # 160 distinct lattice values: no ties with unique=True


def _np_reduction(fn):
    """The NumPy reduction ``fn`` (np.sum, np.max, ...) as a reference taking axis and keepdims."""
    return lambda a, axis, keepdims: fn(a, axis=axis, keepdims=keepdims)


test_sum = op_test(F.sum, _np_reduction(np.sum), kwargs=reduce_kwargs)
test_mean = op_test(F.mean, _np_reduction(np.mean), kwargs=reduce_kwargs)
test_max = op_test(
    F.max, _np_reduction(np.max), kwargs=reduce_kwargs, domain=_distinct, unique=True
)
test_min = op_test(
    F.min, _np_reduction(np.min), kwargs=reduce_kwargs, domain=_distinct, unique=True
)
test_sum_method = method_test("sum(axis, keepdims)", _np_reduction(np.sum), reduce_kwargs)


@st.composite
def _var_kwargs(draw, shapes):
    shape = shapes[0]
    axis = draw(axes(len(shape)))
    if axis is None:
        n = int(np.prod(shape))
    else:
        reduced = (axis,) if isinstance(axis, int) else axis
        n = int(np.prod([shape[a] for a in reduced]))
    ddof = draw(st.sampled_from([0, 1])) if n > 1 else 0
    return {"axis": axis, "keepdims": draw(st.booleans()), "ddof": ddof}


def _var_ref(a, axis, keepdims, ddof):
    mean = np.mean(a, axis=axis, keepdims=True)
    n = a.size // np.mean(a, axis=axis).size
    return np.sum((a - mean) ** 2, axis=axis, keepdims=keepdims) / (n - ddof)


test_var = op_test(F.var, _var_ref, kwargs=_var_kwargs)


def test_var_ref_agrees_with_numpy_var():
    a = np.arange(24.0).reshape(2, 3, 4) ** 1.5
    for axis in (None, 0, (0, 2), -1):
        for ddof in (0, 1):
            np.testing.assert_allclose(
                _var_ref(a, axis, False, ddof),
                np.var(a, axis=axis, ddof=ddof),
                rtol=1e-12,
                err_msg=f"test oracle var axis={axis} ddof={ddof}",
            )


def _softmax_ref(a, axis):
    e = np.exp(a)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax_ref(a, axis):
    return a - np.log(np.sum(np.exp(a), axis=axis, keepdims=True))


def _int_axis(shapes):
    return axis_kwargs(shapes, allow_none=False, allow_tuple=False)


test_softmax = op_test(F.softmax, _softmax_ref, kwargs=_int_axis, min_dims=1)
test_log_softmax = op_test(F.log_softmax, _log_softmax_ref, kwargs=_int_axis, min_dims=1)
test_logsumexp = op_test(
    F.logsumexp,
    lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)),
    kwargs=reduce_kwargs,
)


@pytest.mark.parametrize("fn", [F.max, F.min])
def test_max_min_ties_share_the_gradient_evenly(fn):
    """Ties: each of k tied extremes gets dy / k (the subgradient torch.amax uses)."""
    x = Tensor(np.array([[1.0, 3.0, 3.0, -2.0], [-2.0, 0.5, -2.0, -2.0]]), requires_grad=True)
    sign = 1 if fn is F.max else -1
    y = fn(x * sign, axis=1)  # min of -x sits where x has its maxima: {3, 3} and {0.5}
    y.backward(np.array([6.0, 3.0]))
    expected = sign * np.array([[0.0, 3.0, 3.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    np.testing.assert_allclose(x.grad, expected, err_msg=f"{fn.__name__} tie gradient")
    z = Tensor(np.array([[-2.0, -2.0, 1.0], [4.0, 4.0, 4.0]]), requires_grad=True)
    F.min(z, axis=1).sum().backward()
    np.testing.assert_allclose(
        z.grad,
        [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]],
        err_msg="min ties: a 2-way and a 3-way tie",
    )


@pytest.mark.parametrize("fn", [F.maximum, F.minimum])
def test_maximum_minimum_ties_split_the_gradient(fn):
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 0.0, 5.0]), requires_grad=True)
    fn(a, b).backward(np.array([2.0, 2.0, 2.0]))
    first = np.array([2.0, 0.0]) if fn is F.maximum else np.array([0.0, 2.0])  # elements 1, 2
    np.testing.assert_allclose(a.grad, [1.0, first[0], first[1]], err_msg=f"{fn.__name__} grad a")
    np.testing.assert_allclose(
        b.grad, [1.0, 2 - first[0], 2 - first[1]], err_msg=f"{fn.__name__} grad b"
    )


# ==========================================================================================
# Shape and indexing
# ==========================================================================================


@st.composite
def _reshape_target(draw, shapes):
    shape = shapes[0]
    size = int(np.prod(shape))
    options = [(size,), (-1,), shape[::-1], shape + (1,), (1,) + shape]
    if len(shape) >= 2:
        options += [(shape[0], -1), (-1, shape[-1]), (shape[0] * shape[1],) + shape[2:]]
    if size == 1:
        options.append(())
    return {"shape": draw(st.sampled_from(options))}


test_reshape = op_test(F.reshape, lambda a, shape: np.reshape(a, shape), kwargs=_reshape_target)
test_reshape_method = method_test(
    "reshape(*shape)", lambda a, shape: np.reshape(a, shape), _reshape_target
)
test_flatten = op_test(F.flatten, lambda a: a.reshape(-1), min_dims=1, examples=0.5)


def _perm(shapes):
    return st.fixed_dictionaries({"axes": st.permutations(range(len(shapes[0]))).map(tuple)})


test_transpose = op_test(F.transpose, lambda a, axes: np.transpose(a, axes), kwargs=_perm)
test_permute_method = method_test("permute(*axes)", lambda a, axes: np.transpose(a, axes), _perm)
test_T = op_test(lambda a: a.T, lambda a: a.T, name="Tensor.T", examples=0.5)


@st.composite
def _two_axes(draw, shapes):
    nd = len(shapes[0])
    return {"i": draw(st.integers(-nd, nd - 1)), "j": draw(st.integers(-nd, nd - 1))}


test_transpose_two_axes = op_test(
    lambda a, i, j: a.transpose(i, j),
    lambda a, i, j: np.swapaxes(a, i, j),
    kwargs=_two_axes,
    min_dims=1,
    name="Tensor.transpose(i, j)",
)


@st.composite
def _expand_target(draw, shapes):
    shape = shapes[0]
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    tail = []
    for s in shape:
        if s == 1:
            tail.append(draw(st.sampled_from([1, 2, 3, -1])))
        else:
            tail.append(draw(st.sampled_from([s, -1])))
    return {"shape": lead + tuple(tail)}


def _expand_ref(a, shape):
    n = len(shape) - a.ndim
    full = tuple(a.shape[i - n] if s == -1 else s for i, s in enumerate(shape))
    return np.broadcast_to(a, full)


test_expand = op_test(F.expand, _expand_ref, kwargs=_expand_target)
test_broadcast_to = op_test(F.broadcast_to, _expand_ref, kwargs=_expand_target, examples=0.5)
test_expand_method = method_test("expand(*shape)", _expand_ref, _expand_target)


@st.composite
def _squeeze_axis(draw, shapes):
    shape = shapes[0]
    ones = [i for i, s in enumerate(shape) if s == 1]
    options = [st.none()]
    if ones:
        nd = len(shape)
        options.append(st.sampled_from(ones).flatmap(lambda i: st.sampled_from([i, i - nd])))
        options.append(st.lists(st.sampled_from(ones), unique=True, min_size=1).map(tuple))
    return {"axis": draw(st.one_of(*options))}


test_squeeze = op_test(F.squeeze, lambda a, axis: np.squeeze(a, axis), kwargs=_squeeze_axis)


def _unsqueeze_axis(shapes):
    nd = len(shapes[0]) + 1
    return st.fixed_dictionaries({"axis": st.integers(-nd, nd - 1)})


test_unsqueeze = op_test(
    F.unsqueeze, lambda a, axis: np.expand_dims(a, axis), kwargs=_unsqueeze_axis
)


@st.composite
def _index(draw, shapes):
    shape = shapes[0]
    nd = len(shape)
    kinds = ["basic", "basic"]
    if nd >= 1:
        kinds += ["int_array", "bool_full", "bool_first"]
    if nd >= 2:
        kinds += ["slice_and_array"]
    kind = draw(st.sampled_from(kinds))
    if kind == "basic":  # ints (negative too), slices, Ellipsis, None
        idx = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "int_array":  # integer arrays, repeats and negative entries included
        idx = draw(
            hnp.integer_array_indices(
                shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)
            )
        )
    elif kind == "bool_full":
        idx = draw(hnp.arrays(np.bool_, shape))
    elif kind == "bool_first":
        idx = draw(hnp.arrays(np.bool_, shape[:1]))
    else:
        arr = draw(
            hnp.arrays(np.intp, st.integers(1, 5), elements=st.integers(-shape[1], shape[1] - 1))
        )
        idx = (slice(None), arr)
    return {"idx": idx}


test_getitem = op_test(lambda a, idx: a[idx], lambda a, idx: a[idx], kwargs=_index, name="getitem")


def test_getitem_repeated_indices_accumulate():
    x = Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 2, 0, 0, -1])].backward(np.array([1.0, 10.0, 100.0, 1000.0, 5.0]))
    expected = np.zeros(4)
    np.add.at(expected, np.array([0, 2, 0, 0, -1]), np.array([1.0, 10.0, 100.0, 1000.0, 5.0]))
    np.testing.assert_array_equal(x.grad, expected, err_msg="x[[0,2,0,0,-1]] grad with repeats")


@st.composite
def _concat_shapes(draw):
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    axis = draw(st.integers(0, len(base) - 1))
    k = draw(st.integers(1, 3))
    return tuple(base[:axis] + (draw(st.integers(1, 3)),) + base[axis + 1 :] for _ in range(k))


@st.composite
def _concat_axis(draw, shapes):
    nd = len(shapes[0])
    ok = [
        a
        for a in range(nd)
        if all(s[:a] + s[a + 1 :] == shapes[0][:a] + shapes[0][a + 1 :] for s in shapes)
    ]
    a = draw(st.sampled_from(ok))
    return {"axis": draw(st.sampled_from([a, a - nd]))}


test_concatenate = op_test(
    lambda *ts, axis: F.concatenate(ts, axis),
    lambda *arrs, axis: np.concatenate(arrs, axis),
    shapes=_concat_shapes(),
    kwargs=_concat_axis,
    name="concatenate",
)

_stack_shapes = st.integers(1, 3).flatmap(
    lambda k: hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3).map(
        lambda s: (s,) * k
    )
)


def _stack_axis(shapes):
    nd = len(shapes[0]) + 1
    return st.fixed_dictionaries({"axis": st.integers(-nd, nd - 1)})


test_stack = op_test(
    lambda *ts, axis: F.stack(ts, axis),
    lambda *arrs, axis: np.stack(arrs, axis),
    shapes=_stack_shapes,
    kwargs=_stack_axis,
    name="stack",
)

test_unbind = op_test(
    F.unbind,
    lambda a, axis: tuple(np.take(a, i, axis=axis) for i in range(a.shape[axis])),
    kwargs=lambda s: axis_kwargs(s, allow_none=False, allow_tuple=False),
    min_dims=1,
)


@st.composite
def _split_kwargs(draw, shapes):
    shape = shapes[0]
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    if draw(st.booleans()):
        sizes = draw(st.integers(1, n + 1))
    else:
        sizes, left = [], n
        while left:
            sizes.append(draw(st.integers(1, left)))
            left -= sizes[-1]
    return {"size_or_sections": sizes, "axis": axis}


def _split_ref(a, size_or_sections, axis):
    n = a.shape[axis]
    if isinstance(size_or_sections, int):
        starts = list(range(0, n, size_or_sections))
        sizes = [min(size_or_sections, n - s) for s in starts]
    else:
        sizes = list(size_or_sections)
        starts = list(np.cumsum([0] + sizes[:-1]))
    return tuple(np.take(a, np.arange(s, s + z), axis=axis) for s, z in zip(starts, sizes))


test_split = op_test(F.split, _split_ref, kwargs=_split_kwargs, min_dims=1)


# ==========================================================================================
# Layers: embedding, dropout, one_hot
# ==========================================================================================


@st.composite
def _embedding_shapes(draw):
    return ((draw(st.integers(1, 6)), draw(st.integers(1, 4))),)


@st.composite
def _embedding_idx(draw, shapes):
    v = shapes[0][0]
    ishape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=5))
    return {"idx": draw(hnp.arrays(np.int64, ishape, elements=st.integers(0, v - 1)))}


test_embedding = op_test(
    lambda w, idx: F.embedding(idx, w),
    lambda w, idx: w[idx],
    shapes=_embedding_shapes(),
    kwargs=_embedding_idx,
    name="embedding",
)


@settings(max_examples=profile_examples(0.5))
@given(v=st.integers(2, 6), d=st.integers(1, 3), data=st.data())
def test_embedding_repeated_indices_accumulate_and_padding_row_gets_nothing(v, d, data):
    idx = data.draw(
        hnp.arrays(
            np.int64,
            st.tuples(st.integers(1, 3), st.integers(1, 5)),
            elements=st.integers(0, v - 1),
        )
    )
    pad = data.draw(st.integers(0, v - 1))
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((v, d)), requires_grad=True)
    y = F.embedding(idx, w, padding_idx=pad)
    np.testing.assert_array_equal(y.data, w.data[idx], err_msg="embedding forward with padding_idx")
    up = rng.standard_normal(idx.shape + (d,))
    y.backward(up)
    expected = np.zeros((v, d))
    np.add.at(expected, idx.ravel(), up.reshape(-1, d))
    expected[pad] = 0.0
    np.testing.assert_allclose(
        w.grad,
        expected,
        rtol=1e-12,
        atol=1e-12,
        err_msg=f"embedding grad: rows summed over repeats, row {pad} zero",
    )


def test_embedding_accepts_tensor_indices_and_rejects_bad_ones():
    w = Tensor(np.eye(3), requires_grad=True)
    y = F.embedding(Tensor(np.array([2, 2, 0])), w)
    np.testing.assert_array_equal(
        y.data, np.eye(3)[[2, 2, 0]], err_msg="embedding with Tensor indices"
    )
    with pytest.raises(IndexError, match=r"index 3 is out of range \[0, 3\)"):
        F.embedding(np.array([0, 3]), w)
    with pytest.raises(TypeError, match=r"integers, got dtype float64"):
        F.embedding(np.array([0.0, 1.0]), w)


@settings(max_examples=profile_examples(0.5))
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    p=st.sampled_from([0.1, 0.3, 0.5, 0.8]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_dropout_property(shape, p, seed, data):
    """Each element is either dropped (0) or scaled by 1 / (1 - p); the gradient flows through
    the kept elements with the same scale; a fixed generator gives a fixed mask."""
    a = data.draw(hnp.arrays(np.float64, shape, elements=nonzero(0.5, 3.0)))
    x = Tensor(a, requires_grad=True)
    y = F.dropout(x, p, training=True, rng=np.random.default_rng(seed))
    kept = y.data != 0
    np.testing.assert_allclose(
        y.data,
        np.where(kept, a / (1 - p), 0.0),
        rtol=1e-12,
        err_msg="dropout: outputs must be 0 or x / (1 - p)",
    )
    up = np.random.default_rng(seed + 1).standard_normal(shape)
    y.backward(up)
    np.testing.assert_allclose(
        x.grad,
        np.where(kept, up / (1 - p), 0.0),
        rtol=1e-12,
        err_msg="dropout grad: upstream * mask / (1 - p)",
    )
    y2 = F.dropout(Tensor(a), p, training=True, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(
        y2.data, y.data, err_msg="dropout: same generator seed, same mask"
    )
    mg.gradcheck(
        lambda t: F.dropout(t, p, rng=np.random.default_rng(seed)),
        [Tensor(a, requires_grad=True)],
        eps=GRAD_EPS,
        atol=GRAD_ATOL,
        rtol=GRAD_RTOL,
    )
    y32 = F.dropout(Tensor(a.astype(np.float32)), p, rng=np.random.default_rng(seed))
    assert y32.dtype == np.float32, f"dropout float32 in gave {y32.dtype}"


def test_dropout_manual_seed_reproducible_and_expected_scale():
    x = Tensor(np.ones(200_000, dtype=np.float32))
    mg.manual_seed(1234)
    a = F.dropout(x, 0.3).data
    mg.manual_seed(1234)
    b = F.dropout(x, 0.3).data
    np.testing.assert_array_equal(a, b, err_msg="manual_seed: same seed, same dropout mask")
    c = F.dropout(x, 0.3).data
    assert not np.array_equal(b, c), "two dropout calls after one seed gave the same mask"
    # E[y] = x; the fraction dropped is p (std of the mean ~ 0.0015 here; tolerance ~ 13 sigma)
    assert abs(a.mean() - 1.0) < 0.02, f"dropout mean {a.mean()} should be ~1 (inverted scaling)"
    assert abs((a == 0).mean() - 0.3) < 0.01, f"dropout dropped {(a == 0).mean()}, expected ~0.3"
    np.testing.assert_allclose(
        np.unique(a), [0.0, 1 / 0.7], rtol=1e-6, err_msg="dropout values are 0 and 1/(1-p)"
    )


def test_dropout_eval_p0_p1_and_bad_p():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    for y in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0)):
        np.testing.assert_array_equal(y.data, x.data, err_msg="dropout eval / p=0 is identity")
    F.dropout(x, 0.5, training=False).backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0], err_msg="dropout eval grad = upstream")
    x.grad = None
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.data, [0.0, 0.0, 0.0], err_msg="dropout p=1 drops all")
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0], err_msg="dropout p=1 grad")
    with pytest.raises(ValueError, match=r"\[0, 1\], got 1.5"):
        F.dropout(x, 1.5)


@settings(max_examples=profile_examples(0.5))
@given(c=st.integers(1, 6), data=st.data())
def test_one_hot_matches_identity_rows(c, data):
    idx = data.draw(
        hnp.arrays(
            np.int64,
            hnp.array_shapes(min_dims=0, max_dims=2, max_side=4),
            elements=st.integers(0, c - 1),
        )
    )
    y = F.one_hot(idx, c)
    np.testing.assert_array_equal(
        y.data, np.eye(c, dtype=np.float32)[idx], err_msg="one_hot vs eye rows"
    )
    assert y.dtype == np.float32 and not y.requires_grad, "one_hot: float32 and no grad"
    assert F.one_hot(Tensor(idx), c, dtype=np.float64).dtype == np.float64


def test_one_hot_rejects_out_of_range():
    with pytest.raises(IndexError, match=r"one_hot index 4 is out of range \[0, 4\)"):
        F.one_hot(np.array([0, 4]), 4)
    with pytest.raises(IndexError, match=r"index -1 is out of range"):
        F.one_hot(np.array([-1]), 4)


# ==========================================================================================
# Losses
# ==========================================================================================


def _log_softmax_last(z):
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


@st.composite
def _ce_shapes(draw):
    lead = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2))))  # (N,) or (N, T)
    return (lead + (draw(st.integers(1, 5)),),)


def _ce_test(name, op, ref, kwargs):
    """An op_test of a softmax_cross_entropy call on (N, C) or (N, T, C) logits in [-4, 4]."""
    return op_test(op, ref, shapes=_ce_shapes(), kwargs=kwargs, domain=real(-4, 4), name=name)


@st.composite
def _ce_hard(draw, shapes):
    shape = shapes[0]
    c = shape[-1]
    ignore = draw(st.sampled_from([-100, -1, 0 if c > 1 else -100]))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    target = draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, c - 1)))
    drop = draw(hnp.arrays(np.bool_, shape[:-1]))
    target = np.where(drop, ignore, target)
    if reduction == "mean" and np.all(target == ignore):
        target.flat[0] = 1 if ignore == 0 else 0  # 'mean' over no targets is NaN (tested apart)
    return {"target": target, "ignore_index": ignore, "reduction": reduction}


def _ce_hard_ref(logits, target, ignore_index, reduction):
    logp = _log_softmax_last(logits)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    loss = np.where(valid, -picked, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / valid.sum() if reduction == "mean" else loss.sum()


test_softmax_cross_entropy = _ce_test(
    "softmax_cross_entropy",
    lambda x, target, ignore_index, reduction: F.softmax_cross_entropy(
        x, target, ignore_index, reduction
    ),
    _ce_hard_ref,
    _ce_hard,
)


@st.composite
def _ce_soft(draw, shapes):
    raw = draw(hnp.arrays(np.float64, shapes[0], elements=real(0.0, 1.0)))
    total = draw(st.sampled_from(["normalized", "raw"]))
    if total == "normalized":
        raw = raw + 1e-3
        raw = raw / raw.sum(axis=-1, keepdims=True)
    return {"target": raw, "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def _ce_soft_ref(logits, target, reduction):
    loss = -np.sum(target * _log_softmax_last(logits), axis=-1)
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


test_softmax_cross_entropy_soft_targets = _ce_test(
    "softmax_cross_entropy(soft)",
    lambda x, target, reduction: F.softmax_cross_entropy(x, target, reduction=reduction),
    _ce_soft_ref,
    _ce_soft,
)


# PyTorch's layout: classes on axis 1 (axis 0 for one sample), with weight and label_smoothing.
@st.composite
def _ce_torch_shapes(draw):
    c = draw(st.integers(1, 5))
    n_lead = draw(st.integers(0, 3))  # (C,), (N, C), (N, C, d1), (N, C, d1, d2)
    if n_lead == 0:
        return ((c,),)
    n = draw(st.integers(1, 4))
    rest = tuple(draw(st.integers(1, 3)) for _ in range(n_lead - 1))
    return ((n, c) + rest,)


@st.composite
def _ce_torch_kwargs(draw, shapes):
    shape = shapes[0]
    c_axis = 0 if len(shape) == 1 else 1
    c = shape[c_axis]
    tshape = shape[:c_axis] + shape[c_axis + 1 :]
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    weight = draw(st.one_of(st.none(), hnp.arrays(np.float64, (c,), elements=real(0.5, 2.0))))
    smoothing = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    if draw(st.booleans()):
        raw = draw(hnp.arrays(np.float64, shape, elements=real(0.0, 1.0))) + 1e-3
        target = raw / raw.sum(axis=c_axis, keepdims=True)
        ignore = -100
    else:
        ignore = draw(st.sampled_from([-100, 0 if c > 1 else -100]))
        target = draw(hnp.arrays(np.int64, tshape, elements=st.integers(0, c - 1)))
        drop = draw(hnp.arrays(np.bool_, tshape))
        target = np.where(drop, ignore, target)
        if np.all(target == ignore):
            target = np.asarray(target)
            target.flat[0] = 1 if ignore == 0 else 0
    return {
        "target": target,
        "weight": weight,
        "ignore_index": ignore,
        "reduction": reduction,
        "label_smoothing": smoothing,
    }


def _ce_torch_ref(x, target, weight, ignore_index, reduction, label_smoothing):
    """PyTorch's cross_entropy written out: classes moved last, then the formulas."""
    c_axis = 0 if x.ndim == 1 else 1
    z = np.moveaxis(x, c_axis, -1)
    logp = _log_softmax_last(z)
    c = z.shape[-1]
    w = np.ones(c) if weight is None else weight
    if target.dtype.kind == "f":
        y = np.moveaxis(target, c_axis, -1) * (1 - label_smoothing) + label_smoothing / c
        loss = -np.sum(y * w * logp, axis=-1)
        if reduction == "none":
            return loss
        return loss.mean() if reduction == "mean" else loss.sum()
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] * w[safe]
    smooth = -np.sum(logp * w, axis=-1)
    loss = np.where(valid, (1 - label_smoothing) * nll + label_smoothing / c * smooth, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / np.sum(w[safe] * valid) if reduction == "mean" else loss.sum()


test_cross_entropy = op_test(
    lambda x, **kw: F.cross_entropy(x, **kw),
    _ce_torch_ref,
    shapes=_ce_torch_shapes(),
    kwargs=_ce_torch_kwargs,
    domain=real(-4, 4),
    name="cross_entropy",
)


def test_nll_loss_is_cross_entropy_of_log_softmax():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2))
    t = rng.integers(0, 4, size=(3, 2))
    w = rng.random(4) + 0.5
    a = F.cross_entropy(Tensor(x), t, weight=w, ignore_index=2)
    b = F.nll_loss(F.log_softmax(Tensor(x), axis=1), t, weight=w, ignore_index=2)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12)
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(Tensor(x), rng.random((3, 4, 2)))


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5, 3))
    t = rng.integers(0, 5, size=(4, 3))
    t[0, 0] = -100
    w = rng.random(5) + 0.5
    for kw in [
        {},
        {"weight": w},
        {"label_smoothing": 0.25, "weight": w},
        {"reduction": "none", "label_smoothing": 0.1},
    ]:
        mine = Tensor(x, requires_grad=True)
        theirs = torch.tensor(x, requires_grad=True)
        tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        a = F.cross_entropy(mine, t, **kw)
        b = torch.nn.functional.cross_entropy(theirs, torch.tensor(t), **tkw)
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12, atol=1e-15)
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_all_ignored():
    x = Tensor(np.zeros((2, 3)), requires_grad=True)
    t = np.array([-100, -100])
    assert np.isnan(F.cross_entropy(x, t).item()), "mean over no targets is NaN (as PyTorch)"
    s = F.cross_entropy(x, t, reduction="sum")
    assert s.item() == 0.0, f"sum over no targets should be 0, got {s.item()}"
    s.backward()
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)), err_msg="no targets: zero gradient")


def test_cross_entropy_float32_logits_with_float64_soft_target_stay_float32():
    x = Tensor(np.zeros((2, 3), dtype=np.float32), requires_grad=True)
    y = F.cross_entropy(x, np.full((2, 3), 1 / 3))
    assert y.dtype == np.float32, f"cross_entropy dtype {y.dtype}"
    np.testing.assert_allclose(
        y.item(), np.log(3), rtol=1e-6, err_msg="uniform logits, uniform target"
    )


def _reduction(shapes):
    return st.fixed_dictionaries({"reduction": st.sampled_from(["mean", "sum", "none"])})


def _reduce_ref(loss, reduction):
    return loss if reduction == "none" else (loss.mean() if reduction == "mean" else loss.sum())


test_mse_loss = op_test(
    F.mse_loss,
    lambda a, t, reduction: _reduce_ref((a - t) ** 2, reduction),
    2,
    broadcast=False,
    kwargs=_reduction,
)
test_bce_with_logits = op_test(
    F.binary_cross_entropy_with_logits,
    lambda x, t, reduction: _reduce_ref(np.log(1 + np.exp(x)) - x * t, reduction),
    2,
    broadcast=False,
    kwargs=_reduction,
    domain=(real(-6, 6), real(0, 1)),
)


# ==========================================================================================
# Scalars and ndarrays on either side of operators
# ==========================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_and_ndarray_operands_either_side(dtype):
    a = np.array([0.5, -1.5, 2.0], dtype=dtype)
    c = np.array([1.0, 2.0, 4.0])  # a float64 ndarray
    cases = {
        "2 * x": (lambda x: 2 * x, lambda v: 2 * v, lambda v: np.full(3, 2.0)),
        "x * 2.5": (lambda x: x * 2.5, lambda v: v * 2.5, lambda v: np.full(3, 2.5)),
        "x - ones": (lambda x: x - np.ones(3), lambda v: v - 1, lambda v: np.ones(3)),
        "ones - x": (lambda x: np.ones(3) - x, lambda v: 1 - v, lambda v: -np.ones(3)),
        "c + x": (lambda x: c + x, lambda v: c + v, lambda v: np.ones(3)),
        "x / c": (lambda x: x / c, lambda v: v / c, lambda v: 1 / c),
        "c / x": (lambda x: c / x, lambda v: c / v, lambda v: -c / v**2),
        "1 - x": (lambda x: 1 - x, lambda v: 1 - v, lambda v: -np.ones(3)),
        "x ** 2": (lambda x: x**2, lambda v: v**2, lambda v: 2 * v),
        "2 ** x": (lambda x: 2**x, lambda v: 2.0**v, lambda v: np.log(2) * 2.0**v),
        "c @ x": (lambda x: c @ x, lambda v: c @ v, lambda v: c),
        "x @ c": (lambda x: x @ c, lambda v: v @ c, lambda v: c),
    }
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for name, (fn, expr, deriv) in cases.items():
        x = Tensor(a, requires_grad=True)
        y = fn(x)
        assert isinstance(y, Tensor), f"{name}: got {type(y).__name__}, expected a Tensor"
        assert y.dtype == dtype, (
            f"{name}: dtype {y.dtype}, expected {np.dtype(dtype)} (the tensor's)"
        )
        v = a.astype(np.float64)
        np.testing.assert_allclose(y.data, expr(v), rtol=tol, err_msg=f"{name}: value")
        y.sum().backward()
        assert x.grad.dtype == dtype, f"{name}: grad dtype {x.grad.dtype}"
        np.testing.assert_allclose(x.grad, deriv(v), rtol=tol * 10, err_msg=f"{name}: gradient")


def test_int_tensor_with_float_scalar_gives_float():
    x = Tensor(np.array([1, 2, 3]))
    y = x * 0.5
    assert y.dtype.kind == "f", f"int tensor * 0.5 gave {y.dtype}"
    np.testing.assert_allclose(y.data, [0.5, 1.0, 1.5], err_msg="int tensor * 0.5")
    assert (x + 1).dtype == x.dtype, "int tensor + int keeps the int dtype"


def test_mixed_float32_float64_graph_backpropagates_in_each_leafs_dtype():
    """A float32 op feeding a float64 op gets its upstream gradient cast back to float32."""
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    w = Tensor(np.full((4, 3), 0.5, dtype=np.float32), requires_grad=True)
    s = Tensor(np.arange(8.0).reshape(2, 4), requires_grad=True)  # float64
    y = F.linear(x, w) * s
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32 and s.grad.dtype == np.float64
    np.testing.assert_allclose(
        x.grad,
        np.arange(8.0).reshape(2, 4) @ np.full((4, 3), 0.5),
        rtol=1e-6,
        err_msg="dx through linear(float32) * float64",
    )
    np.testing.assert_allclose(s.grad, np.full((2, 4), 1.5), err_msg="ds")


# ==========================================================================================
# Numerical stability at ±1e4
# ==========================================================================================

_BIG = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])


def _no_fp_trouble():
    return np.errstate(over="raise", invalid="raise", divide="raise")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalizers_are_finite_and_exact_at_1e4(dtype):
    x = Tensor(_BIG.astype(dtype), requires_grad=True)
    with _no_fp_trouble(), warnings.catch_warnings():
        warnings.simplefilter("error")
        ls = F.log_softmax(x, axis=1)
        sm = F.softmax(x, axis=1)
        lse = F.logsumexp(x, axis=1)
        (ls.sum() + sm.sum() + lse.sum()).backward()
    expected_ls = np.array(
        [[0.0, -1e4, -2e4], [-np.log(3)] * 3, [-np.log(2), -np.log(2), -2e4 - np.log(2)]]
    )
    np.testing.assert_allclose(
        ls.data, expected_ls, rtol=1e-6, atol=1e-5, err_msg="log_softmax at ±1e4"
    )
    np.testing.assert_allclose(
        sm.data, np.exp(expected_ls), rtol=1e-6, atol=1e-7, err_msg="softmax at ±1e4"
    )
    np.testing.assert_allclose(
        lse.data, [1e4, -1e4 + np.log(3), 1e4 + np.log(2)], rtol=1e-7, err_msg="logsumexp at ±1e4"
    )
    assert np.all(np.isfinite(x.grad)), f"gradients at ±1e4 not finite: {x.grad}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_softplus_bce_cross_entropy_finite_at_1e4(dtype):
    v = np.array([1e4, -1e4, 0.0], dtype=dtype)
    t = np.array([0.0, 1.0, 1.0], dtype=dtype)
    x = Tensor(v, requires_grad=True)
    with _no_fp_trouble(), warnings.catch_warnings():
        warnings.simplefilter("error")
        sg = F.sigmoid(x)
        sp = F.softplus(x)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        ce = F.cross_entropy(x.reshape(1, 3), np.array([1]))
        (sg.sum() + sp.sum() + bce.sum() + ce).backward()
    np.testing.assert_allclose(sg.data, [1.0, 0.0, 0.5], atol=1e-7, err_msg="sigmoid at ±1e4")
    np.testing.assert_allclose(
        sp.data, [1e4, 0.0, np.log(2)], rtol=1e-6, atol=1e-7, err_msg="softplus"
    )
    np.testing.assert_allclose(
        bce.data, [1e4, 1e4, np.log(2)], rtol=1e-6, err_msg="bce with logits at ±1e4"
    )
    np.testing.assert_allclose(
        ce.data, 2e4, rtol=1e-6, err_msg="cross_entropy: target logit 2e4 below max"
    )
    assert np.all(np.isfinite(x.grad)), f"gradients at ±1e4 not finite: {x.grad}"


# ==========================================================================================
# Bad input: errors name what was expected and what was got
# ==========================================================================================


def test_non_broadcastable_shapes_raise():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        Tensor(np.ones(3)) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, ?3\).*\(2,\)"):
        F.mul(Tensor(np.ones((2, 3))), np.ones(2))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        F.where(np.array([True, False]), Tensor(np.ones(3)), 0.0)


def test_matmul_inner_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\).*3 and 4"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(3,\) @ \(2,\)"):
        F.matmul(Tensor(np.ones(3)), np.ones(2))
    with pytest.raises(ValueError, match=r"at least 1 dimension.*\(\)"):
        F.matmul(Tensor(np.ones(())), np.ones(2))


def test_linear_bad_shapes_raise():
    x, w = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"last dimension 3.*got shape \(2, 5\)"):
        F.linear(Tensor(np.ones((2, 5))), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        F.linear(x, w, Tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"weight must be 2-D.*got shape \(3,\)"):
        F.linear(x, Tensor(np.ones(3)))


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match=r"floating point.*got dtype int64"):
        Tensor(np.array([1, 2, 3]), requires_grad=True)
    with pytest.raises(TypeError, match=r"floating point.*got dtype bool"):
        mg.tensor([True, False], requires_grad=True)


@pytest.mark.parametrize(
    ("loss", "shape", "target", "kw", "message"),
    [
        # the fused node: the kernel finds the bad target, the message names it as before
        ("cross_entropy", (2, 3), [0, 3], {}, r"^cross_entropy target 3 is out of range"),
        ("cross_entropy", (2, 3, 2), [[0, 1], [2, -5]], {}, r"^cross_entropy target -5 is out"),
        ("softmax_cross_entropy", (2, 3), [4, 0], {}, r"^softmax_cross_entropy target 4 is out"),
        # an ignore_index the kernel cannot take (no int64): -1 is neither it nor a class
        ("cross_entropy", (2, 3), [-1, 0], {"ignore_index": 2.5}, r"target -1 is out of range"),
        ("softmax_cross_entropy", (2, 3), [0, -1], {"ignore_index": 2**70}, r"target -1 is out"),
        # no logits to run the kernel on (no classes): every target must be ignored
        ("cross_entropy", (2, 0), [-100, 0], {}, r"target 0 is out of range \[0, 0\)"),
    ],
)
def test_fused_cross_entropy_names_the_first_bad_target(loss, shape, target, kw, message):
    x = Tensor(np.zeros(shape), requires_grad=True)
    with pytest.raises(IndexError, match=message):
        getattr(F, loss)(x, np.array(target), **kw)
    assert x.grad is None


def test_cross_entropy_bad_targets_raise():
    x = Tensor(np.zeros((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"shape \(2,\).*got \(3,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(IndexError, match=r"target 3 is out of range \[0, 3\)"):
        F.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(IndexError, match=r"target -2 is out of range \[0, 3\)"):
        F.cross_entropy(x, np.array([-2, 0]))
    with pytest.raises(ValueError, match=r"NaN"):
        F.cross_entropy(x, np.array([[0.5, np.nan, 0.5], [1.0, 0.0, 0.0]]))
    with pytest.raises(
        ValueError, match=r"class probabilities of shape \(2, 3\).*float target of shape \(2,\)"
    ):
        F.cross_entropy(x, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"integer class indices, got dtype bool"):
        F.cross_entropy(x, np.array([True, False]))
    with pytest.raises(ValueError, match=r"reduction must be one of.*got 'avg'"):
        F.cross_entropy(x, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*classes on axis 1.*got \(2,\)"):
        F.cross_entropy(Tensor(np.zeros((2, 4, 3))), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(2, 4\).*got \(2,\)"):
        F.softmax_cross_entropy(Tensor(np.zeros((2, 4, 3))), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"weight must be 3 numbers.*shape \(2,\)"):
        F.cross_entropy(x, np.array([0, 1]), weight=np.ones(2))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(x, np.array([0, 1]), label_smoothing=1.5)


def test_other_loss_bad_input_raises():
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(2,\)"):
        F.mse_loss(Tensor(np.ones(3)), np.ones(2))
    with pytest.raises(ValueError, match=r"NaN"):
        F.binary_cross_entropy_with_logits(Tensor(np.ones(2)), np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(2, 1\)"):
        F.binary_cross_entropy_with_logits(Tensor(np.ones(2)), np.ones((2, 1)))


def test_shape_ops_bad_input_raises():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(6 elements\) into shape \(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"expand a tensor of shape \(2, 3\) to shape \(2, 4\)"):
        x.expand(2, 4)
    with pytest.raises(ValueError, match=r"squeeze axis 1 of size 3"):
        x.squeeze(1)
    with pytest.raises(ValueError, match=r"concatenate shapes \[\(2, 3\), \(2, 2\)\] along axis 0"):
        F.concatenate([x, Tensor(np.ones((2, 2)))], axis=0)
    with pytest.raises(
        ValueError, match=r"stack needs tensors of one shape, got \[\(2, 3\), \(3, 2\)\]"
    ):
        F.stack([x, Tensor(np.ones((3, 2)))])
    with pytest.raises(
        ValueError, match=r"split sizes \[2, 2\] add up to 4, but axis 1 has length 3"
    ):
        x.split([2, 2], axis=1)
    with pytest.raises(ValueError, match=r"not a permutation of the 2 dimensions"):
        x.permute(0, 0)
    with pytest.raises(IndexError, match=r"does not fit a tensor of shape \(2, 3\)"):
        x[5]
    with pytest.raises(ValueError, match=r"clip needs lo <= hi, got lo=2, hi=1"):
        x.clip(2, 1)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.sum(axis=2),
        lambda x: x.mean(axis=-3),
        lambda x: x.max(axis=(0, 5)),
        lambda x: x.min(axis=2),
        lambda x: F.var(x, axis=2),
        lambda x: F.logsumexp(x, axis=2),
        lambda x: F.softmax(x, axis=2),
        lambda x: F.log_softmax(x, axis=-3),
        lambda x: x.unsqueeze(3),
        lambda x: x.unbind(2),
        lambda x: x.transpose(0, 2),
        lambda x: x.squeeze(2),
        lambda x: x.split(1, axis=2),
    ],
)
def test_bad_axis_raises_naming_axis_and_ndim(call):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"\(?-?\d+(, -?\d+)?\)? (is )?out of range for (a tensor with )?[23] dimensions",
    ):
        call(x)


def test_repeated_axis_raises():
    with pytest.raises(ValueError, match=r"repeated axis"):
        Tensor(np.ones((2, 3))).sum(axis=(1, -1))


def test_pow_gradient_at_zero_base():
    """d(x**0)/dx = 0 everywhere (x**0 is the constant 1), d(x**2)/dx = 0 and d(x**1)/dx = 1
    at 0."""
    for p, expected in (
        (0, [0.0, 0.0, 0.0]),
        (1, [1.0, 1.0, 1.0]),
        (2, [0.0, 2.0, -4.0]),
        (3, [0.0, 3.0, 12.0]),
    ):
        x = Tensor(np.array([0.0, 1.0, -2.0]), requires_grad=True)
        (x**p).sum().backward()
        np.testing.assert_array_equal(x.grad, expected, err_msg=f"d(x**{p})/dx at x = 0, 1, -2")


# ==========================================================================================
# Tensor methods and small conveniences
# ==========================================================================================

_A = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])


@pytest.mark.parametrize(
    "method, expected",
    [
        (lambda t: t.exp(), np.exp(_A)),
        (lambda t: t.abs().log(), np.log(np.abs(_A))),
        (lambda t: t.abs().sqrt(), np.sqrt(np.abs(_A))),
        (lambda t: t.tanh(), np.tanh(_A)),
        (lambda t: t.sigmoid(), 1 / (1 + np.exp(-_A))),
        (lambda t: t.relu(), np.maximum(_A, 0)),
        (lambda t: abs(t), np.abs(_A)),
        (lambda t: +t, _A),
        (lambda t: t.mean(axis=1), _A.mean(axis=1)),
        (lambda t: t.var(axis=0, ddof=1), _A.var(axis=0, ddof=1)),
        (lambda t: t.max(), _A.max()),
        (lambda t: t.min(axis=0, keepdims=True), _A.min(axis=0, keepdims=True)),
        (lambda t: t.softmax(axis=0), np.exp(_A) / np.exp(_A).sum(axis=0)),
        (lambda t: t.log_softmax(), _A - np.log(np.exp(_A).sum(axis=-1, keepdims=True))),
        (lambda t: t.flatten(), _A.ravel()),
        (lambda t: t.view(3, 2), _A.reshape(3, 2)),
        (lambda t: t.unsqueeze(0).squeeze(), _A),
        (lambda t: t[t > 0], _A[_A > 0]),
        (lambda t: F.cat([t, np.ones((1, 3))]), np.concatenate([_A, np.ones((1, 3))])),
    ],
)
def test_tensor_methods_forward_and_backward(method, expected):
    x = Tensor(_A, requires_grad=True)
    y = method(x)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, err_msg="method forward")
    assert mg.gradcheck(method, [Tensor(_A, requires_grad=True)])


def test_comparisons_and_argmax_give_plain_tensors():
    x = Tensor(_A, requires_grad=True)
    for name, t, e in (
        ("<", x < 0, _A < 0),
        ("<=", x <= 0.1, _A <= 0.1),
        (">", x > 0, _A > 0),
        (">=", x >= 0.7, _A >= 0.7),
        ("==", x == 0.1, _A == 0.1),
        ("!=", x != 0.1, _A != 0.1),
    ):
        assert t.dtype == np.bool_ and not t.requires_grad, f"x {name} c"
        np.testing.assert_array_equal(t.data, e, err_msg=f"x {name} c")
    np.testing.assert_array_equal(x.argmax(axis=1).data, _A.argmax(axis=1), err_msg="argmax")
    np.testing.assert_array_equal(x.argmin().data, _A.argmin(), err_msg="argmin")


# ==========================================================================================
# The factory fails on broken ops (so a passing op test means something)
# ==========================================================================================


class _MutatesInput(mg.Function):
    def forward(self, x):
        x *= 1.0000001
        return x * 2

    def backward(self, g):
        return (2 * g,)


class _MutatesUpstream(mg.Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        g *= 2
        return (g,)


class _WrongBackward(mg.Function):
    def forward(self, x):
        return x * 2

    def backward(self, g):
        return (3 * g,)

    backward_graph = backward


class _PromotesFloat32(mg.Function):
    def forward(self, x):
        return (x * 2).astype(np.float64)

    def backward(self, g):
        return (2 * g,)

    backward_graph = backward


class _ForwardOff(mg.Function):
    def forward(self, x):
        return x * 2 + 1e-6

    def backward(self, g):
        return (2 * g,)

    backward_graph = backward


class _SquareFirstOrderOnly(mg.Function):
    """y = x**2 with a right backward and a backward_graph that drops the second-order term
    (it treats x as a constant): only the factory's second-order check can see it."""

    def forward(self, x):
        self.saved = x
        return x * x

    def backward(self, g):
        return (2 * self.saved * g,)

    def backward_graph(self, g):
        return (g * (2 * self.saved),)


@pytest.mark.parametrize(
    "fn, message",
    [
        (_MutatesInput, "mutated input 0"),
        (_MutatesUpstream, "mutated upstream gradient 0"),
        (_WrongBackward, "gradcheck failed for input 0"),
        (_PromotesFloat32, "dtype float64 for float32 inputs"),
        (_ForwardOff, "forward output 0 vs NumPy"),
    ],
)
def test_factory_catches_broken_ops(fn, message):
    from factories import check_op

    with pytest.raises(AssertionError, match=message):
        check_op(
            lambda t: fn()(t), lambda a: 2 * a, [np.array([[0.5, -1.0, 2.0]])], name=fn.__name__
        )


def test_factory_catches_a_missing_second_order_term():
    from factories import check_op

    arrays = [np.array([[0.5, -1.0, 2.0]])]
    check_op(
        lambda t: _SquareFirstOrderOnly()(t), np.square, arrays, gradgrad=False
    )  # 1st order ok
    with pytest.raises(AssertionError, match="second derivative: gradcheck failed"):
        check_op(lambda t: _SquareFirstOrderOnly()(t), np.square, arrays, name="square")


def test_mean_and_var_of_int_and_bool_tensors_are_float():
    """The accuracy idiom (pred == target).mean() must not round to a bool or an int."""
    pred, target = np.array([1, 2, 0, 2]), np.array([1, 0, 0, 1])
    acc = (Tensor(pred) == Tensor(target)).mean()
    assert acc.dtype.kind == "f", f"mean of a bool tensor has dtype {acc.dtype}"
    np.testing.assert_allclose(acc.item(), 0.5, err_msg="(pred == target).mean()")
    ints = Tensor(np.array([1, 2, 4]))
    np.testing.assert_allclose(ints.mean().item(), 7 / 3, err_msg="mean of ints")
    np.testing.assert_allclose(
        ints.var(ddof=1).item(), np.var([1, 2, 4], ddof=1), err_msg="var of ints"
    )


def test_float_valued_unary_ops_on_int_tensors_give_floats():
    ints = np.array([0, 1, -1, 3])
    for name, fn, expected in (
        ("exp", F.exp, np.exp(ints)),
        ("tanh", F.tanh, np.tanh(ints)),
        ("sigmoid", F.sigmoid, 1 / (1 + np.exp(-ints))),
        ("softplus", F.softplus, np.log1p(np.exp(ints))),
    ):
        y = fn(Tensor(ints))
        assert y.dtype.kind == "f", f"{name} of an int tensor has dtype {y.dtype}"
        np.testing.assert_allclose(y.data, expected, rtol=1e-12, err_msg=f"{name} of ints")


# ---- small API fixes: each guards a behaviour a user relies on
def test_reduction_axis_may_be_a_list():
    x = mg.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    y = x.sum(axis=[0, 2])
    np.testing.assert_allclose(y.data, np.arange(24.0).reshape(2, 3, 4).sum(axis=(0, 2)))
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.ones((2, 3, 4)))


def test_unsqueeze_bad_axis_names_the_input_dimensions():
    with pytest.raises(ValueError, match="2 dimensions"):
        F.unsqueeze(mg.tensor(np.ones((2, 3))), 5)


def test_embedding_padding_idx_out_of_range():
    w = mg.tensor(np.ones((4, 2)), requires_grad=True)
    with pytest.raises(ValueError, match=r"padding_idx must be within \[-4, 4\), got 7"):
        F.embedding(np.array([0, 1]), w, padding_idx=7)


def test_cross_entropy_refuses_a_target_that_requires_grad():
    logits = mg.tensor(np.zeros((2, 3)), requires_grad=True)
    soft = mg.tensor(np.full((2, 3), 1 / 3), requires_grad=True)
    with pytest.raises(ValueError, match="target"):
        F.cross_entropy(logits, soft)


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss", "softmax_cross_entropy"])
@pytest.mark.parametrize("bad", [None, "a", True])
def test_losses_name_a_bad_ignore_index(fn, bad):
    x = mg.tensor(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match=f"{fn} ignore_index must be an int, got"):
        getattr(F, fn)(x, np.array([0, 1, 2]), ignore_index=bad)
