"""Keras parity: Keras 3 (torch backend) models with LSTM, GRU and SimpleRNN layers predict the same as lstmkit
after weight import (per-layer conversion and whole-model from_keras)."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover
    pytest.skip("keras is not on the torch backend", allow_module_level=True)

import lstmkit.nn as lnn  # noqa: E402
from lstmkit.models.keras_import import from_keras  # noqa: E402
from lstmkit.nn.keras_weights import (keras_gru_to_torch, load_keras_gru, load_keras_lstm,  # noqa: E402
                                      load_keras_simple_rnn)

RNG = np.random.default_rng(0)


def _keras_layer(cls, units, d, **kw):
    layer = cls(units, return_sequences=True, return_state=True, **kw)
    x = RNG.standard_normal((3, 6, d)).astype("float32")
    out = layer(x)
    # make biases nonzero so their placement is tested
    ws = [w + RNG.standard_normal(w.shape).astype("float32") * 0.3 for w in layer.get_weights()]
    layer.set_weights(ws)
    out = [np.asarray(o.detach().cpu() if hasattr(o, "detach") else o) for o in layer(x)]
    return x, ws, out


def test_lstm_layer_import_matches_keras():
    x, ws, (y, h, c) = _keras_layer(keras.layers.LSTM, 5, 4)
    m = lnn.LSTM(4, 5, batch_first=True)
    load_keras_lstm(m, ws)
    with torch.no_grad():
        yt, (ht, ct) = m(torch.from_numpy(x))
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
    np.testing.assert_allclose(ht[0].numpy(), h, atol=1e-5)
    np.testing.assert_allclose(ct[0].numpy(), c, atol=1e-5)


def test_gru_layer_import_matches_keras():
    x, ws, (y, h) = _keras_layer(keras.layers.GRU, 5, 4)
    m = lnn.GRU(4, 5, batch_first=True)
    load_keras_gru(m, ws)
    with torch.no_grad():
        yt, ht = m(torch.from_numpy(x))
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
    np.testing.assert_allclose(ht[0].numpy(), h, atol=1e-5)


def test_simple_rnn_import_matches_keras():
    x, ws, (y, h) = _keras_layer(keras.layers.SimpleRNN, 5, 4)
    m = lnn.RNN(4, 5, batch_first=True)
    load_keras_simple_rnn(m, ws)
    with torch.no_grad():
        yt, ht = m(torch.from_numpy(x))
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)


def test_gru_gate_reordering_by_hand():
    h = 2
    kernel = np.concatenate([np.full((1, h), 1.0), np.full((1, h), 2.0), np.full((1, h), 3.0)], 1)  # z, r, h
    out = keras_gru_to_torch(kernel, np.zeros((h, 3 * h)), np.stack([np.arange(6.0), -np.arange(6.0)]))
    assert out["weight_ih"][:, 0].tolist() == [2.0, 2.0, 1.0, 1.0, 3.0, 3.0]  # r, z, n
    assert out["bias_ih"].tolist() == [2.0, 3.0, 0.0, 1.0, 4.0, 5.0]
    assert out["bias_hh"].tolist() == [-2.0, -3.0, -0.0, -1.0, -4.0, -5.0]
    with pytest.raises(ValueError, match="reset_after"):
        keras_gru_to_torch(kernel, np.zeros((h, 3 * h)), np.zeros(6))


def test_sequential_model_with_lstm_gru_simplernn_matches_keras():
    km = keras.Sequential([
        keras.Input((7, 3)),
        keras.layers.LSTM(6, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True)),
        keras.layers.SimpleRNN(5),
        keras.layers.Dense(2, activation="softmax"),
    ])
    for layer in km.layers:  # nonzero biases everywhere
        layer.set_weights([w + RNG.standard_normal(w.shape).astype("float32") * 0.2 for w in layer.get_weights()])
    x = RNG.standard_normal((5, 7, 3)).astype("float32")
    expected = np.asarray(km.predict(x, verbose=0))
    model = from_keras(km)
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-5)


def test_masked_embedding_model_matches_keras():
    km = keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(10, 4, mask_zero=True),
        keras.layers.LSTM(5),
        keras.layers.Dense(1),
    ])
    x = RNG.integers(1, 10, (4, 6))
    x[1, 3:] = 0  # right padding
    x[2, 5:] = 0
    expected = np.asarray(km.predict(x, verbose=0))
    model = from_keras(km)
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-5)
