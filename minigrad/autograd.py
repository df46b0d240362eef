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

Two hooks let other code act during a backward pass (data-parallel training overlaps its
gradient all-reduce with the rest of backward through them): a leaf's post-accumulate hooks
(``Tensor.register_post_accumulate_grad_hook``) run as soon as the last node feeding that leaf
has run, with its ``.grad`` already stored; and ``queue_callback(fn)``, called from such a hook,
runs ``fn()`` once when the whole backward pass has finished.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from ._validate import tensor_list

__all__ = [
    "Function",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "inference_mode",
    "is_inference_mode_enabled",
    "backward",
    "grad",
    "queue_callback",
]


class _GradMode(threading.local):
    """Grad mode is per thread, as in PyTorch: ``no_grad`` in one thread leaves the others
    recording.  Each new thread starts with recording on."""

    enabled = True
    inference = False
    callbacks = None  # inside backward(): the list queue_callback appends to


_mode = _GradMode()
# How many threads have recording off right now.  While it is 0 (a training loop with no
# no_grad block anywhere) the hot path skips the thread-local lookup.  Only ever too high (a
# thread that ended under no_grad), which costs that lookup, never a wrong answer.
_n_off = 0
_n_off_lock = threading.Lock()


def _set_enabled(mode):
    global _n_off
    prev = _mode.enabled
    if prev != mode:
        with _n_off_lock:
            _n_off += -1 if mode else 1
        _mode.enabled = mode
    return prev


def is_grad_enabled() -> bool:
    """True when operations are being recorded on the tape (in this thread)."""
    return _mode.enabled


def is_inference_mode_enabled() -> bool:
    """True inside an ``inference_mode()`` block (in this thread)."""
    return _mode.inference


class set_grad_enabled:
    """Context manager (and decorator) setting grad mode on or off, restoring it on exit."""

    _at_once = True  # `set_grad_enabled(False)` also works as a plain call, as in PyTorch

    def __init__(self, mode: bool):
        self.prev = _mode.enabled
        self.mode = bool(mode)
        if self._at_once:
            _set_enabled(self.mode)

    def __enter__(self):
        if not self._at_once:
            self.prev = _set_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        _set_enabled(self.prev)
        return False

    def __call__(self, fn):
        if self._at_once:
            _set_enabled(self.prev)  # used as a decorator: do not change the mode now
        cls = type(self)
        args = self._args()

        def wrapper(*a, **kw):
            with cls(*args):
                return fn(*a, **kw)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        wrapper.__wrapped__ = fn
        return wrapper

    def _args(self):
        return (self.mode,)


class no_grad(set_grad_enabled):
    """``with no_grad():`` records nothing on the tape (also usable as a decorator)."""

    _at_once = False  # creating the object changes nothing; entering it does

    def __init__(self):
        super().__init__(False)

    def _args(self):
        return ()


class enable_grad(set_grad_enabled):
    """``with enable_grad():`` records again inside a ``no_grad`` block."""

    _at_once = False

    def __init__(self):
        super().__init__(True)

    def _args(self):
        return ()


