"""minigrad.keras against real Keras 3 (optional: skipped unless ``keras`` is installed; the
torch backend is selected when torch is importable): identical weights give identical outputs
for every layer and the notes' models, summary counts match, and short trainings give the same
losses step for step."""

import importlib.util
import os

import numpy as np
import pytest

from minigrad import keras as mk

# The backend is read when keras is first imported, so it is chosen before importorskip.
if importlib.util.find_spec("torch") is not None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
K = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

B, T, I, H = 3, 5, 4, 6
RNG = np.random.default_rng(0)
X = RNG.standard_normal((B, T, I)).astype(np.float32)
MASKS = {
    "none": None,
    "left": np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], bool),
    "right": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool),
    "holes": np.array([[1, 0, 1, 0, 1], [1, 1, 1, 1, 0], [0, 1, 0, 1, 1]], bool),
}


def _np(t):
    return K.ops.convert_to_numpy(t)


def _pair(kl, ml, x, **call):
    yk = kl(x, **call)
    ml.build((None,) + x.shape[1:])
    ml.set_weights(kl.get_weights())
    ym = ml(x, **call)
    return yk, ym


def _close(yk, ym, tol=2e-5):
    if isinstance(yk, (list, tuple)):
        assert len(yk) == len(ym)
        for a, b in zip(yk, ym):
            _close(a, b, tol)
        return
    np.testing.assert_allclose(_np(yk), ym.data, rtol=tol, atol=tol)


FORMS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu"}),
    ("SimpleRNN", {"activation": "sigmoid"}),
    ("LSTM", {}),
    ("LSTM", {"use_bias": False}),
    ("LSTM", {"activation": "relu"}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False}),
]


