"""The language-model training step of bench_lm.py, for minigrad and torch, whole and by part.

The model is examples/char_rnn.py's CharLM: Embedding(V, E) -> num_layers-layer LSTM or GRU
(batch first) -> Linear(H, V); the loss is the mean cross-entropy of the next token over the
(B, T) chunk. One step: forward from the state the previous step left (detached: truncated
BPTT), zero_grad, backward, clip_grad_norm_ of every gradient to `clip`, one Adam step.

LMProblem holds the sizes, the weights (numpy, float32, drawn once) and the token chunks;
both frameworks' models start from the same weights and read the same tokens.

Parts (PARTS): each piece of the step timed alone on that step's shapes, so that its time can
be set against the other framework's: a part is a contender whose prepare() builds what the
timed step() needs (the forward graph whose backward is timed, the gradients clipped) outside
the timer.
"""

import numpy as np

PARTS = (
    "embedding fwd",
    "embedding bwd",
    "recurrent fwd",
    "recurrent bwd",
    "proj+loss fwd",
    "proj+loss bwd",
    "clip",
    "optimizer",
)


class LMProblem:
    """Sizes, weights and tokens of one bench_lm configuration."""

    def __init__(
        self,
        cell,
        vocab=65,
        embed=64,
        hidden=256,
        layers=2,
        batch=32,
        seq=64,
        clip=1.0,
        lr=2e-3,
        chunks=4,
        seed=0,
    ):
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.cell, self.V, self.E, self.H, self.L = cell, vocab, embed, hidden, layers
        self.B, self.T, self.clip, self.lr = batch, seq, clip, lr
        rng = np.random.default_rng(seed)
        G = 4 if cell == "lstm" else 3
        k = 1 / np.sqrt(hidden)

        def u(*shape):
            return rng.uniform(-k, k, shape).astype(np.float32)

        w = {"embed.weight": rng.standard_normal((vocab, embed)).astype(np.float32)}
        for layer in range(layers):
            inp = embed if layer == 0 else hidden
            w[f"rnn.weight_ih_l{layer}"] = u(G * hidden, inp)
            w[f"rnn.weight_hh_l{layer}"] = u(G * hidden, hidden)
            w[f"rnn.bias_ih_l{layer}"] = u(G * hidden)
            w[f"rnn.bias_hh_l{layer}"] = u(G * hidden)
        w["head.weight"] = u(vocab, hidden)
        w["head.bias"] = u(vocab)
        self.weights = w
        # `chunks` chunks of (B, T + 1) tokens: input = [:, :-1], target = [:, 1:]
        toks = rng.integers(0, vocab, (chunks, batch, seq + 1)).astype(np.int64)
        self.chunks = [(c[:, :-1].copy(), c[:, 1:].copy()) for c in toks]

    def describe(self):
        n = sum(v.size for v in self.weights.values())
        return (
            f"Embedding({self.V}, {self.E}) -> {self.L} x {self.cell.upper()}({self.H}) -> "
            f"Linear({self.H}, {self.V}), {n:,} parameters; batch {self.B} x {self.T} tokens, "
            f"cross-entropy, clip_grad_norm_({self.clip}), Adam(lr={self.lr})"
        )


# ------------------------------------------------------------------------------ minigrad
class MinigradLM:
    """examples/char_rnn.py's model and training step in minigrad."""

    name = "minigrad"

    def __init__(self, problem):
        import minigrad as mg
        from minigrad import nn

        self.mg, self.nn, self.pb = mg, nn, problem
        cls = nn.LSTM if problem.cell == "lstm" else nn.GRU
        self.embed = nn.Embedding(problem.V, problem.E)
        self.rnn = cls(problem.E, problem.H, num_layers=problem.L, batch_first=True)
        self.head = nn.Linear(problem.H, problem.V)
        self.P = {}
        for prefix, m in (("embed.", self.embed), ("rnn.", self.rnn), ("head.", self.head)):
            for k, p in m.named_parameters():
                self.P[prefix + k] = p
        for k, p in self.P.items():
            p.data[...] = problem.weights[k]
        self.params = list(self.P.values())
        self.opt = mg.optim.Adam(self.params, lr=problem.lr)
        self.data = [(mg.tensor(x), mg.tensor(y)) for x, y in problem.chunks]
        self.i, self.state = 0, None

    def loss(self, x, y, state):
        import minigrad.functional as F

        ys, state = self.rnn(self.embed(x), state)
        logits = self.head(ys)
        return F.cross_entropy(logits.reshape(-1, self.pb.V), y.reshape(-1)), state

    def next_chunk(self):
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        return x, y

    def step(self):
        x, y = self.next_chunk()
        loss, state = self.loss(x, y, self.state)
        self.opt.zero_grad()
        loss.backward()
        self.nn.utils.clip_grad_norm_(self.params, self.pb.clip)
        self.opt.step()
        self.state = self.nn.utils.detach_state(state)
        return float(loss.item())

    def loss_and_grads(self):
        """Loss and {name: gradient} of the first chunk from a zero state (no update)."""
        self.opt.zero_grad()
        loss, _ = self.loss(*self.data[0], None)
        loss.backward()
        return float(loss.item()), {k: np.array(p.grad) for k, p in self.P.items()}

    def parts(self):
        return _Parts(self, _MinigradOps(self))


