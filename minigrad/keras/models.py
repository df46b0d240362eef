"""Models: ``Sequential`` (a stack of layers) and the functional ``Model(inputs, outputs)``.

Both are Layers with Keras's model methods: ``summary()``, ``count_params()``,
``get_weights``/``set_weights``, ``save_weights``/``load_weights`` (a ``.npz`` archive written by
``minigrad.save``, no pickle), and training (``compile``/``fit``/``evaluate``/``predict``, in
training.py).
"""

import os

import numpy as np

from .. import serialization
from ..tensor import Tensor
from . import backend
from .layer import InputLayer, KerasTensor, Layer, _flatten, _fmt, _map
from .training import Trainer

__all__ = ["Model", "Sequential"]


class Model(Trainer, Layer):
    """A model. ``Model(inputs, outputs)`` builds a functional model from ``keras.Input``
    tensors and the layer calls made on them (several inputs and outputs allowed)."""

    supports_masking = True
    _sets_output_mask = False  # the output keeps the mask its last layer gave it

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        Layer.__init__(
            self,
            name=kwargs.pop("name", None)
            or backend.unique_name(backend.snake_case(self._default_name())),
            **kwargs,
        )
        Trainer.__init__(self)

    def _default_name(self):
        return "functional" if type(self) is Functional else type(self).__name__

    @property
    def layers(self):
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {[l.name for l in self.layers]}")

    def count_params(self):
        if not self.built:
            raise ValueError(
                f"model '{self.name}' is not built yet: give input_shape= to its "
                "first layer, start it with keras.Input, or call it on data first"
            )
        return int(sum(w.data.size for w in self.weights))

    # ----- weights files -------------------------------------------------------------
    def save_weights(self, filepath, overwrite=True):
        """Write every weight to ``filepath``, a ``.weights.npz`` archive (minigrad.save; no
        pickle). Keys are the weights' paths (``dense/kernel``)."""
        path = os.fspath(filepath)
        if not path.endswith(".weights.npz"):
            raise ValueError(
                "save_weights writes a minigrad archive: the file name must end in "
                f"'.weights.npz' (Keras's '.weights.h5' is HDF5), got {path!r}"
            )
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"{path!r} exists and overwrite=False")
        self._require_built("save_weights")
        serialization.save(
            {"weights": [w.data for w in self.weights], "paths": [w.path for w in self.weights]},
            path,
        )

    def load_weights(self, filepath):
        """Read weights written by ``save_weights`` (same architecture: count and shapes are
        checked before anything is written)."""
        self._require_built("load_weights")
        obj = serialization.load(os.fspath(filepath))
        if not isinstance(obj, dict) or "weights" not in obj:
            raise ValueError(f"{filepath!r} is not a weights file written by save_weights")
        self.set_weights([np.asarray(getattr(w, "data", w)) for w in obj["weights"]])

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"{what}: model '{self.name}' is not built yet (give an input shape "
                "or call it on data first)"
            )

    # ----- summary --------------------------------------------------------------------
    def summary(self, line_length=65, print_fn=None):
        """Print Keras's table: layer (type), output shape (None for the batch), parameter
        count, then the totals."""
        print_fn = print_fn or print
        rows = self._summary_rows()
        w = [29, 26]
        out = [
            f'Model: "{self.name}"',
            "_" * line_length,
            _row(["Layer (type)", "Output Shape", "Param #"], w),
            "=" * line_length,
        ]
        for name, shape, n in rows:
            out += [_row([name, shape, n], w), ""]
        out.append("=" * line_length)
        built = self.built
        total = sum(x.data.size for x in self.weights) if built else 0
        trainable = sum(x.data.size for x in self.trainable_weights) if built else 0
        out += [
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "_" * line_length,
        ]
        print_fn("\n".join(out))

    def _summary_rows(self):
        raise NotImplementedError


def _row(cells, widths):
    """Keras 2's layout: columns start at 0 (after one space), 29 and 55."""
    first, second, third = (str(c) for c in cells)
    line = (" " + first).ljust(widths[0] - 1) + " "
    line += second.ljust(widths[1] - 1) + " "
    return (line + third).rstrip()


