"""Text classification: word embeddings -> (bi)LSTM over the valid steps -> pooling -> softmax.

``lstmkit train textclass [--data TRAIN.csv|DIR] [--test-data TEST.csv|DIR] [--text-col text] [--label-col label]``

- Data: a CSV with a header (columns ``--text-col``, ``--label-col``) or a directory of fortune files (entries
  split at lines holding only ``%``; label = file name). Default: the bundled fortune collections (8 labels).
  Without ``--test-data`` the examples are shuffled with ``--seed`` and split 80/20 (train/test); 10% of the
  training part is held back as validation to pick the best epoch (early stopping).
- Text: word tokens (:func:`lstmkit.data.tokenize.word_tokenize`, lowercased), words seen fewer than
  ``min_freq`` times in training become ``<unk>``; at most ``max_len`` tokens per text.
- Model: embedding, bidirectional LSTM run with ``lengths=`` (no padding steps), then pooling over the valid
  steps (``max`` default, ``mean``) or ``last`` (final forward state + final backward state), dropout, linear.
- Metrics: accuracy, macro F1, confusion matrix (rows true, columns predicted, label order as "labels").
  Baseline ``tfidf_logreg``: scikit-learn ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression(C=10)``
  fitted on the whole training part of the same split.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from lstmkit.data.bucketing import bucket_batches, pad_batch
from lstmkit.data.text import bundled_text_dir, read_labelled, read_unlabelled
from lstmkit.data.tokenize import Tokenizer, Vocab
from lstmkit.errors import UserError
from lstmkit.models import Model, register, save_model
from lstmkit.tasks.common import (CommonConfig, OutputDir, TimeBudget, base_config, make_recurrent, progress,
                                  read_json, set_seed, write_json, write_report)
from lstmkit.tasks.plots import plot_confusion, plot_curves
from lstmkit.tasks.textutil import BestKeeper, load_task_dir, write_rows

DEFAULTS = {"epochs": 20, "batch_size": 32, "hidden": 128, "layers": 1}
POOLINGS = ("max", "mean", "last")


@dataclass
class TextClassConfig:
    """Settings of ``lstmkit train textclass`` (``common``: shared flags; None there = :data:`DEFAULTS`)."""

    data: Optional[str] = None
    test_data: Optional[str] = None
    text_col: str = "text"
    label_col: str = "label"
    embed: int = 128
    pooling: str = "max"
    bidirectional: bool = True
    dropout: float = 0.4
    lr: float = 2e-3
    max_len: int = 200
    min_freq: int = 2
    patience: int = 4
    common: CommonConfig = field(default_factory=CommonConfig)


@register("textclass.TextClassifier")
class TextClassifier(Model):
    """``forward(x (B, T) long, lengths (B,) or None) -> logits (B, C)``; lengths default to the non-pad counts."""

    def __init__(self, vocab_size: int, num_classes: int, embed: int = 128, hidden: int = 128, layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = True, pooling: str = "max", dropout: float = 0.4,
                 backend: str = "auto"):
        super().__init__()
        if pooling not in POOLINGS:
            raise UserError(f"--pooling={pooling!r} is not known; expected one of {POOLINGS}")
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.rnn = make_recurrent(cell, embed, hidden, layers, bidirectional=bidirectional, dropout=dropout,
                                  backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x, lengths=None):
        if lengths is None:
            lengths = (x != 0).sum(1).clamp(min=1)
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        y, state = self.rnn(self.drop(self.embedding(x)), lengths=lengths)
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state
            pooled = torch.cat([h[-2], h[-1]], 1) if self.bidirectional else h[-1]
        else:
            mask = (torch.arange(y.size(1))[None, :] < lengths[:, None]).unsqueeze(-1)
            if self.pooling == "max":
                pooled = y.masked_fill(~mask, float("-inf")).max(1).values
            else:
                pooled = (y * mask).sum(1) / lengths[:, None].to(y.dtype)
        return self.head(self.drop(pooled))


def split_shuffled(n: int, seed: int, test_fraction: float = 0.2):
    """(train indices, test indices): ``range(n)`` shuffled with ``random.Random(seed)``, last fraction = test."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = int(round(n * (1 - test_fraction)))
    return idx[:k], idx[k:]