class _MinigradOps:
    def __init__(self, lm):
        import minigrad.functional as F

        self.lm, self.F = lm, F

    def leaf(self, a):
        return self.lm.mg.tensor(a, requires_grad=True)

    def const(self, a):
        return self.lm.mg.tensor(a)

    def array(self, t):
        return t.data

    def backward(self, out, g):
        out.backward(g)

    def set_grads(self, grads):
        for p, g in zip(self.lm.params, grads):
            if p.grad is None:
                p.grad = g.copy()
            else:
                np.copyto(p.grad, g)

    def grads(self):
        return [np.array(p.grad) for p in self.lm.params]

    def ce(self, logits, y):
        return self.F.cross_entropy(logits.reshape(-1, self.lm.pb.V), y.reshape(-1))

    def clip(self):
        self.lm.nn.utils.clip_grad_norm_(self.lm.params, self.lm.pb.clip)


# --------------------------------------------------------------------------------- torch
class TorchLM:
    """The same model and step in torch (torch.nn modules, torch.optim.Adam at its defaults)."""

    name = "torch"

    def __init__(self, problem):
        import torch

        self.torch, self.pb = torch, problem
        cls = torch.nn.LSTM if problem.cell == "lstm" else torch.nn.GRU
        self.embed = torch.nn.Embedding(problem.V, problem.E)
        self.rnn = cls(problem.E, problem.H, num_layers=problem.L, batch_first=True)
        self.head = torch.nn.Linear(problem.H, problem.V)
        self.P = {}
        for prefix, m in (("embed.", self.embed), ("rnn.", self.rnn), ("head.", self.head)):
            for k, p in m.named_parameters():
                self.P[prefix + k] = p
        with torch.no_grad():
            for k, p in self.P.items():
                p.copy_(torch.from_numpy(problem.weights[k]))
        self.params = list(self.P.values())
        self.opt = torch.optim.Adam(self.params, lr=problem.lr)
        self.data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in problem.chunks]
        self.i, self.state = 0, None

    def loss(self, x, y, state):
        ys, state = self.rnn(self.embed(x), state)
        logits = self.head(ys)
        F = self.torch.nn.functional
        return F.cross_entropy(logits.reshape(-1, self.pb.V), y.reshape(-1)), state

    def next_chunk(self):
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        return x, y

    def step(self):
        x, y = self.next_chunk()
        loss, state = self.loss(x, y, self.state)
        self.opt.zero_grad()
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, self.pb.clip)
        self.opt.step()
        self.state = (
            tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        )
        return loss.item()

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss, _ = self.loss(*self.data[0], None)
        loss.backward()
        return loss.item(), {k: p.grad.numpy().copy() for k, p in self.P.items()}

    def parts(self):
        return _Parts(self, _TorchOps(self))


class _TorchOps:
    def __init__(self, lm):
        self.lm, self.torch = lm, lm.torch

    def leaf(self, a):
        return self.torch.tensor(a, requires_grad=True)

    def const(self, a):
        return self.torch.from_numpy(a)

    def array(self, t):
        return t.detach().numpy()

    def backward(self, out, g):
        out.backward(self.torch.from_numpy(g) if isinstance(g, np.ndarray) else g)

    def set_grads(self, grads):
        for p, g in zip(self.lm.params, grads):
            if p.grad is None:
                p.grad = self.torch.from_numpy(g.copy())
            else:
                p.grad.copy_(self.torch.from_numpy(g))

    def grads(self):
        return [p.grad.numpy().copy() for p in self.lm.params]

    def ce(self, logits, y):
        F = self.torch.nn.functional
        return F.cross_entropy(logits.reshape(-1, self.lm.pb.V), y.reshape(-1))

    def clip(self):
        self.torch.nn.utils.clip_grad_norm_(self.lm.params, self.lm.pb.clip)


