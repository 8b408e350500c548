"""Task metrics in NumPy: forecasting (MAE, RMSE, MAPE, sMAPE, MASE) and classification (accuracy, macro F1,
confusion matrix), plus the naive and seasonal-naive baselines.

Conventions: MAPE and sMAPE are in percent; MAPE skips points whose actual value is 0; sMAPE is
``100 * mean(2|y - f| / (|y| + |f|))`` with 0/0 counted as 0; MASE divides the MAE by the in-sample MAE of the
seasonal-naive forecast ``y[t] = y[t - season]`` on the training part (Hyndman & Koehler 2006).

Example::

    mase([3, 4], [2.5, 4.5], insample=[1, 2, 3, 4, 5], season=1)   # 0.5 / 1.0 = 0.5
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def _pair(y, f):
    y = np.asarray(y, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if y.shape != f.shape:
        raise ValueError(f"actual shape {y.shape} and forecast shape {f.shape} differ")
    return y, f


def mae(y, f) -> float:
    """Mean absolute error."""
    y, f = _pair(y, f)
    return float(np.mean(np.abs(y - f)))


def rmse(y, f) -> float:
    """Root mean squared error."""
    y, f = _pair(y, f)
    return float(np.sqrt(np.mean((y - f) ** 2)))


def mape(y, f) -> float:
    """Mean absolute percentage error in percent, over points with a non-zero actual (NaN if none)."""
    y, f = _pair(y, f)
    nz = y != 0
    if not nz.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs((y[nz] - f[nz]) / y[nz])))


def smape(y, f) -> float:
    """Symmetric MAPE in percent, ``100 * mean(2|y-f| / (|y|+|f|))`` (a 0/0 term counts as 0)."""
    y, f = _pair(y, f)
    den = np.abs(y) + np.abs(f)
    term = np.where(den == 0, 0.0, 2.0 * np.abs(y - f) / np.where(den == 0, 1.0, den))
    return float(100.0 * np.mean(term))


def seasonal_scale(insample, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast (lag ``season``; lag 1 if the series is too short)."""
    x = np.asarray(insample, dtype=np.float64)
    m = season if len(x) > season else 1
    if len(x) <= m:
        raise ValueError(f"seasonal_scale: need more than {m} in-sample points, got {len(x)}")
    return float(np.mean(np.abs(x[m:] - x[:-m])))


def mase(y, f, insample, season: int = 1) -> float:
    """Mean absolute scaled error: ``mae(y, f) / seasonal_scale(insample, season)`` (NaN if the scale is 0).

    For a multivariate ``y`` of shape (H, K), pass ``insample`` of shape (T, K): each column is scaled by its own
    in-sample MAE and the result averaged over columns."""
    y, f = _pair(y, f)
    ins = np.asarray(insample, dtype=np.float64)
    if y.ndim == 2 and ins.ndim == 2:
        return float(np.mean([mase(y[:, k], f[:, k], ins[:, k], season) for k in range(y.shape[1])]))
    s = seasonal_scale(ins, season)
    return float("nan") if s == 0 else mae(y, f) / s


def forecast_metrics(y, f, insample, season: int) -> Dict[str, float]:
    """All forecasting metrics of forecast ``f`` for actual ``y`` (same shape, (H,) or (H, K))."""
    return {"MAE": mae(y, f), "RMSE": rmse(y, f), "MAPE": mape(y, f), "sMAPE": smape(y, f),
            "MASE": mase(y, f, insample, season)}


def naive_forecast(history, horizon: int) -> np.ndarray:
    """Repeat the last value: ``(horizon, K)`` from ``history`` ``(T, K)``."""
    h = np.asarray(history, dtype=np.float64)
    return np.repeat(h[-1:], horizon, axis=0)


def seasonal_naive_forecast(history, horizon: int, season: int) -> np.ndarray:
    """Repeat the last season: value at step ``i`` is ``history[T - season + (i mod season)]``."""
    h = np.asarray(history, dtype=np.float64)
    if season <= 1 or len(h) < season:
        return naive_forecast(h, horizon)
    last = h[-season:]
    return np.stack([last[i % season] for i in range(horizon)], axis=0)


# -- classification -----------------------------------------------------------------------------------------
def confusion_matrix(y, p, n_classes: int) -> np.ndarray:
    """``(C, C)`` counts: row = true class index, column = predicted class index."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, q in zip(np.asarray(y, dtype=np.int64), np.asarray(p, dtype=np.int64)):
        cm[t, q] += 1
    return cm


def accuracy(y, p) -> float:
    """Fraction of predictions equal to the true class."""
    y, p = np.asarray(y), np.asarray(p)
    return float(np.mean(y == p)) if len(y) else float("nan")


def macro_f1(y, p, n_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2PR/(P+R) (a class with no true and no predicted item is skipped;
    one with P+R = 0 counts as 0)."""
    cm = confusion_matrix(y, p, n_classes)
    scores: List[float] = []
    for c in range(n_classes):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def classification_metrics(y, p, n_classes: int) -> Dict[str, float]:
    """accuracy and macro F1 of predicted class indices ``p`` for true indices ``y``."""
    return {"accuracy": accuracy(y, p), "macro_f1": macro_f1(y, p, n_classes)}


def pinball(y, q, level: float) -> float:
    """Mean quantile (pinball) loss of quantile forecast ``q`` at ``level`` in (0, 1)."""
    y, q = _pair(y, q)
    d = y - q
    return float(np.mean(np.maximum(level * d, (level - 1) * d)))


def coverage(y, lo, hi) -> float:
    """Fraction of actual values inside ``[lo, hi]``."""
    y, lo = _pair(y, lo)
    return float(np.mean((y >= lo) & (y <= np.asarray(hi, dtype=np.float64))))


__all__: Sequence[str] = ["mae", "rmse", "mape", "smape", "mase", "seasonal_scale", "forecast_metrics",
                          "naive_forecast", "seasonal_naive_forecast", "confusion_matrix", "accuracy", "macro_f1",
                          "classification_metrics", "pinball", "coverage"]
