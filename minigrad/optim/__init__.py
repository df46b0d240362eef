"""Optimizers: PyTorch's update rules on minigrad Tensors, updating ``p.data`` in place.

    opt = minigrad.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Every optimizer follows the algorithm written out in PyTorch's documentation, step for step, in
the parameter's own dtype (a float32 parameter is updated with float32 arithmetic). Parameters
whose ``.grad`` is None are skipped. Param groups, ``state_dict()`` and ``load_state_dict()``
have PyTorch's layout, ``{"state": {index: {...}}, "param_groups": [{..., "params": [index,
...]}]}``, with parameters numbered in group order, so a state dict saved with ``minigrad.save``
restores into a new optimizer over the same parameters.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from .. import kernels
from ..autograd import enable_grad
from ..tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "lr_scheduler"]


def _number(name, value):
    """``value`` as a Python float, or a ValueError naming the hyperparameter."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def _nonneg(group, name):
    v = _number(name, group[name])
    if not v >= 0.0:  # also rejects nan
        raise ValueError(f"Invalid {name}: expected a value >= 0, got {group[name]!r}")
    return v


def _check_ordered(params):
    """A set of parameters is refused: its order, and so the state's, changes between runs."""
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            "optimizer parameters must be an ordered collection (list, tuple, "
            "generator), got a set whose order changes between runs"
        )


