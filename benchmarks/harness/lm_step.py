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


# the output layer: a Linear module (PyTorch's nn.Linear, minigrad's linear kernel), or
# `h @ W.T + b` with the framework's matmul, as a Keras Dense layer computes it
HEADS = ("linear", "matmul")


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
        head="linear",
    ):
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        self.head = head
        self.cell, self.V, self.E, self.H, self.L = cell, vocab, embed, hidden, layers
        self.B, self.T, self.clip, self.lr = batch, seq, clip, lr
        rng = np.random.default_rng(seed)
        G = 4 if cell == "lstm" else 3
        self.G = G * hidden  # the gate width: the rows of W_ih and W_hh
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
        # what builds the same problem in another process (LMWorker)
        self.args = (cell, vocab, embed, hidden, layers, batch, seq, clip, lr, chunks, seed, head)

    def gemm_flops(self):
        """Floating-point operations of the step's matrix products (gemm_shapes), 2 per
        multiply-add. Nothing else of the step (gate rows, softmax, the optimizer) is a matrix
        product."""
        return sum(2 * m * n * k * times for _, m, n, k, _, times in self.gemm_shapes())

    def gemm_shapes(self):
        """The step's matrix products, forward and backward, as (what, m, n, k, ta, times):
        C (m x n) = op(A) (m x k) @ B (k x n), op(A) = A^T when ta (the weight gradients: a
        sum over the N = B * T rows), `times` products of that shape a step (the per-step
        products of a recurrent layer: T, on B rows each)."""
        N, G = self.B * self.T, self.G
        out = []
        for i, I in enumerate([self.E] + [self.H] * (self.L - 1)):
            out += [
                (f"layer {i}: x W_ih^T", N, G, I, False, 1),
                (f"layer {i}: h W_hh^T, per step", self.B, G, self.H, False, self.T),
                (f"layer {i}: dx = dG W_ih", N, I, G, False, 1),
                (f"layer {i}: dW_ih = dG^T x", G, I, N, True, 1),
                (f"layer {i}: dh = dG W_hh, per step", self.B, self.H, G, False, self.T),
                (f"layer {i}: dW_hh = dG^T h", G, self.H, N, True, 1),
            ]
        return out + [
            ("head: h W^T", N, self.V, self.H, False, 1),
            ("head: dh = dY W", N, self.H, self.V, False, 1),
            ("head: dW = dY^T h", self.V, self.H, N, True, 1),
        ]

    def describe(self):
        n = sum(v.size for v in self.weights.values())
        return (
            f"Embedding({self.V}, {self.E}) -> {self.L} x {self.cell.upper()}({self.H}) -> "
            f"{'Linear' if self.head == 'linear' else 'matmul head'}({self.H}, {self.V}), "
            f"{n:,} parameters; batch {self.B} x {self.T} tokens, "
            f"cross-entropy, clip_grad_norm_({self.clip}), Adam(lr={self.lr})"
        )


# ---------------------------------------------------------------------------- frameworks
class MinigradAPI:
    """What LM needs of minigrad."""

    name = "minigrad"

    def __init__(self):
        import minigrad as mg
        import minigrad.functional as F

        self.mg, self.nn, self.F, self.optim = mg, mg.nn, F, mg.optim

    def tensor(self, a, grad=False):
        return self.mg.tensor(a, requires_grad=grad)

    def matmul(self, a, b):
        return self.F.matmul(a, b)

    def load(self, p, a):
        p.data[...] = a

    def grad(self, p):
        return np.array(p.grad)

    def set_grad(self, p, g):
        if p.grad is None:
            p.grad = g.copy()
        else:
            np.copyto(p.grad, g)

    def backward(self, out, g):
        out.backward(g)

    def detach(self, state):
        return self.nn.utils.detach_state(state)

    def item(self, t):
        return float(t.item())


class TorchAPI:
    """What LM needs of torch (torch.nn modules, torch.optim.Adam at its defaults)."""

    name = "torch"

    def __init__(self):
        import torch

        self.torch, self.nn, self.F, self.optim = torch, torch.nn, torch.nn.functional, torch.optim

    def tensor(self, a, grad=False):
        return self.torch.tensor(a, requires_grad=True) if grad else self.torch.from_numpy(a)

    def matmul(self, a, b):
        return self.torch.matmul(a, b)

    def load(self, p, a):
        with self.torch.no_grad():
            p.copy_(self.torch.from_numpy(a))

    def grad(self, p):
        return p.grad.numpy().copy()

    def set_grad(self, p, g):
        if p.grad is None:
            p.grad = self.torch.from_numpy(g.copy())
        else:
            p.grad.copy_(self.torch.from_numpy(g))

    def backward(self, out, g):
        out.backward(None if g is None else self.torch.from_numpy(g))

    def detach(self, state):
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def item(self, t):
        return t.item()