class inference_mode(set_grad_enabled):
    """``with inference_mode():`` (or ``@inference_mode()``) runs without recording, for pure
    evaluation.  ``inference_mode(False)`` is a no-op block, as in PyTorch.

    In minigrad it records nothing (like ``no_grad``) and ``is_inference_mode_enabled()`` is
    True inside; tensors made inside have no history, so gradients never flow back through
    them.  Unlike PyTorch, such tensors are not marked: using them later in a recorded
    computation treats them as constants instead of raising.  ``enable_grad`` inside it turns
    recording back on (PyTorch ignores it there)."""

    _at_once = False

    def __init__(self, mode: bool = True):
        super().__init__(not mode)
        self.inference_on = bool(mode)

    def __enter__(self):
        self.prev_inference = _mode.inference
        if self.inference_on:
            self.prev = _set_enabled(False)
            _mode.inference = True
        else:
            self.prev = _mode.enabled
        return self

    def __exit__(self, *exc):
        _set_enabled(self.prev)
        _mode.inference = self.prev_inference
        return False

    def _args(self):
        return (self.inference_on,)


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

    ``backward_graph(*grads)`` is the same derivative written with minigrad ops on Tensors, so
    that it is itself recorded: the engine calls it instead of ``backward`` when
    ``create_graph=True`` (higher-order derivatives).  It gets Tensors (None for outputs that got
    no gradient) and reads the inputs as Tensors from ``self.input_tensors(*saved arrays)``.  A
    Function without one raises, when a second-order pass reaches it, the error
    ``no_double_backward`` describes.

    ``saves_inputs`` (default True) says that ``backward`` reads the values of the inputs;
    their version counters are then checked before it runs (an input modified in place since
    the forward pass makes the backward raise).  Ops that only keep shapes set it False.
    """

    # Set on recording. `inputs` holds, for each positional argument, the Tensor or None.
    inputs = ()
    needs_input_grad = ()
    saved = None
    n_out = 1
    hooks = None  # {output index: [fn, ...]} for hooks on non-leaf tensors
    # True when backward returns arrays it has just allocated, that nothing else refers to (the
    # compiled kernels' outputs, or a reshape of one): a leaf's first .grad then keeps the array
    # instead of a copy.
    fresh_grads = False
    saves_inputs = True
    # The modification count when the node was recorded (see _bump).
    _epoch = 0
    # What to say when create_graph=True reaches a Function without backward_graph.
    no_double_backward: str | None = None
    # Gradient destinations (set_grad_destination): a Function whose backward can write a
    # parameter's gradient straight into a given array says so with takes_grad_out = True; the
    # engine then sets grad_out = {input index: (array, scale)} for the call, and backward
    # returns, for such an input, that array holding scale times the gradient (or, if it cannot,
    # a new array as usual).
    takes_grad_out = False
    grad_out = None

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward_graph(self, *grads):
        hint = self.no_double_backward or (
            "it has no backward_graph (its backward exists only on raw arrays)"
        )
        raise RuntimeError(
            f"{self.name} cannot be differentiated twice: {hint}. It was reached by a "
            "backward pass with create_graph=True (a higher-order derivative)."
        )

    def release_saved(self):
        """Drop what forward saved (the engine calls it after this node's backward unless
        ``retain_graph=True``); a later backward through the node raises."""
        self.saved = _FREED

    def grad_out_args(self, positions):
        """The backward kernels' ``out`` and ``scale`` keyword arguments for the destinations the
        engine offers (``grad_out``): ``positions`` names, for each entry of the kernel's
        ``out`` tuple, the input index whose gradient it is.  Offers with another scale than
        the first are left out (their gradients come back as new arrays).  ``{}`` when there
        is nothing to write into."""
        offers = self.grad_out
        if not offers:
            return {}
        scale = None
        out = []
        for i in positions:
            dest = offers.get(i)
            if dest is not None and (scale is None or dest[1] == scale):
                scale = dest[1]
                out.append(dest[0])
            else:
                out.append(None)
        return {} if scale is None else {"out": tuple(out), "scale": scale}

    def input_tensors(self, *arrays):
        """The recorded inputs as Tensors, for ``backward_graph``: each input that was a Tensor
        is returned as such (its history is what a second derivative follows); a constant
        (number, array) is wrapped from the array given at its position (the value forward
        saved)."""
        return tuple(
            [t if t is not None else _wrap(a, None, 0) for t, a in zip(self.inputs, arrays)]
        )

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
                d = a._data
                arrays.append(d)
                inputs.append(a)
                rg = a.requires_grad
                needs.append(rg)
                record = record or rg
                if ref_dtype is None:
                    ref_dtype = d.dtype
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
        if record and (_n_off == 0 or _mode.enabled):
            self.inputs = tuple(inputs)
            self.needs_input_grad = tuple(needs)
            self._epoch = _epoch
            out = self.forward(*arrays)
            if type(out) is tuple:
                self.n_out = len(out)
                return tuple([_wrap(o, self, i) for i, o in enumerate(out)])
            return _wrap(out, self, 0)
        out = self.forward(*arrays)
        if type(out) is tuple:
            return tuple([_wrap(o, None, 0) for o in out])
        return _wrap(out, None, 0)

    def _check_versions(self):
        """Raise if an input whose value backward reads was modified after the forward pass."""
        for i, t in enumerate(self.inputs):
            if t is None or getattr(t, "_modified_at", None) is None:
                continue
            later = [e for e in t._modified_at if e > self._epoch]
            if not later:
                continue
            now = t._version
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [Tensor of shape {t.shape}] (input {i} of {self.name}) is "
                f"at version {now}; expected version {now - len(later)} instead (last modified "
                f"by {t._modified_by}). Recompute the forward pass after modifying it, or "
                "modify it after backward()"
            )

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name} node>"


# Every modification of a tensor through minigrad (in-place method, optimizer step, assignment
# to .data) increments this count and stamps the tensor with it.  A node remembers the count
# when it was recorded: at backward, an unchanged count means nothing was modified since, so
# the hot path pays one comparison per node; otherwise the node checks its own inputs.
_epoch = 0
_HISTORY = 16  # modification stamps kept per tensor (enough to name the expected version)


def _bump(t, by):
    global _epoch
    _epoch += 1
    t._version = getattr(t, "_version", 0) + 1
    t._modified_by = by
    stamps = getattr(t, "_modified_at", None)
    if stamps is None:
        t._modified_at = [_epoch]
    else:
        stamps.append(_epoch)
        if len(stamps) > _HISTORY:
            del stamps[0]


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


def _seed_grad(root, grad, create_graph, what="backward()"):
    """The gradient a root starts with: ones for a scalar, else the given one, checked.  An
    ndarray for a first-order pass; a Tensor (keeping any graph it has) with create_graph."""
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"{what} without a gradient needs a scalar (one-element) tensor; got shape "
                f"{root.data.shape}. Pass the upstream gradient: t.backward(grad)"
            )
        g = np.ones_like(root.data)
        return _wrap(g, None, 0) if create_graph else g
    if create_graph and isinstance(grad, _Tensor):
        if grad.shape != root.data.shape:
            raise ValueError(f"{what} gradient must have shape {root.data.shape}, got {grad.shape}")
        return grad if grad.dtype == root.data.dtype else grad.astype(root.data.dtype)
    g = np.asarray(getattr(grad, "data", grad), dtype=root.data.dtype)
    if g.shape != root.data.shape:
        raise ValueError(f"{what} gradient must have shape {root.data.shape}, got {g.shape}")
    return _wrap(g, None, 0) if create_graph else g


def backward(root, grad=None, retain_graph=None, create_graph=False):
    """Backpropagate from ``root``: fill ``.grad`` of every leaf that requires grad.

    With ``create_graph=True`` the backward pass is itself recorded: each node's
    ``backward_graph`` runs with grad mode on, and every leaf also gets ``.grad_tensor``, the
    gradient as a Tensor on the tape (differentiate it again for a second derivative).
    ``retain_graph`` defaults to ``create_graph``."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward() called on a tensor that does not require grad and has no creator "
            "(did you create it under no_grad, or forget requires_grad=True?)"
        )
    if retain_graph is None:
        retain_graph = create_graph
    g = _seed_grad(root, grad, create_graph)
    prev_callbacks = _mode.callbacks
    _mode.callbacks = callbacks = []
    try:
        early = bool(_post_live) and not create_graph
        leaf_grads = _run_backward([root], [g], retain_graph, create_graph, early=early)
        if create_graph:
            _store_leaf_graph_grads(leaf_grads)
        else:
            _store_leaf_grads(leaf_grads)
        while callbacks:  # a callback may queue another
            callbacks.pop(0)()
    finally:
        _mode.callbacks = prev_callbacks


