"""Module and Parameter: the containers every layer is built from (PyTorch's shape).

A ``Module`` keeps its parameters, buffers and submodules in three ordered dicts filled by
attribute assignment (``self.weight = Parameter(...)``, ``self.cell = LSTMCell(...)``), so
``named_parameters()`` walks them in registration order with dotted names
(``"1.weight_ih_l0"``).  ``state_dict()`` copies every parameter and buffer into an ndarray;
``load_state_dict()`` checks the whole dict first (unknown and missing keys, shapes, dtypes),
reports every problem in one error, and only then copies the values into the existing arrays,
so an optimizer holding the parameters keeps working.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import Tensor

__all__ = ["Parameter", "Module", "IncompatibleKeys"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor registered as a module's parameter: a leaf that requires grad by default.

    ``Parameter(data)`` copies ``data`` (an array, a nested list or a Tensor) like ``tensor()``
    does: float32 unless the array is float64.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class _RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


def _add_indent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    pad = " " * spaces
    return lines[0] + "\n" + "\n".join(pad + line for line in lines[1:])


def _as_array(value):
    """A state_dict value (ndarray, Tensor, or anything np.asarray accepts) as an ndarray."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):
        return value.data
    return np.asarray(value)


def _check_float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"expected a dtype float32 or float64, got {dtype!r}") from None
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"parameters can be float32 or float64, got {dt}")
    return dt


class Module:
    """Base class of every layer.  Subclasses call ``super().__init__()`` first, assign
    Parameters and Modules as attributes, and implement ``forward``; calling the module runs
    ``forward`` (and any forward hooks)."""

    _version = 1
    training: bool

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = None
        d["training"] = True

    # ----- calling ----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        hooks = self._forward_hooks
        if hooks:
            for hook in list(hooks.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, args, output)`` after every forward; a value it returns replaces
        the output.  Returns a handle whose ``remove()`` unregisters it."""
        if self._forward_hooks is None:
            self.__dict__["_forward_hooks"] = OrderedDict()
        key = object()
        self._forward_hooks[key] = hook
        return _RemovableHandle(self._forward_hooks, key)

    # ----- registration -----------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign a Parameter before Module.__init__() call")
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign a submodule before Module.__init__() call")
            self._forget(name)
            d["_modules"][name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} "
                    "(a Parameter or None expected)"
                )
            params[name] = None
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module "
                    f"{name!r} (a Module or None expected)"
                )
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, (np.ndarray, Tensor)):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} "
                    "(an ndarray, a Tensor or None expected)"
                )
            d["_buffers"][name] = _as_array(value) if value is not None else None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        d = self.__dict__
        d.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            d[key].pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: parameters, buffers and submodules live here.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            store = d.get(key)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d[key]:
                del d[key][name]
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        self._check_name(name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot register {type(param).__name__} as parameter {name!r} "
                "(a Parameter or None expected)"
            )
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, value):
        """Register a non-trainable array (part of state_dict, converted by ``to()``)."""
        self._check_name(name)
        if value is not None and not isinstance(value, (np.ndarray, Tensor)):
            raise TypeError(
                f"cannot register {type(value).__name__} as buffer {name!r} "
                "(an ndarray, a Tensor or None expected)"
            )
        self._forget(name)
        self._buffers[name] = _as_array(value) if value is not None else None

    def add_module(self, name, module):
        """Register ``module`` (a Module or None) as a child under ``name``."""
        self._check_name(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before registering anything")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"name must be a non-empty string without '.', got {name!r}")

    # ----- traversal --------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        """(dotted name, module) for this module and every descendant, each module once."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) in registration order; a shared Parameter appears once."""
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant, then on this module; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----- training state ---------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (dropout active) on this module and its descendants."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient (to None, or to zeros in place)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # ----- state dict -------------------------------------------------------------------
    def _state_items(self):
        """(dotted name, owner store, local name) for every parameter and buffer, in order."""
        for mprefix, m in self.named_modules():
            for store_name in ("_parameters", "_buffers"):
                for name, v in m.__dict__[store_name].items():
                    if v is not None:
                        yield (f"{mprefix}.{name}" if mprefix else name), m, store_name, name

    def state_dict(self):
        """OrderedDict dotted name -> ndarray copy of every parameter and buffer."""
        out = OrderedDict()
        for key, m, store, name in self._state_items():
            v = m.__dict__[store][name]
            out[key] = np.array(v.data if isinstance(v, Tensor) else v, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into this module's parameters and buffers, in place.

        Values may be ndarrays or Tensors.  Everything is checked before anything is copied:
        keys this module does not have (unexpected) or that the dict lacks (missing) are errors
        when ``strict``; a wrong shape or dtype, or a read-only parameter or buffer, is always
        an error (no silent casting: convert the module with ``.double()``/``.float()`` or the
        arrays with ``astype``).  One
        ValueError lists every problem.  Returns ``IncompatibleKeys(missing, unexpected)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"load_state_dict expects a mapping name -> array, got {type(state_dict).__name__}"
            )
        targets = OrderedDict((k, (m, store, name)) for k, m, store, name in self._state_items())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in targets]
        problems = []
        if strict:
            if unexpected:
                problems.append("unexpected key(s): " + ", ".join(map(repr, unexpected)))
            if missing:
                problems.append("missing key(s): " + ", ".join(map(repr, missing)))
        plan = []
        for key, (m, store, name) in targets.items():
            if key not in state_dict:
                continue
            try:
                src = _as_array(state_dict[key])
            except Exception as e:  # an object numpy cannot turn into an array
                problems.append(
                    f"{key!r}: cannot convert {type(state_dict[key]).__name__} to an array ({e})"
                )
                continue
            cur = m.__dict__[store][name]
            dst = cur.data if isinstance(cur, Tensor) else cur
            if src.shape != dst.shape:
                problems.append(f"{key!r}: shape mismatch, expected {dst.shape}, got {src.shape}")
            elif src.dtype != dst.dtype:
                problems.append(f"{key!r}: dtype mismatch, expected {dst.dtype}, got {src.dtype}")
            elif not dst.flags.writeable and dst is not src:
                problems.append(
                    f"{key!r}: the module's array is read-only (writeable=False), "
                    "so it cannot be loaded into"
                )
            else:
                plan.append((dst, src))
        if problems:
            raise ValueError(
                f"error(s) loading state_dict into {type(self).__name__}:\n  "
                + "\n  ".join(problems)
            )
        for dst, src in plan:
            if dst is not src:
                np.copyto(dst, src)
        return IncompatibleKeys(missing, unexpected)

    # ----- dtype ------------------------------------------------------------------------
    def to(self, *args, dtype=None):
        """Convert floating parameters, their gradients and floating buffers to ``dtype``
        (float32 or float64), keeping the same Parameter objects so an optimizer built on them
        still works.  ``to('cpu')`` is accepted (a no-op) for PyTorch code."""
        for a in args:
            if isinstance(a, str) and a.split(":")[0] == "cpu":
                continue
            if dtype is not None:
                raise TypeError(f"to() got two dtypes: {dtype!r} and {a!r}")
            dtype = a
        if dtype is None:
            return self
        dt = _check_float_dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and p.data.dtype != dt and p.data.dtype.kind == "f":
                    p.data = p.data.astype(dt)
                    if p.grad is not None:
                        p.grad = p.grad.astype(dt)
            bufs = m._buffers
            for name, b in list(bufs.items()):
                if b is not None and b.dtype.kind == "f" and b.dtype != dt:
                    bufs[name] = b.astype(dt)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ----- repr -------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's parentheses (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_add_indent(repr(m), 2)}" for name, m in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"
