"""The tape: Function nodes, grad mode, and the backward engine.

How it works, in four sentences.  Calling a ``Function`` on tensors runs its ``forward`` on the
raw ndarrays; if grad mode is on and some input requires grad, the Function object itself becomes
a node of the tape: it remembers its input tensors and whatever it put in ``self.saved``, and
each output tensor points back to it (``tensor._ctx``, and ``tensor._idx`` for which output it
is).  ``backward`` walks the nodes reachable from the root in an order where every node comes
after all the nodes that use its outputs (Kahn's algorithm over dependency counts, no
recursion), sums the gradients arriving at each output, calls the node's ``backward`` once, and
hands the results to the node's inputs.  Leaf tensors (those made by the user) accumulate their
gradient into ``.grad``.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

__all__ = ["Function", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled", "backward"]


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """True when operations are being recorded on the tape."""
    return _GradMode.enabled


class set_grad_enabled:
    """Context manager (and decorator) setting grad mode on or off, restoring it on exit."""
    _at_once = True  # `set_grad_enabled(False)` also works as a plain call, as in PyTorch

    def __init__(self, mode: bool):
        self.prev = _GradMode.enabled
        self.mode = bool(mode)
        if self._at_once:
            _GradMode.enabled = self.mode

    def __enter__(self):
        if not self._at_once:
            self.prev = _GradMode.enabled
            _GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _GradMode.enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode
        if self._at_once:
            _GradMode.enabled = self.prev  # used as a decorator: do not change the mode now

        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper


class no_grad(set_grad_enabled):
    """``with no_grad():`` records nothing on the tape (also usable as a decorator)."""
    _at_once = False  # creating the object changes nothing; entering it does

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """``with enable_grad():`` records again inside a ``no_grad`` block."""
    _at_once = False

    def __init__(self):
        super().__init__(True)


_Tensor = None  # bound by minigrad.tensor once the class exists (avoids an import cycle)
_wrap = None


def _bind_tensor(tensor_cls, wrap):
    global _Tensor, _wrap
    _Tensor, _wrap = tensor_cls, wrap


_FREED = object()  # marks a node whose saved arrays were released after backward


class Function:
    """A differentiable operation and, once recorded, a node of the tape.

    Subclasses implement ``forward(*arrays)`` returning an ndarray or a tuple of ndarrays, and
    ``backward(*grads)`` returning one gradient per positional input (None where no gradient is
    needed; ``self.needs_input_grad[i]`` says which are).  ``forward`` stores what ``backward``
    needs in ``self.saved``; the engine drops it after backward unless ``retain_graph=True``.
    For a multi-output function, ``backward`` receives None for outputs that got no gradient.
    Non-tensor settings (an axis, a shape) are given to the constructor.
    """

    # Set on recording. `inputs` holds, for each positional argument, the Tensor or None.
    inputs = ()
    needs_input_grad = ()
    saved = None
    n_out = 1
    hooks = None  # {output index: [fn, ...]} for hooks on non-leaf tensors
    # True when backward returns arrays it has just allocated, that nothing else refers to (the
    # compiled kernels' outputs): a leaf's first .grad then keeps the array instead of a copy.
    fresh_grads = False

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args):
        # The hot path of every op: keep it free of imports, kwargs and repeated scans.
        arrays = []
        inputs = []
        needs = []
        record = False
        ref_dtype = None
        has_const = False
        for a in args:
            if isinstance(a, _Tensor):
                arrays.append(a.data)
                inputs.append(a)
                rg = a.requires_grad
                needs.append(rg)
                record = record or rg
                if ref_dtype is None:
                    ref_dtype = a.data.dtype
            else:
                arrays.append(a)
                inputs.append(None)
                needs.append(False)
                has_const = True
        if has_const:
            # Constants (numbers, lists, ndarrays) adopt the dtype of the tensors they meet,
            # as in PyTorch: `x - np.ones(3)` stays float32 when x is float32.
            for i, a in enumerate(arrays):
                if inputs[i] is None:
                    arrays[i] = _as_constant(a, ref_dtype)
        if record and _GradMode.enabled:
            self.inputs = tuple(inputs)
            self.needs_input_grad = tuple(needs)
            out = self.forward(*arrays)
            if type(out) is tuple:
                self.n_out = len(out)
                return tuple([_wrap(o, self, i) for i, o in enumerate(out)])
            return _wrap(out, self, 0)
        out = self.forward(*arrays)
        if type(out) is tuple:
            return tuple([_wrap(o, None, 0) for o in out])
        return _wrap(out, None, 0)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name} node>"


def _as_constant(a, ref_dtype):
    """A non-tensor operand as an ndarray: the tensor dtype it meets, else float32 for floats."""
    ta = type(a)
    if (ta is float or ta is int) and ref_dtype is not None and ref_dtype.kind == "f":
        return np.array(a, dtype=ref_dtype)
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind not in "fiub":
        raise TypeError(f"expected a number, an array or a Tensor, got {type(a).__name__}")
    if ref_dtype is not None and ref_dtype.kind == "f":
        return arr if arr.dtype == ref_dtype else arr.astype(ref_dtype)
    if kind == "f" and (arr.dtype != np.float64 or not isinstance(a, np.ndarray)):
        return arr.astype(np.float32)
    return arr


def _accumulate(prev, g):
    return g if prev is None else prev + g


def backward(root, grad=None, retain_graph=False):
    """Backpropagate from ``root``: fill ``.grad`` of every leaf that requires grad."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward() called on a tensor that does not require grad and has no creator "
            "(did you create it under no_grad, or forget requires_grad=True?)")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a scalar (one-element) tensor; got shape "
                f"{root.data.shape}. Pass the upstream gradient: t.backward(grad)")
        grad = np.ones_like(root.data)
    else:
        grad = np.asarray(getattr(grad, "data", grad), dtype=root.data.dtype)
        if grad.shape != root.data.shape:
            raise ValueError(f"backward() gradient must have shape {root.data.shape}, got {grad.shape}")

    root_node = root._ctx
    leaf_grads = {}  # id(leaf) -> [leaf, summed gradient, whether that array is ours to keep]
    if root_node is None:
        leaf_grads[id(root)] = [root, grad, False]
        _store_leaf_grads(leaf_grads)
        return

    # 1. Count, for every node reachable from the root, how many edges will deliver a gradient.
    deps = {root_node: 0}
    stack = [root_node]
    while stack:
        node = stack.pop()
        for t in node.inputs:
            if t is None or not t.requires_grad:
                continue
            child = t._ctx
            if child is None:
                continue
            if child in deps:
                deps[child] += 1
            else:
                deps[child] = 1
                stack.append(child)

    # 2. Visit nodes once all their consumers are done (Kahn's algorithm).
    pending = {root_node: [None] * root_node.n_out}
    pending[root_node][root._idx] = grad
    ready = [root_node]
    while ready:
        node = ready.pop()
        gouts = pending.pop(node)
        if node.saved is _FREED:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({node.name} already "
                "released its saved arrays). Pass retain_graph=True to the first backward() "
                "if you need to backward twice.")
        if node.hooks:
            for idx, fns in node.hooks.items():
                for fn in fns:
                    if gouts[idx] is not None:
                        res = fn(_grad_view(gouts[idx]))
                        if res is not None:
                            gouts[idx] = _hook_result(res, gouts[idx])
        for g in gouts:
            if g is not None:
                gins = node.backward(*gouts)
                if type(gins) is not tuple:
                    gins = (gins,)
                if len(gins) != len(node.inputs):
                    raise RuntimeError(
                        f"{node.name}.backward returned {len(gins)} gradient(s) for "
                        f"{len(node.inputs)} input(s); return one per input (None where none)")
                break
        else:  # no gradient reached this node: pass "nothing" on so counts still drop
            gins = (None,) * len(node.inputs)
        inputs = node.inputs
        if not retain_graph:  # release what the node holds: saved arrays and input tensors,
            node.saved = _FREED  # so a kept output (a logged loss) keeps no activations alive
            node.inputs = (None,) * len(inputs)
        for t, g in zip(inputs, gins):
            if t is None or not t.requires_grad:
                continue
            child = t._ctx
            if child is None:
                if g is not None:
                    slot = leaf_grads.get(id(t))
                    if slot is None:
                        leaf_grads[id(t)] = [t, g, node.fresh_grads]
                    else:
                        slot[1] = slot[1] + g
                        slot[2] = True
                continue
            if g is not None:
                if g.dtype != t.data.dtype:  # a float32 node feeding a float64 op gets float32
                    g = _cast_grad(g, t)
                slot = pending.get(child)
                if slot is None:
                    slot = pending[child] = [None] * child.n_out
                slot[t._idx] = _accumulate(slot[t._idx], g)
            elif child not in pending:
                pending[child] = [None] * child.n_out
            deps[child] -= 1
            if deps[child] == 0:
                ready.append(child)
    _store_leaf_grads(leaf_grads)


