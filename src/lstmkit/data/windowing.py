"""Sliding windows for forecasting that never reach past a cut-off, and the train/validation/test split.

A forecasting sample at position ``s`` uses inputs ``series[s : s+window]`` and targets
``series[s+window : s+window+horizon]``. :func:`window_starts` returns only positions whose *targets* end at or
before ``end``, so windows built with ``end = n_train`` touch nothing of the test part: every index a training
window reads (input or target) is ``< end``. :func:`sliding_windows` slices the array ``series[:end]`` (never
the full array), so the guarantee holds by construction, not by arithmetic alone; the tests poison the test
part with NaN and check that no training input or target changes.

Example::

    sp = split_points(n=100, horizon=10, val=10)        # Split(fit_end=80, train_end=90, n=100)
    X, Y = sliding_windows(y, window=20, horizon=10, end=sp.fit_end)   # training windows
    Xv, Yv = sliding_windows(y, window=20, horizon=10, end=sp.train_end, first_target=sp.fit_end)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Split:
    """Cut points of a series of length ``n``: ``[0, fit_end)`` trains the weights, ``[fit_end, train_end)`` is
    the validation part (early stopping), ``[train_end, n)`` is the test window (the last ``horizon`` points)."""

    fit_end: int
    train_end: int
    n: int


def split_points(n: int, horizon: int, val: int) -> Split:
    """Cut points for a series of length ``n``: test = last ``horizon`` points, validation = the ``val`` points
    before it."""
    if horizon < 1 or val < 0 or n - horizon - val < 1:
        raise ValueError(f"split_points: n={n} is too short for horizon={horizon} and val={val}")
    return Split(fit_end=n - horizon - val, train_end=n - horizon, n=n)


def window_starts(end: int, window: int, horizon: int, first_target: int = 0, stride: int = 1) -> np.ndarray:
    """Start positions ``s`` of windows whose targets ``[s+window, s+window+horizon)`` lie in
    ``[first_target, end)`` (inputs may start earlier than ``first_target``, never before 0)."""
    lo = max(0, first_target - window)
    hi = end - window - horizon  # last valid start, inclusive
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    return np.arange(lo, hi + 1, stride, dtype=np.int64)


def sliding_windows(series: np.ndarray, window: int, horizon: int, end: Optional[int] = None,
                    first_target: int = 0, stride: int = 1,
                    covariates: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Input/target windows of ``series`` that read only ``series[:end]``.

    Args:
        series: ``(T, K)`` (or ``(T,)``) targets.
        window: input length L; horizon: target length H.
        end: cut-off (default T): no window reads index ``>= end``.
        first_target: first index a target may start at (validation windows: the validation start).
        stride: step between window starts.
        covariates: optional ``(T, C)`` extra inputs, appended to the input features.
    Returns:
        ``X`` of shape ``(N, L, K + C)`` and ``Y`` of shape ``(N, H, K)``.
    """
    series = np.asarray(series)
    if series.ndim == 1:
        series = series[:, None]
    end = len(series) if end is None else int(end)
    if end > len(series):
        raise ValueError(f"sliding_windows: end={end} is past the series length {len(series)}")
    visible = series[:end]
    feats = visible if covariates is None else np.concatenate([visible, np.asarray(covariates)[:end]], axis=1)
    starts = window_starts(end, window, horizon, first_target, stride)
    if len(starts) == 0:
        return (np.zeros((0, window, feats.shape[1]), dtype=series.dtype),
                np.zeros((0, horizon, series.shape[1]), dtype=series.dtype))
    idx_in = starts[:, None] + np.arange(window)[None, :]
    idx_out = starts[:, None] + window + np.arange(horizon)[None, :]
    return feats[idx_in], visible[idx_out]