def _shape_text(s):
    if isinstance(s, list):
        return "[" + ", ".join(_fmt(x) for x in s) + "]"
    return _fmt(s)


def _params_text(layer):
    return str(sum(w.data.size for w in layer.weights)) if layer.built else "0 (unbuilt)"


class Sequential(Model):
    """A stack of layers, each taking the previous one's output: ``Sequential([layers...])``
    or ``.add(layer)``. Built as soon as the input shape is known (``input_shape=`` on the first
    layer, or ``keras.Input`` first), otherwise on the first call."""

    def __init__(self, layers=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._input_shape = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append a layer (or a ``keras.Input``, which fixes the input shape)."""
        if isinstance(layer, KerasTensor):
            if self._layers or self._input_shape is not None:
                raise ValueError("keras.Input can only come first in a Sequential model")
            self._input_shape = layer.shape
            self._maybe_build_stack()
            return
        if isinstance(layer, InputLayer):
            self._input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a Layer, got {type(layer).__name__}")
        if any(layer is other for other in self._layers):
            raise ValueError(f"layer '{layer.name}' is already in the model")
        if (
            not self._layers
            and self._input_shape is None
            and layer._declared_input_shape is not None
        ):
            self._input_shape = layer._declared_input_shape
        self._layers.append(layer)
        self.built = False
        self._maybe_build_stack()

    def pop(self):
        layer = self._layers.pop()
        self.built = False
        self._maybe_build_stack()
        return layer

    def _maybe_build_stack(self):
        if self._input_shape is None or not self._layers:
            return
        self.build(self._input_shape)

    def build(self, input_shape=None):
        shape = tuple(input_shape if input_shape is not None else self._input_shape)
        self._input_shape = shape
        self._shapes = []
        for layer in self._layers:
            if not layer.built:
                layer._maybe_build(shape)
                layer.input_spec_shape = layer._spec_for(layer.input_spec_shape)
            shape = layer.compute_output_shape(shape)
            self._shapes.append(shape)
        self.built = True
        self.input_spec_shape = self._input_shape

    def call(self, inputs, training=None, mask=None):
        x = inputs
        if mask is not None:
            backend.set_mask(x, mask)
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def __call__(self, *args, **kwargs):
        if not self.built and not any(isinstance(t, KerasTensor) for t in _flatten(args)):
            x = args[0]
            a = x.data if isinstance(x, Tensor) else np.asarray(x)
            shape = a.shape
            self.build((None,) + shape[1:])
            # built from data: later calls may change the sequence length (only the feature
            # size is checked), as a lazily built Keras model
            if self._layers and self._layers[0]._accepts_int_input:
                self.input_spec_shape = (None,) * len(shape)
            else:
                self.input_spec_shape = (None,) * (len(shape) - 1) + shape[-1:]
        return super().__call__(*args, **kwargs)

    def _to_tensor(self, x):
        first = self._layers[0] if self._layers else None
        if first is not None and first._accepts_int_input:
            return first._to_tensor(x)
        return super()._to_tensor(x)

    def compute_output_shape(self, input_shape):
        for layer in self._layers:
            input_shape = layer.compute_output_shape(input_shape)
        return input_shape

    def _summary_rows(self):
        if not self.built and self._layers and self._layers[0]._accepts_int_input:
            # An Embedding first needs no input shape for its weights: build the stack for
            # (batch, time) unknown, as Keras 2 printed it (the notes' tables).
            try:
                self.build((None, None))
            except ValueError:  # a layer needs the length (Flatten -> Dense): unbuilt
                self.built = False
        shapes = getattr(self, "_shapes", None) if self.built else None
        rows = []
        for i, layer in enumerate(self._layers):
            shape = _shape_text(shapes[i]) if shapes else "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, _params_text(layer)))
        return rows


class Functional(Model):
    """A model defined by its inputs and outputs (``Model(inputs, outputs)``)."""

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._multi_in = isinstance(inputs, (list, tuple))
        self._multi_out = isinstance(outputs, (list, tuple))
        self.inputs = list(inputs) if self._multi_in else [inputs]
        self.outputs = list(outputs) if self._multi_out else [outputs]
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(
                    f"Model inputs and outputs must be KerasTensors (from "
                    f"keras.Input and layer calls), got {type(t).__name__}"
                )
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise TypeError("Model inputs must come from keras.Input")
        self._nodes = self._topological_nodes()
        seen = []
        for node in self._nodes:
            if not any(node.layer is s for s in seen):
                seen.append(node.layer)
        self._all_layers = seen
        self._layers = [l for l in seen if not isinstance(l, InputLayer)]
        self.built = True
        shapes = [t.shape for t in self.inputs]
        self.input_spec_shape = shapes if self._multi_in else shapes[0]

    def _topological_nodes(self):
        order, state = [], {}
        stack = [(t.node, False) for t in reversed(self.outputs)]
        while stack:
            node, done = stack.pop()
            if done:
                if state.get(id(node)) != 2:
                    state[id(node)] = 2
                    order.append(node)
                continue
            if state.get(id(node)):
                continue
            state[id(node)] = 1
            stack.append((node, True))
            for parent in node.parents():
                if not state.get(id(parent.node)):
                    stack.append((parent.node, False))
        input_nodes = {id(t.node) for t in self.inputs}
        for node in order:
            if isinstance(node.layer, InputLayer) and id(node) not in input_nodes:
                raise ValueError(
                    f"output depends on input '{node.layer.name}', which is not "
                    "among the model's inputs"
                )
        return order

    def _to_tensor(self, x):
        return x if isinstance(x, Tensor) else Tensor(np.asarray(x))

    def __call__(self, *args, **kwargs):
        if any(isinstance(t, KerasTensor) for t in _flatten(args)):
            raise NotImplementedError(
                "calling a functional model on KerasTensors (nesting models) is not supported"
            )
        return super().__call__(*args, **kwargs)

    def _check_input(self, shape):
        want = [t.shape for t in self.inputs]
        got = shape if isinstance(shape, list) else [shape]
        if len(got) != len(want):
            raise ValueError(f"model '{self.name}' takes {len(want)} input(s), got {len(got)}")
        for w, g in zip(want, got):
            if len(w) != len(g) or any(a is not None and a != b for a, b in zip(w[1:], g[1:])):
                raise ValueError(
                    f"model '{self.name}' expects input shape {_fmt(w)}, got "
                    f"an array of shape {tuple(g)}"
                )

    def call(self, inputs, training=None, mask=None):
        values = {}
        xs = inputs if self._multi_in else [inputs]
        for t, x in zip(self.inputs, xs):
            layer = t.node.layer
            values[id(t)] = (
                layer._to_tensor(x)
                if t.dtype.startswith("float")
                else (x if isinstance(x, Tensor) else Tensor(np.asarray(x)))
            )
        for node in self._nodes:
            if isinstance(node.layer, InputLayer):
                continue
            args = _map(lambda a: values[id(a)] if isinstance(a, KerasTensor) else a, node.args)
            kwargs = _map(
                lambda a: values[id(a)] if isinstance(a, KerasTensor) else a, dict(node.kwargs)
            )
            kwargs["training"] = training
            out = node.layer(*args, **kwargs)
            outs = out if isinstance(out, (list, tuple)) else [out]
            for kt, o in zip(node.outputs, outs):
                values[id(kt)] = o
        res = [values[id(t)] for t in self.outputs]
        return res if self._multi_out else res[0]

    def compute_output_shape(self, input_shape):
        shapes = [t.shape for t in self.outputs]
        return shapes if self._multi_out else shapes[0]

    def _summary_rows(self):
        rows = []
        for layer in self._all_layers:
            outs = [kt for node in self._nodes if node.layer is layer for kt in node.outputs]
            shape = [kt.shape for kt in outs]
            text = _shape_text(shape[0] if len(shape) == 1 else shape)
            rows.append((f"{layer.name} ({type(layer).__name__})", text, _params_text(layer)))
        return rows
