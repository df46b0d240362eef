"""``Layer``, the base of every Keras layer and model, and the symbolic ``KerasTensor`` that
``keras.Input`` returns and layers called on it produce (the functional API's graph).

A layer is called on a minigrad Tensor or a NumPy array (batch first, as in Keras) and returns a
Tensor on minigrad's tape; called on a ``KerasTensor`` it only computes the output shape and
records the call as a graph ``Node``. Weights are created by ``build(input_shape)`` on the first
call, or ahead of it when the input shape is known (``input_shape=``/``Input``), as in Keras.
"""

import numpy as np

from ..nn.module import Parameter
from ..tensor import Tensor
from . import backend

__all__ = ["Input", "InputLayer", "KerasTensor", "Layer", "Node", "Variable"]


class Variable(Parameter):
    """A layer weight: a minigrad Parameter with Keras's ``name`` (``kernel``) and ``path``
    (``dense/kernel``). ``trainable`` is ``requires_grad``."""

    __slots__ = ("name", "path")

    @property
    def trainable(self):
        return self.requires_grad

    def assign(self, value):
        value = np.asarray(value)
        if value.shape != self.data.shape:
            raise ValueError(
                f"cannot assign a value of shape {value.shape} to weight "
                f"{self.path!r} of shape {self.data.shape}"
            )
        self.data[...] = value

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.data.shape}, dtype={self.data.dtype}>"