def _grad_view(g):
    return _wrap(g, None, 0)


def _hook_result(res, like):
    arr = np.asarray(getattr(res, "data", res))
    if arr.shape != like.shape:
        raise ValueError(f"hook returned a gradient of shape {arr.shape}, expected {like.shape}")
    return arr.astype(like.dtype, copy=False)


def _cast_grad(g, t):
    if g.dtype.kind == "c" and t.data.dtype.kind != "c":  # never drop an imaginary part
        raise TypeError(f"a complex gradient (dtype {g.dtype}) reached a real tensor of dtype "
                        f"{t.data.dtype}: complex values entered the graph (a complex array "
                        "assigned to .data?); minigrad differentiates real tensors only")
    return g.astype(t.data.dtype)


_LEAF_LOCK = threading.Lock()  # one backward's stores into .grad happen as one step across threads


def _store_leaf_grads(leaf_grads):
    kept = set()  # ids of the arrays stored without a copy
    ready = []
    for t, g, owned in leaf_grads.values():
        if g.shape != t.data.shape:
            raise RuntimeError(
                f"internal error: gradient of shape {g.shape} for a tensor of shape {t.data.shape}")
        if t._hooks:
            for fn in t._hooks:
                res = fn(_grad_view(g))
                if res is not None:
                    g = _hook_result(res, g)
                    owned = False
        if g.dtype != t.data.dtype:
            g = _cast_grad(g, t)
            owned = True
        ready.append((t, g, owned))
    with _LEAF_LOCK:  # two threads' backwards into one leaf: neither one's sum is lost
        for t, g, owned in ready:
            if t.grad is None:
                # Copy on first store unless the array is ours alone (a sum made here, or a
                # fresh kernel output that is not a view and went to no other leaf): otherwise
                # it may be shared with another tensor's gradient or the caller's upstream one.
                if owned and g.base is None and id(g) not in kept:
                    kept.add(id(g))
                    t.grad = g
                else:
                    t.grad = np.array(g, copy=True)
            else:
                t.grad = t.grad + g


def retain_grad_hook(tensor):
    """A hook that stores the gradient of a non-leaf tensor on it (Tensor.retain_grad)."""
    ref = weakref.ref(tensor)

    def hook(g):
        t = ref()
        if t is not None:
            t.grad = np.array(g.data, copy=True) if t.grad is None else t.grad + g.data
        return None

    return hook
