"""What every task pipeline shares: common flags, the output directory, JSON, report, seeds, time budget.

Layout of a task output directory ``DIR`` (written by ``lstmkit train <task> --out DIR``)::

    DIR/config.json    {"task": <name>, "lstmkit_version": ..., "common": {...}, ...task settings}
    DIR/metrics.json   {"task": <name>, "test": {metric: value}, "baselines": {name: {metric: value}}, ...}
    DIR/model/         the network, in lstmkit's save format (lstmkit.models.save_model)
    DIR/report.md      metrics table(s) and the plots
    DIR/*.png          plots; plus task files such as a scaler or a vocabulary

A run writes into a hidden staging directory beside ``DIR`` and renames it into place only when it has
succeeded (:class:`OutputDir`), so a failed run never leaves a partial ``DIR`` behind and never destroys an
earlier good one.
"""
from __future__ import annotations

import argparse
import sys
import json
import math
import os
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

import numpy as np
import torch

import lstmkit
from lstmkit.errors import UserError

CELLS = ("lstm", "peephole", "coupled", "layernorm", "gru", "rnn")


@dataclass
class CommonConfig:
    """Flags every ``lstmkit train <task>`` accepts (one source of truth; the CLI maps flags onto it).

    ``None`` means "let the task choose its documented default".
    """

    out: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    hidden: Optional[int] = None
    layers: Optional[int] = None
    cell: str = "lstm"
    seed: int = 0
    quiet: bool = False
    time_budget: Optional[float] = None  # seconds of training; None = no limit
    backend: str = "auto"

    def sizes(self, defaults: dict) -> "Sizes":
        """Each size flag, or the task's ``defaults`` entry where the flag is None."""
        return Sizes(self.epochs or defaults["epochs"], self.batch_size or defaults["batch_size"],
                     self.hidden or defaults["hidden"], self.layers or defaults["layers"])


class Sizes(NamedTuple):
    """The resolved size settings of a run (:meth:`CommonConfig.sizes`)."""

    epochs: int
    batch_size: int
    hidden: int
    layers: int