@pytest.mark.parametrize("kind,kw", FORMS)
@pytest.mark.parametrize("mask", ["none", "left", "holes"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_layers(kind, kw, mask, go_backwards):
    for rs in (False, True):
        args = dict(kw, return_sequences=rs, return_state=True, go_backwards=go_backwards)
        kl = getattr(K.layers, kind)(H, **args)
        ml = getattr(mk.layers, kind)(H, **args)
        yk, ym = _pair(kl, ml, X, mask=MASKS[mask])
        _close(yk, ym)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_right_padded_mask_on_kernel_path(kind):
    kl = getattr(K.layers, kind)(H, return_sequences=True)
    ml = getattr(mk.layers, kind)(H, return_sequences=True)
    yk, ym = _pair(kl, ml, X, mask=MASKS["right"])
    assert ml.last_path == "kernel"
    _close(yk, ym)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("mask", ["none", "left", "holes"])
@pytest.mark.parametrize("rs", [False, True])
def test_bidirectional(merge_mode, mask, rs):
    kl = K.layers.Bidirectional(K.layers.GRU(H, return_sequences=rs), merge_mode=merge_mode)
    ml = mk.layers.Bidirectional(mk.layers.GRU(H, return_sequences=rs), merge_mode=merge_mode)
    yk, ym = _pair(kl, ml, X, mask=MASKS[mask])
    _close(yk, ym)


def test_core_layers_and_wrappers():
    x2 = RNG.standard_normal((B, I)).astype(np.float32)
    for kl, ml, x in [
        (K.layers.Dense(3, activation="relu"), mk.layers.Dense(3, activation="relu"), X),
        (K.layers.Dense(3, use_bias=False), mk.layers.Dense(3, use_bias=False), x2),
        (
            K.layers.TimeDistributed(K.layers.Dense(2, activation="tanh")),
            mk.layers.TimeDistributed(mk.layers.Dense(2, activation="tanh")),
            X,
        ),
        (K.layers.Flatten(), mk.layers.Flatten(), X),
        (K.layers.RepeatVector(3), mk.layers.RepeatVector(3), x2),
        (K.layers.Activation("softmax"), mk.layers.Activation("softmax"), x2),
        (K.layers.Dropout(0.5), mk.layers.Dropout(0.5), x2),
    ]:
        yk, ym = _pair(kl, ml, x)
        _close(yk, ym)
    idx = RNG.integers(0, 10, (B, T))
    kl, ml = K.layers.Embedding(10, 3), mk.layers.Embedding(10, 3)
    yk, ym = _pair(kl, ml, idx)
    _close(yk, ym)


def _notes_model(lib, rnn):
    model = lib.models.Sequential()
    model.add(lib.layers.Embedding(input_dim=10000, output_dim=50))
    model.add(getattr(lib.layers, rnn)(50))
    model.add(lib.layers.Dense(32))
    model.add(lib.layers.Dense(1, activation="sigmoid"))
    model.build((None, 20))
    return model


@pytest.mark.parametrize("rnn", ["SimpleRNN", "LSTM", "GRU"])
def test_notes_models_counts_and_outputs(rnn):
    km, mm = _notes_model(K, rnn), _notes_model(mk, rnn)
    assert km.count_params() == mm.count_params()
    assert [l.count_params() for l in km.layers] == [l.count_params() for l in mm.layers]
    mm.set_weights(km.get_weights())
    x = RNG.integers(0, 10000, (4, 20))
    np.testing.assert_allclose(
        km.predict(x, verbose=0), mm.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_encoder_decoder_outputs():
    def build(lib):
        ei = lib.Input(shape=(None, 3))
        _, h, c = lib.layers.LSTM(4, return_state=True)(ei)
        di = lib.Input(shape=(None, 2))
        y, _, _ = lib.layers.LSTM(4, return_sequences=True, return_state=True)(
            di, initial_state=[h, c]
        )
        return lib.Model([ei, di], lib.layers.Dense(2)(y))

    km, mm = build(K), build(mk)
    mm.set_weights(km.get_weights())
    xe = RNG.standard_normal((2, 6, 3)).astype(np.float32)
    xd = RNG.standard_normal((2, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(
        km.predict([xe, xd], verbose=0), mm.predict([xe, xd], verbose=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "optimizer,loss,rnn",
    [
        ("sgd", "binary_crossentropy", "LSTM"),
        ("sgd", "mae", "GRU"),
        ("sgd", "mse", "SimpleRNN"),
        ("adam", "binary_crossentropy", "GRU"),
        ("rmsprop", "mse", "LSTM"),
    ],
)
def test_training_steps_match(optimizer, loss, rnn):
    def build(lib):
        m = lib.models.Sequential(
            [
                lib.layers.Embedding(30, 4, mask_zero=True),
                getattr(lib.layers, rnn)(5),
                lib.layers.Dense(1, activation="sigmoid"),
            ]
        )
        m.build((None, 7))
        m.compile(optimizer=optimizer, loss=loss)
        return m

    km, mm = build(K), build(mk)
    mm.set_weights(km.get_weights())
    rng = np.random.default_rng(1)
    x = rng.integers(1, 30, (16, 7))
    x[:, :2] = 0  # pre-padding, masked
    y = rng.integers(0, 2, (16, 1)).astype(np.float32)
    for step in range(6):
        b = slice(4 * (step % 4), 4 * (step % 4) + 4)
        lk = float(np.asarray(km.train_on_batch(x[b], y[b])).ravel()[0])
        lm = mm.train_on_batch(x[b], y[b])
        assert lm == pytest.approx(lk, rel=2e-5, abs=1e-6), step
    for a, b in zip(km.get_weights(), mm.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fit_history_matches():
    def build(lib):
        m = lib.models.Sequential(
            [lib.layers.Input((6, 2)), lib.layers.GRU(4), lib.layers.Dense(1)]
        )
        m.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
        return m

    km, mm = build(K), build(mk)
    mm.set_weights(km.get_weights())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 6, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2))[:, None].astype(np.float32)
    kw = {
        "epochs": 3,
        "batch_size": 4,
        "shuffle": False,
        "verbose": 0,
        "validation_data": (x[:5], y[:5]),
    }
    hk = km.fit(x, y, **kw).history
    hm = mm.fit(x, y, **kw).history
    assert set(hk) == set(hm)
    for key in hk:
        np.testing.assert_allclose(hm[key], hk[key], rtol=2e-5, atol=1e-6, err_msg=key)


def test_functional_masked_model_matches():
    def build(lib):
        inp = lib.Input(shape=(None,), dtype="int32")
        e = lib.layers.Embedding(20, 3, mask_zero=True)(inp)
        s = lib.layers.LSTM(4, return_sequences=True)(e)
        out = lib.layers.GRU(2)(s)
        return lib.Model(inp, out)

    km, mm = build(K), build(mk)
    mm.set_weights(km.get_weights())
    x = np.array([[0, 0, 3, 4, 5], [1, 2, 3, 0, 0], [0, 7, 0, 8, 9]])
    np.testing.assert_allclose(
        km.predict(x, verbose=0), mm.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