# --------------------------------------------------------------------------------- parts
class _Part:
    """A contender: prepare() (untimed) then step() (timed)."""

    def __init__(self, step, prepare=None):
        self.step = step
        if prepare is not None:
            self.prepare = prepare


class _Parts:
    """{part name: contender} for one framework's model, the same for both frameworks: the
    inputs of each part are arrays of the step's shapes (the embedding's output gradient, the
    recurrent layers' input and output gradient, the head's input), drawn once."""

    def __init__(self, lm, ops):
        pb = lm.pb
        rng = np.random.default_rng(1)
        self.lm, self.ops = lm, ops
        self.x, self.y = (ops.const(a) for a in pb.chunks[0])
        self.g_emb = rng.standard_normal((pb.B, pb.T, pb.E)).astype(np.float32)
        self.rnn_in = rng.standard_normal((pb.B, pb.T, pb.E)).astype(np.float32)
        self.g_rnn = (rng.standard_normal((pb.B, pb.T, pb.H)) * 0.1).astype(np.float32)
        self.head_in = rng.standard_normal((pb.B, pb.T, pb.H)).astype(np.float32)
        self.out = None
        # gradients of every parameter, for clip and the optimizer (scaled so clip does clip)
        self.grads = [
            (rng.standard_normal(p.shape) * 0.05).astype(np.float32) for p in pb.weights.values()
        ]

    # each leaf is made in prepare() (untimed), fresh for every step as in training
    def _leaves(self):
        self.rnn_leaf = self.ops.leaf(self.rnn_in)
        self.head_leaf = self.ops.leaf(self.head_in)

    # forward parts: the whole forward of the piece, its graph built (as in training)
    def embed_fwd(self):
        self.out = self.lm.embed(self.x)

    def rnn_fwd(self):
        self.out = self.lm.rnn(self.rnn_leaf)[0]

    def head_fwd(self):
        self.out = self.ops.ce(self.lm.head(self.head_leaf), self.y)

    # backward parts: prepare() runs the forward, step() the backward
    def _then(self, forward):
        def prepare():
            self.lm.opt.zero_grad()
            self._leaves()
            forward()

        return prepare

    def embed_bwd(self):
        self.ops.backward(self.out, self.g_emb)

    def rnn_bwd(self):
        self.ops.backward(self.out, self.g_rnn)

    def head_bwd(self):
        self.ops.backward(self.out, None)

    def set_grads(self):
        self.ops.set_grads(self.grads)

    def contenders(self):
        return {
            "embedding fwd": _Part(self.embed_fwd, self._leaves),
            "embedding bwd": _Part(self.embed_bwd, self._then(self.embed_fwd)),
            "recurrent fwd": _Part(self.rnn_fwd, self._leaves),
            "recurrent bwd": _Part(self.rnn_bwd, self._then(self.rnn_fwd)),
            "proj+loss fwd": _Part(self.head_fwd, self._leaves),
            "proj+loss bwd": _Part(self.head_bwd, self._then(self.head_fwd)),
            "clip": _Part(self.ops.clip, self.set_grads),
            "optimizer": _Part(self.lm.opt.step, self.set_grads),
        }


def build(problem, names):
    """{name: model} for names among 'minigrad', 'torch', each from the problem's weights."""
    classes = {"minigrad": MinigradLM, "torch": TorchLM}
    return {n: classes[n](problem) for n in names}


def check_agreement(models, rtol=2e-3, atol=2e-5):
    """The models' losses and every gradient of the first chunk (zero state) must agree with
    the first model's within float32 tolerance; AssertionError naming what differs."""
    names = list(models)
    ref_loss, ref = models[names[0]].loss_and_grads()
    for n in names[1:]:
        loss, grads = models[n].loss_and_grads()
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-4, err_msg=f"{n}: loss")
        for k, g in ref.items():
            np.testing.assert_allclose(grads[k], g, rtol=rtol, atol=atol, err_msg=f"{n}: {k}")
