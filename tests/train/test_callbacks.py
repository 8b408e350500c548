"""Callbacks on crafted curves, checked against Keras 3's documented rules worked out by hand."""
import csv

import numpy as np
import pytest
import torch

from lstmkit.layers import LSTM, Dense
from lstmkit.models import Sequential, load_model
from lstmkit.train import (CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, ReduceLROnPlateau,
                           TerminateOnNaN)

RNG = np.random.default_rng(2)
X = RNG.standard_normal((32, 4, 2)).astype("float32")
Y = X[:, :, 0].sum(1, keepdims=True).astype("float32")


def _model(opt="sgd"):
    torch.manual_seed(0)
    m = Sequential([LSTM(3, input_shape=(4, 2)), Dense(1)])
    m.compile(opt, "mse")
    return m


def _curve(values, key="val_loss"):
    """Overwrites logs[key] with a crafted per-epoch value (must come before the callback under test)."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update({key: values[epoch]}))


def _snapshots(model, store):
    return LambdaCallback(on_epoch_end=lambda e, logs: store.append(
        {k: v.clone() for k, v in model.state_dict().items()}))


@pytest.mark.parametrize("curve, patience, stopped", [
    ([5, 4, 3, 2, 1, 0.5], 1, 0),           # always improving: never stops
    ([5, 4, 4, 4, 4, 4], 1, 2),             # no improvement at epoch 2 -> stop there
    ([5, 4, 4, 4, 4, 4], 3, 4),             # waits 3 epochs: 2, 3, 4
    ([5, 6, 3, 8, 9, 10], 2, 4),            # improves at 2, then 3 and 4 are worse -> stop at 4
    ([5, 6, 7, 3, 1], 2, 2),                # 1 and 2 are worse -> stop at 2 (the later 3 is never seen)
])
def test_early_stopping_epoch(curve, patience, stopped):
    m = _model()
    es = EarlyStopping(monitor="loss", patience=patience)
    h = m.fit(X, Y, epochs=len(curve), batch_size=16, verbose=0, callbacks=[_curve(curve, "loss"), es])
    assert es.stopped_epoch == stopped
    assert len(h.epoch) == (stopped + 1 if stopped else len(curve))


def test_early_stopping_restores_best_at_the_end_even_without_stopping_and_is_reusable():
    m = _model()
    snaps = []
    es = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    m.fit(X, Y, epochs=4, batch_size=16, verbose=0, validation_data=(X, Y),
          callbacks=[_curve([3, 1, 2, 2.5]), _snapshots(m, snaps), es])
    assert es.stopped_epoch == 0 and es.best_epoch == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, snaps[1][k]), k
    # reused in a second fit: starts from scratch (its best of 1.0 is forgotten)
    snaps.clear()
    m.fit(X, Y, epochs=3, batch_size=16, verbose=0, validation_data=(X, Y),
          callbacks=[_curve([9, 8, 8.5]), _snapshots(m, snaps), es])
    assert es.best == 8 and es.best_epoch == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, snaps[1][k]), k


def test_model_checkpoint_save_best_only_writes_only_improvements(tmp_path):
    m = _model()
    preds = []
    curve = [0.9, 0.5, 0.7, 0.4, 0.45]
    m.fit(X, Y, epochs=5, batch_size=16, verbose=0, validation_data=(X, Y),
          callbacks=[_curve(curve), LambdaCallback(on_epoch_end=lambda e, l: preds.append(m.predict(X))),
                     ModelCheckpoint(tmp_path / "ep{epoch:02d}", save_best_only=True),
                     ModelCheckpoint(tmp_path / "best", save_best_only=True),
                     ModelCheckpoint(tmp_path / "w.safetensors", save_best_only=True, save_weights_only=True)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "ep01", "ep02", "ep04", "w.safetensors"]
    np.testing.assert_array_equal(load_model(tmp_path / "best").predict(X), preds[3])
    np.testing.assert_array_equal(load_model(tmp_path / "ep02").predict(X), preds[1])
    fresh = _model()
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.predict(X), preds[3])


def test_reduce_lr_on_plateau_factor_cooldown_min_lr():
    m = _model()
    rl = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.002)
    h = m.fit(X, Y, epochs=8, batch_size=16, verbose=0, validation_data=(X, Y),
              callbacks=[_curve([1.0] * 8), rl])
    # Keras' rule: epoch 0 improves; waits at 1, 2 -> 0.01 -> 0.005 after epoch 2; cooldown ends at 3 (wait 1),
    # wait 2 at 4 -> 0.0025; cooldown ends at 5 (wait 1); 6 -> 0.00125 floored to min_lr 0.002; 7 wait 1.
    # The logs (and so History) carry the lr in force during each epoch, as Keras.
    np.testing.assert_allclose(h.history["learning_rate"], [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.002])
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(0.002)
    m = _model()
    m.fit(X, Y, epochs=3, batch_size=16, verbose=0, validation_data=(X, Y),
          callbacks=[_curve([1.0, 0.5, 0.25]), ReduceLROnPlateau(factor=0.1, patience=1)])
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # improving: unchanged
    m.fit(X, Y, epochs=3, batch_size=16, verbose=0, validation_data=(X, Y),
          callbacks=[_curve([1.0] * 3), ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)])
    assert m.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)  # halved after epochs 1 and 2


def test_csv_logger_rows_equal_history(tmp_path):
    m = _model()
    m.compile("adam", "mse", metrics=["mae"])
    log = tmp_path / "sub" / "log.csv"
    h = m.fit(X, Y, epochs=3, batch_size=16, verbose=0, validation_split=0.25, callbacks=[CSVLogger(log)])
    rows = list(csv.DictReader(open(log)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "mae", "val_loss", "val_mae"}
    for k, v in h.history.items():
        np.testing.assert_allclose([float(r[k]) for r in rows], v, rtol=1e-6)
    m.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=[CSVLogger(log, append=True)])
    rows = list(csv.reader(open(log)))  # appended under the existing header, as Keras (no second header)
    assert [r[0] for r in rows] == ["epoch", "0", "1", "2", "0", "1"] and len(rows[-1]) == 3
    m.fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[CSVLogger(log)])
    assert [r["epoch"] for r in csv.DictReader(open(log))] == ["0"]  # append=False starts a new file


def test_terminate_on_nan_stops_at_the_first_nan_batch(capsys):
    m = _model()
    calls = {"n": 0}

    def loss(y, p):  # finite for 5 batches, then NaN
        calls["n"] += 1
        v = ((p - y.reshape(p.shape)) ** 2).mean(1)
        return v * float("nan") if calls["n"] > 5 else v
    m.compile("sgd", loss)
    seen = []
    h = m.fit(X, Y, epochs=10, batch_size=8, verbose=0,
              callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"])),
                         TerminateOnNaN()])
    assert len(seen) == 6 and np.isnan(seen[-1]) and np.isfinite(seen[:5]).all()  # 4 batches/epoch: epoch 1, batch 1
    assert h.epoch == [0, 1]
    assert "Batch 1: invalid loss nan, terminating training" in capsys.readouterr().out
