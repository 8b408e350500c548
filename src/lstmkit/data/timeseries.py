"""Load a time series table (CSV or Parquet): time column, numeric targets and covariates, frequency, gaps.

``load_series`` turns a file into a :class:`Series`: a regular, gap-free, NaN-free table ready for windowing,
plus a record of what was repaired. Rules:

* **time column**: ``time_col`` or, by default, the first column. Parsed as dates when the values are date
  strings ("1991-01", "2001-12-29 10:00") or 8-digit integers YYYYMMDD (19580329); 4-digit integers
  1000-2999 are years; other integers are plain steps (0, 1, 2... or any constant stride).
* **frequency** is inferred from the most common step between consecutive times and names the default
  season: weekly 52, monthly 12, daily 7, hourly 24, quarterly 4, anything else 1 (see :func:`season_for`).
* **gaps**: missing timestamps on the inferred grid are inserted, then missing values (empty cells, NaN) inside
  the series are filled by linear interpolation; leading and trailing rows where a target is missing are
  dropped. ``Series.repairs`` says how many of each happened (the task report shows it).
* **targets**: ``targets`` or, by default, every column other than the time column and the covariates
  (several targets make a multivariate forecast). **covariates**: extra numeric input columns.

Bad input raises :class:`lstmkit.errors.UserError` with one line naming the file, column, row or value.

Example::

    s = load_series("co2.csv")            # time column "date" (YYYYMMDD), target "co2", weekly, season 52
    s.values.shape, s.freq, s.season      # ((2284, 1), 'weekly', 52)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from lstmkit.errors import UserError

SEASONS = {"weekly": 52, "monthly": 12, "daily": 7, "hourly": 24, "quarterly": 4}


@dataclass
class Series:
    """A regular time series table.

    Attributes:
        times: the time stamps, ``pd.DatetimeIndex`` or an integer ``pd.Index`` (length T).
        values: ``(T, K)`` float64 targets; ``target_names`` their K column names.
        covariates: ``(T, C)`` float64 covariates (C may be 0); ``covariate_names`` their names.
        time_col: name of the time column; ``time_kind`` "date", "year" or "step".
        freq: "weekly", "monthly", "daily", "hourly", "quarterly", "yearly", "step" or a pandas offset string.
        step: the grid step (a ``pd.DateOffset`` / ``pd.Timedelta`` for dates, an int otherwise).
        season: the default season length for ``freq`` (see :func:`season_for`).
        repairs: counts of repairs: {"inserted_timestamps", "interpolated_values", "dropped_rows"}.
    """

    times: pd.Index
    values: np.ndarray
    covariates: np.ndarray
    target_names: List[str]
    covariate_names: List[str]
    time_col: str
    time_kind: str
    freq: str
    step: object
    season: int
    repairs: Dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times)

    def future_times(self, n: int) -> list:
        """The ``n`` time stamps after the last one, on the series' grid (as strings for dates)."""
        last = self.times[-1]
        out = []
        for i in range(1, n + 1):
            t = last + self.step * i
            out.append(t.isoformat() if hasattr(t, "isoformat") else int(t))
        return out


def season_for(freq: str) -> int:
    """Default season length of a frequency name: weekly 52, monthly 12, daily 7, hourly 24, quarterly 4,
    anything else (yearly, steps, irregular) 1."""
    return SEASONS.get(freq, 1)