def queue_callback(fn):
    """Run ``fn()`` once when the backward pass running in this thread has finished, after
    every ``.grad`` is stored (as PyTorch's engine ``queue_callback``).  Call it from a hook
    during ``backward()``; outside one it raises RuntimeError."""
    if not callable(fn):
        raise TypeError(f"queue_callback expects a callable, got {type(fn).__name__}")
    if _mode.callbacks is None:
        raise RuntimeError("queue_callback() is only valid during backward() (call it from a hook)")
    _mode.callbacks.append(fn)


# The live tensors that have post-accumulate hooks (id -> weak reference): while there are
# none, the engine does not track when each leaf's gradient is complete.
_post_live: dict = {}


def _post_forget(key):
    _post_live.pop(key, None)


class _PostHookHandle:
    def __init__(self, tensor, fn):
        self._ref = weakref.ref(tensor)
        self._fn = fn

    def remove(self):
        t = self._ref()
        hooks = None if t is None else getattr(t, "_post_hooks", None)
        if hooks and self._fn in hooks:
            hooks.remove(self._fn)
            if not hooks:
                _post_live.pop(id(t), None)


def add_post_accumulate_hook(tensor, fn):
    """Tensor.register_post_accumulate_grad_hook (see there)."""
    if not callable(fn):
        raise TypeError(f"a post-accumulate grad hook must be callable, got {type(fn).__name__}")
    if not tensor.requires_grad or tensor._ctx is not None:
        raise RuntimeError(
            "post-accumulate grad hooks can only be registered on leaf tensors that require "
            f"grad; got a {'non-leaf' if tensor._ctx is not None else 'non-grad'} tensor"
        )
    hooks = getattr(tensor, "_post_hooks", None)
    if hooks is None:
        hooks = tensor._post_hooks = []
    hooks.append(fn)
    key = id(tensor)
    _post_live[key] = weakref.ref(tensor, lambda _, key=key: _post_forget(key))
    return _PostHookHandle(tensor, fn)


