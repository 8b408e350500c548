"""Keras losses by name, as per-sample functions ``loss(y_true, y_pred) -> (N,)`` on model outputs.

Losses receive what the model outputs (probabilities after a sigmoid/softmax, as in Keras) and clip them to
[1e-7, 1 - 1e-7] before taking logs, as Keras does. The batch loss is ``sum(w_i * l_i) / N`` (Keras'
"sum_over_batch_size"), with w the sample/class weights (1 by default).

| name (aliases) | per-sample value |
|---|---|
| mse, mean_squared_error | mean((y - p)^2) over non-batch axes |
| mae, mean_absolute_error | mean(abs(y - p)) |
| huber, huber_loss | mean(0.5 e^2 if abs(e) <= 1 else abs(e) - 0.5) |
| binary_crossentropy | mean(-(y log p + (1-y) log(1-p))) |
| categorical_crossentropy | -sum(y log(p / sum p)) over classes (y one-hot) |
| sparse_categorical_crossentropy | -log p[y] (y integer labels) |
| msle, mean_squared_logarithmic_error | mean((log1p(y) - log1p(p))^2) |
| log_cosh, logcosh | mean(log cosh(p - y)) |
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

EPS = 1e-7


def _per_sample(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).mean(1) if v.dim() > 1 else v


def align(y: Tensor, p: Tensor) -> Tensor:
    """y reshaped like p when they hold the same number of values per sample (e.g. (N,) vs (N, 1))."""
    if y.shape != p.shape and y.numel() == p.numel():
        y = y.reshape(p.shape)
    if y.shape != p.shape:
        raise ValueError(f"targets of shape {tuple(y.shape)} do not fit the model output of shape {tuple(p.shape)}")
    return y.to(p.dtype)


def mean_squared_error(y, p):
    return _per_sample((p - align(y, p)) ** 2)


def mean_absolute_error(y, p):
    return _per_sample((p - align(y, p)).abs())


def huber(y, p, delta: float = 1.0):
    return _per_sample(nn.functional.huber_loss(p, align(y, p), reduction="none", delta=delta))


def mean_squared_logarithmic_error(y, p):
    return _per_sample((torch.log1p(align(y, p).clamp(min=0)) - torch.log1p(p.clamp(min=0))) ** 2)


def log_cosh(y, p):
    e = p - align(y, p)
    return _per_sample(e + nn.functional.softplus(-2 * e) - torch.log(torch.tensor(2.0, dtype=e.dtype)))


def binary_crossentropy(y, p):
    y = align(y, p)
    p = p.clamp(EPS, 1 - EPS)
    return _per_sample(-(y * torch.log(p) + (1 - y) * torch.log1p(-p)))


def categorical_crossentropy(y, p):
    y = align(y, p)
    p = (p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return _per_sample(-(y * torch.log(p)).sum(-1))


def sparse_categorical_crossentropy(y, p):
    y = y.long()
    if y.dim() == p.dim():  # (N, 1) labels as Keras accepts
        y = y.squeeze(-1)
    p = (p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return _per_sample(-torch.log(p.gather(-1, y.unsqueeze(-1)).squeeze(-1)))


LOSSES = {
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "huber": huber, "huber_loss": huber,
    "msle": mean_squared_logarithmic_error, "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "log_cosh": log_cosh, "logcosh": log_cosh,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}


def get(loss) -> Callable[[Tensor, Tensor], Tensor]:
    """Loss function for a Keras name, a torch loss module (called as ``module(y_pred, y_true)``), or a callable
    ``(y_true, y_pred)`` returning per-sample values or a scalar."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not known; expected one of {sorted(LOSSES)} or a callable")
        return LOSSES[loss]
    if isinstance(loss, nn.Module):
        return lambda y, p: loss(p, y)
    if callable(loss):
        return loss
    raise ValueError(f"loss={loss!r}: expected a Keras loss name or a callable (y_true, y_pred) -> loss")


def canonical(loss) -> str:
    """The canonical name of a loss (function or name) for input checks, or '' for custom ones."""
    fn = LOSSES.get(loss) if isinstance(loss, str) else loss
    return getattr(fn, "__name__", "") if fn in LOSSES.values() else ""