def add_common_flags(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Add the flags of :class:`CommonConfig` to ``parser`` (``--out`` defaults to ``default_out``)."""
    g = parser.add_argument_group("common options")
    g.add_argument("--out", default=default_out, help=f"output directory (default: {default_out})")
    g.add_argument("--epochs", type=int, default=None, help="maximum training epochs (default: task's choice)")
    g.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: task's choice)")
    g.add_argument("--hidden", type=int, default=None, help="hidden units per layer (default: task's choice)")
    g.add_argument("--layers", type=int, default=None, help="stacked recurrent layers (default: task's choice)")
    g.add_argument("--cell", choices=CELLS, default="lstm", help="recurrent cell (default: lstm)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch output")
    g.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop training after this many seconds (best weights so far are kept)")
    g.add_argument("--backend", choices=lstmkit.backend.BACKENDS, default="auto",
                   help="recurrent engine: auto (native when built), native or reference (default: auto)")


def common_from_args(args: argparse.Namespace) -> CommonConfig:
    """The :class:`CommonConfig` of parsed CLI ``args``, validated (UserError naming a bad flag)."""
    cfg = CommonConfig(out=args.out, epochs=args.epochs, batch_size=args.batch_size, hidden=args.hidden,
                       layers=args.layers, cell=args.cell, seed=args.seed, quiet=args.quiet,
                       time_budget=args.time_budget, backend=args.backend)
    for flag in ("epochs", "batch_size", "hidden", "layers"):
        v = getattr(cfg, flag)
        if v is not None and v < 1:
            raise UserError(f"--{flag.replace('_', '-')}={v} must be a positive integer")
    if cfg.time_budget is not None and not cfg.time_budget > 0:
        raise UserError(f"--time-budget={cfg.time_budget} must be a positive number of seconds")
    return cfg


def make_recurrent(cell: str, input_size: int, hidden: int, layers: int = 1, *, bidirectional: bool = False,
                   dropout: float = 0.0, backend: str = "auto") -> torch.nn.Module:
    """A batch-first ``lstmkit.nn`` recurrent module for a ``--cell`` name (see :data:`CELLS`).

    ``lstm`` is the standard LSTM, ``peephole``/``coupled``/``layernorm`` its variants, ``gru`` and ``rnn``
    (tanh) the other cells. Every module takes ``(B, T, D)`` input and ``lengths=``.
    """
    from lstmkit import nn as lnn

    if cell not in CELLS:
        raise UserError(f"--cell={cell!r} is not known; expected one of {CELLS}")
    common = dict(num_layers=layers, batch_first=True, bidirectional=bidirectional,
                  dropout=dropout if layers > 1 else 0.0, backend=backend)
    if cell == "gru":
        return lnn.GRU(input_size, hidden, **common)
    if cell == "rnn":
        return lnn.RNN(input_size, hidden, **common)
    opts = {"peephole": {"peephole": True}, "coupled": {"coupled": True}, "layernorm": {"layer_norm": True}}
    return lnn.LSTM(input_size, hidden, **common, **opts.get(cell, {}))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so a run is repeatable on the CPU."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class TimeBudget:
    """Wall-clock budget for training: ``exceeded()`` turns True after ``seconds`` (never when None)."""

    def __init__(self, seconds: Optional[float]):
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def exceeded(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds


def progress(iterable: Iterable, *, quiet: bool, desc: str = "", total: Optional[int] = None, leave: bool = False):
    """A tqdm progress bar over ``iterable`` (silent when ``quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet, dynamic_ncols=True)


def _jsonable(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if torch.is_tensor(o):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def write_json(path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NumPy/torch scalars and arrays converted; NaN written as null)."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(json.loads(json.dumps(obj, default=_jsonable))), indent=2)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_json(path) -> dict:
    """Read a JSON file, as a UserError naming the file when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


def task_config(model_dir) -> dict:
    """The ``config.json`` of a trained task directory, checked to name a task (UserError otherwise)."""
    d = Path(model_dir)
    if not d.is_dir():
        raise UserError(f"--model={str(model_dir)!r} is not a directory written by `lstmkit train`")
    cfg = read_json(d / "config.json")
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise UserError(f"{d / 'config.json'} has no \"task\": not a directory written by `lstmkit train`")
    return cfg


def metrics_table(rows: Dict[str, Dict[str, float]], digits: int = 4) -> str:
    """A Markdown table: one row per model/baseline name, one column per metric (union, in first-seen order)."""
    cols: List[str] = []
    for vals in rows.values():
        cols += [k for k, v in vals.items() if k not in cols and isinstance(v, (int, float))]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, vals in rows.items():
        cells = []
        for c in cols:
            v = vals.get(c)
            cells.append("" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path, title: str, rows: Dict[str, Dict[str, float]], *, plots: Iterable[str] = (),
                 notes: Iterable[str] = (), sections: Optional[Dict[str, str]] = None) -> None:
    """Write ``report.md``: a title, the metrics table (``rows``: name -> metrics), notes, extra sections
    (heading -> Markdown) and the plots (file names relative to the report)."""
    parts = [f"# {title}", "", "## Metrics on held-out data", "", metrics_table(rows), ""]
    notes = list(notes)
    if notes:
        parts += [f"- {n}" for n in notes] + [""]
    for head, body in (sections or {}).items():
        parts += [f"## {head}", "", body, ""]
    plots = list(plots)
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    Path(path).write_text("\n".join(parts), encoding="utf-8")


class OutputDir:
    """Stage a run's outputs and move them to ``final`` only on success.

    Use as a context manager; write everything under ``.path``. On a clean exit the staging directory
    replaces ``final`` (an existing ``final`` is moved aside first and removed after the swap); on an
    exception the staging directory is deleted and ``final`` is left untouched.
    """

    def __init__(self, final):
        self.final = Path(final)
        self.path: Optional[Path] = None

    def __enter__(self) -> "OutputDir":
        if self.final.exists() and not self.final.is_dir():
            raise UserError(f"--out={str(self.final)!r} exists and is not a directory")
        parent = self.final.parent if str(self.final.parent) else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=parent))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.path is not None
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False


def base_config(task: str, common: CommonConfig, **settings) -> dict:
    """The ``config.json`` content for ``task``: task name, version, common flags and task settings."""
    return {"task": task, "lstmkit_version": lstmkit.__version__, "common": asdict(common), **settings}


@contextmanager
def single_threaded():
    """Run torch on one intra-op thread inside the block (restored after). The task models are small: extra
    threads cost more in synchronisation than they give (co2: 0.6 s per epoch on one thread, 7 s on two on a
    busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def write_predictions(text: str, output: Optional[str], quiet: bool, what: str) -> None:
    """Write ``predict``'s CSV ``text`` to ``output`` (saying so on stderr unless quiet), or to stdout."""
    if output:
        Path(output).write_text(text, encoding="utf-8")
        if not quiet:
            print(f"wrote {what} to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