def classification_metrics(y_true: List[int], y_pred: List[int], labels: List[str]) -> dict:
    """accuracy, macro F1 (mean over the labels present in ``y_true`` or ``y_pred``) and the confusion matrix
    over all ``labels`` (rows true, columns predicted)."""
    from sklearn.metrics import confusion_matrix, f1_score

    k = list(range(len(labels)))
    present = sorted(set(y_true) | set(y_pred))
    return {"accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if y_true else float("nan"),
            "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
            if present else float("nan"),
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=k).tolist(), "labels": list(labels),
            "n": len(y_true)}


def tfidf_baseline(train_texts, train_y, test_texts, test_y, labels) -> dict:
    """TF-IDF + logistic regression fitted on the training texts, scored on the test texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(sublinear_tf=True)
    clf = LogisticRegression(C=10.0, max_iter=2000)
    clf.fit(vec.fit_transform(train_texts), train_y)
    pred = clf.predict(vec.transform(test_texts)).tolist()
    m = classification_metrics(list(test_y), pred, labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def _encode(texts, tok, vocab, max_len):
    return [vocab.encode(tok(t)[:max_len]) for t in texts]


def predict_ids(model, seqs, batch_size: int = 64) -> torch.Tensor:
    """Class probabilities (N, C) of id sequences, in input order."""
    model.eval()
    out = [None] * len(seqs)
    with torch.no_grad():
        for idx in bucket_batches([len(s) for s in seqs], batch_size, shuffle=False):
            x, lens = pad_batch([seqs[i] for i in idx])
            p = torch.softmax(model(x, lengths=lens), -1)
            for j, i in enumerate(idx):
                out[i] = p[j]
    return torch.stack(out) if out else torch.zeros(0)


def train(cfg: TextClassConfig) -> dict:
    """Train, evaluate and write the output directory; returns the metrics.json content."""
    c = cfg.common
    epochs, bsz, hidden, layers = c.sizes(DEFAULTS)
    set_seed(c.seed)
    src = cfg.data or str(bundled_text_dir())
    texts, labels = read_labelled(src, cfg.text_col, cfg.label_col)
    if cfg.test_data:  # shuffle so the validation tail is a random 10% (files are often sorted by label)
        order = list(range(len(texts)))
        random.Random(c.seed).shuffle(order)
        tr_texts, tr_labels = [texts[i] for i in order], [labels[i] for i in order]
        te_texts, te_labels = read_labelled(cfg.test_data, cfg.text_col, cfg.label_col)
    else:
        tr_i, te_i = split_shuffled(len(texts), c.seed)
        tr_texts, tr_labels = [texts[i] for i in tr_i], [labels[i] for i in tr_i]
        te_texts, te_labels = [texts[i] for i in te_i], [labels[i] for i in te_i]
    label_names = sorted(set(tr_labels))
    if len(label_names) < 2:
        raise UserError(f"--data={src!r}: need at least 2 labels, found {label_names}")
    unseen = sorted(set(te_labels) - set(label_names))
    if unseen:
        raise UserError(f"--test-data has labels not in the training data: {unseen[:5]}")
    lab_id = {n: i for i, n in enumerate(label_names)}
    tok = Tokenizer("word", lower=True)
    n_val = max(1, len(tr_texts) // 10)
    fit_texts, fit_y = tr_texts[:-n_val], [lab_id[x] for x in tr_labels[:-n_val]]
    val_texts, val_y = tr_texts[-n_val:], [lab_id[x] for x in tr_labels[-n_val:]]
    vocab = Vocab.build((tok(t) for t in fit_texts), min_freq=cfg.min_freq)
    fit_x, val_x = _encode(fit_texts, tok, vocab, cfg.max_len), _encode(val_texts, tok, vocab, cfg.max_len)
    test_x, test_y = _encode(te_texts, tok, vocab, cfg.max_len), [lab_id[x] for x in te_labels]
    model = TextClassifier(len(vocab), len(label_names), cfg.embed, hidden, layers, c.cell, cfg.bidirectional,
                           cfg.pooling, cfg.dropout, c.backend)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    budget = TimeBudget(c.time_budget)
    keeper = BestKeeper()
    hist = {"train loss": [], "validation loss": [], "validation accuracy": []}
    stopped, bad = False, 0
    yt = torch.tensor(fit_y)
    for epoch in range(1, epochs + 1):
        model.train()
        tot = 0.0
        batches = bucket_batches([len(s) for s in fit_x], bsz, shuffle=True, seed=c.seed * 1000 + epoch)
        for idx in progress(batches, quiet=c.quiet, desc=f"epoch {epoch}"):
            x, lens = pad_batch([fit_x[i] for i in idx])
            loss = nn.functional.cross_entropy(model(x, lengths=lens), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot += loss.item() * len(idx)
            if budget.exceeded():
                stopped = True
                break
        p = predict_ids(model, val_x)
        vloss = float(nn.functional.nll_loss(torch.log(p + 1e-12), torch.tensor(val_y)))
        vacc = float((p.argmax(1) == torch.tensor(val_y)).float().mean())
        hist["train loss"].append(tot / len(fit_x))
        hist["validation loss"].append(vloss)
        hist["validation accuracy"].append(vacc)
        improved = keeper.update(model, -vacc + 1e-3 * vloss, epoch)
        bad = 0 if improved else bad + 1
        if not c.quiet:
            print(f"epoch {epoch}: train loss {hist['train loss'][-1]:.4f}, validation loss {vloss:.4f}, "
                  f"accuracy {vacc:.4f}", flush=True)
        if stopped or bad >= cfg.patience:
            break
    keeper.restore(model)
    pred = predict_ids(model, test_x).argmax(1).tolist() if test_x else []
    test = classification_metrics(test_y, pred, label_names)
    baseline = tfidf_baseline(tr_texts, [lab_id[x] for x in tr_labels], te_texts, test_y, label_names)
    metrics = {"task": "textclass", "test": test, "baselines": {"tfidf_logreg": baseline},
               "train": {"epochs_run": len(hist["train loss"]), "best_epoch": keeper.epoch,
                         "seconds": budget.elapsed(), "stopped_by_time_budget": stopped, "history": hist},
               "data": {"source": src, "train": len(fit_x), "validation": len(val_x), "test": len(test_x),
                        "labels": label_names, "vocab_size": len(vocab)}}
    settings = {k: v for k, v in asdict(cfg).items() if k != "common"}
    settings.update({"epochs": epochs, "batch_size": bsz, "hidden": hidden, "layers": layers})
    with OutputDir(c.out or "runs/textclass") as od:
        d = od.path
        save_model(model, d / "model", include_optimizer=False, metadata={"task": "textclass"})
        vocab.save(d / "vocab.json")
        write_json(d / "labels.json", {"labels": label_names})
        write_json(d / "config.json", base_config("textclass", c, **settings))
        write_json(d / "metrics.json", metrics)
        plot_curves(d / "training_curves.png", hist, "text classifier training")
        plot_confusion(d / "confusion_matrix.png", np.asarray(test["confusion_matrix"]), label_names)
        rows = {"lstm": {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"]}, "tfidf_logreg": baseline}
        notes = [f"{len(fit_x)} train / {len(val_x)} validation / {len(test_x)} test texts, "
                 f"{len(label_names)} labels; best epoch {keeper.epoch} of {len(hist['train loss'])}"]
        write_report(d / "report.md", "Text classification", rows, notes=notes,
                     plots=["training_curves.png", "confusion_matrix.png"])
    return metrics


def load(model_dir):
    """(model, vocab, label names, config) of a ``textclass`` directory."""
    cfg, model = load_task_dir(model_dir, "textclass")
    vocab = Vocab.load(Path(model_dir) / "vocab.json")
    labels = read_json(Path(model_dir) / "labels.json")["labels"]
    return model, vocab, labels, cfg


def predict(args) -> int:
    """``lstmkit predict``: label each text of a CSV (``text`` column) or of a file with one text per line;
    writes CSV ``text,label,probability`` to --output or stdout."""
    model, vocab, labels, cfg = load(args.model)
    texts = read_unlabelled(args.data, cfg.get("text_col", "text"))
    probs = predict_ids(model, _encode(texts, Tokenizer("word", True), vocab, cfg.get("max_len", 200)))
    rows = [(t, labels[int(p.argmax())], f"{float(p.max()):.4f}") for t, p in zip(texts, probs)]
    write_rows(args.output, ["text", "label", "probability"], rows)
    return 0


def evaluate(args) -> int:
    """``lstmkit evaluate``: accuracy, macro F1 and confusion matrix on labelled data, printed as JSON."""
    model, vocab, labels, cfg = load(args.model)
    texts, gold = read_labelled(args.data, cfg.get("text_col", "text"), cfg.get("label_col", "label"))
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise UserError(f"--data={args.data!r} has labels the model does not know: {unknown[:5]}")
    probs = predict_ids(model, _encode(texts, Tokenizer("word", True), vocab, cfg.get("max_len", 200)))
    res = classification_metrics([labels.index(g) for g in gold], probs.argmax(1).tolist(), labels)
    print(json.dumps(res, indent=2))
    return 0