def read_table(path) -> pd.DataFrame:
    """Read a CSV (any extension but .parquet/.pq) or Parquet file into a DataFrame; UserError if it is missing,
    empty or unreadable."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--data={str(path)!r}: file does not exist")
    if p.is_dir():
        raise UserError(f"--data={str(path)!r} is a directory; expected a CSV or Parquet file")
    if p.stat().st_size == 0:
        raise UserError(f"--data={str(path)!r} is empty; expected a CSV or Parquet file with a header row")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            try:
                return pd.read_parquet(p)
            except ImportError as exc:
                raise UserError(f"--data={str(path)!r}: reading Parquet needs pyarrow or fastparquet, which is "
                                f"not installed ({exc}); save the table as CSV instead") from None
        return pd.read_csv(p, skipinitialspace=True)
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"--data={str(path)!r} is not a text CSV file (cannot decode it as UTF-8)") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"--data={str(path)!r} has no columns; expected a CSV with a header row") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--data={str(path)!r} cannot be read as a table: {msg}") from None


def check_columns(df: pd.DataFrame, names: Sequence[str], flag: str, path) -> None:
    """UserError naming the first of ``names`` that is not a column of ``df`` and listing the columns."""
    for n in names:
        if n not in df.columns:
            raise UserError(f"{flag}={n!r}: no such column in {path}; columns are {list(map(str, df.columns))}")


def _numeric(col: pd.Series, name: str, path) -> np.ndarray:
    """Column as float64; UserError naming the first non-numeric cell (empty cells become NaN)."""
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna() & col.notna() & (col.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"column {name!r} of {path} has a non-numeric value {col.iloc[i]!r} in data row {i + 1}; "
                        f"expected numbers (empty cells count as missing)")
    return num.to_numpy(dtype=np.float64)


def parse_times(col: pd.Series, name: str, path):
    """Parse a time column: returns (index, kind) with kind "date", "year" or "step" (see module doc)."""
    if col.isna().any():
        i = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise UserError(f"time column {name!r} of {path} is empty in data row {i + 1}")
    if pd.api.types.is_numeric_dtype(col):
        v = col.to_numpy()
        if not np.all(np.equal(np.mod(v, 1), 0)):
            raise UserError(f"time column {name!r} of {path} holds non-integer numbers ({v[0]!r}...); expected "
                            f"dates or integer steps")
        v = v.astype(np.int64)
        if np.all((v >= 10000101) & (v <= 29991231)):
            try:
                return pd.DatetimeIndex(pd.to_datetime(v.astype(str), format="%Y%m%d")), "date"
            except ValueError:
                pass
        if np.all((v >= 1000) & (v <= 2999)):
            return pd.Index(v), "year"
        return pd.Index(v), "step"
    try:
        return pd.DatetimeIndex(pd.to_datetime(col.astype(str), format="mixed")), "date"
    except (ValueError, TypeError):
        bad = pd.to_datetime(col.astype(str), errors="coerce", format="mixed")
        i = int(np.flatnonzero(bad.isna().to_numpy())[0]) if bad.isna().any() else 0
        raise UserError(f"time column {name!r} of {path}: cannot read {col.iloc[i]!r} (data row {i + 1}) as a date "
                        f"or integer; pass --time-col to name the time column") from None


def infer_grid(times: pd.Index, kind: str):
    """(freq name, step) of sorted ``times``: the most common step between consecutive stamps."""
    if len(times) < 2:
        return "step", 1
    if kind != "date":
        d = np.diff(times.to_numpy())
        step = int(pd.Series(d).mode().iloc[0])
        return ("yearly" if kind == "year" and step == 1 else "step"), step
    delta = pd.Series(np.diff(times.to_numpy())).mode().iloc[0]
    days = delta / pd.Timedelta(days=1)
    on_month_start = bool(np.all(times.day == 1))
    on_month_end = bool(np.all(times.is_month_end))
    if 28 <= days <= 31 and (on_month_start or on_month_end):
        return "monthly", (pd.offsets.MonthBegin(1) if on_month_start else pd.offsets.MonthEnd(1))
    if 89 <= days <= 92 and (on_month_start or on_month_end):
        return "quarterly", (pd.offsets.QuarterBegin(1, startingMonth=times[0].month) if on_month_start
                             else pd.offsets.QuarterEnd(1, startingMonth=times[0].month))
    if 365 <= days <= 366 and (on_month_start or on_month_end):
        return "yearly", (pd.offsets.DateOffset(years=1))
    names = {7: "weekly", 1: "daily", 1 / 24: "hourly"}
    for d, n in names.items():
        if abs(days - d) < 1e-9:
            return n, pd.Timedelta(delta)
    return pd.tseries.frequencies.to_offset(pd.Timedelta(delta)).freqstr, pd.Timedelta(delta)


def _regular_index(times: pd.Index, kind: str, step):
    """The full grid from the first to the last stamp, or None if some stamps are off the grid."""
    if kind == "date":
        grid = pd.date_range(times[0], times[-1], freq=step)
    else:
        grid = pd.Index(np.arange(times[0], times[-1] + 1, step, dtype=np.int64))
    return grid if times.isin(grid).all() else None


def load_series(path, time_col: Optional[str] = None, targets: Optional[Sequence[str]] = None,
                covariates: Optional[Sequence[str]] = None) -> Series:
    """Load ``path`` (CSV/Parquet) as a regular, repaired :class:`Series` (see the module doc for the rules)."""
    df = read_table(path)
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise UserError(f"--data={str(path)!r} has no data rows; expected a header row and at least one row")
    df.columns = [str(c) for c in df.columns]
    covariates = list(covariates or [])
    if time_col is None:
        time_col = df.columns[0]
    check_columns(df, [time_col], "--time-col", path)
    check_columns(df, list(targets or []), "--target", path)
    check_columns(df, covariates, "--covariates", path)
    if targets:
        targets = list(targets)
    else:
        targets = [c for c in df.columns if c != time_col and c not in covariates]
        if not targets:
            raise UserError(f"{path} has no target column besides the time column {time_col!r} and covariates; "
                            f"columns are {list(df.columns)}")
    for c in targets + covariates:
        if c == time_col:
            raise UserError(f"column {c!r} is the time column; it cannot also be a target or covariate")
    if set(targets) & set(covariates):
        raise UserError(f"columns {sorted(set(targets) & set(covariates))} are both --target and --covariates")
    times, kind = parse_times(df[time_col], time_col, path)
    y = np.stack([_numeric(df[c], c, path) for c in targets], axis=1)
    x = (np.stack([_numeric(df[c], c, path) for c in covariates], axis=1) if covariates
         else np.zeros((len(df), 0)))
    order = np.argsort(times.to_numpy(), kind="stable")
    times, y, x = times[order], y[order], x[order]
    if times.has_duplicates:
        dup = times[times.duplicated()][0]
        raise UserError(f"time column {time_col!r} of {path} repeats the time {dup}; each time must appear once")
    freq, step = infer_grid(times, kind)
    repairs = {"inserted_timestamps": 0, "interpolated_values": 0, "dropped_rows": 0}
    grid = _regular_index(times, kind, step) if len(times) > 1 else None
    if grid is not None and len(grid) > len(times):
        pos = grid.get_indexer(times)
        y2 = np.full((len(grid), y.shape[1]), np.nan)
        x2 = np.full((len(grid), x.shape[1]), np.nan)
        y2[pos], x2[pos] = y, x
        repairs["inserted_timestamps"] = len(grid) - len(times)
        times, y, x = grid, y2, x2
    elif grid is None and len(times) > 1:
        freq = "irregular"
    both = np.concatenate([y, x], axis=1)
    ok = ~np.isnan(both).any(axis=1)
    if not ok.any():
        raise UserError(f"{path}: every row has a missing value in the targets {targets} or covariates")
    first, last = int(np.argmax(ok)), len(ok) - 1 - int(np.argmax(ok[::-1]))
    repairs["dropped_rows"] = int(first + (len(ok) - 1 - last))
    times, y, x = times[first:last + 1], y[first:last + 1], x[first:last + 1]
    repairs["interpolated_values"] = int(np.isnan(y).sum() + np.isnan(x).sum())
    if repairs["interpolated_values"]:
        y = pd.DataFrame(y).interpolate(limit_direction="both").to_numpy()
        if x.shape[1]:
            x = pd.DataFrame(x).interpolate(limit_direction="both").to_numpy()
    return Series(times=times, values=y, covariates=x, target_names=targets, covariate_names=covariates,
                  time_col=time_col, time_kind=kind, freq=freq, step=step, season=season_for(freq),
                  repairs=repairs)
