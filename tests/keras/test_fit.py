"""compile/fit/evaluate/predict: every loss learns, History keys, callbacks on crafted curves, input checks."""
import csv

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lstmkit.layers import GRU, LSTM, Dense, Embedding
from lstmkit.models import Sequential, load_model
from lstmkit.train import (CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, ReduceLROnPlateau,
                           TerminateOnNaN)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((96, 6, 2)).astype("float32")
S = X[:, :, 0].sum(1)


def _targets(loss):
    if loss in ("binary_crossentropy",):
        return (S > 0).astype("float32"), Dense(1, activation="sigmoid")
    if loss == "categorical_crossentropy":
        return np.eye(3, dtype="float32")[np.digitize(S, [-1, 1])], Dense(3, activation="softmax")
    if loss == "sparse_categorical_crossentropy":
        return np.digitize(S, [-1, 1]), Dense(3, activation="softmax")
    return (S / 3)[:, None].astype("float32"), Dense(1)


@pytest.mark.parametrize("loss", ["mse", "mean_squared_error", "mae", "huber", "binary_crossentropy",
                                  "categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_fit_lowers_the_loss(loss):
    torch.manual_seed(0)
    y, head = _targets(loss)
    model = Sequential([LSTM(12, input_shape=(6, 2)), head])
    model.compile(optimizer="adam", loss=loss, learning_rate=0.02)
    before = model.evaluate(X, y, verbose=0)
    model.fit(X, y, epochs=8, batch_size=16, verbose=0)
    after = model.evaluate(X, y, verbose=0)
    assert after < 0.7 * before, (before, after)


def test_history_keys_and_evaluate_shapes_as_keras():
    y = (S > 0).astype("float32")
    model = Sequential([GRU(4, input_shape=(6, 2)), Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy", "mae"])
    h = model.fit(X, y, epochs=2, validation_split=0.25, verbose=0)
    assert list(h.history) == ["loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae"]
    assert all(len(v) == 2 for v in h.history.values()) and h.epoch == [0, 1]
    res = model.evaluate(X, y, verbose=0)
    assert isinstance(res, list) and len(res) == 3
    d = model.evaluate(X, y, verbose=0, return_dict=True)
    assert list(d) == ["loss", "accuracy", "mae"]
    # accuracy is the fraction of thresholded predictions equal to y (independent computation)
    p = model.predict(X)
    assert d["accuracy"] == pytest.approx(float(((p[:, 0] > 0.5) == (y > 0.5)).mean()), abs=1e-6)
    bce = -np.mean(y * np.log(np.clip(p[:, 0], 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p[:, 0], 1e-7, 1)))
    assert d["loss"] == pytest.approx(bce, rel=1e-4)


def test_sample_weight_and_class_weight_weight_the_loss():
    y = (S / 3)[:, None].astype("float32")
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("sgd", "mse")
    w = RNG.uniform(0, 2, len(X))
    p = model.predict(X)
    expected = float(np.sum(w * (p[:, 0] - y[:, 0]) ** 2) / len(X))
    assert model.evaluate(X, y, sample_weight=w, verbose=0) == pytest.approx(expected, rel=1e-5)
    yb = (S > 0).astype("float32")
    model.compile("sgd", "binary_crossentropy")
    l1 = model.train_on_batch(X, yb, class_weight={0: 1.0, 1: 1.0})
    assert np.isfinite(l1)


def test_dataloader_input_equals_arrays():
    y = (S / 3)[:, None].astype("float32")

    def run(use_loader):
        torch.manual_seed(3)
        model = Sequential([LSTM(4, input_shape=(6, 2)), Dense(1)])
        model.compile("adam", "mse")
        if use_loader:
            model.fit(DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=32),
                      epochs=2, verbose=0)
        else:
            model.fit(X, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        return model.predict(X)
    np.testing.assert_allclose(run(True), run(False), atol=1e-6)


def _crafted(values):
    """A callback that replaces val_loss by a crafted curve (placed before the callback under test)."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(val_loss=values[epoch]))


def test_early_stopping_stops_at_the_right_epoch_and_restores_best():
    y = (S / 3)[:, None].astype("float32")
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse")
    curve = [1.0, 0.8, 0.9, 0.85, 0.7, 0.6, 0.5, 0.4]  # best at epoch 1, two epochs without improvement -> stop at 3
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        {k: v.clone() for k, v in model.state_dict().items()}))
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = model.fit(X, y, epochs=8, verbose=0, validation_split=0.2, callbacks=[_crafted(curve), keep, es])
    assert es.stopped_epoch == 3 and h.epoch == [0, 1, 2, 3]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k])


def test_early_stopping_min_delta_and_max_mode():
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse")
    y = (S / 3)[:, None].astype("float32")
    curve = [0.5, 0.55, 0.551, 0.9]  # in max mode with min_delta 0.01: improves at 1, not at 2 -> stop at 2
    es = EarlyStopping(monitor="val_loss", mode="max", min_delta=0.01, patience=1)
    h = model.fit(X, y, epochs=4, verbose=0, validation_split=0.2, callbacks=[_crafted(curve), es])
    assert es.stopped_epoch == 2 and len(h.epoch) == 3


def test_model_checkpoint_keeps_only_the_best(tmp_path):
    y = (S / 3)[:, None].astype("float32")
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse")
    curve = [0.9, 0.5, 0.7, 0.4, 0.8]
    preds = []
    keep = LambdaCallback(on_epoch_end=lambda e, logs: preds.append(model.predict(X)))
    ck = ModelCheckpoint(tmp_path / "best", monitor="val_loss", save_best_only=True)
    model.fit(X, y, epochs=5, verbose=0, validation_split=0.2, callbacks=[_crafted(curve), keep, ck])
    best = load_model(tmp_path / "best")
    np.testing.assert_array_equal(best.predict(X), preds[3])
    ModelCheckpoint(tmp_path / "ep{epoch:02d}", monitor="val_loss")
    model.fit(X, y, epochs=2, verbose=0, validation_split=0.2,
              callbacks=[ModelCheckpoint(str(tmp_path / "ep{epoch:02d}"), save_best_only=False)])
    assert (tmp_path / "ep01" / "config.json").exists() and (tmp_path / "ep02" / "config.json").exists()


def test_reduce_lr_csv_logger_terminate_on_nan(tmp_path):
    y = (S / 3)[:, None].astype("float32")
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse")
    rl = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
    log = tmp_path / "log.csv"
    model.fit(X, y, epochs=3, verbose=0, validation_split=0.2,
              callbacks=[_crafted([1.0, 1.0, 1.0]), rl, CSVLogger(log)])
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    rows = list(csv.DictReader(open(log)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and "val_loss" in rows[0]
    bad = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    bad.compile("sgd", lambda yt, yp: (yp * float("nan")).mean())
    h = bad.fit(X, y, epochs=3, verbose=0, callbacks=[TerminateOnNaN()])
    assert len(h.epoch) <= 1


def test_progress_output_by_verbosity(capsys):
    y = (S / 3)[:, None].astype("float32")
    model = Sequential([LSTM(3, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse", metrics=["mae"])
    model.fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(X, y, epochs=2, verbose=2)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2") and "loss:" in lines[0] and "mae:" in lines[0]
    model.fit(X, y, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "loss=" in out and "batch" in out


def test_predict_free_time_dimension_and_on_batch_helpers():
    model = Sequential([LSTM(4, return_sequences=True, input_shape=(None, 2)), LSTM(2), Dense(1)])
    assert model.predict(RNG.standard_normal((3, 11, 2)).astype("float32")).shape == (3, 1)
    assert model.predict_on_batch(X[:5]).shape == (5, 1)
    model.compile("adam", "mse")
    assert np.isfinite(model.train_on_batch(X[:8], S[:8, None]))
    assert np.isfinite(model.test_on_batch(X[:8], S[:8, None]))


# -- pre-training checks ----------------------------------------------------------------------------------------
def _clf(units=1, act="sigmoid"):
    m = Sequential([LSTM(3, input_shape=(6, 2)), Dense(units, activation=act)])
    return m


def test_check_lengths_differ():
    m = _clf()
    m.compile("adam", "binary_crossentropy")
    with pytest.raises(ValueError, match="x has 96 samples but y has 95"):
        m.fit(X, (S[:95] > 0).astype("float32"), verbose=0)


def test_check_nan_and_inf():
    m = _clf()
    m.compile("adam", "mse")
    xb = X.copy()
    xb[4, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite values \(NaN\), first at index \(4, 2, 1\)"):
        m.fit(xb, S, verbose=0)
    yb = S.copy()
    yb[0] = np.inf
    with pytest.raises(ValueError, match="y contains 1 non-finite values"):
        m.fit(X, yb, verbose=0)


def test_check_input_rank_and_features():
    m = _clf()
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="rank 2"):
        m.fit(X[:, :, 0], S, verbose=0)
    with pytest.raises(ValueError, match="axis 2 has size 3, the model expects 2"):
        m.fit(np.zeros((4, 6, 3), "float32"), S[:4], verbose=0)
    lazy = Sequential([LSTM(3), Dense(1)])  # no input_shape: checked against the first fit's shape
    lazy.compile("adam", "mse")
    lazy.fit(X, S, verbose=0)
    with pytest.raises(ValueError, match="axis 2 has size 3, the model expects 2"):
        lazy.fit(np.zeros((4, 6, 3), "float32"), S[:4], verbose=0)


def test_check_labels_outside_range_and_loss_output_mismatch():
    m = _clf(3, "softmax")
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"labels in y range over \[0, 3\].*expected labels in \[0, 2\]"):
        m.fit(X, np.arange(96) % 4, verbose=0)
    one = _clf(1, "sigmoid")
    one.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="needs one output unit per class, but the model outputs 1 unit"):
        one.fit(X, (S > 0).astype("float32"), verbose=0)
    m.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        m.fit(X, np.arange(96) % 3, verbose=0)
    b = _clf()
    b.compile("adam", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        b.fit(X, S, verbose=0)
    with pytest.raises(ValueError, match="token ids must be in"):
        e = Sequential([Embedding(5, 2), LSTM(2), Dense(1)])
        e.compile("adam", "mse")
        e.fit(np.full((4, 3), 7), np.zeros(4), verbose=0)


def test_compile_errors():
    m = _clf()
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(X, S, verbose=0)
    with pytest.raises(ValueError, match="optimizer='adamx' is not known"):
        m.compile("adamx", "mse")
    with pytest.raises(ValueError, match="loss='msee' is not known"):
        m.compile("adam", "msee")
