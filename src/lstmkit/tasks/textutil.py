"""Helpers shared by the text tasks (lm, textclass, tag): best-weights keeping, model-directory loading."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

import torch

from lstmkit.errors import UserError


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
