"""Tensor: an ndarray, its gradient, and the tape node that made it."""

from __future__ import annotations

import numpy as np

from . import autograd

__all__ = ["Tensor", "tensor"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _to_array(data, dtype):
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = np.dtype(dtype)
        arr = np.array(data, dtype=dtype)
    elif isinstance(data, np.ndarray):
        arr = data.copy()
        if arr.dtype.kind == "f" and arr.dtype not in _FLOATS:
            arr = arr.astype(np.float32)
    else:
        arr = np.array(data)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)  # Python floats become float32, as in PyTorch
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"Tensor data must be numeric, got dtype {arr.dtype}")
    return arr


class Tensor:
    """An n-dimensional array that can record the operations made on it.

    ``data`` is the ndarray (float32 by default, float64 kept when given), ``grad`` the gradient
    accumulated by ``backward()`` (an ndarray or None), ``requires_grad`` whether operations on it
    are recorded, and ``_ctx`` the Function that made it (None for a leaf).
    """

    __slots__ = (
        "_data",
        "grad",
        "requires_grad",
        "_ctx",
        "_idx",
        "_hooks",
        "_version",
        "_modified_by",
        "_modified_at",
        "_grad_graph",
        "_post_hooks",  # set by register_post_accumulate_grad_hook (unset: none)
        "_grad_into",  # set by autograd.set_grad_destination (unset: none)
        "__weakref__",
    )
    __array_ufunc__ = None  # `ndarray + Tensor` defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self._data = _to_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._idx = 0
        self._hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----- basic attributes -------------------------------------------------------------
    @property
    def data(self):
        """The values, an ndarray.  Assigning a new array counts as a modification: a backward
        pass that needs the old values raises instead of using the new ones."""
        return self._data

    @data.setter
    def data(self, value):
        self._data = value if type(value) is np.ndarray else np.asarray(value)
        self._bump_version("assignment to .data")

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def size(self, dim=None):
        """The shape, as ``torch.Tensor.size()``; with ``dim``, the length of that axis
        (negative counts from the end). The number of elements is ``numel()``."""
        shape = self.data.shape
        if dim is None:
            return shape
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"size() dim must be an int, got {type(dim).__name__}")
        if not -len(shape) <= dim < len(shape):
            raise IndexError(
                f"size(): dim {dim} is out of range for a tensor with {len(shape)} dimensions"
            )
        return shape[dim]

    def numel(self):
        """The number of elements."""
        return self.data.size

    def dim(self):
        """The number of dimensions (``ndim``)."""
        return self.data.ndim

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        """The Function node that created this tensor (None for leaves)."""
        return self._ctx

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def numpy(self):
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.data.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is not None:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", precision=4, prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        if self._ctx is not None:
            extra += f", grad_fn=<{self._ctx.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __hash__(self):
        return id(self)

    # ----- autograd ---------------------------------------------------------------------
    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating point tensors can require gradients, got dtype {self.data.dtype}"
            )
        if not flag and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self.requires_grad = bool(flag)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (BPTT for unrolled RNNs).

        ``gradient`` is the upstream gradient (needed unless self has one element; ``grad`` is
        an older name for it).  ``retain_graph=True`` keeps the tape for another backward.
        ``create_graph=True`` records the backward pass itself: each leaf's ``.grad_tensor`` is
        then its gradient as a Tensor on the tape, to differentiate again (``.grad`` still
        holds the values as an ndarray).  ``retain_graph`` defaults to ``create_graph``."""
        if grad is not None:
            if gradient is not None:
                raise TypeError("backward() got both gradient and grad; pass one")
            gradient = grad
        if (
            gradient is not None
            and np.asarray(getattr(gradient, "data", gradient)).dtype.kind not in "fiub"
        ):
            raise TypeError(
                f"backward() gradient must be real (float), got dtype "
                f"{np.asarray(getattr(gradient, 'data', gradient)).dtype}"
            )
        autograd.backward(self, gradient, retain_graph, create_graph)

    @property
    def grad_tensor(self):
        """The gradient left by ``backward(create_graph=True)`` as a Tensor that carries the
        graph of the backward pass (None otherwise).  It is the Tensor whose values ``.grad``
        holds; once ``.grad`` is replaced (zero_grad, a plain backward) it is None again."""
        pair = getattr(self, "_grad_graph", None)
        if pair is None or pair[0] is not self.grad:
            return None
        return pair[1]

    @property
    def version(self):
        """How many times this tensor was modified through minigrad (in-place methods,
        optimizer steps, assignment to ``.data``).  A backward that needs its old value checks
        it (reading is free)."""
        return getattr(self, "_version", 0)

    def _bump_version(self, by):
        """Record a modification (``by`` names it for the error message)."""
        autograd._bump(self, by)

    def detach(self):
        """The same data, cut from the tape (shares memory, does not require grad)."""
        return _wrap(self.data, None, 0)

    def detach_(self):
        self._ctx = None
        self.requires_grad = False
        return self

    def zero_grad(self):
        self.grad = None
        self._grad_graph = None

    # ----- in-place operations (no history: on leaves under no_grad, or on constants) ------
    def _inplace(self, name, value):
        if self._ctx is not None:
            raise RuntimeError(
                f"{name}: in-place operations on a tensor with history (made by "
                f"{self._ctx.name}) are not supported; use the out-of-place op "
                f"(e.g. y = y + 1 instead of y.add_(1))"
            )
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                f"{name}: a leaf tensor that requires grad is being used in an in-place "
                "operation; wrap it in `with minigrad.no_grad():` (as an optimizer does)"
            )
        arr = np.asarray(_raw(value))
        try:
            out = np.broadcast_to(arr, self.data.shape)
        except ValueError:
            raise ValueError(
                f"{name}: a value of shape {arr.shape} does not broadcast to the "
                f"tensor's shape {self.data.shape}"
            ) from None
        if arr.dtype.kind == "f" and self.data.dtype.kind != "f":
            raise TypeError(
                f"{name}: cannot write floating point values into a tensor of "
                f"dtype {self.data.dtype}"
            )
        return out

    def _apply_inplace(self, name, fn, value):
        out = self._inplace(name, value)
        fn(self.data, out)
        self._bump_version(name)
        return self

    def add_(self, other, alpha=1):
        """self += alpha * other, in place (bumps the version counter)."""
        return self._apply_inplace(
            "add_",
            lambda d, v: np.add(d, alpha * v if alpha != 1 else v, out=d, casting="unsafe"),
            other,
        )

    def sub_(self, other, alpha=1):
        """self -= alpha * other, in place."""
        return self._apply_inplace(
            "sub_",
            lambda d, v: np.subtract(d, alpha * v if alpha != 1 else v, out=d, casting="unsafe"),
            other,
        )

    def mul_(self, other):
        """self *= other, in place."""
        return self._apply_inplace(
            "mul_", lambda d, v: np.multiply(d, v, out=d, casting="unsafe"), other
        )

    def div_(self, other):
        """self /= other, in place (floating point tensors)."""
        if self.data.dtype.kind != "f":
            raise TypeError(f"div_ needs a floating point tensor, got dtype {self.data.dtype}")
        return self._apply_inplace("div_", lambda d, v: np.divide(d, v, out=d), other)

    def copy_(self, src):
        """Copy src's values into self (broadcasting), in place."""
        return self._apply_inplace("copy_", lambda d, v: np.copyto(d, v, casting="unsafe"), src)

    def fill_(self, value):
        """Set every element to value, in place."""
        return self._apply_inplace("fill_", lambda d, v: np.copyto(d, v, casting="unsafe"), value)

    def zero_(self):
        """Set every element to 0, in place."""
        return self._apply_inplace("zero_", lambda d, v: np.copyto(d, v, casting="unsafe"), 0)

    def clamp_(self, lo=None, hi=None):
        """Clip to [lo, hi], in place."""
        if lo is None and hi is None:
            raise ValueError("clamp_ needs at least one of lo and hi")
        self._inplace("clamp_", 0)
        np.clip(self.data, lo, hi, out=self.data, casting="unsafe")
        self._bump_version("clamp_")
        return self

    clip_ = clamp_

    def register_hook(self, fn):
        """Call ``fn(grad)`` when this tensor's gradient is computed; a returned value replaces
        it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._ctx is None:
            if self._hooks is None:
                self._hooks = []
            self._hooks.append(fn)
        else:
            node = self._ctx
            if node.hooks is None:
                node.hooks = {}
            node.hooks.setdefault(self._idx, []).append(fn)
        return fn

    def register_post_accumulate_grad_hook(self, fn):
        """Call ``fn(tensor)`` once this leaf's ``.grad`` holds its whole gradient from the
        backward pass under way, as ``torch.Tensor.register_post_accumulate_grad_hook``.

        It runs during the backward pass, as soon as the last node that feeds this leaf has
        run (before the rest of the tape is done), so it can start work on the gradient early:
        the all-reduce of data-parallel training uses it.  The return value is ignored; to
        change the gradient, change ``tensor.grad``.  Leaves only; ``autograd.grad()`` (which
        fills no ``.grad``) does not call it.  Returns a handle whose ``remove()`` unregisters
        it."""
        return autograd.add_post_accumulate_hook(self, fn)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        if self._ctx is not None:
            self.register_hook(autograd.retain_grad_hook(self))
        return self

    # ----- conversions ------------------------------------------------------------------
    def astype(self, dtype):
        return F.cast(self, dtype)

    def float(self):
        return F.cast(self, np.float32)

    def double(self):
        return F.cast(self, np.float64)

    def copy(self):
        return F.cast(self, self.data.dtype)

    # ----- operators (all forward to minigrad.functional) -------------------------------
    def __add__(self, o):
        return F.add(self, o)

    def __radd__(self, o):
        return F.add(o, self)

    def __sub__(self, o):
        return F.sub(self, o)

    def __rsub__(self, o):
        return F.sub(o, self)

    def __mul__(self, o):
        return F.mul(self, o)

    def __rmul__(self, o):
        return F.mul(o, self)

    def __truediv__(self, o):
        return F.div(self, o)

    def __rtruediv__(self, o):
        return F.div(o, self)

    def __pow__(self, o):
        return F.pow(self, o)

    def __rpow__(self, o):
        return F.pow(o, self)

    def __matmul__(self, o):
        return F.matmul(self, o)

    def __rmatmul__(self, o):
        return F.matmul(o, self)

    def __neg__(self):
        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return F.abs(self)

    def __getitem__(self, idx):
        return F.getitem(self, idx)

    # comparisons give plain boolean arrays wrapped in Tensors (no gradient)
    def __lt__(self, o):
        return Tensor._const(self.data < _raw(o))

    def __le__(self, o):
        return Tensor._const(self.data <= _raw(o))

    def __gt__(self, o):
        return Tensor._const(self.data > _raw(o))

    def __ge__(self, o):
        return Tensor._const(self.data >= _raw(o))

    def __eq__(self, o):
        return Tensor._const(self.data == _raw(o))

    def __ne__(self, o):
        return Tensor._const(self.data != _raw(o))

    @staticmethod
    def _const(arr):
        return _wrap(np.asarray(arr), None, 0)

    # ----- methods ----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return F.min(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return F.var(self, axis, keepdims, ddof)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def tanh(self):
        return F.tanh(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def relu(self):
        return F.relu(self)

    def abs(self):
        return F.abs(self)

    def clip(self, lo=None, hi=None):
        return F.clip(self, lo, hi)

    clamp = clip

    def softmax(self, axis=-1):
        return F.softmax(self, axis)

    def log_softmax(self, axis=-1):
        return F.log_softmax(self, axis)

    def argmax(self, axis=None):
        return Tensor._const(self.data.argmax(axis))

    def argmin(self, axis=None):
        return Tensor._const(self.data.argmin(axis))

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        return F.flatten(self, start_dim, end_dim)

    def transpose(self, *axes):
        """PyTorch style: ``t.transpose(0, 2)`` swaps two axes; no argument reverses them all;
        a full permutation (``t.transpose(2, 0, 1)``) permutes as NumPy does."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if len(axes) == 2:
            return F.swapaxes(self, axes[0], axes[1])
        return F.transpose(self, axes or None)

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return F.transpose(self, axes)

    @property
    def T(self):
        return F.transpose(self, None)

    def expand(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.expand(self, shape)

    def squeeze(self, axis=None):
        return F.squeeze(self, axis)

    def unsqueeze(self, axis):
        return F.unsqueeze(self, axis)

    def unbind(self, axis=0):
        return F.unbind(self, axis)

    def split(self, size_or_sections, axis=0):
        return F.split(self, size_or_sections, axis)


def _raw(o):
    return o.data if isinstance(o, Tensor) else o


_new = object.__new__


def _wrap(data, ctx, idx):
    """Make a Tensor around an existing ndarray without copying (the engine's hot path)."""
    t = _new(Tensor)
    t._data = data if type(data) is np.ndarray else np.asarray(data)
    t.grad = None
    t._ctx = ctx
    t._idx = idx
    t._hooks = None
    t.requires_grad = ctx is not None
    return t


def tensor(data, requires_grad=False, dtype=None):
    """Make a leaf Tensor (a copy of ``data``; float32 unless a float64 array or dtype is given)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


autograd._bind_tensor(Tensor, _wrap)

from . import functional as F  # noqa: E402  (operators above call into it)
