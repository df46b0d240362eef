"""The contenders: implementations of the same training step (harness.problem) that take turns.

Each is built from a params dict, input and target; step() runs one training step (the timed
code) and returns the loss before the update; loss_and_grads() runs forward + backward only and
returns (loss, {param name: gradient ndarray}) for the agreement check.

* minigrad: nn.LSTM/GRU/RNN + nn.Linear + optim.SGD, what a user runs;
* numpy: benchmarks/numpy_reference.train_step (hand-written BPTT);
* torch: torch.nn.LSTM/GRU/RNN + torch.nn.Linear + torch.optim.SGD (when importable);
* kernels: the same step calling minigrad's kernels by hand, without the tape, modules or
  optimizer: minigrad's time minus this one is what the framework costs;
* unrolled: minigrad's modules running one cell node per time step on the tape (the generic
  BPTT path) instead of one sequence node.
"""

import numpy as np

import minigrad as mg
from benchmarks import numpy_reference as ref
from benchmarks.harness.problem import LR, OUT, copy_params, minigrad_modules, named_params
from minigrad import functional as F


class MinigradStep:
    name = "minigrad"
    layer_kw = {}  # the modules' default: the whole-sequence kernel node

    def __init__(self, cell, params, x, target, lr=LR):
        self.cell = cell
        H, I = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
        self.rnn, self.fc = minigrad_modules(cell, I, H, **self.layer_kw)
        self.P = named_params(self.rnn, self.fc)
        for k, p in self.P.items():
            p.data[...] = params[k]
        self.x = mg.tensor(x)
        self.target = mg.tensor(target)
        self.opt = mg.optim.SGD(list(self.P.values()), lr=lr)

    def _loss(self):
        _, state = self.rnn(self.x)
        h_n = state[0] if self.cell == "lstm" else state
        h_n = h_n[0] if h_n.ndim == 3 else h_n  # (num_layers, B, H) -> (B, H)
        return F.mse_loss(self.fc(h_n), self.target)

    def step(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        self.opt.step()
        return float(loss.data)

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        return float(loss.data), {k: np.array(p.grad) for k, p in self.P.items()}


class UnrolledStep(MinigradStep):
    """minigrad's modules unrolled: one cell node per time step on the tape (the generic BPTT
    path, docs/autograd.md)."""

    name = "unrolled"
    layer_kw = dict(impl="step")


class NumpyStep:
    name = "numpy"

    def __init__(self, cell, params, x, target, lr=LR):
        self.cell, self.params, self.x, self.target, self.lr = (
            cell,
            copy_params(params),
            x,
            target,
            lr,
        )

    def step(self):
        return ref.train_step(self.cell, self.params, self.x, self.target, self.lr)

    def loss_and_grads(self):
        """train_step without its update: the reference's forward/backward composed as it does."""
        p, cell = self.params, self.cell
        if cell == "lstm":
            _, h_n, _, cache = ref.lstm_forward(self.x, None, None, p)
        elif cell == "gru":
            _, h_n, cache = ref.gru_forward(self.x, None, p)
        else:
            _, h_n, cache = ref.rnn_forward(self.x, None, p)
        W, b = p["fc.weight"], p["fc.bias"]
        err = h_n @ W.T + b - self.target
        dpred = (2 / err.size) * err
        if cell == "lstm":
            grads = ref.lstm_backward(None, dpred @ W, None, cache)
        elif cell == "gru":
            grads = ref.gru_backward(None, dpred @ W, cache)
        else:
            grads = ref.rnn_backward(None, dpred @ W, cache)
        grads["fc.weight"] = dpred.T @ h_n
        grads["fc.bias"] = dpred.sum(axis=0)
        return float(np.mean(err**2)), {k: grads[k] for k in p}


class TorchStep:
    name = "torch"

    def __init__(self, cell, params, x, target, lr=LR):
        import torch

        self.torch = torch
        H, I = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
        if cell == "lstm":
            self.rnn = torch.nn.LSTM(I, H)
        elif cell == "gru":
            self.rnn = torch.nn.GRU(I, H)
        else:
            self.rnn = torch.nn.RNN(I, H, nonlinearity="tanh")
        self.fc = torch.nn.Linear(H, OUT)
        self.cell = cell
        self.P = dict(self.rnn.named_parameters())
        self.P.update({"fc." + k: v for k, v in self.fc.named_parameters()})
        with torch.no_grad():
            for k, v in self.P.items():
                v.copy_(torch.from_numpy(params[k]))
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.target = torch.from_numpy(np.ascontiguousarray(target))
        self.opt = torch.optim.SGD(list(self.P.values()), lr=lr)

    def _loss(self):
        _, state = self.rnn(self.x)
        h_n = state[0] if self.cell == "lstm" else state
        return self.torch.nn.functional.mse_loss(self.fc(h_n[0]), self.target)

    def step(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        self.opt.step()
        return loss.item()

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss = self._loss()
        loss.backward()
        return loss.item(), {k: v.grad.numpy().copy() for k, v in self.P.items()}


class KernelsStep:
    """minigrad's compiled kernels called by hand, with no tape, modules or optimizer objects:
    the same step as MinigradStep minus everything Python adds around the kernels; the time
    between it and minigrad is the cost of the framework."""

    name = "kernels"

    def __init__(self, cell, params, x, target, lr=LR):
        from minigrad import kernels

        self.k, self.cell, self.p = kernels, cell, copy_params(params)
        self.x, self.target, self.lr = np.ascontiguousarray(x), np.ascontiguousarray(target), lr
        B, H = x.shape[1], params["weight_hh_l0"].shape[1]
        self.zero = np.zeros((B, H), np.float32)

    def loss_and_grads(self):
        k, p, x, z = self.k, self.p, self.x, self.zero
        w = (p["weight_ih_l0"], p["weight_hh_l0"])
        b = (p["bias_ih_l0"], p["bias_hh_l0"])
        if self.cell == "lstm":
            _, h_n, _, cache = k.lstm_sequence_forward(x, z, z, *w, *b, None)
        elif self.cell == "gru":
            _, h_n, cache = k.gru_sequence_forward(x, z, *w, *b, None)
        else:
            _, h_n, cache = k.rnn_sequence_forward(x, z, *w, *b, None, "tanh")
        err = k.linear_forward(h_n, p["fc.weight"], p["fc.bias"]) - self.target
        dpred = (2 / err.size) * err
        dh, dW, db = k.linear_backward(dpred, h_n, p["fc.weight"], True)
        if self.cell == "lstm":
            _, _, _, dw_ih, dw_hh, db_ih, db_hh = k.lstm_sequence_backward(
                None, dh, z, x, z, z, *w, cache, None, True, need_dx=False, need_dh0=False
            )
        elif self.cell == "gru":
            _, _, dw_ih, dw_hh, db_ih, db_hh = k.gru_sequence_backward(
                None, dh, x, z, *w, cache, None, True, need_dx=False, need_dh0=False
            )
        else:
            _, _, dw_ih, dw_hh, db_ih, db_hh = k.rnn_sequence_backward(
                None, dh, x, z, *w, cache, None, True, "tanh", need_dx=False, need_dh0=False
            )
        grads = {
            "weight_ih_l0": dw_ih,
            "weight_hh_l0": dw_hh,
            "bias_ih_l0": db_ih,
            "bias_hh_l0": db_hh,
            "fc.weight": dW,
            "fc.bias": db,
        }
        return float(np.mean(err**2)), grads

    def step(self):
        loss, grads = self.loss_and_grads()
        for n, g in grads.items():  # the kernel optim.SGD calls, without its loop around it
            self.k.sgd_update(self.p[n], g, None, self.lr, 0.0, 0.0, 0.0, False, False)
        return loss


CONTENDERS = {
    "minigrad": MinigradStep,
    "numpy": NumpyStep,
    "torch": TorchStep,
    "kernels": KernelsStep,
    "unrolled": UnrolledStep,
}


def build(cell, params, x, target, names, overrides=None):
    """{name: contender} from one params dict; overrides {name: params} substitutes one
    contender's weights (how the tests show that the agreement check bites)."""
    overrides = overrides or {}
    return {n: CONTENDERS[n](cell, copy_params(overrides.get(n, params)), x, target) for n in names}
