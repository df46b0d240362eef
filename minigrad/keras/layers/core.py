"""Core layers: Dense, Embedding, Dropout, Activation, Flatten, RepeatVector."""

import numpy as np

from ... import functional as F
from ..._validate import positive_int as _positive_int
from .. import activations
from ..layer import Layer

__all__ = ["Activation", "Dense", "Dropout", "Embedding", "Flatten", "RepeatVector"]


class Dense(Layer):
    """y = activation(x @ kernel + bias): kernel (input_dim, units), bias (units,); applied to
    the last axis of an input of any rank."""

    supports_masking = True

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _positive_int("units", units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Dense '{self.name}' needs an input with a known last dimension, "
                f"got shape {input_shape}"
            )
        self.kernel = self.add_weight(
            "kernel", (input_shape[-1], self.units), self.kernel_initializer
        )
        self.bias = (
            self.add_weight("bias", (self.units,), self.bias_initializer) if self.use_bias else None
        )

    def call(self, inputs, training=None, mask=None):
        y = F.matmul(inputs, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


class Embedding(Layer):
    """y = embeddings[x]: embeddings (input_dim, output_dim). ``mask_zero=True`` makes index 0
    padding: the output carries the mask ``x != 0``, which recurrent layers use to skip those
    steps. ``input_length`` (Keras 2) is accepted and fixes the built input shape."""

    _accepts_int_input = True
    supports_masking = True

    def __init__(
        self,
        input_dim,
        output_dim,
        embeddings_initializer="uniform",
        mask_zero=False,
        input_length=None,
        **kwargs,
    ):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)
        super().__init__(**kwargs)
        self.input_dim = _positive_int("input_dim", input_dim)
        self.output_dim = _positive_int("output_dim", output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self.input_length = input_length

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            "embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer
        )

    def call(self, inputs, training=None, mask=None):
        idx = inputs.data
        if idx.dtype.kind == "f":
            if not np.all(idx == np.round(idx)):
                raise TypeError(
                    f"Embedding '{self.name}' takes integer indices, got non-integer floats"
                )
            idx = idx.astype(np.int64)
        return F.embedding(idx, self.embeddings)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs.data != 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)


class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs in training and scale the rest by 1/(1-rate);
    the identity in inference (predict/evaluate)."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def call(self, inputs, training=None, mask=None):
        if not training or self.rate == 0:
            return inputs
        return F.dropout(inputs, self.rate, training=True, rng=self.rng)


class Activation(Layer):
    """y = activation(x), the activation by name ('relu', 'tanh', 'softmax', ...)."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs, training=None, mask=None):
        return self.activation(inputs)


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, inputs, training=None):
        return F.reshape(inputs, (inputs.shape[0], -1))

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        n = None if any(s is None for s in rest) else int(np.prod(rest))
        return (input_shape[0], n)


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features): the input repeated n times along a new time
    axis."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = _positive_int("n", n)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"RepeatVector '{self.name}' takes a 2-D input (batch, features), "
                f"got shape {input_shape}"
            )

    def call(self, inputs, training=None):
        B, D = inputs.shape
        return F.expand(F.unsqueeze(inputs, 1), (B, self.n, D))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])