def _run_post_hooks(tensors):
    for t in tensors:
        hooks = getattr(t, "_post_hooks", None)
        if hooks:
            for fn in list(hooks):
                fn(t)


def grad(
    outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False
):
    """The gradients of ``outputs`` with respect to ``inputs``, returned (a tuple, one per
    input) instead of accumulated into ``.grad``, as ``torch.autograd.grad``.

    outputs       a Tensor or a sequence of Tensors (their gradients are summed)
    inputs        a Tensor or a sequence of Tensors that require grad (leaves or not)
    grad_outputs  the upstream gradient of each output (None: ones, for scalar outputs only)
    create_graph  record the backward pass, so the results can be differentiated again
    retain_graph  keep the graph for another backward (default: create_graph)
    allow_unused  give None for an input the outputs do not depend on (else raise)

    Only the part of the tape between the outputs and the inputs is visited.  The results are
    Tensors; with create_graph=True they carry the graph of the backward pass."""
    outputs = _as_seq(outputs, "outputs")
    inputs = _as_seq(inputs, "inputs")
    grad_outputs = [None] * len(outputs) if grad_outputs is None else _as_list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"grad_outputs has {len(grad_outputs)} element(s) for "
            f"{len(outputs)} output(s); give one per output (None for ones)"
        )
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(
                f"input {i} of grad() does not require grad: only tensors that "
                "require grad can be differentiated with respect to"
            )
    if retain_graph is None:
        retain_graph = create_graph
    roots, seeds = [], []
    for i, (o, go) in enumerate(zip(outputs, grad_outputs)):
        if not o.requires_grad:
            raise RuntimeError(
                f"element {i} of outputs does not require grad and does not have a grad_fn"
            )
        roots.append(o)
        seeds.append(_seed_grad(o, go, create_graph, f"grad() output {i}"))
    captured = {}
    leaf_grads = _run_backward(
        roots, seeds, retain_graph, create_graph, targets=inputs, captured=captured
    )
    result = []
    for i, t in enumerate(inputs):
        g = captured.get((t._ctx, t._idx)) if t._ctx is not None else None
        if t._ctx is None:
            slot = leaf_grads.get(id(t))
            g = None if slot is None else slot[1]
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"input {i} of grad() appears to not have been used in the graph of the "
                    "outputs. Set allow_unused=True if this is the desired behavior."
                )
            result.append(None)
            continue
        if create_graph:
            result.append(g)
        else:
            result.append(_wrap(np.array(g, copy=True), None, 0))
    return tuple(result)


def _as_list(grad_outputs):
    """``grad_outputs`` as a list: a list's or tuple's items, else itself as the only item (one
    upstream gradient for one output). Also read by gradcheck.gradgradcheck."""
    return list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]


def _as_seq(x, what):
    seq = tensor_list(x, f"grad() {what}")
    if not seq:
        raise RuntimeError(f"grad() needs at least one tensor in {what}")
    return seq


