"""SimpleRNN, LSTM and GRU with Keras's weights, run on minigrad's compiled sequence kernels.

Weights are Keras's: ``kernel`` (input_dim, G*units), ``recurrent_kernel`` (units, G*units),
``bias`` (G*units,) -- or (2, 3*units) for ``GRU(reset_after=True)``, Keras's default -- with
Keras's gate order (LSTM i, f, c, o; GRU z, r, h). So parameter counts equal Keras's.

Two paths compute the same thing:

* the **kernel path**: once per call, the Keras weights are mapped to PyTorch's layout with
  differentiable ops (transpose; for GRU the gate columns reordered z,r,h -> r,z,n and the
  (2, 3H) bias split into b_ih, b_hh), so gradients flow back to the Keras-named weights; then
  one ``functional.{rnn,lstm,gru}_sequence`` node runs the whole sequence in Cython. A mask
  (``Embedding(mask_zero=True)``) becomes ``lengths``: right-padded rows run as they are, other
  masks (``pad_sequences``'s default left padding, holes) gather each row's unmasked steps to the
  front first, and the outputs are gathered back so that a masked step repeats the state, as Keras
  does.
* the **composed path**, one step at a time from primitive ops (matmul, sigmoid, tanh, where),
  for the forms the kernels lack: ``GRU(reset_after=False)`` (the original Cho form), any
  activation other than the kernels' (tanh, plus relu for SimpleRNN; sigmoid recurrent), or a
  row whose steps are all masked.

Dropout as Keras has it, in training only, each mask drawn once per call and the same at every
step, scaled by 1/(1 - rate): ``dropout`` on the inputs x_t, ``recurrent_dropout`` on the
previous state h where it enters the recurrent matmul (h U; the GRU's z h and the LSTM's c keep
the unmasked state). On the kernel path the recurrent mask runs inside the compiled kernel (its
``masks`` argument, as ``nn.LSTM(recurrent_dropout=)``).

Equations (x_t the input, h the previous state; Keras's documented cell equations):
SimpleRNN  h' = act(x_t K + b + h U)
LSTM       [i f c o] = x_t K + b + h U;  c' = ra(f) c + ra(i) act(c~);  h' = ra(o) act(c')
GRU (reset_after=True)   [xz xr xh] = x_t K + b0;  [hz hr hh] = h U + b1;
           z = ra(xz + hz), r = ra(xr + hr), h~ = act(xh + r hh), h' = z h + (1 - z) h~
GRU (reset_after=False)  [xz xr xh] = x_t K + b;  z = ra(xz + h Uz), r = ra(xr + h Ur),
           h~ = act(xh + (r h) Uh),  h' = z h + (1 - z) h~
with a mask: h' = h (and c' = c) where the step is masked, and the step's output is h'.
"""

import numpy as np

from ... import functional as F
from ..._validate import positive_int
from ...random import default_rng
from ...tensor import Tensor
from .. import activations
from ..layer import Layer

__all__ = ["GRU", "LSTM", "SimpleRNN"]


def _rate(name, value):
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def _dropout_mask(shape, rate, dtype):
    keep = default_rng().random(shape) >= rate
    return keep.astype(dtype) / np.asarray(1.0 - rate, dtype=dtype)


