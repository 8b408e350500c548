"""Plots of the task pipelines (matplotlib, Agg backend: no display needed): forecasts with their interval band,
training curves, confusion matrices. Each function writes one PNG to ``path``."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    _save(plt, fig, path)


# -- classification ------------------------------------------------------------------------------------
def plot_confusion(path, cm: np.ndarray, labels: Sequence[str], title: str = "confusion matrix") -> None:
    """Confusion matrix ``cm`` (rows: true label, columns: predicted) with the counts written in the cells."""
    plt = _pyplot()
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if top and cm[i, j] > top / 2 else "black")
    _save(plt, fig, path)


# -- training curves (every task) ----------------------------------------------------------------------
def plot_curves(path, history: Dict[str, List[float]], title: str, xlabel: str = "epoch",
                log: bool = False) -> None:
    """Training curves: one line per ``history`` entry (name -> one value per epoch); ``log``: log y-axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, vals in history.items():
        if vals:
            ax.plot(range(1, len(vals) + 1), vals, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(plt, fig, path)
