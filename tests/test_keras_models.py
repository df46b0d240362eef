"""minigrad.keras models: the lecture notes' code with only the import changed, summary
tables, training (compile/fit/evaluate/predict), callbacks, weights files, the functional
API, the data helpers and bad input."""

import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

import minigrad as mg
from minigrad import keras
from minigrad.keras import Input, Model, Sequential, callbacks, layers, models, utils


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.clear_session()
    mg.manual_seed(0)
    yield


def _summary(model):
    buf = io.StringIO()
    with redirect_stdout(buf):
        model.summary()
    return buf.getvalue()


def _rows(text):
    """(name, type, shape, params) for every layer row of a summary."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"^ (\S+) \((\w+)\)\s+(\(.*?\)|\[.*\])\s+(\d+)$", line)
        if m:
            rows.append((m.group(1), m.group(2), m.group(3), int(m.group(4))))
    return rows


def _totals(text):
    return [
        int(re.search(rf"{k} params: ([\d,]+)", text).group(1).replace(",", ""))
        for k in ("Total", "Trainable", "Non-trainable")
    ]


# ---------------------------------------------------------------- the notes, import changed
def test_notes_seed002_simple_rnn_table():
    # seed 002, "모델 설계" (only the import line changed)
    max_words, embedding_dim, maxlen, class_number = 10000, 50, 20, 1
    model = models.Sequential()
    model.add(layers.Embedding(input_dim=max_words, output_dim=embedding_dim, input_length=maxlen))
    model.add(layers.SimpleRNN(units=embedding_dim, return_sequences=False))
    model.add(layers.Dense(units=32, activation="relu"))
    model.add(layers.Dense(units=class_number, activation="sigmoid"))
    text = _summary(model)
    assert 'Model: "sequential"' in text
    assert _rows(text) == [
        ("embedding", "Embedding", "(None, 20, 50)", 500000),
        ("simple_rnn", "SimpleRNN", "(None, 50)", 5050),
        ("dense", "Dense", "(None, 32)", 1632),
        ("dense_1", "Dense", "(None, 1)", 33),
    ]
    assert _totals(text) == [506715, 506715, 0]
    assert "Total params: 506,715" in text
    assert model.count_params() == 506715


@pytest.mark.parametrize(
    ("rnn", "name", "n_params"),
    [
        (layers.SimpleRNN, "simple_rnn", 50 * 50 + 50 * 50 + 50),  # 5,050
        (layers.LSTM, "lstm", 4 * (50 * 50 + 50 * 50 + 50)),  # 20,200, the notes' arithmetic
    ],
)
def test_notes_seed002_parameter_section(rnn, name, n_params):
    # seed 002, "참고: Parameter": no input_length -> (None, None, 50), as the notes print
    model = models.Sequential()
    model.add(layers.Embedding(input_dim=10000, output_dim=50))
    model.add(rnn(50))
    model.add(layers.Dense(32))
    model.add(layers.Dense(1, activation="sigmoid"))
    text = _summary(model)
    assert _rows(text) == [
        ("embedding", "Embedding", "(None, None, 50)", 500000),
        (name, rnn.__name__, "(None, 50)", n_params),
        ("dense", "Dense", "(None, 32)", 1632),
        ("dense_1", "Dense", "(None, 1)", 33),
    ]
    total = 500000 + n_params + 1632 + 33
    assert _totals(text) == [total, total, 0]


def test_notes_seed002_gru_and_stacked_run():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 100, (16, 12))
    y = (x[:, -1] > 50).astype("float32")
    for rnn in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        model = models.Sequential()
        model.add(layers.Embedding(input_dim=100, output_dim=8))
        model.add(rnn(units=8, return_sequences=True))
        model.add(rnn(units=8, return_sequences=False))
        model.add(layers.Dense(units=32, activation="relu"))
        model.add(layers.Dense(units=1, activation="sigmoid"))
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
        hist = model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
        assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert len(hist.history["loss"]) == 2
        assert model.predict(x, verbose=0).shape == (16, 1)


def test_notes_seed001_stacked_rnn():
    # seed 001, "RNN 모델링 관련 옵션" (only the import changed), small data
    X_test = np.linspace(0, 1, 20, dtype="float32").reshape(4, 5, 1)
    model_4 = models.Sequential(name="Stackd_RNN")
    model_4.add(
        layers.SimpleRNN(
            3,  # 노드 개수 똑같이
            input_shape=(5, 1),
            return_sequences=True,
        )
    )  # 스택 사용 시 True
    model_4.add(
        layers.SimpleRNN(
            3,  # 노드 개수 똑같이
            input_shape=(5, 1),
            return_sequences=False,
        )
    )
    model_4.add(layers.Dense(1))

    model_4.compile(loss="mae", optimizer="adam", metrics=["accuracy"])

    out = model_4.predict(X_test[0].reshape(1, 5, 1))
    assert out.shape == (1, 1) and out.dtype == np.float32
    text = _summary(model_4)
    assert 'Model: "Stackd_RNN"' in text
    assert [(r[2], r[3]) for r in _rows(text)] == [
        ("(None, 5, 3)", 15),
        ("(None, 3)", 21),
        ("(None, 1)", 4),
    ]
    # return_sequences with Node=1 and input_shape=(5, 1): 5 outputs vs 1
    seq = models.Sequential([layers.SimpleRNN(1, input_shape=(5, 1), return_sequences=True)])
    last = models.Sequential([layers.SimpleRNN(1, input_shape=(5, 1))])
    assert seq.predict(X_test[:1], verbose=0).shape == (1, 5, 1)
    assert last.predict(X_test[:1], verbose=0).shape == (1, 1)


def test_timeseries_window_model():
    series = np.sin(np.arange(120) * 0.3).astype("float32")[:, None]
    window = 5
    ds = utils.timeseries_dataset_from_array(
        series, series[window:], sequence_length=window, batch_size=16
    )
    x, y = ds.as_numpy()
    assert x.shape == (115, 5, 1) and y.shape == (115, 1)
    np.testing.assert_array_equal(x[3, :, 0], series[3:8, 0])
    np.testing.assert_array_equal(y[3], series[8])  # the value right after the window
    model = Sequential([layers.SimpleRNN(8, input_shape=(window, 1)), layers.Dense(1)])
    model.compile(loss="mse", optimizer="adam")
    hist = model.fit(ds, epochs=8, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.predict(ds, verbose=0).shape == (115, 1)


# ---------------------------------------------------------------- summary / build
def test_summary_unbuilt_and_lazy_build():
    model = Sequential([layers.Dense(4), layers.Dense(1)])
    text = _summary(model)
    assert "0 (unbuilt)" in text and "?" in text
    with pytest.raises(ValueError, match="not built"):
        model.count_params()
    model.predict(np.zeros((2, 3), np.float32), verbose=0)
    assert model.count_params() == 3 * 4 + 4 + 4 + 1
    assert [r[2] for r in _rows(_summary(model))] == ["(None, 4)", "(None, 1)"]


def test_summary_with_input_and_wrappers():
    model = Sequential(
        [
            Input((6, 3)),
            layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
            layers.TimeDistributed(layers.Dense(2)),
            layers.Flatten(),
            layers.RepeatVector(2),
            layers.GRU(3, reset_after=False),
            layers.Dropout(0.2),
            layers.Activation("softmax"),
        ]
    )
    rows = _rows(_summary(model))
    assert [r[2] for r in rows] == [
        "(None, 6, 8)",
        "(None, 6, 2)",
        "(None, 12)",
        "(None, 2, 12)",
        "(None, 3)",
        "(None, 3)",
        "(None, 3)",
    ]
    assert [r[3] for r in rows] == [
        2 * 4 * (3 * 4 + 4 * 4 + 4),
        8 * 2 + 2,
        0,
        0,
        3 * (12 * 3 + 3 * 3 + 3),
        0,
        0,
    ]
    assert sum(r[3] for r in rows) == model.count_params()
    assert model.predict(np.zeros((2, 6, 3)), verbose=0).shape == (2, 3)


def test_non_trainable_counts():
    model = Sequential([layers.Embedding(10, 4, input_length=3), layers.Flatten(), layers.Dense(1)])
    model.layers[0].trainable = False
    assert _totals(_summary(model)) == [40 + 13, 13, 40]
    model.compile("sgd", "mse")
    before = model.layers[0].get_weights()[0].copy()
    model.fit(np.ones((4, 3), int), np.ones((4, 1)), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], before)


# ---------------------------------------------------------------- functional API
def test_encoder_decoder_functional():
    enc_in = Input(shape=(None, 5))
    _, h, c = layers.LSTM(8, return_state=True)(enc_in)
    dec_in = Input(shape=(None, 4))
    dec_lstm = layers.LSTM(8, return_sequences=True, return_state=True)
    dec_out, _, _ = dec_lstm(dec_in, initial_state=[h, c])
    out = layers.Dense(4, activation="softmax")(dec_out)
    model = Model([enc_in, dec_in], out)
    rows = _rows(_summary(model))
    assert [r[1] for r in rows] == ["InputLayer", "LSTM", "InputLayer", "LSTM", "Dense"]
    assert model.count_params() == 4 * (5 * 8 + 64 + 8) + 4 * (4 * 8 + 64 + 8) + 36
    rng = np.random.default_rng(0)
    xe, xd = rng.random((6, 7, 5)), rng.random((6, 3, 4))
    yd = utils.to_categorical(rng.integers(0, 4, (6, 3)), 4)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit([xe, xd], yd, epochs=1, batch_size=3, verbose=0)
    p = model.predict([xe, xd], verbose=0)
    assert p.shape == (6, 3, 4)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    # the decoder really starts from the encoder's state: a different encoder input changes it
    p2 = model.predict([xe[::-1].copy(), xd], verbose=0)
    assert not np.allclose(p, p2)


# ---------------------------------------------------------------- training
def test_fit_progress_line_and_history(capsys):
    x = np.random.default_rng(0).random((40, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    model = Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out
    assert re.search(
        r"Epoch 1/2\n3/3 - \d+s - \d+(ms|us|s)/step - loss: \d\.\d{4} - mae: "
        r"\d\.\d{4} - val_loss: \d\.\d{4} - val_mae: \d\.\d{4}",
        out,
    ), out
    assert len(hist.history["val_mae"]) == 2
    # the logged loss of an epoch is the sample-weighted mean of its batches' losses; the
    # validation loss equals evaluate's
    assert hist.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x, y, verbose=0)[0], rel=1e-6
    )


def test_fit_reduces_loss_and_evaluate_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = Sequential(
        [
            layers.Dense(8, activation="relu", input_shape=(4,)),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    ref = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    assert loss == pytest.approx(ref, rel=1e-5)
    assert acc == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))


@pytest.mark.parametrize(
    "loss,y_kind",
    [("categorical_crossentropy", "onehot"), ("sparse_categorical_crossentropy", "index")],
)
def test_classification_losses_match_numpy(loss, y_kind):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3)).astype("float32")
    idx = rng.integers(0, 4, 10)
    y = utils.to_categorical(idx, 4) if y_kind == "onehot" else idx
    model = Sequential([layers.Dense(4, activation="softmax", input_shape=(3,))])
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    ev, acc = model.evaluate(x, y, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    assert ev == pytest.approx(-np.mean(np.log(np.clip(p[np.arange(10), idx], 1e-7, 1))), rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(1) == idx))
    # from_logits with raw scores equals the softmax version
    lin = Sequential([layers.Dense(4, input_shape=(3,))])
    lin.set_weights(model.get_weights())
    lossobj = (
        keras.losses.CategoricalCrossentropy
        if y_kind == "onehot"
        else keras.losses.SparseCategoricalCrossentropy
    )(from_logits=True)
    lin.compile(optimizer="sgd", loss=lossobj)
    assert lin.evaluate(x, y, verbose=0) == pytest.approx(ev, rel=1e-5)


def test_regression_losses_and_metrics():
    y = np.array([[1.0], [2.0], [4.0]], np.float32)
    p = mg.tensor([[1.5], [2.0], [3.0]])
    assert float(keras.losses.get("mae")(y, p).data) == pytest.approx(0.5)
    assert float(keras.losses.get("mse")(y, p).data) == pytest.approx((0.25 + 1) / 3)
    assert float(keras.losses.get("mse")(y[:, 0], p).data) == pytest.approx((0.25 + 1) / 3)
    m = keras.metrics.get("mae")
    m.update_state(y, p.data)
    assert m.result() == pytest.approx(0.5)


def test_loss_names_are_keras_names():
    # Keras's default names (what compile/fit logs and metrics see), overridable by name=
    assert keras.losses.get("mse").name == "mean_squared_error"
    assert keras.losses.get("mae").name == "mean_absolute_error"
    assert keras.losses.BinaryCrossentropy().name == "binary_crossentropy"
    assert keras.losses.CategoricalCrossentropy().name == "categorical_crossentropy"
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert sparse.name == "sparse_categorical_crossentropy" and sparse.from_logits
    assert keras.losses.MeanSquaredError(name="l2").name == "l2"

    def huber(y_true, y_pred):
        return y_pred

    assert keras.losses.get(huber).name == "huber"


def test_optimizer_defaults_and_adam_rule():
    assert keras.optimizers.get("adam").epsilon == 1e-7
    assert keras.optimizers.get("adam").learning_rate == 0.001
    assert keras.optimizers.get("rmsprop").rho == 0.9
    assert keras.optimizers.get("sgd").learning_rate == 0.01
    # Keras's Adam: p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps), on a tiny gradient
    # where the placement of eps matters
    p = keras.layer.Variable(np.array([1.0, -2.0], np.float32))
    opt = keras.optimizers.Adam(learning_rate=0.1, epsilon=1e-3)
    m = v = np.zeros(2)
    ref = p.data.astype(np.float64).copy()
    for t in range(1, 4):
        g = np.array([1e-3, -2e-3]) * t
        p.grad = g.astype(np.float32)
        opt.apply([p])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref -= 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-3)
        np.testing.assert_allclose(p.data, ref, rtol=1e-5)
    # Keras's RMSprop: p -= lr g / sqrt(v + eps)
    q = keras.layer.Variable(np.array([1.0], np.float32))
    r = keras.optimizers.RMSprop(learning_rate=0.1, epsilon=1e-2)
    q.grad = np.array([0.1], np.float32)
    r.apply([q])
    assert q.data[0] == pytest.approx(1 - 0.1 * 0.1 / np.sqrt(0.1 * 0.01 + 1e-2), rel=1e-6)


def test_callbacks(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 2)).astype("float32")
    y = x @ np.array([[1.0], [-1.0]], np.float32)
    model = Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    # no progress at lr 0: EarlyStopping stops after `patience` epochs without improvement
    es = callbacks.EarlyStopping(monitor="loss", patience=2)
    h = model.fit(x, y, epochs=20, verbose=0, callbacks=[es])
    assert len(h.history["loss"]) == 3
    # ReduceLROnPlateau lowers the learning rate
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-9), loss="mse")
    rl = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[rl])
    assert model.optimizer.learning_rate < 1e-9
    # ModelCheckpoint writes the best weights
    model.compile(optimizer="sgd", loss="mse")
    path = tmp_path / "best.weights.npz"
    ck = callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[ck])
    assert path.exists()
    with pytest.raises(ValueError, match=".weights.npz"):
        callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))

    class Counter(callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.batches, self.epochs = 0, 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            assert "loss" in logs

    c = Counter()
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[c])
    assert (c.batches, c.epochs) == (8, 2)


def test_save_load_get_set_weights(tmp_path):
    model = Sequential([layers.Embedding(20, 4, input_length=5), layers.GRU(3), layers.Dense(2)])
    x = np.random.default_rng(0).integers(0, 20, (3, 5))
    before = model.predict(x, verbose=0)
    path = tmp_path / "m.weights.npz"
    model.save_weights(str(path))
    with open(path, "rb") as f:
        raw = f.read(2)
    assert raw == b"PK"  # an npz (zip) archive, no pickle
    keras.clear_session()
    other = Sequential([layers.Embedding(20, 4, input_length=5), layers.GRU(3), layers.Dense(2)])
    assert not np.allclose(other.predict(x, verbose=0), before)
    other.load_weights(str(path))
    np.testing.assert_allclose(other.predict(x, verbose=0), before, rtol=1e-6)
    w = model.get_weights()
    assert [a.shape for a in w] == [(20, 4), (4, 9), (3, 9), (2, 9), (3, 2), (2,)]
    with pytest.raises(ValueError, match="expects 6 weight arrays, got 5"):
        other.set_weights(w[:5])
    bad = list(w)
    bad[3] = np.zeros((9,))
    snapshot = other.get_weights()
    with pytest.raises(ValueError, match=r"shape \(2, 9\)"):
        other.set_weights(bad)
    for a, b in zip(other.get_weights(), snapshot):  # nothing half-written
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=".weights.npz"):
        model.save_weights(str(tmp_path / "m.weights.h5"))


# ---------------------------------------------------------------- masks through a model
def test_mask_zero_with_pre_padding_ignores_padding():
    seqs = [[3, 4, 5], [6, 7], [8]]
    x = utils.pad_sequences(seqs, maxlen=6)  # padding='pre' by default
    np.testing.assert_array_equal(x[1], [0, 0, 0, 0, 6, 7])
    for rnn in (layers.SimpleRNN, layers.LSTM, layers.GRU):
        keras.clear_session()
        model = Sequential([layers.Embedding(10, 3, mask_zero=True), rnn(4)])
        full = model.predict(x, verbose=0)
        short = model.predict(utils.pad_sequences(seqs, maxlen=3), verbose=0)
        post = model.predict(utils.pad_sequences(seqs, maxlen=6, padding="post"), verbose=0)
        np.testing.assert_allclose(full, short, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(full, post, rtol=1e-5, atol=1e-6)
        # without the mask the padding changes the result
        keras.clear_session()
        nomask = Sequential([layers.Embedding(10, 3), rnn(4)])
        nomask.build((None, 6))
        nomask.set_weights(model.get_weights())
        assert not np.allclose(nomask.predict(x, verbose=0), full)


def test_bidirectional_merge_modes_and_mask():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    fwd = layers.LSTM(4, return_sequences=True)
    bwd = layers.LSTM(4, return_sequences=True, go_backwards=True)
    fwd.build((None, 5, 3))
    bwd.build((None, 5, 3))
    outs = {}
    for mode in ("concat", "sum", "mul", "ave", None):
        bi = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode=mode)
        bi.build((None, 5, 3))
        bi.built = True
        if not outs:
            w = [rng.uniform(-0.5, 0.5, a.shape).astype("float32") for a in bi.get_weights()]
            fwd.set_weights(w[:3])
            bwd.set_weights(w[3:])
            f = fwd(x, mask=mask).data
            b = bwd(x, mask=mask).data[:, ::-1]
            f = np.where(mask[:, :, None], f, 0)
            b = np.where(mask[:, :, None], b, 0)
        bi.set_weights(w)
        outs[mode] = bi(x, mask=mask)
    np.testing.assert_allclose(outs["concat"].data, np.concatenate([f, b], -1), atol=1e-6)
    np.testing.assert_allclose(outs["sum"].data, f + b, atol=1e-6)
    np.testing.assert_allclose(outs["mul"].data, f * b, atol=1e-6)
    np.testing.assert_allclose(outs["ave"].data, (f + b) / 2, atol=1e-6)
    np.testing.assert_allclose(outs[None][1].data, b, atol=1e-6)
    assert bi.weights[0].path.startswith("forward_lstm")
    assert bi.weights[3].path.startswith("backward_lstm")


# ---------------------------------------------------------------- helpers and bad input
def test_utils():
    np.testing.assert_array_equal(utils.pad_sequences([[1, 2, 3], [4]], maxlen=2), [[2, 3], [0, 4]])
    np.testing.assert_array_equal(
        utils.pad_sequences([[1, 2, 3]], maxlen=2, truncating="post", padding="post"), [[1, 2]]
    )
    np.testing.assert_array_equal(
        utils.to_categorical([0, 2, 1]), [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    )
    with pytest.raises(ValueError, match="padding"):
        utils.pad_sequences([[1]], padding="middle")
    tv = layers.TextVectorization(max_tokens=5, output_sequence_length=4)
    tv.adapt(["the movie was great", "the movie was bad", "the end"])
    vocab = tv.get_vocabulary()
    assert vocab[:2] == ["", "[UNK]"] and vocab[2] == "the" and len(vocab) == 5
    out = tv(["The movie, great!"]).data
    assert out.shape == (1, 4) and out[0, 0] == 2 and out[0, 3] == 0
    assert out[0, 2] == 1  # 'great' fell outside max_tokens


def test_bad_names_and_masks():
    model = Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match="unknown loss 'msee'"):
        model.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        model.compile(optimizer="sgd", loss="mse", metrics=["acuracy"])
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([layers.Dense(1, input_shape=(2,))]).fit(np.zeros((2, 2)), np.zeros((2, 1)))
    masked = Sequential(
        [layers.Embedding(10, 3, mask_zero=True, input_length=4), layers.Flatten(), layers.Dense(1)]
    )
    with pytest.raises(ValueError, match=r"'flatten' \(Flatten\) cannot take a mask"):
        masked.predict(np.array([[0, 1, 2, 3]]), verbose=0)
    with pytest.raises(ValueError, match="cannot take a mask"):
        layers.RepeatVector(2)(np.zeros((2, 3), np.float32), mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="x and y have different numbers of samples: 3 and 2"):
        model.compile("sgd", "mse")
        model.fit(np.zeros((3, 2)), np.zeros((2, 1)), verbose=0)
    with pytest.raises(IndexError, match="out of range"):
        layers.Embedding(5, 2)(np.array([[7]]))


def test_layers_take_any_sequence_length():
    rng = np.random.default_rng(6)
    lstm = layers.LSTM(3)
    assert lstm(rng.random((2, 5, 4))).shape == (2, 3)
    assert lstm(rng.random((2, 9, 4))).shape == (2, 3)  # another length: fine
    with pytest.raises(ValueError, match=r"\(None, None, 4\).*\(2, 9, 5\)"):
        lstm(rng.random((2, 9, 5)))  # another feature size: refused
    lazy = Sequential([layers.GRU(3), layers.Dense(1)])
    assert lazy.predict(rng.random((2, 5, 4)), verbose=0).shape == (2, 1)
    assert lazy.predict(rng.random((2, 7, 4)), verbose=0).shape == (2, 1)
    fixed = Sequential([layers.GRU(3, input_shape=(5, 4)), layers.Dense(1)])
    with pytest.raises(ValueError, match=r"built for input shape \(None, 5, 4\)"):
        fixed.predict(rng.random((2, 7, 4)), verbose=0)
    emb = Sequential([layers.Embedding(10, 2), layers.Flatten(), layers.Dense(1)])
    assert "0 (unbuilt)" in _summary(emb)  # Flatten needs the length
    assert emb.predict(np.ones((2, 3), int), verbose=0).shape == (2, 1)
    assert [r[3] for r in _rows(_summary(emb))] == [20, 0, 7]


def test_python_lists_as_data():
    model = Sequential([layers.Embedding(10, 2), layers.SimpleRNN(2), layers.Dense(1)])
    model.compile("sgd", "mse")
    hist = model.fit([[1, 2, 3], [4, 5, 6]], [0.0, 1.0], epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2
    assert model.predict([[1, 2, 3]], verbose=0).shape == (1, 1)
    assert isinstance(model.evaluate([[1, 2, 3]], [1.0], verbose=0), float)
