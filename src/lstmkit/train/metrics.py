"""Keras metrics by name, as per-sample functions averaged over the epoch; keys in History are the given names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from lstmkit.train import losses as L


def binary_accuracy(y, p, threshold: float = 0.5):
    return L._per_sample((L.align(y, p) == (p > threshold).to(p.dtype)).to(p.dtype))


def categorical_accuracy(y, p):
    return L._per_sample((L.align(y, p).argmax(-1) == p.argmax(-1)).to(p.dtype))


def sparse_categorical_accuracy(y, p):
    y = y.long()
    if y.dim() == p.dim():
        y = y.squeeze(-1)
    return L._per_sample((y == p.argmax(-1)).to(p.dtype))


_FUNCS = {
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mae": L.mean_absolute_error, "mean_absolute_error": L.mean_absolute_error,
    "mse": L.mean_squared_error, "mean_squared_error": L.mean_squared_error,
    "msle": L.mean_squared_logarithmic_error, "binary_crossentropy": L.binary_crossentropy,
    "categorical_crossentropy": L.categorical_crossentropy,
    "sparse_categorical_crossentropy": L.sparse_categorical_crossentropy,
}


@dataclass
class Metric:
    """A named per-sample metric ``fn(y_true, y_pred) -> (N,)``."""
    name: str
    fn: Callable[[Tensor, Tensor], Tensor]


def _accuracy_for(loss) -> Callable:
    name = L.canonical(loss)

    def accuracy(y, p):  # Keras' "accuracy": picks the variant from the loss and the shapes
        if name == "sparse_categorical_crossentropy":
            return sparse_categorical_accuracy(y, p)
        if name == "categorical_crossentropy":
            return categorical_accuracy(y, p)
        if name == "binary_crossentropy" or p.shape[-1] == 1 or y.numel() == p.numel() and p.dim() == 1:
            return binary_accuracy(y, p)
        if y.shape == p.shape:
            return categorical_accuracy(y, p)
        return sparse_categorical_accuracy(y, p)
    return accuracy


def get(metric, loss=None) -> Metric:
    """Metric for a name ("accuracy"/"acc" adapt to the loss as in Keras) or a callable (named by __name__)."""
    if isinstance(metric, str):
        if metric in ("accuracy", "acc"):
            return Metric(metric, _accuracy_for(loss))
        if metric not in _FUNCS:
            raise ValueError(f"metric={metric!r} is not known; expected 'accuracy' or one of {sorted(_FUNCS)}")
        return Metric(metric, _FUNCS[metric])
    if callable(metric):
        return Metric(getattr(metric, "__name__", "metric"), metric)
    raise ValueError(f"metric={metric!r}: expected a metric name or a callable (y_true, y_pred)")
