"""Keras-style training that survives crashes and runs data-parallel: the same script alone or under torchrun.

    python examples/keras_fit.py                                   # one process
    torchrun --standalone --nproc_per_node=2 examples/keras_fit.py # DDP (gloo), 2 processes, same result

Kill it at any moment (Ctrl-C, SIGKILL, a lost machine) and start the same command again: BackupAndRestore
resumes from the last backup and ends with the weights an uninterrupted run would have.
"""
import numpy as np
import torch

from lstmkit.layers import LSTM, Dense
from lstmkit.models import Sequential, load_model
from lstmkit.train import BackupAndRestore, CSVLogger, EarlyStopping, ModelCheckpoint
from lstmkit.train import distributed as dist


def main() -> None:
    torch.manual_seed(0)  # the same seed on every rank: identical initial weights and shuffles
    t = np.arange(3000, dtype="float32")
    series = np.sin(t / 12) + 0.1 * np.random.default_rng(0).standard_normal(3000).astype("float32")
    x = np.stack([series[i:i + 24] for i in range(len(series) - 24)])[..., None]  # (N, 24, 1) windows
    y = series[24:, None]                                                          # the next value

    model = Sequential([LSTM(32, input_shape=(24, 1)), Dense(1)])
    model.compile("adam", "mse", metrics=["mae"])
    model.fit(x, y, batch_size=64, epochs=5, validation_split=0.2, verbose=2,      # batch_size: the global batch
              callbacks=[BackupAndRestore("out/backup", save_freq=10),              # a backup every 10 batches
                         ModelCheckpoint("out/best", save_best_only=True),          # rank 0 writes
                         EarlyStopping(patience=2, restore_best_weights=True),
                         CSVLogger("out/log.csv")])
    if dist.is_rank0():
        best = load_model("out/best")
        print("best model: mae on the last 500 windows", best.evaluate(x[-500:], y[-500:], verbose=0)[1])


if __name__ == "__main__":
    main()
