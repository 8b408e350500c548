"""Helpers shared by the text tasks (lm, textclass, tag): plots, best-weights keeping, model-directory loading."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lstmkit.errors import UserError


def plot_curves(path, history: Dict[str, List[float]], title: str, xlabel: str = "epoch") -> None:
    """A PNG of training curves: one line per ``history`` entry (name -> values per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, vals in history.items():
        if vals:
            ax.plot(range(1, len(vals) + 1), vals, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(path, cm: np.ndarray, labels: Sequence[str], title: str = "confusion matrix") -> None:
    """A PNG of a confusion matrix (rows: true label, columns: predicted), counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class BestKeeper:
    """Keep a copy of the weights with the best (lowest) validation score seen so far."""

    def __init__(self):
        self.best: Optional[float] = None
        self.state = None
        self.epoch = 0

    def update(self, model: torch.nn.Module, score: float, epoch: int) -> bool:
        if self.best is None or score < self.best:
            self.best, self.epoch = score, epoch
            self.state = copy.deepcopy(model.state_dict())
            return True
        return False

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def load_task_dir(model_dir, task: str):
    """(config.json dict, loaded network) of a ``task`` directory; UserError when it is another task."""
    from lstmkit.models import ModelFileError, load_model
    from lstmkit.tasks.common import task_config

    cfg = task_config(model_dir)
    if cfg["task"] != task:
        raise UserError(f"--model={str(model_dir)!r} holds a {cfg['task']!r} model, not {task!r}")
    try:
        model = load_model(Path(model_dir) / "model", compile=False)
    except ModelFileError as exc:
        raise UserError(str(exc)) from None
    model.eval()
    return cfg, model


def write_rows(path: Optional[str], header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """CSV rows to ``path`` or, when None, to stdout."""
    import csv
    import sys

    f = open(path, "w", newline="", encoding="utf-8") if path else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    finally:
        if path:
            f.close()