# ----------------------------------------------------------------------------- the model
class LM:
    """examples/char_rnn.py's model and training step in one framework (`api`), from the
    problem's weights, reading its chunks in turn."""

    def __init__(self, problem, api):
        self.pb, self.api = problem, api
        nn = api.nn
        self.name = api.name
        cls = nn.LSTM if problem.cell == "lstm" else nn.GRU
        self.embed = nn.Embedding(problem.V, problem.E)
        self.rnn = cls(problem.E, problem.H, num_layers=problem.L, batch_first=True)
        self.head = nn.Linear(problem.H, problem.V)
        self.P = {}
        for prefix, m in (("embed.", self.embed), ("rnn.", self.rnn), ("head.", self.head)):
            for k, p in m.named_parameters():
                self.P[prefix + k] = p
                api.load(p, problem.weights[prefix + k])
        self.params = list(self.P.values())
        self.opt = api.optim.Adam(self.params, lr=problem.lr)
        self.data = [(api.tensor(x), api.tensor(y)) for x, y in problem.chunks]
        self.i, self.state = 0, None

    def ce(self, logits, y):
        """Mean cross-entropy of (B, T, V) logits against (B, T) targets, as char_rnn.py."""
        return self.api.F.cross_entropy(logits.reshape(-1, self.pb.V), y.reshape(-1))

    def project(self, ys):
        """The logits: the head on the recurrent outputs (problem.head)."""
        if self.pb.head == "linear":
            return self.head(ys)
        return self.api.matmul(ys, self.head.weight.T) + self.head.bias

    def loss(self, x, y, state):
        ys, state = self.rnn(self.embed(x), state)
        return self.ce(self.project(ys), y), state

    def clip(self):
        self.api.nn.utils.clip_grad_norm_(self.params, self.pb.clip)

    def step(self):
        x, y = self.data[self.i % len(self.data)]
        self.i += 1
        loss, state = self.loss(x, y, self.state)
        self.opt.zero_grad()
        loss.backward()
        self.clip()
        self.opt.step()
        self.state = self.api.detach(state)
        return self.api.item(loss)

    def loss_and_grads(self):
        """Loss and {name: gradient} of the first chunk from a zero state (no update)."""
        self.opt.zero_grad()
        loss, _ = self.loss(*self.data[0], None)
        loss.backward()
        return self.api.item(loss), {k: self.api.grad(p) for k, p in self.P.items()}

    def parts(self):
        return _Parts(self)


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

    def __init__(self, lm):
        pb, api = lm.pb, lm.api
        rng = np.random.default_rng(1)
        self.lm, self.api = lm, api
        self.x, self.y = (api.tensor(a) for a in pb.chunks[0])
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
        self.rnn_leaf = self.api.tensor(self.rnn_in, grad=True)
        self.head_leaf = self.api.tensor(self.head_in, grad=True)

    # forward parts: the whole forward of the piece, its graph built (as in training)
    def embed_fwd(self):
        self.out = self.lm.embed(self.x)

    def rnn_fwd(self):
        self.out = self.lm.rnn(self.rnn_leaf)[0]

    def head_fwd(self):
        self.out = self.lm.ce(self.lm.project(self.head_leaf), self.y)

    # backward parts: prepare() runs the forward, step() the backward
    def _then(self, forward):
        def prepare():
            self.lm.opt.zero_grad()
            self._leaves()
            forward()

        return prepare

    def _backward(self, g):
        return lambda: self.api.backward(self.out, g)

    def set_grads(self):
        for p, g in zip(self.lm.params, self.grads):
            self.api.set_grad(p, g)

    def contenders(self):
        return {
            "embedding fwd": _Part(self.embed_fwd, self._leaves),
            "embedding bwd": _Part(self._backward(self.g_emb), self._then(self.embed_fwd)),
            "recurrent fwd": _Part(self.rnn_fwd, self._leaves),
            "recurrent bwd": _Part(self._backward(self.g_rnn), self._then(self.rnn_fwd)),
            "proj+loss fwd": _Part(self.head_fwd, self._leaves),
            "proj+loss bwd": _Part(self._backward(None), self._then(self.head_fwd)),
            "clip": _Part(self.lm.clip, self.set_grads),
            "optimizer": _Part(self.lm.opt.step, self.set_grads),
        }


class LMWorker:
    """One framework's model of an LMProblem, built in a worker process of its own
    (harness.isolated.Isolated(LMWorker, problem_args, name)): step(), the thread setting,
    and the parts."""

    def __init__(self, problem_args, name):
        self.name = name
        self.lm = build(LMProblem(*problem_args), [name])[name]
        if name == "torch":
            import torch

            self._get, self._set = torch.get_num_threads, torch.set_num_threads
        else:
            import minigrad

            self._get, self._set = minigrad.get_num_threads, minigrad.set_num_threads
        self.default_threads = self._get()
        self._parts = None

    def set_threads(self, setting):
        """Threads for this framework ('own': the count it started with); the count used."""
        n = self.default_threads if setting == "own" else setting
        self._set(n)
        return n

    def step(self):
        self.lm.step()

    def _part(self, name):
        if self._parts is None:
            self._parts = self.lm.parts().contenders()
        return self._parts[name]

    def part_prepare(self, name):
        prepare = getattr(self._part(name), "prepare", None)
        if prepare is not None:
            prepare()

    def part_step(self, name):
        """Run the part's step; its seconds (timed here, in the worker)."""
        import time

        part = self._part(name)
        t0 = time.perf_counter()
        part.step()
        return time.perf_counter() - t0


def build(problem, names):
    """{name: model} for names among 'minigrad', 'torch', each from the problem's weights."""
    apis = {"minigrad": MinigradAPI, "torch": TorchAPI}
    return {n: LM(problem, apis[n]()) for n in names}


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
