"""Plots of the task pipelines (matplotlib, Agg backend: no display needed): forecasts with their interval band,
loss curves, confusion matrices. Each function writes one PNG to ``path``."""
from __future__ import annotations

from typing import Dict, List

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- forecasting ---------------------------------------------------------------------------------------
def plot_forecast(path, series, train_end: int, fc: np.ndarray, baselines: Dict[str, np.ndarray],
                  context: int) -> None:
    """One panel per target: the last ``context`` points before the test window and the test window itself,
    the median forecast ``fc[:, k, 1]`` with its band ``fc[:, k, 0]..fc[:, k, 2]`` and the baseline forecasts
    (name -> (H, K)). ``series`` is a :class:`lstmkit.data.timeseries.Series`."""
    plt = _pyplot()

    k = series.values.shape[1]
    fig, axes = plt.subplots(k, 1, figsize=(10, 3.2 * k), squeeze=False)
    t = np.asarray(series.times)
    lo = max(0, train_end - context)
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(t[lo:], series.values[lo:, j], color="black", lw=1, label="actual")
        tt = t[train_end:train_end + len(fc)]
        ax.fill_between(tt, fc[:, j, 0], fc[:, j, -1], color="tab:blue", alpha=0.25,
                        label="LSTM 10-90% interval")
        ax.plot(tt, fc[:, j, 1], color="tab:blue", lw=1.5, label="LSTM forecast (median)")
        for (name, b), col in zip(baselines.items(), ("tab:orange", "tab:green")):
            ax.plot(tt, b[:, j], color=col, lw=1, ls="--", label=name)
        ax.axvline(t[train_end - 1], color="grey", ls=":", lw=1)
        ax.set_title(f"{series.target_names[j]}: last {len(series) - lo} of {len(series)} points; test = right of "
                     f"the dotted line")
        ax.set_xlabel(f"{series.time_col} ({series.freq})")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_loss_curves(path, hist: Dict[str, list]) -> None:
    """Training and validation loss per epoch (log scale) from ``hist["loss"]`` / ``hist["val_loss"]``."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(hist["loss"], label="training")
    ax.plot(hist["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("pinball loss (scaled)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- classification ------------------------------------------------------------------------------------
def plot_confusion(path, cm: np.ndarray, classes: List[str]) -> None:
    """Confusion matrix ``cm`` (rows true, columns predicted) with the counts written in the cells."""
    plt = _pyplot()

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2.5 + 0.5 * n, 2.2 + 0.5 * n))
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n), classes)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_classify_curves(path, hist: Dict[str, list]) -> None:
    """Training/validation loss and validation accuracy per epoch."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(hist["loss"], label="training loss")
    ax.plot(hist["val_loss"], label="validation loss")
    ax.plot(hist["val_accuracy"], label="validation accuracy")
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
