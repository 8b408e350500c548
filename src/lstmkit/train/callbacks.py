"""Keras callbacks: History, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, CSVLogger, LambdaCallback,
TerminateOnNaN and BackupAndRestore (crash-safe resume; the fit loop does its saving and restoring)."""
from __future__ import annotations

import copy
import csv
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from lstmkit.train import distributed as dist


class Callback:
    """Base class: override any of the hooks; ``self.model`` is set by fit. ``logs`` maps names to floats."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass

    def get_state(self) -> dict:
        """JSON-able state that BackupAndRestore saves so a resumed fit continues exactly (default none)."""
        return {}

    def set_state(self, state: dict) -> None:
        pass


class History(Callback):
    """Records ``logs`` of each epoch: ``history.history['loss'][i]`` is epoch i's loss; ``history.epoch`` the
    epoch indices."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def get_state(self):
        return {"history": self.history, "epoch": self.epoch}

    def set_state(self, state):
        self.history, self.epoch = state["history"], state["epoch"]


def _mode_op(mode: str, monitor: str):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode={mode!r}; expected 'auto', 'min' or 'max'")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class _Monitor(Callback):
    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        self.monitor, self.mode, self.min_delta = monitor, _mode_op(mode, monitor), abs(min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, value, reference) -> bool:
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def _value(self, logs):
        v = (logs or {}).get(self.monitor)
        if v is None:
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r} is not in the logs; available: "
                             f"{sorted(logs or {})} (use validation data for 'val_*')")
        return float(v)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args: monitor="val_loss", min_delta=0, patience=0, mode="auto", baseline=None,
    restore_best_weights=False (at the end of training load the weights of the best epoch, as Keras 3),
    start_from_epoch=0. A backup (BackupAndRestore) keeps wait/best/best_epoch but not the best weights.
    ``stopped_epoch`` is the epoch index at which training stopped (0 if it did not).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.baseline = patience, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, 0, 0, None

    def on_train_begin(self, logs=None):  # an instance can be reused across fits, as in Keras
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, 0, 0, None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = copy.deepcopy(self.model.state_dict()), epoch
        self.wait += 1  # Keras 3's order: count, then reset on improvement
        if self._improved(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(self.model.state_dict())
            if self.baseline is None or self._improved(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):  # Keras 3: restore the best epoch's weights whether or not it stopped
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def get_state(self):
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]


class ModelCheckpoint(_Monitor):
    """Save the model (``save_model`` directory, or weights only) at the end of epochs.

    Args: filepath (may contain ``{epoch}`` and log keys, e.g. "ckpt/ep{epoch:02d}"; epoch counts from 1),
    monitor="val_loss", save_best_only=False (write only when ``monitor`` improves, so a fixed filepath always
    holds the best model), save_weights_only=False (one safetensors file), mode="auto". Only rank 0 writes.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, 0.0)
        self.filepath, self.save_best_only, self.save_weights_only = str(filepath), save_best_only, save_weights_only
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        self.verbose = verbose

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value, self.best):
                return
            self.best = value
        if not dist.is_rank0():
            return
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")

    def get_state(self):
        return {"best": self.best}

    def set_state(self, state):
        self.best = state["best"]


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs.

    Args: monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4, cooldown=0, min_lr=0.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor={factor!r}; expected a value in (0, 1)")
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.wait = self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        opt = self.model.optimizer
        logs["learning_rate"] = float(opt.param_groups[0]["lr"])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value, self.best):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                for g in opt.param_groups:
                    g["lr"] = max(g["lr"] * self.factor, self.min_lr)
                self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best, self.wait, self.cooldown_counter = state["best"], state["wait"], state["cooldown_counter"]


class CSVLogger(Callback):
    """Append one CSV row per epoch (epoch, then the log keys) to ``filename``; rank 0 only."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = str(filename), separator, append
        self.keys, self._fresh = None, not append

    def on_train_begin(self, logs=None):
        self.keys = None
        self._fresh = not self.append  # the old file is replaced at the first row (not now: a resume keeps it)

    def get_state(self):
        exists = os.path.exists(self.filename) and not self._fresh
        return {"keys": self.keys, "size": os.path.getsize(self.filename) if exists else 0}

    def set_state(self, state):
        """On resume: the rows up to the backup, without any written after it by the interrupted run."""
        self.keys, self._fresh = state["keys"], False
        if dist.is_rank0():
            Path(self.filename).parent.mkdir(parents=True, exist_ok=True)
            with open(self.filename, "a+b") as f:
                f.truncate(state["size"])

    def on_epoch_end(self, epoch, logs=None):
        if not dist.is_rank0():
            return
        logs = logs or {}
        if self._fresh and os.path.exists(self.filename):
            os.unlink(self.filename)
        self._fresh = False
        new = not os.path.exists(self.filename) or os.path.getsize(self.filename) == 0
        if self.keys is None:
            self.keys = sorted(logs)
        Path(self.filename).parent.mkdir(parents=True, exist_ok=True)
        with open(self.filename, "a", newline="") as f:
            w = csv.writer(f, delimiter=self.separator)
            if new:
                w.writerow(["epoch"] + self.keys)
            w.writerow([epoch] + [logs.get(k, "") for k in self.keys])


class LambdaCallback(Callback):
    """Callback from functions: on_epoch_begin/on_epoch_end(epoch, logs), on_train_batch_begin/_end(batch, logs)
    (on_batch_begin/_end accepted too), on_train_begin/on_train_end(logs)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, on_batch_begin=None, on_batch_end=None):
        super().__init__()
        noop2 = lambda a, b: None  # noqa: E731
        noop1 = lambda a: None  # noqa: E731
        self.on_epoch_begin = on_epoch_begin or noop2
        self.on_epoch_end = on_epoch_end or noop2
        self.on_train_begin = on_train_begin or noop1
        self.on_train_end = on_train_end or noop1
        self.on_train_batch_begin = on_train_batch_begin or on_batch_begin or noop2
        self.on_train_batch_end = on_train_batch_end or on_batch_end or noop2


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class BackupAndRestore(Callback):
    """Crash-safe training state in ``backup_dir``: a fit started again with the same callback resumes where the
    last backup left off and reaches the same final weights as an uninterrupted run (CPU, same seed).

    Args: backup_dir; save_freq="epoch" (after every epoch) or an int N (also every N batches, so a crash
    mid-epoch loses at most N batches); delete_checkpoint=True (remove the backup when fit completes).
    The backup holds weights, optimizer state, RNG states, the epoch's shuffle seed and position, the running
    epoch sums and every callback's state; written atomically (see :mod:`lstmkit.train.resume`).
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(f"BackupAndRestore: save_freq={save_freq!r}; expected 'epoch' or a positive int")
        self.backup_dir, self.save_freq, self.delete_checkpoint = str(backup_dir), save_freq, delete_checkpoint
