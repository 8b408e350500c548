"""Sequence classification task: an LSTM labels whole series (UCR/UEA .ts or long CSV), variable lengths exact.

Pipeline (``train(cfg)``; CLI ``lstmkit train classify``, see docs/tasks.md):

1. load train and test sets (:mod:`lstmkit.data.ucr`); the label map comes from the training labels (a test
   label never seen in training is an error); dimensions must agree;
2. **z-normalisation** (``norm``): ``"series"`` (default) scales each series and dimension to mean 0 / std 1 over
   its own valid steps, the UCR convention, so the shape decides, not the level; ``"global"`` uses one
   mean/std per dimension fitted on the training set (keeps level information); ``"none"`` leaves values;
3. the network: a recurrent encoder (forwards, or both ways with ``bidirectional``) run with ``lengths=`` so
   padded steps never enter it; its final states and the mean of its outputs over the valid steps feed a
   linear softmax head;
4. Adam on cross-entropy with early stopping on a stratified validation split of the training set, best
   weights restored; accuracy, macro F1 and the confusion matrix on the test set, vs the majority class.

Example::

    from lstmkit.tasks.classify import ClassifyConfig, train
    train(ClassifyConfig(data="X_TRAIN.ts", test_data="X_TEST.ts", common=CommonConfig(out="runs/x")))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from lstmkit.data import datasets
from lstmkit.data.timeseries import read_table
from lstmkit.data.ucr import SequenceSet, load_long_csv, load_sequences
from lstmkit.errors import UserError
from lstmkit.models import Model, load_model, register, save_model
from lstmkit.tasks import metrics as M
from lstmkit.tasks import plots
from lstmkit.tasks.common import (CommonConfig, OutputDir, TimeBudget, base_config, make_recurrent, progress,
                                  set_seed, single_threaded, task_config, write_json, write_predictions,
                                  write_report)

TASK = "classify"
NORMS = ("series", "global", "none")
DEFAULTS = dict(hidden=32, layers=1, epochs=150, batch_size=16, lr=3e-3, patience=30)


@dataclass
class ClassifyConfig:
    """Settings of ``lstmkit train classify`` (``None`` = documented default).

    Attributes:
        data / test_data: training and test files (.ts or long CSV); both None = bundled ItalyPowerDemand.
        norm: z-normalisation, one of :data:`NORMS` (see module doc).
        bidirectional: read each series both ways too (default False: forwards only, see docs/tasks.md).
        val_fraction: share of the training set held out (stratified) for early stopping.
        lr, patience: Adam learning rate and early-stopping patience (epochs).
        common: the shared flags.
    """

    data: Optional[str] = None
    test_data: Optional[str] = None
    norm: str = "series"
    bidirectional: bool = False
    val_fraction: float = 0.2
    lr: float = DEFAULTS["lr"]
    patience: int = DEFAULTS["patience"]
    common: CommonConfig = field(default_factory=CommonConfig)


@register("classify.LSTMClassifier")
class LSTMClassifier(Model):
    """``(B, T, D)`` padded batch + ``lengths`` -> ``(B, n_classes)`` logits.

    Features for the head: the final hidden state of each direction (at each series' own last step) and the
    mean of the outputs over the valid steps.
    """

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 32, layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, backend: str = "auto"):
        super().__init__()
        self.rnn = make_recurrent(cell, n_inputs, hidden, layers, bidirectional=bidirectional, backend=backend)
        nd = 2 if bidirectional else 1
        self.nd, self.hidden = nd, hidden
        self.head = nn.Linear(2 * nd * hidden, n_classes)

    def call(self, x, lengths=None):
        out, h = self.rnn(x, lengths=lengths)
        h = h[0] if isinstance(h, tuple) else h  # (layers*nd, B, H)
        last = h[-self.nd:].transpose(0, 1).reshape(x.shape[0], -1)
        if lengths is None:
            mean = out.mean(1)
        else:
            ln = torch.as_tensor(lengths, dtype=out.dtype).view(-1, 1)
            mean = out.sum(1) / ln  # outputs past each length are zero
        return self.head(torch.cat([last, mean], dim=1))


def normalise(series: List[np.ndarray], norm: str, stats: Optional[dict] = None) -> List[np.ndarray]:
    """Apply ``norm`` to each ``(T_i, D)`` series (``stats`` = {"mean", "std"} per dimension for "global")."""
    if norm == "none":
        return [s.astype(np.float32) for s in series]
    if norm == "global":
        m, sd = np.asarray(stats["mean"]), np.asarray(stats["std"])
        return [((s - m) / sd).astype(np.float32) for s in series]
    out = []
    for s in series:
        sd = s.std(0)
        out.append(((s - s.mean(0)) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32))
    return out


def batch(series: List[np.ndarray]):
    """Pad ``series`` into ``(B, T_max, D)`` and their lengths (the network is given ``lengths=``)."""
    lens = torch.tensor([len(s) for s in series], dtype=torch.int64)
    x = torch.zeros(len(series), int(lens.max()), series[0].shape[1])
    for i, s in enumerate(series):
        x[i, :len(s)] = torch.from_numpy(s)
    return x, lens


def _logits(model, series: List[np.ndarray], bs: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(series), bs):
            x, lens = batch(series[i:i + bs])
            outs.append(model(x, lengths=lens))
    return torch.cat(outs).numpy()


def _stratified_split(y: np.ndarray, frac: float, rng: np.random.Generator):
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(frac * len(idx)))
        if len(idx) - k >= 1:
            val += list(idx[:k])
    val = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), val), val


def _load_sets(cfg: ClassifyConfig):
    if cfg.data is None and cfg.test_data is None:
        return (load_sequences(datasets.path("italypower_train")), load_sequences(datasets.path("italypower_test")),
                "ItalyPowerDemand (bundled)")
    if cfg.data is None or cfg.test_data is None:
        raise UserError("--data and --test-data go together (or give neither for the bundled ItalyPowerDemand)")
    tr, te = load_sequences(cfg.data), load_sequences(cfg.test_data)
    return tr, te, tr.name


def check_pair(dims: int, te: SequenceSet, classes: List[str], what: str = "--test-data") -> np.ndarray:
    """Class indices of ``te`` under ``classes``; UserError on a dimension mismatch or an unknown label."""
    if te.dims != dims:
        raise UserError(f"{what} has {te.dims} dimension(s) per step, the training data {dims}")
    if not te.has_labels:
        raise UserError(f"{what} has no class labels; expected labelled series")
    unknown = sorted({lab for lab in te.labels if lab not in classes})
    if unknown:
        raise UserError(f"{what} has labels {unknown} never seen in training; known labels are {classes}")
    idx = {c: i for i, c in enumerate(classes)}
    return np.array([idx[lab] for lab in te.labels], dtype=np.int64)


def _fit(model, xs, y, xv, yv, cfg: ClassifyConfig, s: dict) -> Dict[str, list]:
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    lossf = nn.CrossEntropyLoss()
    budget = TimeBudget(cfg.common.time_budget)
    hist: Dict[str, list] = {"loss": [], "val_loss": [], "val_accuracy": []}
    best, best_state, bad = (float("inf"), 0.0), None, 0
    yt = torch.from_numpy(y)
    for _ in progress(range(s["epochs"]), quiet=cfg.common.quiet, desc="classify", leave=False):
        model.train()
        perm = np.random.permutation(len(xs))
        tot = 0.0
        for i in range(0, len(xs), s["batch_size"]):
            b = perm[i:i + s["batch_size"]]
            x, lens = batch([xs[j] for j in b])
            loss = lossf(model(x, lengths=lens), yt[b])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item() * len(b)
        hist["loss"].append(tot / len(xs))
        if len(xv):
            lv = _logits(model, xv)
            vl = float(lossf(torch.from_numpy(lv), torch.from_numpy(yv)))
            va = M.accuracy(yv, lv.argmax(1))
        else:
            vl, va = tot / len(xs), float("nan")
        hist["val_loss"].append(vl)
        hist["val_accuracy"].append(va)
        key = (-(va if va == va else 0.0), vl)  # best = highest validation accuracy, then lowest loss
        if key < (-best[1], best[0]) or best_state is None:
            best, bad = (vl, va if va == va else 0.0), 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience or budget.exceeded():
            break
    model.load_state_dict(best_state)
    return hist


def train(cfg: ClassifyConfig) -> dict:
    """Train on ``cfg.data``, score on ``cfg.test_data``, write ``cfg.common.out``; returns metrics.json."""
    c = cfg.common
    if cfg.norm not in NORMS:
        raise UserError(f"--norm={cfg.norm!r} is not known; expected one of {NORMS}")
    set_seed(c.seed)
    tr, te, name = _load_sets(cfg)
    if not tr.has_labels:
        raise UserError("the training data has no class labels")
    classes = sorted(set(tr.labels), key=lambda v: (float(v), v) if _isnum(v) else (float("inf"), v))
    if len(classes) < 2:
        raise UserError(f"the training data has only the class {classes}; classification needs at least 2")
    y = check_pair(tr.dims, tr, classes, "--data")
    yte = check_pair(tr.dims, te, classes)
    stats = None
    if cfg.norm == "global":
        allv = np.concatenate(tr.series, axis=0)
        stats = {"mean": allv.mean(0), "std": allv.std(0) + 1e-8}
    xs, xte = normalise(tr.series, cfg.norm, stats), normalise(te.series, cfg.norm, stats)
    s = c.sizes(DEFAULTS)._asdict()
    fit_idx, val_idx = _stratified_split(y, cfg.val_fraction, np.random.default_rng(c.seed))
    model = LSTMClassifier(tr.dims, len(classes), hidden=s["hidden"], layers=s["layers"], cell=c.cell,
                           bidirectional=cfg.bidirectional, backend=c.backend)
    budget = TimeBudget(None)
    with single_threaded():
        hist = _fit(model, [xs[i] for i in fit_idx], y[fit_idx], [xs[i] for i in val_idx], y[val_idx], cfg, s)
    seconds = budget.elapsed()
    pred = _logits(model, xte).argmax(1)
    cm = M.confusion_matrix(yte, pred, len(classes))
    test = M.classification_metrics(yte, pred, len(classes))
    major = int(np.bincount(y, minlength=len(classes)).argmax())
    baselines = {"majority_class": M.classification_metrics(yte, np.full_like(yte, major), len(classes))}
    metrics = {"task": TASK, "test": test, "baselines": baselines, "confusion_matrix": cm.tolist(),
               "classes": classes,
               "data": {"name": name, "train": len(tr), "test": len(te), "dims": tr.dims,
                        "train_lengths": [int(tr.lengths.min()), int(tr.lengths.max())]},
               "training": {"epochs_run": len(hist["loss"]), "seconds": round(seconds, 2),
                            "fit": len(fit_idx), "validation": len(val_idx)}}
    settings = {k: v for k, v in asdict(cfg).items() if k != "common"}
    settings.update(resolved=s, classes=classes, dims=tr.dims, norm_stats=stats)
    with OutputDir(c.out or "runs/classify") as od:
        save_model(model, od.path / "model", metadata={"task": TASK}, include_optimizer=False)
        write_json(od.path / "config.json", base_config(TASK, c, **settings))
        write_json(od.path / "metrics.json", metrics)
        plots.plot_confusion(od.path / "confusion.png", cm, classes, "test confusion matrix")
        plots.plot_curves(od.path / "training.png", {"training loss": hist["loss"], "validation loss":
                          hist["val_loss"], "validation accuracy": hist["val_accuracy"]}, "classifier training")
        cm_md = "| true \\ predicted | " + " | ".join(classes) + " |\n|---|" + "---|" * len(classes) + "\n" + \
            "\n".join(f"| {classes[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm))
        write_report(od.path / "report.md", f"Sequence classification: {name}", {"LSTM": test, **baselines},
                     plots=["confusion.png", "training.png"], sections={"Confusion matrix (test)": cm_md}, notes=[
                         f"{len(tr)} training series ({len(fit_idx)} fit, {len(val_idx)} validation), {len(te)} "
                         f"test series, {tr.dims} dimension(s), lengths {tr.lengths.min()}-{tr.lengths.max()}",
                         f"model: {'bidirectional ' if cfg.bidirectional else ''}{c.cell} hidden {s['hidden']} x "
                         f"{s['layers']}, run with lengths= (padding never seen); z-normalisation: {cfg.norm}",
                         f"training: {len(hist['loss'])} epochs, {seconds:.1f} s"])
    return metrics


def _isnum(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _load_trained(model_dir):
    cfg = task_config(model_dir)
    if cfg.get("task") != TASK:
        raise UserError(f"--model={str(model_dir)!r} holds a {cfg.get('task')!r} model, not a classify model")
    return cfg, load_model(Path(model_dir) / "model")


def _prepare(cfg: dict, data, labelled: bool = True) -> tuple:
    if not labelled and not str(data).lower().endswith(".ts") and \
            len(read_table(data).columns) == cfg["dims"] + 2:
        ss = load_long_csv(data, label_col="")  # long CSV without a label column: id, time, features
    else:
        ss = load_sequences(data)
    if ss.dims != cfg["dims"]:
        raise UserError(f"--data has {ss.dims} dimension(s) per step, the model was trained on {cfg['dims']}")
    return ss, normalise(ss.series, cfg["norm"], cfg.get("norm_stats"))


def predict(args) -> int:
    """``lstmkit predict``: CSV with id, predicted label and one probability column per class."""
    cfg, model = _load_trained(args.model)
    ss, xs = _prepare(cfg, args.data, labelled=False)
    p = torch.softmax(torch.from_numpy(_logits(model, xs)), 1).numpy()
    classes = cfg["classes"]
    lines = [",".join(["id", "label"] + [f"p_{c}" for c in classes])]
    for sid, row in zip(ss.ids, p):
        lines.append(",".join([sid, classes[int(row.argmax())]] + [f"{v:.6g}" for v in row]))
    text = "\n".join(lines) + "\n"
    write_predictions(text, args.output, args.quiet, f"{len(ss)} predictions")
    return 0


def evaluate(args) -> int:
    """``lstmkit evaluate``: accuracy, macro F1 and confusion matrix on labelled ``args.data``, as JSON."""
    import json

    cfg, model = _load_trained(args.model)
    ss, xs = _prepare(cfg, args.data)
    y = check_pair(cfg["dims"], ss, cfg["classes"], "--data")
    pred = _logits(model, xs).argmax(1)
    out = {"task": TASK, "test": M.classification_metrics(y, pred, len(cfg["classes"])),
           "confusion_matrix": M.confusion_matrix(y, pred, len(cfg["classes"])).tolist(), "classes": cfg["classes"]}
    print(json.dumps(out, indent=2))
    return 0