def _needed_nodes(roots, targets):
    """The nodes whose backward must run for the gradients of ``targets``: those with a path
    down to a target (a leaf among their inputs, or a node producing one)."""
    target_leaves = {id(t) for t in targets if t._ctx is None}
    target_nodes = {t._ctx for t in targets if t._ctx is not None}
    needed = {}
    for r in roots:
        if r._ctx is None or r._ctx in needed:
            continue
        stack = [(r._ctx, False)]
        while stack:
            node, done = stack.pop()
            if done:
                hit = False
                for t in node.inputs:
                    if t is None or not t.requires_grad:
                        continue
                    c = t._ctx
                    if c is None:
                        hit = hit or id(t) in target_leaves
                    else:
                        hit = hit or needed[c] or c in target_nodes
                needed[node] = hit
                continue
            if node in needed:
                continue
            needed[node] = False  # provisional: a graph is acyclic, so never read before set
            stack.append((node, True))
            for t in node.inputs:
                if (
                    t is not None
                    and t.requires_grad
                    and t._ctx is not None
                    and t._ctx not in needed
                ):
                    stack.append((t._ctx, False))
    return needed


def _run_backward(
    roots, seeds, retain_graph, create_graph, targets=None, captured=None, early=False
):
    """The engine: walk the tape from ``roots`` (each with its seed gradient) and return the
    gradients reaching leaves, ``{id(leaf): [leaf, gradient, owned]}``.  With ``targets``
    (autograd.grad), only the nodes leading to them run, and the gradient of each non-leaf
    target is put in ``captured[(node, output index)]``.  With ``early`` (backward() while some
    leaf has post-accumulate hooks), such a leaf's gradient is stored into ``.grad`` and its
    hooks run as soon as the last edge into it has delivered, instead of being returned."""
    leaf_grads = {}  # id(leaf) -> [leaf, summed gradient, whether that array is ours to keep]
    pending = {}
    root_nodes = []
    for root, g in zip(roots, seeds):
        node = root._ctx
        if node is None:
            slot = leaf_grads.get(id(root))
            if slot is None:
                leaf_grads[id(root)] = [root, g, False]
            else:
                slot[1] = slot[1] + g
                slot[2] = True
            continue
        slot = pending.get(node)
        if slot is None:
            slot = pending[node] = [None] * node.n_out
            root_nodes.append(node)
        slot[root._idx] = _accumulate(slot[root._idx], g)
    if not root_nodes:
        return leaf_grads

    needed = None
    capture = ()
    if targets is not None:
        needed = _needed_nodes(roots, targets)
        capture = {(t._ctx, t._idx) for t in targets if t._ctx is not None}

    # 1. Count, for every node reachable from the roots, how many edges will deliver a gradient
    # (and, with early stores, how many reach each leaf that has post-accumulate hooks).
    deps = dict.fromkeys(root_nodes, 0)
    leaf_left = {} if early and targets is None else None
    stack = list(root_nodes)
    while stack:
        node = stack.pop()
        for t in node.inputs:
            if t is None or not t.requires_grad:
                continue
            child = t._ctx
            if child is None:
                if leaf_left is not None and getattr(t, "_post_hooks", None):
                    leaf_left[id(t)] = leaf_left.get(id(t), 0) + 1
                continue
            if child in deps:
                deps[child] += 1
            else:
                deps[child] = 1
                stack.append(child)

    # 2. Visit nodes once all their consumers are done (Kahn's algorithm).
    ready = [n for n in root_nodes if deps[n] == 0]
    # A recorded backward records (even when called under no_grad); a plain one runs on
    # ndarrays and leaves the mode alone.
    prev_mode = _set_enabled(True) if create_graph else None
    try:
        while ready:
            node = ready.pop()
            gouts = pending.pop(node)
            offers = None
            if node.saved is _FREED:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time ({node.name} already "
                    "released its saved arrays). Pass retain_graph=True to the first backward() "
                    "if you need to backward twice."
                )
            if node.hooks:
                for idx, fns in node.hooks.items():
                    for fn in fns:
                        if gouts[idx] is not None:
                            res = fn(gouts[idx] if create_graph else _grad_view(gouts[idx]))
                            if res is not None:
                                gouts[idx] = _hook_result(res, gouts[idx], create_graph)
            if capture:
                for i, g in enumerate(gouts):
                    if g is not None and (node, i) in capture:
                        captured[(node, i)] = g
            for g in gouts:
                if g is not None and (needed is None or needed[node]):
                    if node._epoch != _epoch and node.saves_inputs:
                        node._check_versions()
                    if create_graph:
                        gins = node.backward_graph(*gouts)
                    elif node.takes_grad_out and leaf_left:
                        offers = node.grad_out = _offers(node, leaf_left, leaf_grads)
                        try:
                            gins = node.backward(*gouts)
                        finally:
                            node.grad_out = None
                    else:
                        gins = node.backward(*gouts)
                    if type(gins) is not tuple:
                        gins = (gins,)
                    if len(gins) != len(node.inputs):
                        raise RuntimeError(
                            f"{node.name}.backward returned {len(gins)} gradient(s) for "
                            f"{len(node.inputs)} input(s); return one per input (None where "
                            "none)"
                        )
                    break
            else:  # no gradient reached this node (or none is needed): pass "nothing" on
                gins = (None,) * len(node.inputs)
            inputs = node.inputs
            if not retain_graph:  # release what the node holds: saved arrays and input
                node.release_saved()  # tensors, so a kept output (a logged loss) keeps no
                node.inputs = (None,) * len(inputs)  # activations alive
            for i, (t, g) in enumerate(zip(inputs, gins)):
                if t is None or not t.requires_grad:
                    continue
                child = t._ctx
                if child is None:
                    if offers and i in offers and g is offers[i][0]:
                        # written into its destination (scaled), offered as this node alone
                        # makes the leaf's gradient and .grad was None (_offers): complete
                        leaf_left[id(t)] = 0
                        with _LEAF_LOCK:
                            t.grad = g
                        for fn in list(t._post_hooks):
                            fn(t)
                        continue
                    if g is not None:
                        slot = leaf_grads.get(id(t))
                        if slot is None:
                            leaf_grads[id(t)] = [t, g, node.fresh_grads]
                        else:
                            slot[1] = slot[1] + g
                            slot[2] = True
                    if leaf_left is not None and id(t) in leaf_left:
                        left = leaf_left[id(t)] - 1
                        leaf_left[id(t)] = left
                        if left == 0:  # its gradient is complete: store it and run its hooks
                            slot = leaf_grads.pop(id(t), None)
                            if slot is not None:
                                slot[2] = False  # the array may be shared: store a copy
                                _store_leaf_grads({id(t): slot})
                    continue
                if g is not None:
                    if g.dtype != t._data.dtype:  # a float32 node feeding float64 gets float32
                        g = g.astype(t._data.dtype) if create_graph else _cast_grad(g, t)
                    slot = pending.get(child)
                    if slot is None:
                        slot = pending[child] = [None] * child.n_out
                    slot[t._idx] = _accumulate(slot[t._idx], g)
                elif child not in pending:
                    pending[child] = [None] * child.n_out
                deps[child] -= 1
                if deps[child] == 0:
                    ready.append(child)
    finally:
        if create_graph:
            _set_enabled(prev_mode)
    return leaf_grads