class KerasTensor:
    """A symbolic tensor: a shape with ``None`` for unknown sizes (the batch), and the layer call
    that produced it. Calling layers on it builds a functional model's graph."""

    def __init__(self, shape, dtype="float32", node=None, index=0, name=None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = dtype
        self.node, self.index, self.name = node, index, name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One layer call in a functional graph: the layer, its arguments (KerasTensors inside) and
    the KerasTensors it produced."""

    def __init__(self, layer, args, kwargs):
        self.layer, self.args, self.kwargs = layer, args, kwargs
        self.outputs = []

    def parents(self):
        return [t for t in _flatten((self.args, self.kwargs)) if isinstance(t, KerasTensor)]


def _flatten(obj):
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _flatten(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flatten(o)
    else:
        yield obj


def _map(fn, obj):
    if isinstance(obj, list):
        return [_map(fn, o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_map(fn, o) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(fn, v) for k, v in obj.items()}
    return fn(obj)


def _shape_of(x):
    if isinstance(x, (list, tuple)):
        return [_shape_of(o) for o in x]
    return tuple(x.shape)


class Layer:
    """Base class of Keras layers.

    Subclasses implement ``build(input_shape)`` (create weights with ``add_weight``),
    ``call(inputs, ...)`` on minigrad Tensors, and ``compute_output_shape(input_shape)``;
    ``supports_masking`` says whether a mask may reach the layer, ``compute_mask`` what mask the
    output carries (by default the input's, when the layer supports masking).
    """

    supports_masking = False
    _accepts_int_input = False
    _sets_output_mask = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "build" in cls.__dict__:  # every build() marks the layer built, as Keras
            cls.build = _marking_build(cls.__dict__["build"])

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._ctor = (args, dict(kwargs))  # the constructor's arguments, to clone the layer
        return obj

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        # As Keras: the input-shape keywords (input_shape, batch_input_shape, input_dim,
        # batch_size) come through **kwargs, any other keyword is an error.
        input_shape = kwargs.pop("input_shape", None)
        batch_input_shape = kwargs.pop("batch_input_shape", None)
        input_dim = kwargs.pop("input_dim", None)
        batch_size = kwargs.pop("batch_size", None)
        if kwargs:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword arguments {sorted(kwargs)}"
            )
        self.name = name or backend.unique_name(backend.snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = str(np.dtype(dtype or backend.floatx()))
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self._weights = []  # Variables, in creation order
        self._layers = []  # sub-layers (wrappers, models)
        self.built = False
        self.input_spec_shape = None  # the input shape (batch None) the layer was built for
        self.training = False
        if batch_input_shape is not None:
            self._declared_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._declared_input_shape = (batch_size,) + tuple(input_shape)
        elif input_dim is not None:
            self._declared_input_shape = (batch_size, int(input_dim))
        else:
            self._declared_input_shape = None

    # ----- weights --------------------------------------------------------------------
    def add_weight(self, name, shape, initializer="zeros", trainable=True, dtype=None):
        from . import initializers

        value = initializers.get(initializer)(tuple(shape))
        v = Variable(
            np.asarray(value, dtype=dtype or self.dtype),
            requires_grad=trainable and self._trainable,
        )
        v.name = name
        v.path = f"{self.name}/{name}"
        self._weights.append(v)
        return v

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for w in self._own_weights():
            w.requires_grad = self._trainable
        for sub in self._layers:
            sub.trainable = value

    def _own_weights(self):
        return list(self._weights)

    @property
    def weights(self):
        out = list(self._weights)
        for sub in self._layers:
            out.extend(w for w in sub.weights if not any(w is o for o in out))
        return out

    @property
    def trainable_weights(self):
        return [w for w in self.weights if w.requires_grad] if self.trainable else []

    @property
    def non_trainable_weights(self):
        tw = self.trainable_weights
        return [w for w in self.weights if not any(w is t for t in tw)]

    @property
    def variables(self):
        return self.weights

    def count_params(self):
        """The number of weights (scalars) in the layer."""
        if not self.built:
            raise ValueError(
                f"You tried to call count_params on layer '{self.name}', but the "
                "layer isn't built. You can build it manually via: "
                f"`{self.name}.build(batch_input_shape)`."
            )
        return int(sum(w.data.size for w in self.weights))

    def get_weights(self):
        """The weights as NumPy arrays (copies), in Keras's order."""
        return [w.data.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list of arrays (Keras's order and shapes); nothing is written
        unless every array fits."""
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            raise ValueError(
                f"layer '{self.name}' expects {len(mine)} weight arrays, got {len(weights)}"
            )
        arrays = []
        for w, v in zip(mine, weights):
            v = np.asarray(v)
            if v.shape != w.data.shape:
                raise ValueError(
                    f"weight {w.path!r} has shape {w.data.shape}, the value given "
                    f"for it has shape {v.shape}"
                )
            arrays.append(v)
        for w, v in zip(mine, arrays):
            w.data[...] = v

    # ----- building -------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask if self.supports_masking else None

    # ----- calling --------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if any(isinstance(t, KerasTensor) for t in _flatten((args, kwargs))):
            return self._symbolic_call(*args, **kwargs)
        inputs, rest = args[0], args[1:]
        inputs = _map(self._to_tensor, inputs)
        mask = kwargs.pop("mask", None)
        if mask is None and not isinstance(inputs, (list, tuple)):
            mask = backend.get_mask(inputs)
        if "initial_state" in kwargs and kwargs["initial_state"] is not None:
            kwargs["initial_state"] = _map(self._to_tensor, kwargs["initial_state"])
        if mask is not None:
            mask = np.asarray(getattr(mask, "data", mask), dtype=bool)
            if not self.supports_masking:
                raise ValueError(
                    f"layer '{self.name}' ({type(self).__name__}) cannot take a mask, but got "
                    f"one of shape {mask.shape} (from an Embedding(mask_zero=True) or an "
                    "explicit mask=); put a layer that consumes the mask (a recurrent layer) "
                    "before it, or drop mask_zero"
                )
        if kwargs.get("training") is None:
            kwargs["training"] = self.training
        shape = _shape_of(inputs)
        if not self.built:
            self._maybe_build(self._declared_or(shape))
            self.input_spec_shape = self._spec_for(self.input_spec_shape)
        self._check_input(shape)
        if self.supports_masking:
            kwargs["mask"] = mask
        out = self.call(inputs, *rest, **kwargs)
        if not self._sets_output_mask:
            return out
        out_mask = self.compute_mask(inputs, mask)
        if isinstance(out, Tensor):
            backend.set_mask(out, out_mask)
        elif isinstance(out, (list, tuple)) and out and isinstance(out[0], Tensor):
            backend.set_mask(out[0], out_mask)
        return out

    def _declared_or(self, shape):
        """The shape to build for: the declared input shape (``input_shape=``) if any, else the
        first input's with the batch unknown. Only what was declared, plus the feature size, is
        checked on later calls (a layer takes sequences of any length, as in Keras)."""
        if isinstance(shape, list):
            return shape
        if self._declared_input_shape is not None:
            return (None,) + tuple(self._declared_input_shape[1:])
        return (None,) + tuple(shape[1:])

    def _spec_for(self, shape):
        if shape is None or isinstance(shape, list) or self._declared_input_shape is not None:
            return shape
        if self._accepts_int_input or len(shape) < 2:
            return (None,) * len(shape)
        return (None,) * (len(shape) - 1) + (shape[-1],)

    def _check_input(self, shape):
        """Raise on an input whose rank or fixed sizes differ from the shape the layer was
        built for (e.g. a time-first array given to a layer built for (T, F))."""
        want = self.input_spec_shape
        if want is None or isinstance(shape, list) or isinstance(want, list):
            return
        if len(shape) != len(want):
            raise ValueError(
                f"layer '{self.name}' ({type(self).__name__}) expects input of rank "
                f"{len(want)}, shape {_fmt(want)}, but got rank {len(shape)}, shape {shape}"
            )
        bad = [i for i in range(1, len(want)) if want[i] is not None and want[i] != shape[i]]
        if bad:
            hint = ""
            if len(want) == 3 and shape[0] == want[1] and shape[1] != want[1]:
                hint = (
                    " -- it looks time-first (T, B, F); Keras layers take batch-first "
                    "(batch, time, features)"
                )
            raise ValueError(
                f"layer '{self.name}' ({type(self).__name__}) was built for input shape "
                f"{_fmt(want)} but got an array of shape {shape}{hint}"
            )

    def _to_tensor(self, x):
        if isinstance(x, Tensor):
            if (
                x.data.dtype.kind == "f"
                and not self._accepts_int_input
                and str(x.data.dtype) != self.dtype
            ):
                from .. import functional as F

                return F.cast(x, self.dtype)
            return x
        if x is None:
            return None
        a = np.asarray(x)
        if a.dtype.kind in "iub" and self._accepts_int_input:
            return Tensor(a.astype(np.int64, copy=False))
        if a.dtype.kind not in "iubf":
            raise TypeError(f"layer '{self.name}' expects a numeric array, got dtype {a.dtype}")
        return Tensor(a.astype(self.dtype, copy=False))

    def _symbolic_call(self, *args, **kwargs):
        inputs = args[0]
        shape = _shape_of(inputs)
        if not self.built:
            self._maybe_build(self._declared_or(shape))
            self.input_spec_shape = self._spec_for(self.input_spec_shape)
        self._check_input(shape)
        out_shape = self.compute_output_shape(self._symbolic_shape(shape, kwargs))
        node = Node(self, args, kwargs)
        if isinstance(out_shape, list):
            outs = [
                KerasTensor(s, self.dtype, node, i, name=f"{self.name}_{i}")
                for i, s in enumerate(out_shape)
            ]
            node.outputs = outs
            return outs
        out = KerasTensor(out_shape, self.dtype, node, 0, name=self.name)
        node.outputs = [out]
        return out

    def _symbolic_shape(self, shape, kwargs):
        return shape

    def call(self, inputs, training=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _marking_build(build):
    def wrapped(self, input_shape=None):
        if self.built:
            return
        build(self, input_shape)
        self.built = True
        if input_shape is not None and self.input_spec_shape is None:
            self.input_spec_shape = (
                input_shape if isinstance(input_shape, list) else tuple(input_shape)
            )

    wrapped.__doc__, wrapped.__name__ = build.__doc__, "build"
    return wrapped


def _fmt(shape):
    return (
        "("
        + ", ".join("None" if s is None else str(s) for s in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


class InputLayer(Layer):
    """The layer ``keras.Input`` stands for: no weights, its output is its input."""

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, **kwargs):
        super().__init__(name=name or backend.unique_name("input_layer"), dtype=dtype, **kwargs)
        self.batch_shape = (batch_size,) + tuple(shape)
        self.built = True
        self.input_spec_shape = self.batch_shape
        self.output = KerasTensor(
            self.batch_shape, self.dtype, node=Node(self, (), {}), name=self.name
        )
        self.output.node.outputs = [self.output]

    def call(self, inputs, training=None):
        return inputs


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None):
    """A symbolic input of per-sample ``shape`` (the batch is None), for the functional API and
    ``Sequential([Input(shape), ...])``."""
    if batch_shape is not None:
        batch_size, shape = batch_shape[0], batch_shape[1:]
    if shape is None:
        raise ValueError("Input needs shape= (the shape of one sample, without the batch)")
    if dtype is not None and np.dtype(dtype).kind in "iu":
        layer = InputLayer(shape, batch_size, name=name)
        layer.output.dtype = str(np.dtype(dtype))
        return layer.output
    return InputLayer(shape, batch_size, dtype=dtype, name=name).output
