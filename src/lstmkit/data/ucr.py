"""Load labelled sequence sets: the UCR/UEA ``.ts`` format and long-format CSV (series id, time, features, label).

Both give a :class:`SequenceSet`: a list of ``(T_i, D)`` float arrays (lengths may differ) and their labels as
strings. Missing values (``?`` or NaN) inside a series are filled by linear interpolation along time.

``.ts`` (the UCR/UEA archive's format): ``#`` comment lines, ``@`` header lines (``@problemName``,
``@univariate``, ``@dimensions``, ``@equalLength``, ``@classLabel true 1 2 ...``, ``@data``), then one case per
line: each dimension a comma-separated list of values, dimensions separated by ``:``, the class label last.
``@timeStamps true`` (values as ``(t,v)`` tuples) is not supported and says so.

Long CSV: one row per (series, time step): columns ``id, time, feature..., label`` by default (first column
the series id, second the time, last the label; pass names to change). Rows are ordered by time within
each series; a series' label must be the same on all its rows.

Example::

    s = load_sequences("ItalyPowerDemand_TRAIN.ts")   # 67 series of shape (24, 1), labels "1"/"2"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from lstmkit.errors import UserError


@dataclass
class SequenceSet:
    """Labelled sequences: ``series[i]`` is ``(T_i, D)`` float64, ``labels[i]`` its class (string, or None when
    the file has no labels); ``ids`` name each series; ``class_labels`` the classes the header declares."""

    series: List[np.ndarray]
    labels: List[Optional[str]]
    ids: List[str]
    dims: int
    class_labels: Optional[List[str]] = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.series)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.series], dtype=np.int64)

    @property
    def has_labels(self) -> bool:
        return all(lab is not None for lab in self.labels)


def _fill(a: np.ndarray) -> np.ndarray:
    if np.isnan(a).any():
        a = pd.DataFrame(a).interpolate(limit_direction="both").to_numpy()
        if np.isnan(a).any():
            a = np.nan_to_num(a)
    return a


def _check_file(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{str(path)!r}: file does not exist")
    if p.is_dir():
        raise UserError(f"{str(path)!r} is a directory; expected a .ts or CSV file")
    if p.stat().st_size == 0:
        raise UserError(f"{str(path)!r} is empty; expected a .ts or CSV file of labelled sequences")
    return p


def load_ts(path) -> SequenceSet:
    """Read a UCR/UEA ``.ts`` file (univariate or multivariate, equal or variable length)."""
    p = _check_file(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{str(path)!r} is not a text .ts file (cannot decode it as UTF-8)") from None
    header: dict = {}
    series, labels = [], []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise UserError(f"{path}:{lineno}: expected a header line starting with '@' before @data, "
                                f"got {line[:40]!r}")
            key, _, rest = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
            else:
                header[key] = rest.strip()
            continue
        has_label = header.get("classlabel", "false").split()[0].lower() == "true"
        if header.get("timestamps", "false").lower() == "true":
            raise UserError(f"{path}: @timeStamps true (values as (time,value) tuples) is not supported; "
                            f"export the series without time stamps")
        parts = line.split(":")
        label = parts.pop().strip() if has_label else None
        if not parts:
            raise UserError(f"{path}:{lineno}: a case needs at least one dimension of values before the label")
        dims = []
        for d, part in enumerate(parts):
            vals = [v.strip() for v in part.split(",")]
            try:
                dims.append(np.array([np.nan if v in ("?", "", "NaN", "nan") else float(v) for v in vals]))
            except ValueError:
                bad = next(v for v in vals if not _is_float(v))
                raise UserError(f"{path}:{lineno}: dimension {d + 1} has a non-numeric value {bad!r}") from None
        if len({len(x) for x in dims}) != 1:
            raise UserError(f"{path}:{lineno}: the dimensions of a case differ in length "
                            f"({[len(x) for x in dims]}); each dimension needs one value per time step")
        if series and len(dims) != series[0].shape[1]:
            raise UserError(f"{path}:{lineno}: case has {len(dims)} dimensions, earlier cases have "
                            f"{series[0].shape[1]}")
        series.append(_fill(np.stack(dims, axis=1)))
        labels.append(label)
    if not in_data:
        raise UserError(f"{path}: no @data line; expected a UCR/UEA .ts file")
    if not series:
        raise UserError(f"{path}: no cases after @data")
    cl = header.get("classlabel", "").split()
    classes = cl[1:] if cl and cl[0].lower() == "true" else None
    if classes:
        unknown = sorted({lab for lab in labels if lab not in classes})
        if unknown:
            raise UserError(f"{path}: labels {unknown} are not among the declared @classLabel {classes}")
    return SequenceSet(series=series, labels=labels, ids=[str(i) for i in range(len(series))],
                       dims=series[0].shape[1], class_labels=classes, name=header.get("problemname", p.stem))


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return v in ("?", "")


def load_long_csv(path, id_col: Optional[str] = None, time_col: Optional[str] = None,
                  label_col: Optional[str] = None, features: Optional[List[str]] = None) -> SequenceSet:
    """Read a long-format CSV (one row per series and time step; see module doc for the default columns)."""
    from lstmkit.data.timeseries import _numeric, check_columns, read_table

    _check_file(path)
    df = read_table(path)
    df.columns = [str(c) for c in df.columns]
    if len(df) == 0 or df.shape[1] < 3:
        raise UserError(f"{path}: expected columns id, time, feature(s)..., label and at least one row; "
                        f"got columns {list(df.columns)} and {len(df)} rows")
    id_col = id_col or df.columns[0]
    time_col = time_col or df.columns[1]
    label_col = label_col if label_col is not None else df.columns[-1]
    check_columns(df, [id_col, time_col] + ([label_col] if label_col else []) + list(features or []), "column", path)
    feats = list(features or [c for c in df.columns if c not in (id_col, time_col, label_col)])
    if not feats:
        raise UserError(f"{path}: no feature columns besides id {id_col!r}, time {time_col!r} and label "
                        f"{label_col!r}")
    values = np.stack([_numeric(df[c], c, path) for c in feats], axis=1)
    df = df.assign(_row=np.arange(len(df)))
    series, labels, ids = [], [], []
    for sid, g in df.groupby(id_col, sort=False):
        g = g.sort_values(time_col, kind="stable")
        series.append(_fill(values[g["_row"].to_numpy()]))
        if label_col:
            labs = g[label_col].astype(str).unique()
            if len(labs) != 1:
                raise UserError(f"{path}: series {sid!r} has several labels {list(labs)} in column {label_col!r}")
            labels.append(labs[0])
        else:
            labels.append(None)
        ids.append(str(sid))
    return SequenceSet(series=series, labels=labels, ids=ids, dims=len(feats), name=Path(path).stem)


def load_sequences(path) -> SequenceSet:
    """``.ts`` files with :func:`load_ts`, anything else as long CSV with :func:`load_long_csv`."""
    if str(path).lower().endswith(".ts"):
        return load_ts(path)
    return load_long_csv(path)