def set_grad_destination(tensor, provider):
    """Let backward write ``tensor``'s gradient straight into an array of the caller's instead
    of a new one (a data-parallel wrapper's bucket: no copy before the all-reduce).

    ``provider()`` is called during backward and returns None (no destination this time) or
    ``(array, scale)``: an array of the tensor's shape and dtype, and a factor.  When the
    leaf's whole gradient comes from one node, that node's kernel can write there
    (``Function.takes_grad_out``), and the gradient it stores is ``scale`` times the true one:
    ``.grad`` is then ``array`` itself.  Otherwise (other nodes, tensor hooks, an earlier
    ``.grad`` to add to, a kernel that cannot) the gradient is stored as usual and ``array``
    is not written.  Offers are made only in a backward pass where the leaf has a
    post-accumulate grad hook (which can tell the two cases apart: ``.grad is array``).
    ``provider=None`` removes the destination."""
    from .tensor import Tensor

    if not isinstance(tensor, Tensor):
        raise TypeError(
            "set_grad_destination expects a leaf tensor that requires grad, got "
            f"{type(tensor).__name__}"
        )
    if tensor._ctx is not None or not tensor.requires_grad:
        what = "a non-leaf tensor" if tensor._ctx is not None else "a tensor without requires_grad"
        raise TypeError(
            f"set_grad_destination expects a leaf tensor that requires grad, got {what}"
        )
    if provider is not None and not callable(provider):
        raise TypeError(f"provider must be callable or None, got {type(provider).__name__}")
    tensor._grad_into = provider


