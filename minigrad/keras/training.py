"""Keras's training loop on minigrad's tape: ``compile``, ``fit``, ``evaluate``, ``predict``.

``fit`` runs, per batch: the model in training mode on the tape, the compiled loss, one
``backward()``, one optimizer step on the trainable weights; it logs the loss (the mean over the
epoch's samples) and the metrics, prints Keras's per-epoch line and returns a ``History``.
``predict`` and ``evaluate`` run in inference mode under ``no_grad`` (no tape), batch by batch.
"""

import math
import sys
import time

import numpy as np

from ..autograd import no_grad
from ..random import default_rng
from ..tensor import Tensor
from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module

__all__ = ["Trainer"]


def _n_samples(x):
    if isinstance(x, (list, tuple)):
        return _n_samples(x[0])
    return len(x.data if isinstance(x, Tensor) else x)


def _take(x, idx):
    if isinstance(x, (list, tuple)):
        return [_take(a, idx) for a in x]
    a = x.data if isinstance(x, Tensor) else np.asarray(x)
    return a[idx]


def _as_array(x):
    if isinstance(x, (list, tuple)):
        return [_as_array(a) for a in x]
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _is_dataset(x):
    return hasattr(x, "__iter__") and not isinstance(x, (np.ndarray, list, tuple, Tensor))


def _fmt_logs(logs):
    keys = sorted(k for k in logs if not k.startswith("val_")) + sorted(
        k for k in logs if k.startswith("val_")
    )
    return "".join(f" - {k}: {logs[k]:.4f}" for k in keys)


def _time_text(seconds, steps):
    per = seconds / max(steps, 1)
    if per >= 1:
        unit = f"{per:.0f}s/step"
    elif per >= 1e-3:
        unit = f"{per * 1e3:.0f}ms/step"
    else:
        unit = f"{per * 1e6:.0f}us/step"
    return f"{seconds:.0f}s", unit