def _where(n, gi, p):
    """How a parameter is named in the messages of a refused step (built only on failure)."""
    return f"parameter {n} (group {gi}, shape {p.data.shape})"


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts) and per-parameter ``state``.

    ``params`` is an iterable of Tensors, or of dicts ``{"params": [...], "lr": ...}`` (one per
    param group); keys a group leaves out take the optimizer's defaults. Subclasses implement
    ``_check_group(group)`` (validate and normalise hyperparameters), ``_update(group)`` (one
    step for every parameter of the group) and ``_required_state(group)`` (the per-parameter
    state keys a loaded state dict must provide once a parameter has taken a step).
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self._check_group(dict(self.defaults))  # invalid constructor arguments fail here
        self.state = {}  # parameter Tensor -> dict of state (ndarrays and numbers)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single "
                "Tensor (wrap it in a list: [p])"
            )
        if isinstance(params, dict):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a dict "
                "(to give one param group, pass [group])"
            )
        _check_ordered(params)
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                f"params must be an iterable of Tensors or of dicts, got {type(params).__name__}"
            ) from None
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ----- param groups ------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group: ``{"params": [...], **hyperparameters}``; missing keys take defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a param group must have a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        else:
            _check_ordered(params)
            params = list(params)
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but parameter {i} of the "
                    f"group is a {type(p).__name__}"
                )
            if p.data.dtype.kind != "f":
                raise TypeError(
                    f"optimizer can only optimize floating point Tensors, parameter "
                    f"{i} has dtype {p.data.dtype}"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"can't optimize a non-leaf Tensor (parameter {i} of the group "
                    "was produced by an operation; use .detach() to make a leaf)"
                )
            if id(p) in seen:
                raise ValueError(f"parameter {i} appears twice in the same param group")
            seen.add(id(p))
        for other in self.param_groups:
            for q in other["params"]:
                if id(q) in seen:
                    raise ValueError("some parameters appear in more than one parameter group")
        group = dict(param_group)
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    # ----- stepping ----------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to None (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a ``.grad``. ``closure`` (optional) re-evaluates the
        model with grad enabled and returns the loss, which ``step`` returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._check_step()  # everything is checked before any parameter or state is written
        by = f"{type(self).__name__}.step"
        for group in self.param_groups:
            self._update(group)
            for p in group["params"]:  # a backward that saved p before this step must raise
                if p.grad is not None:
                    p._bump_version(by)
        return loss

    def _check_step(self):
        """Raise, naming the parameter, if the coming step could fail part-way: a gradient of
        the wrong shape or not real, a read-only parameter, state arrays that are missing, not
        arrays, of another shape or dtype, strided or read-only, or a bad step count."""
        n = -1
        for gi, group in enumerate(self.param_groups):
            array_keys = self._state_arrays(group)
            needs_step = "step" in self._required_state(group)
            for p in group["params"]:
                n += 1
                g = p.grad
                if g is None:
                    continue
                data = p.data
                if not isinstance(g, np.ndarray):
                    raise TypeError(
                        f"{_where(n, gi, p)}: .grad must be an ndarray, got {type(g).__name__}"
                    )
                if g.shape != data.shape:
                    raise ValueError(
                        f"{_where(n, gi, p)}: gradient of shape {g.shape} for a parameter of "
                        f"shape {p.data.shape}"
                    )
                if g.dtype.kind not in "fiu":
                    raise TypeError(
                        f"{_where(n, gi, p)}: gradient must be real (float or int), got dtype "
                        f"{g.dtype}"
                    )
                if not data.flags.writeable:
                    raise ValueError(
                        f"{_where(n, gi, p)}: p must be writeable, but its data is read-only"
                    )
                st = self.state.get(p)
                if st is None:
                    continue
                if needs_step and "step" not in st:
                    raise ValueError(f"{_where(n, gi, p)}: state 'step' is missing")
                if "step" in st:
                    step = st["step"]
                    if (
                        isinstance(step, (bool, np.bool_))
                        or not isinstance(step, (int, np.integer))
                        or step < 0
                    ):
                        raise ValueError(
                            f"{_where(n, gi, p)}: state 'step' must be a non-negative int, "
                            f"got {step!r}"
                        )
                for k in array_keys:
                    if k not in st or st[k] is None:
                        if k in self._made_if_missing:
                            continue
                        raise ValueError(f"{_where(n, gi, p)}: state {k!r} is missing")
                    v = st[k]
                    if not isinstance(v, np.ndarray):
                        raise TypeError(
                            f"{_where(n, gi, p)}: state {k!r} must be an ndarray of the "
                            f"parameter's shape and dtype, got {type(v).__name__}"
                        )
                    if v.shape != data.shape or v.dtype != data.dtype:
                        raise ValueError(
                            f"{_where(n, gi, p)}: state {k!r} must have shape {p.data.shape} "
                            f"and dtype {p.data.dtype}, got {v.shape} {v.dtype}"
                        )
                    if not (v.flags.c_contiguous and v.flags.writeable):
                        raise ValueError(
                            f"{_where(n, gi, p)}: state {k!r} must be C-contiguous and writeable"
                        )

    def _state_for(self, p, group):
        st = self.state.get(p)
        if st is None:
            st = self.state[p] = self._init_state(p, group)
        return st

    # ----- subclass interface ------------------------------------------------------------
    def _check_group(self, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_state(self, p, group):
        return {}

    def _required_state(self, group):
        return ()

    # state arrays one step reads or writes once a parameter has state; those in
    # _made_if_missing are created by the step when absent (a setting switched on later)
    _made_if_missing: tuple[str, ...] = ()

    def _state_arrays(self, group):
        return tuple(k for k in self._required_state(group) if k != "step")

    # ----- state dict --------------------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {name: ndarray or number}}, "param_groups": [...]}`` (copies).

        Parameters are numbered 0, 1, ... in group order; each group lists its indices under
        ``"params"`` next to its hyperparameters.
        """
        index = {}
        groups = []
        n = 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(n, n + len(group["params"])))
            for p in group["params"]:
                index[id(p)] = n
                n += 1
            groups.append(packed)
        state = {}
        for p, st in self.state.items():
            i = index.get(id(p))
            if i is None:  # a parameter removed from the groups by hand
                continue
            state[i] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state saved by ``state_dict()``.

        The loaded dict must have as many groups as this optimizer, each with as many
        parameters; state arrays must have their parameter's shape and are cast to its dtype.
        On any error the optimizer is left unchanged.
        """
        if (
            not isinstance(state_dict, dict)
            or "state" not in state_dict
            or "param_groups" not in state_dict
        ):
            raise ValueError(
                "an optimizer state dict must be a dict with keys 'state' and "
                f"'param_groups', got {_describe(state_dict)}"
            )
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise ValueError(f"'param_groups' must be a list, got {type(saved_groups).__name__}")
        if not isinstance(saved_state, dict):
            raise ValueError(f"'state' must be a dict, got {type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, this "
                f"optimizer has {len(self.param_groups)}"
            )
        index_to_param = {}
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(
                    f"parameter group {gi} of the loaded state dict is not a dict "
                    "with a 'params' list"
                )
            ids = list(saved["params"])
            if len(ids) != len(group["params"]):
                raise ValueError(
                    f"parameter group {gi} has {len(ids)} parameters in the loaded "
                    f"state dict, {len(group['params'])} in this optimizer"
                )
            for i, p in zip(ids, group["params"]):
                index_to_param[_index(i)] = p
            new = {k: v for k, v in saved.items() if k != "params"}
            for key, value in self.defaults.items():
                new.setdefault(key, value)
            new["params"] = group["params"]
            if new.get("maximize"):
                raise ValueError(
                    f"parameter group {gi} of the loaded state dict has "
                    "maximize=True, which minigrad's optimizers do not support"
                )
            try:
                self._check_group(new)
            except ValueError as e:
                raise ValueError(f"parameter group {gi} of the loaded state dict: {e}") from None
            new_groups.append(new)
        group_of = {id(p): g for g in new_groups for p in g["params"]}
        new_state = {}
        for key, st in saved_state.items():
            i = _index(key)
            p = index_to_param.get(i)
            if p is None:
                raise ValueError(
                    f"loaded state has an entry for parameter index {key!r}, which "
                    f"no parameter group lists (indices: {sorted(index_to_param)})"
                )
            if not isinstance(st, dict):
                raise ValueError(f"state of parameter {i} must be a dict, got {type(st).__name__}")
            new_state[p] = self._load_param_state(i, p, st, group_of[id(p)])
        self.param_groups = new_groups
        self.state = new_state

    def _load_param_state(self, i, p, st, group):
        out = {}
        for k, v in st.items():
            if v is None:
                continue
            if k == "step":
                out[k] = _step_count(i, v)
            elif isinstance(v, (np.ndarray, Tensor)):
                arr = v.data if isinstance(v, Tensor) else v
                if arr.dtype.kind not in "fiu":
                    raise ValueError(
                        f"state of parameter {i}: {k!r} must be a real array, got dtype {arr.dtype}"
                    )
                if arr.shape != p.data.shape:
                    raise ValueError(
                        f"state of parameter {i}: {k!r} must have the parameter's "
                        f"shape {p.data.shape}, got {arr.shape}"
                    )
                out[k] = np.array(arr, dtype=p.data.dtype, copy=True, order="C")
            else:
                raise ValueError(
                    f"state of parameter {i}: {k!r} must be an array of the "
                    f"parameter's shape {p.data.shape}, got {v!r:.40} "
                    f"({type(v).__name__})"
                )
        missing = [k for k in self._required_state(group) if k not in out]
        if missing:
            raise ValueError(
                f"state of parameter {i} lacks {missing} needed by "
                f"{type(self).__name__} with these settings (has {sorted(st)})"
            )
        return out

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _step_count(i, v):
    """A saved step count (int, float or 0-d array, as torch keeps it) as a Python int."""
    try:
        step = np.asarray(v, dtype=np.float64)
        ok = step.shape == () and np.isfinite(step) and step >= 0 and step == np.floor(step)
    except (TypeError, ValueError):
        ok = False
    if isinstance(v, (bool, np.bool_)) or not ok:
        raise ValueError(
            f"state of parameter {i}: 'step' must be a non-negative integer, got {v!r}"
        )
    return int(step)


def _index(key):
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise ValueError(
            f"parameter indices in an optimizer state dict must be integers, got "
            f"{key!r} ({type(key).__name__})"
        )
    return int(key)


def _describe(obj):
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))}"
    return f"a {type(obj).__name__}"