def _offers(node, leaf_left, leaf_grads):
    """{input index: (array, scale)} for the inputs of ``node`` that are leaves with a
    destination, whose gradient this node alone makes: its last edge (``leaf_left``), nothing
    stored for it yet in this pass, ``.grad`` None and no tensor hooks; None if there are
    none."""
    offers = None
    i = -1
    for t in node.inputs:
        i += 1
        if t is None or t.grad is not None or leaf_left.get(id(t)) != 1:
            continue  # (leaf_left holds leaves only)
        into = getattr(t, "_grad_into", None)
        if into is None or t._hooks or id(t) in leaf_grads:
            continue
        dest = into()  # the kernel that writes there checks its shape and dtype
        if dest is not None:
            if offers is None:
                offers = {}
            offers[i] = dest
    return offers


def _grad_view(g):
    return _wrap(g, None, 0)


def _hook_result(res, like, create_graph=False):
    if create_graph:
        if not isinstance(res, _Tensor):
            res = _wrap(np.asarray(res, dtype=like.dtype), None, 0)
        if res.shape != like.shape:
            raise ValueError(
                f"hook returned a gradient of shape {res.shape}, expected {like.shape}"
            )
        return res if res.dtype == like.dtype else res.astype(like.dtype)
    arr = np.asarray(getattr(res, "data", res))
    if arr.shape != like.shape:
        raise ValueError(f"hook returned a gradient of shape {arr.shape}, expected {like.shape}")
    return arr.astype(like.dtype, copy=False)


def _cast_grad(g, t):
    if g.dtype.kind == "c" and t.data.dtype.kind != "c":  # never drop an imaginary part
        raise TypeError(
            f"a complex gradient (dtype {g.dtype}) reached a real tensor of dtype "
            f"{t.data.dtype}: complex values entered the graph (a complex array "
            "assigned to .data?); minigrad differentiates real tensors only"
        )
    return g.astype(t.data.dtype)


_LEAF_LOCK = threading.Lock()  # one backward's stores into .grad happen as one step across threads


def _whole_buffer(g):
    """The array that owns g's memory when g is that array or a C-ordered view of all of it (a
    reshape), else None."""
    base = g.base
    if base is None:
        return g
    if (
        type(base) is np.ndarray
        and base.base is None
        and base.nbytes == g.nbytes
        and g.flags.c_contiguous
        and base.flags.c_contiguous
    ):
        return base
    return None


def _store_leaf_grads(leaf_grads):
    kept = set()  # ids of the arrays stored without a copy
    ready = []
    for t, g, owned in leaf_grads.values():
        if g.shape != t.data.shape:
            raise RuntimeError(
                f"internal error: gradient of shape {g.shape} for a tensor of shape {t.data.shape}"
            )
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
                # fresh kernel output, or a reshape of all of one, that went to no other leaf):
                # otherwise it may be shared with another tensor's gradient or the caller's
                # upstream one.
                buf = _whole_buffer(g) if owned else None
                if buf is not None and id(buf) not in kept:
                    kept.add(id(buf))
                    t.grad = g
                else:
                    t.grad = np.array(g, copy=True)
            else:
                t.grad = t.grad + g
    if _post_live:
        _run_post_hooks([t for t, _, _ in ready])


def _store_leaf_graph_grads(leaf_grads):
    """create_graph=True: each leaf's gradient is a Tensor on the tape.  ``.grad`` still gets
    the values (an ndarray, what optimizers read), and ``.grad_tensor`` the Tensor itself,
    summed with what an earlier pass left there."""
    for t, g, _ in leaf_grads.values():
        if t._hooks:
            for fn in t._hooks:
                res = fn(g)
                if res is not None:
                    g = _hook_result(res, g, True)
        if g.dtype != t.data.dtype:
            g = g.astype(t.data.dtype)
        with _LEAF_LOCK:
            prev = t.grad_tensor
            if prev is not None:
                g = prev + g
            elif t.grad is not None:
                g = _wrap(t.grad, None, 0) + g
            arr = np.array(g.data, copy=True)
            t.grad = arr
            t._grad_graph = (arr, g)
    if _post_live:
        _run_post_hooks([t for t, _, _ in leaf_grads.values()])


def retain_grad_hook(tensor):
    """A hook that stores the gradient of a non-leaf tensor on it (Tensor.retain_grad)."""
    ref = weakref.ref(tensor)

    def hook(g):
        t = ref()
        if t is not None:
            t.grad = np.array(g.data, copy=True) if t.grad is None else t.grad + g.data
        return None

    return hook
