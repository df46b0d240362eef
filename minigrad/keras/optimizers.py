"""Optimizers with Keras's names, arguments and defaults, stepping minigrad's optimizers.

=========  =====================================================  ===========================
Keras      Keras defaults                                         runs on
=========  =====================================================  ===========================
SGD        learning_rate=0.01, momentum=0, nesterov=False         minigrad.optim.SGD
Adam       learning_rate=0.001, beta_1=0.9, beta_2=0.999,         minigrad.optim.Adam, eps
           epsilon=1e-7                                           rescaled per step (below)
RMSprop    learning_rate=0.001, rho=0.9, epsilon=1e-7             its own update (below)
Adagrad    learning_rate=0.001, initial_accumulator_value=0.1,    its own update
           epsilon=1e-7
=========  =====================================================  ===========================

Keras's Adam puts epsilon outside the bias correction of v:
p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps); that is PyTorch's form with
eps_t = eps / sqrt(1 - b2^t), which is what each step gives minigrad's Adam. Keras's RMSprop
divides by sqrt(v + eps) (PyTorch: sqrt(v) + eps), so it is written out here.
``learning_rate`` may be changed between steps (ReduceLROnPlateau does).
"""

import math

import numpy as np

from .. import optim

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop", "get"]


class Optimizer:
    """Base: ``apply(params)`` after ``backward()`` updates every parameter with a gradient."""

    def __init__(self, learning_rate=0.001, name=None, **kwargs):
        for k in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
            kwargs.pop(k, None)
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}")
        lr = float(learning_rate)
        if not lr >= 0:
            raise ValueError(f"learning_rate must be >= 0, got {learning_rate!r}")
        self.learning_rate = lr
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._params = None
        self._opt = None

    def build(self, params):
        self._params = list(params)
        self._opt = self._make(self._params) if self._params else None

    def _make(self, params):
        return None

    def apply(self, params=None):
        if self._params is None:
            self.build(params)
        self.iterations += 1
        if self._opt is not None:
            for g in self._opt.param_groups:
                g["lr"] = float(self.learning_rate)
            self._before_step()
            self._opt.step()
        else:
            self._update()

    def _before_step(self):
        pass

    def _update(self):  # pragma: no cover - abstract
        pass

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    """p -= lr * g, or with momentum m: v = m v - lr g, p += v (nesterov: p += m v - lr g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _make(self, params):
        return optim.SGD(
            params, lr=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov
        )


class Adam(Optimizer):
    """Adam with Keras's defaults and epsilon placement (see the module docstring)."""

    def __init__(
        self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs
    ):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)

    def _make(self, params):
        return optim.Adam(
            params,
            lr=self.learning_rate,
            betas=(self.beta_1, self.beta_2),
            eps=self.epsilon,
            amsgrad=self.amsgrad,
        )

    def _before_step(self):
        t = self.iterations
        eps_t = self.epsilon / math.sqrt(1.0 - self.beta_2**t)
        for g in self._opt.param_groups:
            g["eps"] = eps_t


class RMSprop(Optimizer):
    """v = rho v + (1 - rho) g^2;  p -= lr g / sqrt(v + epsilon)  (Keras's form)."""

    def __init__(
        self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs
    ):
        super().__init__(learning_rate, **kwargs)
        if momentum or centered:
            raise ValueError("RMSprop here supports momentum=0 and centered=False only")
        self.rho, self.epsilon = float(rho), float(epsilon)
        self._v = None

    def _update(self):
        if self._v is None:
            self._v = [np.zeros_like(p.data) for p in self._params]
        lr, rho, eps = self.learning_rate, self.rho, self.epsilon
        for p, v in zip(self._params, self._v):
            if p.grad is None:
                continue
            g = p.grad
            v *= rho
            v += (1.0 - rho) * g * g
            p.data -= (lr * g / np.sqrt(v + eps)).astype(p.data.dtype)


class Adagrad(Optimizer):
    """a += g^2;  p -= lr g / sqrt(a + epsilon)  (Keras's form, a starts at 0.1)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon
        self._a = None

    def _update(self):
        if self._a is None:
            self._a = [np.full_like(p.data, self.initial_accumulator_value) for p in self._params]
        for p, a in zip(self._params, self._a):
            if p.grad is None:
                continue
            a += p.grad * p.grad
            p.data -= (self.learning_rate * p.grad / np.sqrt(a + self.epsilon)).astype(p.data.dtype)


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(identifier):
    """An optimizer from a Keras name ('adam', 'rmsprop', 'sgd', 'adagrad'; Keras's defaults)
    or an Optimizer as it is."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)} or "
        "a keras.optimizers.Optimizer"
    )
