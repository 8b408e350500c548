"""Sequence tagging (e.g. named entities): a BiLSTM token tagger with optional character features.

``lstmkit train tag --data TRAIN.conll [--test-data TEST.conll] [--out DIR]``

- Data: CoNLL files (:mod:`lstmkit.data.conll`). Without ``--test-data`` the sentences are shuffled with
  ``--seed`` and split 80/20; 10% of the training sentences are validation (best epoch by entity F1).
- Model: per token a lowercased-word embedding plus (``--char-features``, default on) the final states of a
  small character BiLSTM over the token's characters (keeps capitalisation and suffixes, helps unseen words);
  a BiLSTM over the sentence (run with ``lengths=``), dropout, a linear layer to the tags.
- Metrics: entity-level precision/recall/F1 with conlleval semantics (exact span match; ``I-`` without
  ``B-`` starts a chunk; see :func:`lstmkit.data.conll.chunks`) and token accuracy; per-type scores too.
  Baseline ``most_frequent_tag``: each known word gets its most frequent training tag, unknown words ``O``.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from torch import nn

from lstmkit.data.bucketing import bucket_batches, pad_batch
from lstmkit.data.conll import chunk_scores, read_conll, tag_scheme, write_conll
from lstmkit.data.tokenize import Vocab
from lstmkit.errors import UserError
from lstmkit.models import Model, register, save_model
from lstmkit.tasks.common import (CommonConfig, OutputDir, TimeBudget, base_config, make_recurrent, progress,
                                  read_json, set_seed, write_json, write_report)
from lstmkit.tasks.plots import plot_curves
from lstmkit.tasks.textutil import BestKeeper, load_task_dir

DEFAULTS = {"epochs": 30, "batch_size": 16, "hidden": 128, "layers": 1}
MAX_WORD_CHARS = 20


@dataclass
class TagConfig:
    """Settings of ``lstmkit train tag`` (``common``: shared flags; None there = :data:`DEFAULTS`)."""

    data: Optional[str] = None
    test_data: Optional[str] = None
    embed: int = 64
    char_features: bool = True
    char_embed: int = 24
    char_hidden: int = 24
    dropout: float = 0.3
    lr: float = 3e-3
    min_freq: int = 1
    patience: int = 5
    common: CommonConfig = field(default_factory=CommonConfig)


@register("tag.Tagger")
class Tagger(Model):
    """``forward(x (B, T) word ids, lengths=None, chars=None (B, T, L) char ids) -> tag logits (B, T, K)``."""

    def __init__(self, vocab_size: int, num_tags: int, char_vocab_size: int = 0, embed: int = 64, hidden: int = 128,
                 layers: int = 1, cell: str = "lstm", char_embed: int = 24, char_hidden: int = 24,
                 dropout: float = 0.3, backend: str = "auto"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.use_chars = char_vocab_size > 0
        d = embed
        if self.use_chars:
            self.char_embedding = nn.Embedding(char_vocab_size, char_embed, padding_idx=0)
            self.char_rnn = make_recurrent(cell, char_embed, char_hidden, 1, bidirectional=True, backend=backend)
            d += 2 * char_hidden
        self.rnn = make_recurrent(cell, d, hidden, layers, bidirectional=True, dropout=dropout, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_tags)

    def _char_features(self, chars):
        B, T, L = chars.shape
        flat = chars.reshape(B * T, L)
        lens = (flat != 0).sum(1).clamp(min=1)
        _, state = self.char_rnn(self.char_embedding(flat), lengths=lens)
        h = state[0] if isinstance(state, tuple) else state
        return torch.cat([h[-2], h[-1]], 1).reshape(B, T, -1)

    def forward(self, x, lengths=None, chars=None):
        if lengths is None:
            lengths = (x != 0).sum(1).clamp(min=1)
        feats = self.embedding(x)
        if self.use_chars:
            if chars is None:
                chars = torch.zeros(*x.shape, 1, dtype=torch.long)
            feats = torch.cat([feats, self._char_features(chars)], -1)
        y, _ = self.rnn(self.drop(feats), lengths=torch.as_tensor(lengths, dtype=torch.long))
        return self.head(self.drop(y))


def _char_tensor(sents: List[List[str]], cvocab: Vocab, T: int) -> torch.Tensor:
    L = max([min(MAX_WORD_CHARS, len(w)) for s in sents for w in s] + [1])
    out = torch.zeros(len(sents), T, L, dtype=torch.long)
    for i, s in enumerate(sents):
        for j, w in enumerate(s):
            ids = cvocab.encode(list(w[:MAX_WORD_CHARS]))
            out[i, j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class _Encoder:
    """Turns token lists into model inputs with the saved vocabularies."""

    def __init__(self, vocab: Vocab, cvocab: Optional[Vocab]):
        self.vocab, self.cvocab = vocab, cvocab

    def batch(self, sents: List[List[str]]):
        x, lens = pad_batch([self.vocab.encode([w.lower() for w in s]) for s in sents])
        chars = _char_tensor(sents, self.cvocab, x.size(1)) if self.cvocab is not None else None
        return x, lens, chars


def predict_tags(model, enc: _Encoder, sents: List[List[str]], tags: List[str], batch_size: int = 64):
    """Predicted tag strings for each sentence (input order)."""
    model.eval()
    out: List[Optional[List[str]]] = [None] * len(sents)
    with torch.no_grad():
        for idx in bucket_batches([len(s) for s in sents], batch_size, shuffle=False):
            x, lens, chars = enc.batch([sents[i] for i in idx])
            pred = model(x, lengths=lens, chars=chars).argmax(-1)
            for j, i in enumerate(idx):
                out[i] = [tags[k] for k in pred[j, :len(sents[i])].tolist()]
    return out


def most_frequent_tag_baseline(train_sents, test_sents) -> dict:
    """Each word gets its most frequent training tag (unknown words ``O``); conlleval scores."""
    counts = defaultdict(Counter)
    for toks, tags in train_sents:
        for w, t in zip(toks, tags):
            counts[w][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    pred = [[best.get(w, "O") for w in toks] for toks, _ in test_sents]
    s = chunk_scores([t for _, t in test_sents], pred)
    return {k: s[k] for k in ("precision", "recall", "f1", "token_accuracy")}


def train(cfg: TagConfig) -> dict:
    """Train, evaluate and write the output directory; returns the metrics.json content."""
    c = cfg.common
    epochs, bsz, hidden, layers = c.sizes(DEFAULTS)
    if not cfg.data:
        raise UserError("--data is required: a CoNLL file (one token per line, tag in the last column)")
    set_seed(c.seed)
    sents = read_conll(cfg.data)
    if cfg.test_data:  # shuffled so the validation tail is a random 10% of the training sentences
        train_s, test_s = list(sents), read_conll(cfg.test_data)
        random.Random(c.seed).shuffle(train_s)
    else:
        idx = list(range(len(sents)))
        random.Random(c.seed).shuffle(idx)
        k = int(round(len(idx) * 0.8))
        train_s, test_s = [sents[i] for i in idx[:k]], [sents[i] for i in idx[k:]]
    if len(train_s) < 2 or not test_s:
        raise UserError(f"--data={cfg.data!r}: {len(sents)} sentences are too few to train and test a tagger")
    n_val = max(1, len(train_s) // 10)
    fit_s, val_s = train_s[:-n_val], train_s[-n_val:]
    tags = sorted({t for _, ts in train_s for t in ts})
    tag_id = {t: i for i, t in enumerate(tags)}
    vocab = Vocab.build(([w.lower() for w in toks] for toks, _ in fit_s), min_freq=cfg.min_freq)
    cvocab = Vocab.build((list(w) for toks, _ in fit_s for w in toks)) if cfg.char_features else None
    enc = _Encoder(vocab, cvocab)
    model = Tagger(len(vocab), len(tags), len(cvocab) if cvocab else 0, cfg.embed, hidden, layers, c.cell,
                   cfg.char_embed, cfg.char_hidden, cfg.dropout, c.backend)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    budget = TimeBudget(c.time_budget)
    keeper = BestKeeper()
    hist = {"train loss": [], "validation entity F1": []}
    stopped, bad = False, 0
    for epoch in range(1, epochs + 1):
        model.train()
        tot, n = 0.0, 0
        batches = bucket_batches([len(t) for t, _ in fit_s], bsz, shuffle=True, seed=c.seed * 1000 + epoch)
        for idx in progress(batches, quiet=c.quiet, desc=f"epoch {epoch}"):
            toks = [fit_s[i][0] for i in idx]
            x, lens, chars = enc.batch(toks)
            y = torch.full(x.shape, -100, dtype=torch.long)
            for j, i in enumerate(idx):
                y[j, :len(toks[j])] = torch.tensor([tag_id[t] for t in fit_s[i][1]])
            logits = model(x, lengths=lens, chars=chars)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(tags)), y.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot, n = tot + loss.item() * int(lens.sum()), n + int(lens.sum())
            if budget.exceeded():
                stopped = True
                break
        vs = chunk_scores([t for _, t in val_s], predict_tags(model, enc, [s for s, _ in val_s], tags))
        vf = vs["f1"] if tag_scheme(tags) else vs["token_accuracy"]
        hist["train loss"].append(tot / max(1, n))
        hist["validation entity F1"].append(vf)
        improved = keeper.update(model, -vf - 1e-3 * vs["token_accuracy"], epoch)
        bad = 0 if improved else bad + 1
        if not c.quiet:
            print(f"epoch {epoch}: train loss {hist['train loss'][-1]:.4f}, validation F1 {vf:.4f}, "
                  f"token accuracy {vs['token_accuracy']:.4f}", flush=True)
        if stopped or bad >= cfg.patience:
            break
    keeper.restore(model)
    pred = predict_tags(model, enc, [s for s, _ in test_s], tags)
    test = chunk_scores([t for _, t in test_s], pred)
    baseline = most_frequent_tag_baseline(train_s, test_s)
    metrics = {"task": "tag", "test": test, "baselines": {"most_frequent_tag": baseline},
               "train": {"epochs_run": len(hist["train loss"]), "best_epoch": keeper.epoch,
                         "seconds": budget.elapsed(), "stopped_by_time_budget": stopped, "history": hist},
               "data": {"source": cfg.data, "train_sentences": len(fit_s), "validation_sentences": len(val_s),
                        "test_sentences": len(test_s), "tags": tags, "scheme": tag_scheme(tags),
                        "vocab_size": len(vocab)}}
    settings = {k: v for k, v in asdict(cfg).items() if k != "common"}
    settings.update({"epochs": epochs, "batch_size": bsz, "hidden": hidden, "layers": layers})
    with OutputDir(c.out or "runs/tag") as od:
        d = od.path
        save_model(model, d / "model", include_optimizer=False, metadata={"task": "tag"})
        vocab.save(d / "vocab.json")
        if cvocab is not None:
            cvocab.save(d / "char_vocab.json")
        write_json(d / "tags.json", {"tags": tags})
        write_json(d / "config.json", base_config("tag", c, **settings))
        write_json(d / "metrics.json", metrics)
        plot_curves(d / "training_curves.png", hist, "tagger training")
        rows = {"bilstm": {k: test[k] for k in ("precision", "recall", "f1", "token_accuracy")},
                "most_frequent_tag": baseline}
        per = "\n".join(f"- {t}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f}"
                        for t, v in test["per_type"].items())
        write_report(d / "report.md", "Sequence tagging", rows, plots=["training_curves.png"],
                     notes=[f"entity scores: exact span match (conlleval); {test['gold_chunks']} gold entities"],
                     sections={"Per entity type": per or "(no entities)"})
    return metrics


def load(model_dir):
    """(model, encoder, tag names) of a ``tag`` directory."""
    _, model = load_task_dir(model_dir, "tag")
    d = Path(model_dir)
    cvocab = Vocab.load(d / "char_vocab.json") if (d / "char_vocab.json").exists() else None
    return model, _Encoder(Vocab.load(d / "vocab.json"), cvocab), read_json(d / "tags.json")["tags"]


def predict(args) -> int:
    """``lstmkit predict``: tag a CoNLL file or a file of token lines (one token per line, blank lines between
    sentences; extra columns ignored); writes ``token<TAB>tag`` CoNLL to --output or stdout."""
    model, enc, tags = load(args.model)
    sents = [s for s, _ in read_conll(args.data, require_tags=False)]
    write_conll(args.output, list(zip(sents, predict_tags(model, enc, sents, tags))))
    return 0


def evaluate(args) -> int:
    """``lstmkit evaluate``: entity precision/recall/F1 and token accuracy on a tagged CoNLL file (JSON)."""
    model, enc, tags = load(args.model)
    sents = read_conll(args.data)
    res = chunk_scores([t for _, t in sents], predict_tags(model, enc, [s for s, _ in sents], tags))
    print(json.dumps(res, indent=2))
    return 0


def add_flags(p: argparse.ArgumentParser) -> None:
    """The task flags of ``lstmkit train tag``."""
    p.add_argument("--data", required=True, metavar="TRAIN.conll", help="training CoNLL file")
    p.add_argument("--test-data", default=None, metavar="TEST.conll", help="test CoNLL file (default: 20%% split)")
    p.add_argument("--embed", type=int, default=64, help="word embedding size (default: 64)")
    p.add_argument("--char-features", action=argparse.BooleanOptionalAction, default=True,
                   help="character BiLSTM features per token (default: on)")
    p.add_argument("--dropout", type=float, default=0.3, help="dropout (default: 0.3)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 3e-3)")
