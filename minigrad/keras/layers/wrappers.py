"""Wrappers: Bidirectional (a recurrent layer run both ways) and TimeDistributed (a layer
applied to every time step)."""

from ... import functional as F
from ..layer import Layer

__all__ = ["Bidirectional", "TimeDistributed"]

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Run ``layer`` forwards and a copy of it backwards (``go_backwards`` flipped) over the
    sequence and merge the outputs: ``merge_mode`` 'concat' (default), 'sum', 'mul', 'ave', or
    None (a list of both). The backward output is turned back into time order before merging,
    and with ``return_sequences`` masked steps output zeros (as Keras's Bidirectional forces)."""

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        if not hasattr(layer, "go_backwards"):
            raise ValueError(f"Bidirectional wraps a recurrent layer, got {type(layer).__name__}")
        self.merge_mode = merge_mode
        args, kw = layer._ctor
        base = layer.name
        self.forward_layer = layer
        layer.name = "forward_" + base
        for w in layer.weights:
            w.path = f"{layer.name}/{w.name}"
        if backward_layer is None:
            kw = dict(kw, go_backwards=not layer.go_backwards, name="backward_" + base)
            backward_layer = type(layer)(*args, **kw)
        self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):
            if sub.return_sequences:
                sub.zero_output_for_mask = True
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._layers = [self.forward_layer, self.backward_layer]
        self._init_weights = weights

    def build(self, input_shape):
        self.forward_layer._maybe_build(tuple(input_shape))
        self.backward_layer._maybe_build(tuple(input_shape))
        if self._init_weights is not None:
            self.set_weights(self._init_weights)

    def _merge(self, a, b):
        m = self.merge_mode
        if m == "concat":
            return F.concatenate([a, b], axis=-1)
        if m == "sum":
            return a + b
        if m == "mul":
            return a * b
        if m == "ave":
            return (a + b) * 0.5
        return [a, b]

    def call(self, inputs, mask=None, training=None, initial_state=None):
        fs = bs = None
        if initial_state is not None:
            n = len(initial_state) // 2
            fs, bs = initial_state[:n], initial_state[n:]
        yf = self.forward_layer(inputs, mask=mask, training=training, initial_state=fs)
        yb = self.backward_layer(inputs, mask=mask, training=training, initial_state=bs)
        states = []
        if self.return_state:
            yf, states_f = yf[0], yf[1:]
            yb, states_b = yb[0], yb[1:]
            states = list(states_f) + list(states_b)
        if self.return_sequences:
            yb = F.getitem(yb, (slice(None), slice(None, None, -1)))
        out = self._merge(yf, yb)
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + states
        return out

    def compute_output_shape(self, input_shape):
        f = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            f, states = f[0], f[1:]
            states = states * 2
        if self.merge_mode == "concat":
            out = tuple(f[:-1]) + (2 * f[-1],)
        elif self.merge_mode is None:
            out = [tuple(f), tuple(f)]
        else:
            out = tuple(f)
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + states
        return out

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None


class TimeDistributed(Layer):
    """Apply ``layer`` to every time step: (batch, T, ...) -> (batch, T, ...layer's output)."""

    supports_masking = True

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed wraps a Layer, got {type(layer).__name__}")
        self.layer = layer
        self._layers = [layer]

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"TimeDistributed '{self.name}' takes an input of rank >= 3 "
                f"(batch, time, ...), got shape {tuple(input_shape)}"
            )
        self.layer._maybe_build((None,) + tuple(input_shape[2:]))

    def call(self, inputs, mask=None, training=None):
        B, T = inputs.shape[:2]
        flat = F.reshape(inputs, (B * T,) + tuple(inputs.shape[2:]))
        y = self.layer(flat, training=training)
        return F.reshape(y, (B, T) + tuple(y.shape[1:]))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return (input_shape[0], input_shape[1]) + tuple(inner[1:])