def _with_grads(group):
    """(p, p.data, p.grad) for each parameter of the group that has a gradient (``step`` has
    checked every gradient's shape and dtype before the first update)."""
    for p in group["params"]:
        g = p.grad
        if g is not None:
            yield p, p.data, g


def _buffer(st, key, d):
    """The state buffer st[key], made as zeros like d when it is missing (an option such as
    amsgrad, centered or momentum switched on after some steps)."""
    buf = st.get(key)
    if buf is None:
        buf = st[key] = np.zeros(d.shape, d.dtype)
    return buf


def _fits(d, g):
    """Whether an update kernel can take the parameter's data d and gradient g as they are."""
    return (
        d.flags.c_contiguous
        and g.flags.c_contiguous
        and g.dtype == d.dtype
        and d.flags.aligned
        and g.flags.aligned
    )


def _run_update(kernel, d, g, *args):
    """Call an update kernel (kernels.sgd_update, adam_update, ...) on d in place, its state
    buffers and hyperparameters in ``args``. When d or g does not fit it, g is converted to an
    aligned C-contiguous array of d's dtype, and a strided or unaligned d (a .data set by hand)
    is updated through such a copy, written back. The state buffers are the optimizer's own,
    always C-contiguous."""
    if _fits(d, g):
        kernel(d, g, *args)
        return
    g = np.require(g, d.dtype, ("C", "A"))
    w = np.require(d, None, ("C", "A"))
    kernel(w, g, *args)
    if w is not d:
        d[...] = w