class _Recurrent(Layer):
    """The part SimpleRNN, LSTM and GRU share: arguments, state handling, masks, the two
    paths. Subclasses give the gate count ``G``, the weights and the step."""

    supports_masking = True
    G = 1
    n_states = 1

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        zero_output_for_mask=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout = _rate("dropout", dropout)
        self.recurrent_dropout = _rate("recurrent_dropout", recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)  # accepted; both paths give the same numbers
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.states = None  # the carried state of a stateful layer (ndarrays)
        self.last_path = None  # "kernel" or "composed": which path the last call took

    # ----- weights ----------------------------------------------------------------------
    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects input of rank 3 "
                f"(batch, timesteps, features), got shape {tuple(input_shape)}"
            )
        if input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' needs a known feature size, "
                f"got input shape {tuple(input_shape)}"
            )
        H, G = self.units, self.G
        self.kernel = self.add_weight("kernel", (input_shape[-1], G * H), self.kernel_initializer)
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", (H, G * H), self.recurrent_initializer
        )
        self.bias = (
            self.add_weight("bias", self._bias_shape(), self._bias_init())
            if self.use_bias
            else None
        )

    def _bias_shape(self):
        return (self.G * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def compute_output_shape(self, input_shape):
        B, T = input_shape[0], input_shape[1]
        out = (B, T, self.units) if self.return_sequences else (B, self.units)
        if self.return_state:
            return [out] + [(B, self.units)] * self.n_states
        return out

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def reset_states(self, states=None):
        """Forget the carried state of a stateful layer (or set it to ``states``)."""
        self.states = None if states is None else [np.asarray(s) for s in states]

    reset_state = reset_states

    # ----- the call ---------------------------------------------------------------------
    def call(self, inputs, mask=None, training=None, initial_state=None):
        x = inputs
        if x.ndim != 3:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects input of rank 3 "
                f"(batch, timesteps, features), got shape {tuple(x.shape)}"
            )
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"{type(self).__name__} '{self.name}' got a sequence of 0 steps")
        states = self._initial_states(initial_state, B, x.data.dtype)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (B, T):
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': mask must have shape "
                    f"(batch, timesteps) = {(B, T)}, got {mask.shape}"
                )
            if mask.all():
                mask = None
        if self.go_backwards:
            x = F.getitem(x, (slice(None), slice(None, None, -1)))
            if mask is not None:
                mask = mask[:, ::-1]
        if training and self.dropout > 0:
            dp = _dropout_mask((B, 1, x.shape[2]), self.dropout, x.data.dtype)
            x = x * dp
        rec_dp = None
        if training and self.recurrent_dropout > 0:
            rec_dp = _dropout_mask((B, self.units), self.recurrent_dropout, x.data.dtype)
        usable = self._kernel_form() and (mask is None or mask.any(axis=1).all())
        need_seq = self.return_sequences
        if usable:
            self.last_path = "kernel"
            seq, new_states = self._kernel_path(x, mask, states, need_seq, rec_dp)
        else:
            self.last_path = "composed"
            seq, new_states = self._composed_path(x, mask, states, need_seq, rec_dp)
        if self.stateful:
            self.states = [s.data.copy() for s in new_states]
        if need_seq:
            if self.zero_output_for_mask and mask is not None:
                seq = F.where(mask[:, :, None], seq, np.zeros((), seq.data.dtype))
            out = seq
        else:
            out = new_states[0]
        if self.return_state:
            return [out] + list(new_states)
        return out

    def _initial_states(self, initial_state, B, dtype):
        n, H = self.n_states, self.units
        if initial_state is None and self.stateful and self.states is not None:
            if self.states[0].shape[0] != B:
                raise ValueError(
                    f"stateful layer '{self.name}' carries a state for batch size "
                    f"{self.states[0].shape[0]}, got a batch of {B} (call "
                    "reset_states() or keep the batch size fixed)"
                )
            return [Tensor(s) for s in self.states]
        if initial_state is None:
            return [Tensor(np.zeros((B, H), dtype)) for _ in range(n)]
        if isinstance(initial_state, Tensor) or not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != n:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' takes {n} initial state "
                f"tensor(s), got {len(initial_state)}"
            )
        out = []
        for s in initial_state:
            s = s if isinstance(s, Tensor) else Tensor(np.asarray(s, dtype))
            if tuple(s.shape) != (B, H):
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': an initial state must "
                    f"have shape (batch, units) = {(B, H)}, got {tuple(s.shape)}"
                )
            out.append(s)
        return out

    def _kernel_form(self):
        return (
            self.activation is activations.tanh and self.recurrent_activation is activations.sigmoid
        )

    # ----- kernel path ------------------------------------------------------------------
    def _kernel_path(self, x, mask, states, need_seq, rec_dp):
        B, T, _ = x.shape
        xt = F.transpose(x, (1, 0, 2))  # (T, B, I), the kernels' layout
        lengths = pos = None
        if mask is not None:
            lengths = mask.sum(axis=1).astype(np.int64)
            right = np.arange(T)[None, :] < lengths[:, None]
            if not np.array_equal(right, mask):  # gather unmasked steps to the front
                order = np.argsort(~mask, axis=1, kind="stable")  # (B, T)
                xt = F.getitem(xt, (order.T, np.arange(B)[None, :]))
            pos = np.cumsum(mask, axis=1) - 1  # last unmasked step <= t, or -1
        masks = None if rec_dp is None else (rec_dp, None, None)  # the kernels' argument
        ys, new_states = self._sequence(xt, states, lengths, masks)
        seq = None
        if need_seq:
            if pos is None:
                seq = F.transpose(ys, (1, 0, 2))
            else:  # masked steps repeat the state
                table = F.concatenate([F.unsqueeze(states[0], 0), ys], axis=0)  # (T+1, B, H)
                seq = F.getitem(table, (pos.T + 1, np.arange(B)[None, :]))
                seq = F.transpose(seq, (1, 0, 2))
        return seq, new_states

    def _kernel_weights(self, dtype):
        """(w_ih, w_hh, b_ih, b_hh) as the functional kernels take them: Keras's (in, G*units)
        kernels transposed, its one bias as b_ih and zeros as b_hh (None, None without bias)."""
        b_ih = b_hh = None
        if self.bias is not None:
            b_ih, b_hh = self.bias, _zeros_const(self.G * self.units, dtype)
        return F.transpose(self.kernel), F.transpose(self.recurrent_kernel), b_ih, b_hh

    # ----- composed path ----------------------------------------------------------------
    def _composed_path(self, x, mask, states, need_seq, rec_dp):
        T = x.shape[1]
        xk = F.matmul(x, self.kernel)
        if self.bias is not None:
            xk = xk + self._input_bias()
        steps = F.unbind(xk, axis=1)
        outs = []
        for t in range(T):
            new = self._step(steps[t], states, rec_dp)
            if mask is not None:
                m = mask[:, t : t + 1]
                new = [F.where(m, n, s) for n, s in zip(new, states)]
            states = new
            if need_seq:
                outs.append(states[0])
        seq = F.stack(outs, axis=1) if need_seq else None
        return seq, states

    def _input_bias(self):
        return self.bias

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            units=self.units,
            activation=activations.name_of(self.activation),
            use_bias=self.use_bias,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            unroll=self.unroll,
        )
        return cfg


