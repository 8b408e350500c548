"""Interleaved timing: every implementation of one (suite, shape) block is timed round-robin per repeat.

One *row* is one implementation: a zero-argument callable that runs one iteration (e.g. forward+backward).
:func:`measure` warms every row up, calibrates how many calls one repeat makes (so a repeat lasts at least
``min_time`` seconds and short calls are not dominated by timer noise), then runs ``repeats`` rounds; in
each round every row is timed once, starting from a different row each round (rotation), so slow drifts of
the shared machine (other jobs, frequency changes) hit all rows alike instead of whichever ran last.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Row:
    """One implementation in a benchmark block.

    Attributes:
        key: stable identifier used in the JSON and in comparisons (e.g. ``"lstmkit"``, ``"torch"``).
        label: the name printed in the table (e.g. ``"torch.nn.LSTM"``).
        fn: runs one iteration; None means the row is skipped at this shape (``note`` says why).
        note: why the row was skipped, or a remark on what it measured (e.g. a fallback).
        divisor: work items per call; times are reported per item (stream: steps per call, else 1).
    """

    key: str
    label: str
    fn: Optional[Callable[[], object]] = None
    note: str = ""
    divisor: int = 1


@dataclass
class Timing:
    """Raw result of one row: ``times`` in seconds per item (one per repeat), or ``skipped`` with a reason."""

    times: list = field(default_factory=list)
    number: int = 0
    skipped: str = ""

    @property
    def median(self) -> Optional[float]:
        """Median of ``times`` in seconds (None when skipped or empty)."""
        return statistics.median(self.times) if self.times else None

    @property
    def spread(self) -> Optional[float]:
        """``(max - min) / median`` of ``times``: 0 for steady timings, large on a busy machine."""
        return (max(self.times) - min(self.times)) / self.median if self.times and self.median else None


def _call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start


def calibrate(seconds_per_call: float, min_time: float, max_number: int = 1000) -> int:
    """Calls per repeat so that one repeat lasts at least ``min_time`` s: ``ceil(min_time / t)`` in [1, max_number].

    Example:
        >>> calibrate(0.004, 0.02)
        5
    """
    if seconds_per_call <= 0:
        return max_number
    return int(max(1, min(max_number, math.ceil(min_time / seconds_per_call))))


def measure(rows: list[Row], repeats: int, warmup: int = 1, min_time: float = 0.02) -> dict[str, Timing]:
    """Time ``rows`` interleaved; returns ``{row.key: Timing}`` (skipped rows carry the reason).

    Args:
        rows: the implementations; rows with ``fn=None`` are reported as skipped with their ``note``.
        repeats: timed rounds (>= 1); each round times every row once, rotating the starting row.
        warmup: extra untimed calls per row (>= 0); the fastest of these ``warmup + 1`` calls calibrates ``number``.
        min_time: target seconds per repeat; short calls are repeated ``number`` times within one repeat.

    A row whose warm-up raises is reported as skipped with the exception text instead of stopping the run.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    result = {row.key: Timing(skipped=row.note or "skipped") for row in rows if row.fn is None}
    active = []
    for row in rows:
        if row.fn is None:
            continue
        try:
            first = min(_call(row.fn, 1) for _ in range(warmup + 1))  # fastest untimed call calibrates
        except Exception as exc:  # an implementation that cannot run here (missing kernel, dtype...)
            result[row.key] = Timing(skipped=f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        result[row.key] = Timing(number=calibrate(first, min_time))
        active.append(row)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(active) if active else 0
            for row in active[shift:] + active[:shift]:
                timing = result[row.key]
                timing.times.append(_call(row.fn, timing.number) / (timing.number * row.divisor))
    finally:
        if was_enabled:
            gc.enable()
    return {row.key: result[row.key] for row in rows}
