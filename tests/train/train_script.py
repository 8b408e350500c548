"""A small fit used by the resume (SIGKILL) and torchrun tests; run as a script, writes final weights and logs.

Usage: python train_script.py OUT_DIR [--backup DIR] [--kill-at EPOCH,BATCH] [--epochs N] [--dropout P]
       [--verbose V] [--loader] [--stop-rank1-at EPOCH,BATCH]
Writes OUT_DIR/weights.safetensors (rank 0), OUT_DIR/history.json (rank 0), OUT_DIR/log.csv (CSVLogger, rank 0)
and OUT_DIR/samples-rank<r>.json (the training samples each rank saw per epoch).
"""
import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lstmkit.layers import LSTM, Dense, Dropout
from lstmkit.models import Sequential
from lstmkit.models.saving import save_weights_file
from lstmkit.train import BackupAndRestore, CSVLogger, EarlyStopping, LambdaCallback
from lstmkit.train import distributed as dist


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--backup")
    ap.add_argument("--kill-at")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--loader", action="store_true", help="feed a shuffling DataLoader instead of arrays")
    ap.add_argument("--stop-rank1-at", help="EPOCH,BATCH at which rank 1 alone sets model.stop_training")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 7, 3)).astype("float32")
    y = np.stack([x[:, :, 0].sum(1), x[:, -1, 1]], 1).astype("float32")
    torch.manual_seed(1234)
    model = Sequential([LSTM(8, return_sequences=True, input_shape=(7, 3)), LSTM(6), Dropout(args.dropout),
                        Dense(2)])
    model.compile("adam", "mse", metrics=["mae"], learning_rate=0.01)

    seen = {}
    epoch_now = {"e": 0}

    def count(module, inputs):  # which samples this rank trains on (training-mode forwards only)
        if module.training:
            seen.setdefault(epoch_now["e"], 0)
            seen[epoch_now["e"]] += int(inputs[0].shape[0])
    model.register_forward_pre_hook(count)

    def on_batch_end(batch, logs):
        if args.kill_at and (epoch_now["e"], batch) == tuple(int(v) for v in args.kill_at.split(",")):
            os.kill(os.getpid(), signal.SIGKILL)
        if args.stop_rank1_at and dist.rank() == 1 and \
                (epoch_now["e"], batch) == tuple(int(v) for v in args.stop_rank1_at.split(",")):
            model.stop_training = True

    cbs = [LambdaCallback(on_epoch_begin=lambda e, logs: epoch_now.update(e=e), on_train_batch_end=on_batch_end),
           EarlyStopping(monitor="loss", patience=3), CSVLogger(out / "log.csv")]
    if args.backup:
        cbs.append(BackupAndRestore(args.backup, save_freq=1))
    train = (x[:48], y[:48])
    if args.loader:
        train = (DataLoader(TensorDataset(torch.from_numpy(x[:48]), torch.from_numpy(y[:48])), batch_size=16,
                            shuffle=True), None)
    hist = model.fit(*train, batch_size=16, epochs=args.epochs, shuffle=True, validation_data=(x[48:], y[48:]),
                     callbacks=cbs, verbose=args.verbose)
    (out / f"samples-rank{dist.rank()}.json").write_text(json.dumps(seen))
    if dist.is_rank0():
        save_weights_file(model, out / "weights.safetensors")
        (out / "history.json").write_text(json.dumps(hist.history))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