class Trainer:
    """The training methods of a Keras model (mixed into ``Model``)."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self._metric_specs = []
        self._metrics = None
        self.stop_training = False
        self.history = None

    # ----- compile ---------------------------------------------------------------------
    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        metrics=None,
        loss_weights=None,
        run_eagerly=None,
        jit_compile=None,
        **kwargs,
    ):
        """Set the optimizer, the loss and the metrics, by Keras name or object. Unknown names
        raise here."""
        self.optimizer = optimizers_module.get(optimizer)
        if loss is None:
            raise ValueError("compile needs a loss (e.g. loss='mse' or 'binary_crossentropy')")
        self.loss = losses_module.get(loss)
        specs = [] if metrics is None else list(metrics)
        for m in specs:
            metrics_module.get(m)  # validate names now
        self._metric_specs = specs
        self._metrics = None
        self.compiled = True

    def _check_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must call compile() before {what}()")

    def _make_metrics(self, y, p):
        if self._metrics is None:
            y_shape = np.shape(y)
            self._metrics = [
                metrics_module.get(m, y_shape, tuple(p.shape), self.loss.name)
                for m in self._metric_specs
            ]
        return self._metrics

    @property
    def metrics_names(self):
        return ["loss"] + [m if isinstance(m, str) else m.name for m in self._metric_specs]

    # ----- batches ---------------------------------------------------------------------
    def _inputs(self, x):
        """x as arrays: a list is several inputs only for a model with several inputs (a
        nested Python list for a one-input model is one array, as in Keras)."""
        if isinstance(x, (list, tuple)) and not getattr(self, "_multi_in", False):
            return np.asarray(x)
        return _as_array(x)

    def _targets(self, y):
        if isinstance(y, (list, tuple)) and not getattr(self, "_multi_out", False):
            return np.asarray(y)
        return _as_array(y)

    def _batches(self, x, y, batch_size, shuffle=False):
        if _is_dataset(x):
            for batch in x:
                xb, yb = (batch[0], batch[1]) if isinstance(batch, tuple) else (batch, None)
                yield xb, yb
            return
        n = _n_samples(x)
        if y is not None and _n_samples(y) != n:
            raise ValueError(f"x and y have different numbers of samples: {n} and {_n_samples(y)}")
        idx = np.arange(n)
        if shuffle:
            default_rng().shuffle(idx)
        for s in range(0, n, batch_size):
            b = idx[s : s + batch_size]
            yield _take(x, b), None if y is None else _take(y, b)

    def _n_steps(self, x, batch_size):
        if _is_dataset(x):
            return len(x) if hasattr(x, "__len__") else None
        return math.ceil(_n_samples(x) / batch_size)

    def _forward(self, xb, training):
        self._set_training(training)
        try:
            return self(xb, training=training)
        finally:
            self._set_training(False)

    def _set_training(self, flag):
        self.training = flag
        for layer in self._all_sublayers():
            layer.training = flag

    def _all_sublayers(self):
        out, stack = [], list(getattr(self, "_layers", []))
        while stack:
            layer = stack.pop()
            out.append(layer)
            stack.extend(getattr(layer, "_layers", []))
        return out

    def train_on_batch(self, x, y):
        """One optimizer step on one batch; returns the batch's loss."""
        self._check_compiled("train_on_batch")
        loss, _ = self._train_step(x, y)
        return loss

    def _train_step(self, xb, yb):
        out = self._forward(xb, training=True)
        y = _as_array(yb)
        loss = self.loss(y, out)
        params = self.trainable_weights
        for p in params:
            p.grad = None
        loss.backward()
        self.optimizer.apply(params)
        for m in self._make_metrics(y, out.data):
            m.update_state(y, out.data)
        return float(loss.data), _n_samples(xb)

    def _eval_step(self, xb, yb):
        with no_grad():
            out = self._forward(xb, training=False)
            y = _as_array(yb)
            loss = self.loss(y, out)
        for m in self._make_metrics(y, out.data):
            m.update_state(y, out.data)
        return float(loss.data), _n_samples(xb)

    def _reset_metrics(self):
        for m in self._metrics or []:
            m.reset_state()

    def _metric_logs(self, prefix=""):
        return {prefix + m.name: m.result() for m in self._metrics or []}

    # ----- fit -------------------------------------------------------------------------
    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        initial_epoch=0,
        steps_per_epoch=None,
        **kwargs,
    ):
        """Train for ``epochs`` epochs; returns a ``History`` (``history.history`` maps 'loss',
        the metrics and their 'val_' versions to per-epoch values)."""
        self._check_compiled("fit")
        if kwargs:
            raise TypeError(f"fit got unexpected arguments {sorted(kwargs)}")
        if x is None:
            raise ValueError("fit needs x")
        batch_size = 32 if batch_size is None else int(batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        if not _is_dataset(x):
            x = self._inputs(x)
            if y is None:
                raise ValueError("fit needs targets y (or a dataset of (x, y) batches)")
            y = self._targets(y)
            if validation_split and validation_data is None:
                if not 0 < validation_split < 1:
                    raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
                n = _n_samples(x)
                cut = int(n * (1 - validation_split))
                validation_data = (_take(x, np.arange(cut, n)), _take(y, np.arange(cut, n)))
                x, y = _take(x, np.arange(cut)), _take(y, np.arange(cut))
        history = callbacks_module.History()
        cbs = list(callbacks or []) + [history]
        for cb in cbs:
            cb.set_model(self)
            cb.params = {"epochs": epochs, "verbose": verbose}
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            self._reset_metrics()
            t0 = time.perf_counter()
            total = count = steps = 0
            for step, (xb, yb) in enumerate(self._batches(x, y, batch_size, shuffle)):
                if steps_per_epoch is not None and step >= steps_per_epoch:
                    break
                for cb in cbs:
                    cb.on_train_batch_begin(step, {})
                loss, n = self._train_step(xb, yb)
                total += loss * n
                count += n
                steps += 1
                logs = {"loss": total / count, **self._metric_logs()}
                for cb in cbs:
                    cb.on_train_batch_end(step, logs)
            elapsed = time.perf_counter() - t0
            logs = {"loss": total / max(count, 1), **self._metric_logs()}
            if validation_data is not None:
                vx, vy = validation_data[0], validation_data[1]
                vals = self._evaluate_logs(vx, vy, batch_size)
                logs.update({"val_" + k: v for k, v in vals.items()})
            if verbose:
                self._print_epoch(epoch, epochs, steps, elapsed, logs, verbose)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end({})
        self.history = history
        return history

    def _print_epoch(self, epoch, epochs, steps, elapsed, logs, verbose):
        secs, per = _time_text(elapsed, steps)
        print(f"Epoch {epoch + 1}/{epochs}")
        if verbose == 1:
            line = f"{steps}/{steps} " + "\u2501" * 20 + f" {secs} {per}"
        else:
            line = f"{steps}/{steps} - {secs} - {per}"
        print(line + _fmt_logs(logs))
        sys.stdout.flush()

    # ----- evaluate / predict -----------------------------------------------------------
    def _evaluate_logs(self, x, y, batch_size):
        self._reset_metrics()
        total = count = 0
        for xb, yb in self._batches(
            x if _is_dataset(x) else self._inputs(x),
            None if y is None else self._targets(y),
            batch_size,
        ):
            loss, n = self._eval_step(xb, yb)
            total += loss * n
            count += n
        logs = {"loss": total / max(count, 1), **self._metric_logs()}
        return logs

    def evaluate(
        self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False, **kwargs
    ):
        """The loss and metrics on (x, y): a number (no metrics), a list [loss, *metrics], or
        a dict with ``return_dict=True``."""
        self._check_compiled("evaluate")
        batch_size = 32 if batch_size is None else int(batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        t0 = time.perf_counter()
        logs = self._evaluate_logs(x, y, batch_size)
        if verbose:
            steps = self._n_steps(x, batch_size) or 0
            secs, per = _time_text(time.perf_counter() - t0, steps)
            print(f"{steps}/{steps} " + "\u2501" * 20 + f" {secs} {per}" + _fmt_logs(logs))
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m.name] for m in self._metrics or []]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """The model's outputs on x as NumPy arrays, batch by batch, in inference mode and
        without a tape."""
        batch_size = 32 if batch_size is None else int(batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        outs = []
        t0 = time.perf_counter()
        with no_grad():
            for xb, _ in self._batches(x if _is_dataset(x) else self._inputs(x), None, batch_size):
                out = self._forward(xb, training=False)
                outs.append([o.data for o in out] if isinstance(out, (list, tuple)) else out.data)
        if not outs:
            raise ValueError("predict got no samples")
        if verbose:
            secs, per = _time_text(time.perf_counter() - t0, len(outs))
            print(f"{len(outs)}/{len(outs)} " + "\u2501" * 20 + f" {secs} {per}")
        if isinstance(outs[0], list):
            return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
        return np.concatenate(outs)

    def predict_on_batch(self, x):
        with no_grad():
            out = self._forward(self._inputs(x), training=False)
        return [o.data for o in out] if isinstance(out, (list, tuple)) else out.data