def _floats(group, *names):
    """The group's hyperparameters ``names`` as Python floats, as the update kernels take them."""
    return [float(group[name]) for name in names]


def _hyperparameters(args):
    """An optimizer's defaults: its constructor's arguments (``locals()`` on entry) but self and
    params, so each hyperparameter is named once, in the signature."""
    return {k: v for k, v in args.items() if k not in ("self", "params", "__class__")}


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    g = grad + weight_decay * p;  b = g (first step) or momentum * b + (1 - dampening) * g;
    g = g + momentum * b (nesterov) or b;  p = p - lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, _hyperparameters(locals()))

    def _check_group(self, group):
        _nonneg(group, "lr")
        momentum = _nonneg(group, "momentum")
        dampening = _number("dampening", group["dampening"])
        _nonneg(group, "weight_decay")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _required_state(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    _made_if_missing = ("momentum_buffer",)

    def _update(self, group):
        # One pass per parameter in a compiled kernel (kernels.sgd_update; its NumPy twin spells
        # the rule out): 3.7 instead of 10 us for the six parameters of a small LSTM + Linear.
        lr, momentum, dampening, wd = _floats(group, "lr", "momentum", "dampening", "weight_decay")
        nesterov = bool(group["nesterov"])
        state = self.state
        update = kernels.sgd_update
        for p, d, g in _with_grads(group):
            buf, first = None, False
            if momentum != 0:
                st = state.get(p)
                if st is None:
                    st = state[p] = {}
                buf = st.get("momentum_buffer")
                if buf is None:  # filled by the kernel, kept once it has run
                    buf, first = np.empty(d.shape, d.dtype), True
            _run_update(update, d, g, buf, lr, momentum, dampening, wd, nesterov, first)
            if first:
                st["momentum_buffer"] = buf


class Adagrad(Optimizer):
    """Adagrad: clr = lr / (1 + (t - 1) * lr_decay);  g = grad + weight_decay * p;
    sum = sum + g**2 (sum starts at initial_accumulator_value);  p = p - clr * g / (sqrt(sum) + eps)
    """

    def __init__(
        self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10
    ):
        super().__init__(params, _hyperparameters(locals()))

    def _check_group(self, group):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _nonneg(group, name)

    def _init_state(self, p, group):
        init = float(group["initial_accumulator_value"])
        return {"step": 0, "sum": np.full(p.data.shape, init, p.data.dtype)}

    def _required_state(self, group):
        return ("step", "sum")

    def _update(self, group):
        # One compiled pass per parameter (kernels.adagrad_update; its twin spells the rule out).
        lr, lr_decay, wd, eps = _floats(group, "lr", "lr_decay", "weight_decay", "eps")
        update = kernels.adagrad_update
        for p, d, g in _with_grads(group):
            st = self._state_for(p, group)
            t = st["step"] + 1
            _run_update(update, d, g, st["sum"], lr, lr_decay, wd, eps, t)
            st["step"] = t


class RMSprop(Optimizer):
    """RMSprop: g = grad + weight_decay * p;  v = alpha * v + (1 - alpha) * g**2;
    centered: g_avg = alpha * g_avg + (1 - alpha) * g, v~ = v - g_avg**2, else v~ = v;
    momentum > 0: b = momentum * b + g / (sqrt(v~) + eps), p = p - lr * b;
    else p = p - lr * g / (sqrt(v~) + eps)
    """

    def __init__(
        self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False
    ):
        super().__init__(params, _hyperparameters(locals()))

    def _check_group(self, group):
        for name in ("lr", "eps", "weight_decay", "momentum"):
            _nonneg(group, name)
        alpha = _number("alpha", group["alpha"])
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Invalid alpha: expected 0 <= alpha <= 1, got {group['alpha']!r}")

    def _init_state(self, p, group):
        z = p.data
        st = {"step": 0, "square_avg": np.zeros(z.shape, z.dtype)}
        if group["momentum"] > 0:
            st["momentum_buffer"] = np.zeros(z.shape, z.dtype)
        if group["centered"]:
            st["grad_avg"] = np.zeros(z.shape, z.dtype)
        return st

    _made_if_missing = ("momentum_buffer", "grad_avg")

    def _required_state(self, group):
        keys = ["step", "square_avg"]
        if group["momentum"] > 0:
            keys.append("momentum_buffer")
        if group["centered"]:
            keys.append("grad_avg")
        return keys

    def _update(self, group):
        # One compiled pass per parameter (kernels.rmsprop_update; its twin spells the rule out).
        lr, alpha, eps, wd, momentum = _floats(
            group, "lr", "alpha", "eps", "weight_decay", "momentum"
        )
        centered = group["centered"]
        update = kernels.rmsprop_update
        for p, d, g in _with_grads(group):
            st = self._state_for(p, group)
            ga = _buffer(st, "grad_avg", d) if centered else None
            buf = _buffer(st, "momentum_buffer", d) if momentum > 0 else None
            v = st["square_avg"]
            _run_update(update, d, g, v, ga, buf, lr, alpha, eps, wd, momentum)
            st["step"] += 1


class Adam(Optimizer):
    """Adam: g = grad + weight_decay * p;  m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g**2;
    v_max = max(v_max, v) with amsgrad;  p = p - lr / (1 - b1**t) * m / (sqrt(v or v_max) /
    sqrt(1 - b2**t) + eps)
    """

    _decoupled = False  # AdamW: p = p * (1 - lr * weight_decay) instead of the L2 term

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False
    ):
        super().__init__(params, _hyperparameters(locals()))

    def _check_group(self, group):
        for name in ("lr", "eps", "weight_decay"):
            _nonneg(group, name)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            b = _number(f"beta{i + 1}", b)
            if not 0.0 <= b < 1.0:
                raise ValueError(
                    f"Invalid beta parameter at index {i}: expected 0 <= beta < 1, got {betas[i]!r}"
                )
        group["betas"] = tuple(betas)
        if group.get("decoupled_weight_decay", self._decoupled) != self._decoupled:
            raise ValueError(
                f"decoupled_weight_decay={group['decoupled_weight_decay']!r} does "
                f"not match {type(self).__name__} (use AdamW for decoupled decay)"
            )

    def _init_state(self, p, group):
        z = p.data
        st = {
            "step": 0,
            "exp_avg": np.zeros(z.shape, z.dtype),
            "exp_avg_sq": np.zeros(z.shape, z.dtype),
        }
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = np.zeros(z.shape, z.dtype)
        return st

    _made_if_missing = ("max_exp_avg_sq",)

    def _required_state(self, group):
        keys = ["step", "exp_avg", "exp_avg_sq"]
        if group["amsgrad"]:
            keys.append("max_exp_avg_sq")
        return keys

    def _update(self, group):
        # One compiled pass per parameter (kernels.adam_update; its NumPy twin spells the rule
        # out): step() 90 -> 24 us for the six parameters of a small LSTM + Linear, 0.7 -> 0.2 ms
        # for examples/char_rnn.py's 380k.
        lr, eps, wd = _floats(group, "lr", "eps", "weight_decay")
        beta1, beta2 = (float(b) for b in group["betas"])
        amsgrad = group["amsgrad"]
        decoupled = self._decoupled
        update = kernels.adam_update
        for p, d, g in _with_grads(group):
            st = self._state_for(p, group)
            t = st["step"] + 1
            vmax = _buffer(st, "max_exp_avg_sq", d) if amsgrad else None
            m, v = st["exp_avg"], st["exp_avg_sq"]
            _run_update(update, d, g, m, v, vmax, lr, beta1, beta2, eps, wd, t, decoupled)
            st["step"] = t  # counted once the kernel has run (it checks before it writes)


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p * (1 - lr * weight_decay), then Adam without the
    L2 term."""

    _decoupled = True

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False
    ):
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )


from . import lr_scheduler  # noqa: E402  (minigrad.optim.lr_scheduler; it needs Optimizer above)