def _zeros_const(n, dtype):
    return Tensor(np.zeros((n,), dtype))


class SimpleRNN(_Recurrent):
    """A fully connected RNN, h' = activation(x_t kernel + bias + h recurrent_kernel)."""

    G = 1

    def __init__(self, units, activation="tanh", **kwargs):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, **kwargs)

    def _kernel_form(self):
        return self.activation in (activations.tanh, activations.relu)

    def _sequence(self, xt, states, lengths, masks):
        nl = "tanh" if self.activation is activations.tanh else "relu"
        weights = self._kernel_weights(xt.data.dtype)
        ys, h = F.rnn_sequence(
            xt, *weights, h0=states[0], lengths=lengths, nonlinearity=nl, masks=masks
        )
        return ys, [h]

    def _step(self, xk_t, states, rec_dp):
        h = states[0]
        hr = h * rec_dp if rec_dp is not None else h
        return [self.activation(xk_t + F.matmul(hr, self.recurrent_kernel))]


class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter 1997), Keras's gate order i, f, c, o.
    ``unit_forget_bias=True`` (default) starts the forget-gate bias at 1."""

    G = 4
    n_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        from .. import initializers

        base, H = initializers.get(self.bias_initializer), self.units

        def init(shape):
            b = np.array(base((H,)).tolist() + [1.0] * H + base((2 * H,)).tolist(), np.float32)
            return b.reshape(shape)

        return init

    def _sequence(self, xt, states, lengths, masks):
        weights = self._kernel_weights(xt.data.dtype)
        ys, (h, c) = F.lstm_sequence(
            xt, *weights, h0=states[0], c0=states[1], lengths=lengths, masks=masks
        )
        return ys, [h, c]

    def _step(self, xk_t, states, rec_dp):
        h, c = states
        hr = h * rec_dp if rec_dp is not None else h
        z = xk_t + F.matmul(hr, self.recurrent_kernel)
        zi, zf, zc, zo = F.split(z, self.units, axis=1)
        ra, act = self.recurrent_activation, self.activation
        c1 = ra(zf) * c + ra(zi) * act(zc)
        h1 = ra(zo) * act(c1)
        return [h1, c1]


class GRU(_Recurrent):
    """Gated recurrent unit (Cho 2014), Keras's gate order z, r, h. ``reset_after=True``
    (default) applies the reset gate after the recurrent matmul and has a (2, 3*units) bias
    (input and recurrent), PyTorch's form: it runs on the compiled kernel.
    ``reset_after=False`` is the original form (reset before the matmul, one bias): composed
    path."""

    G = 3

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _kernel_form(self):
        return self.reset_after and super()._kernel_form()

    def _perm(self):
        H = self.units
        return np.concatenate([np.arange(H, 2 * H), np.arange(H), np.arange(2 * H, 3 * H)])

    def _sequence(self, xt, states, lengths, masks):
        p = self._perm()
        w_ih = F.transpose(F.getitem(self.kernel, (slice(None), p)))
        w_hh = F.transpose(F.getitem(self.recurrent_kernel, (slice(None), p)))
        b_ih = b_hh = None
        if self.bias is not None:
            b_ih = F.getitem(self.bias, (0, p))  # fancy indexing: contiguous copies,
            b_hh = F.getitem(self.bias, (1, p))  # as the kernels take them
        ys, h = F.gru_sequence(
            xt, w_ih, w_hh, b_ih, b_hh, h0=states[0], lengths=lengths, masks=masks
        )
        return ys, [h]

    def _input_bias(self):
        return F.getitem(self.bias, 0) if self.reset_after else self.bias

    def _step(self, xk_t, states, rec_dp):
        h = states[0]
        H = self.units
        hr = h * rec_dp if rec_dp is not None else h
        ra, act = self.recurrent_activation, self.activation
        xz, xr, xh = F.split(xk_t, H, axis=1)
        if self.reset_after:
            inner = F.matmul(hr, self.recurrent_kernel)
            if self.bias is not None:
                inner = inner + F.getitem(self.bias, 1)
            hz, hr_, hh = F.split(inner, H, axis=1)
            z = ra(xz + hz)
            r = ra(xr + hr_)
            cand = act(xh + r * hh)
        else:
            U = self.recurrent_kernel
            inner = F.matmul(hr, F.getitem(U, (slice(None), slice(0, 2 * H))))
            hz, hr_ = F.split(inner, H, axis=1)
            z = ra(xz + hz)
            r = ra(xr + hr_)
            cand = act(xh + F.matmul(r * hr, F.getitem(U, (slice(None), slice(2 * H, 3 * H)))))
        return [z * h + (1.0 - z) * cand]
