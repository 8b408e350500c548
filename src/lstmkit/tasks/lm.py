"""Language modelling: a character (default) or word LSTM LM trained with truncated BPTT over a text stream.

``lstmkit train lm --data FILE_OR_DIR [--test-data FILE] [--level char|word] [--out DIR]``

- Data: a UTF-8 file, or a directory whose files are read in name order (COPYRIGHT*/README*/LICENSE* and hidden
  files skipped); default the bundled fortune corpus. Without ``--test-data`` the last 10% of the text (by
  characters) is held out for the test; the last 5% of the remaining training text is the validation slice
  that picks the best weights.
- Training: the token stream is cut into ``batch_size`` parallel streams and walked in chunks of ``bptt``
  steps; the recurrent state is carried (detached) from chunk to chunk, so context flows across chunk borders
  while gradients are truncated. Adam with a cosine learning-rate decay over the run (progress = max(epoch
  fraction, time-budget fraction)), gradient-norm clipping.
- Metrics (held-out text): char level ``bpc`` = mean negative log2-likelihood per character; word level ``ppl``
  = exp(mean negative log-likelihood per word token). Held-out tokens missing from the training vocabulary
  are scored as ``<unk>``. The evaluation cuts the held-out stream into 8 streams; the first token of each
  stream is context only (not scored).
- Baseline ``xz``: ``bpc = 8 * len(lzma.compress(heldout_bytes, preset=9 | lzma.PRESET_EXTREME)) / num_chars``
  where heldout_bytes is the UTF-8 encoding of the held-out text and num_chars its number of characters.

Defaults (chosen by experiment, see docs/text.md): char level, embedding 64, 1-layer LSTM of 256 units,
bptt 100, batch 32, lr 3e-3, dropout 0.1, at most 30 epochs within a 540 s time budget.
"""
from __future__ import annotations

import json
import lzma
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from lstmkit.data.text import bundled_text_dir, read_text_tree
from lstmkit.data.tokenize import Tokenizer, Vocab
from lstmkit.errors import UserError
from lstmkit.models import Model, register, save_model
from lstmkit.tasks.common import (CommonConfig, OutputDir, TimeBudget, base_config, make_recurrent, progress,
                                  set_seed, write_json, write_report)
from lstmkit.tasks.plots import plot_curves
from lstmkit.tasks.textutil import BestKeeper, load_task_dir

DEFAULTS = {"epochs": 30, "batch_size": 32, "hidden": 256, "layers": 1, "time_budget": 540.0}
EVAL_STREAMS = 8


@dataclass
class LMConfig:
    """Settings of ``lstmkit train lm`` (``common`` holds the shared flags; None there = :data:`DEFAULTS`)."""

    data: Optional[str] = None
    test_data: Optional[str] = None
    level: str = "char"
    lower: bool = False
    embed: int = 64
    bptt: int = 100
    lr: float = 3e-3
    dropout: float = 0.1
    clip: float = 1.0
    min_freq: int = 1  # word level: rarer words become <unk>
    max_vocab: Optional[int] = None
    common: CommonConfig = field(default_factory=CommonConfig)


@register("lm.LanguageModel")
class LanguageModel(Model):
    """Embedding -> recurrent layers -> dropout -> linear over the vocabulary.

    ``forward(x (B, T) long, state=None) -> (logits (B, T, V), state)``; pass the returned state back to continue.
    """

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 512, layers: int = 1, cell: str = "lstm",
                 dropout: float = 0.1, backend: str = "auto"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = make_recurrent(cell, embed, hidden, layers, dropout=dropout, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        y, state = self.rnn(self.drop(self.embedding(x)), state)
        return self.head(self.drop(y)), state


def detach_state(state):
    """The recurrent state with the graph cut (tensor or tuple of tensors)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def xz_bpc(text: str) -> float:
    """xz baseline: 8 * len(lzma.compress(utf8, preset=9|PRESET_EXTREME)) / number of characters of ``text``."""
    comp = lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    return 8.0 * len(comp) / max(1, len(text))


def streams(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(n, L) view of a 1-D id tensor cut into ``n`` consecutive streams (the remainder dropped)."""
    L = ids.numel() // n
    if L < 2:
        raise UserError(f"text too short: {ids.numel()} tokens cannot make {n} streams of >= 2 tokens")
    return ids[:n * L].view(n, L)


def stream_nll(model: LanguageModel, ids: torch.Tensor, bptt: int = 200, n_streams: int = EVAL_STREAMS):
    """(sum of negative log-likelihoods in nats, number of scored tokens) of ``ids`` (1-D) under ``model``."""
    n_streams = max(1, min(n_streams, ids.numel() // 2))
    data = streams(ids, n_streams)
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, data.size(1) - 1, bptt):
            x = data[:, i:i + bptt]
            y = data[:, i + 1:i + 1 + bptt]
            x = x[:, :y.size(1)]
            logits, state = model(x, state=state)
            total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                       reduction="sum"))
            count += y.numel()
    return total, count


def score(model, ids: torch.Tensor, level: str, num_chars: int) -> dict:
    """Held-out metrics: bpc (char) or ppl (word), plus the mean loss in nats and token counts."""
    nll, n = stream_nll(model, ids)
    mean = nll / max(1, n)
    out = {"loss": mean, "tokens_scored": n, "chars": num_chars}
    if level == "char":
        out["bpc"] = mean / math.log(2)
    else:
        out["ppl"] = math.exp(mean)
    return out


def _split(cfg: LMConfig):
    src = cfg.data or str(bundled_text_dir())
    text = read_text_tree(src)
    if cfg.test_data:
        train, heldout = text, read_text_tree(cfg.test_data)
    else:
        cut = int(len(text) * 0.9)
        train, heldout = text[:cut], text[cut:]
    vcut = int(len(train) * 0.95)
    if len(heldout) < 10 or vcut < 10:
        raise UserError(f"--data={src!r}: {len(text)} characters is too little text for a language model")
    return src, train[:vcut], train[vcut:], heldout


def train(cfg: LMConfig) -> dict:
    """Train, evaluate and write the output directory (see module docstring); returns metrics.json content."""
    c = cfg.common
    epochs, bsz, hidden, layers = c.sizes(DEFAULTS)
    budget_s = c.time_budget if c.time_budget is not None else DEFAULTS["time_budget"]
    if cfg.bptt < 1:
        raise UserError(f"--bptt={cfg.bptt} must be a positive integer")
    set_seed(c.seed)
    src, train_text, val_text, heldout = _split(cfg)
    tok = Tokenizer(cfg.level, cfg.lower)
    train_toks = tok(train_text)
    vocab = Vocab.build([train_toks], min_freq=cfg.min_freq, max_size=cfg.max_vocab)
    ids = torch.tensor(vocab.encode(train_toks), dtype=torch.long)
    val_ids = torch.tensor(vocab.encode(tok(val_text)), dtype=torch.long)
    test_ids = torch.tensor(vocab.encode(tok(heldout)), dtype=torch.long)
    bsz = max(1, min(bsz, (ids.numel() - 1) // (cfg.bptt + 1)))
    model = LanguageModel(len(vocab), cfg.embed, hidden, layers, c.cell, cfg.dropout, c.backend)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil((ids.numel() // bsz - 1) / cfg.bptt)
    total_steps = epochs * steps_per_epoch
    budget = TimeBudget(budget_s)
    keeper = BestKeeper()
    hist = {"train loss": [], "validation loss": []}
    step, stopped = 0, False
    gen = torch.Generator().manual_seed(c.seed)
    for epoch in range(1, epochs + 1):
        if budget.exceeded():
            stopped = True
            break
        model.train()
        off = int(torch.randint(0, cfg.bptt, (1,), generator=gen)) if ids.numel() > bsz * (cfg.bptt + 2) * 2 else 0
        data = streams(ids[off:], bsz)
        state, tot, cnt = None, 0.0, 0
        bar = progress(range(0, data.size(1) - 1, cfg.bptt), quiet=c.quiet, desc=f"epoch {epoch}")
        for i in bar:
            frac = min(1.0, max(step / total_steps, budget.elapsed() / budget_s if budget_s else 0.0))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            x = data[:, i:i + cfg.bptt]
            y = data[:, i + 1:i + 1 + cfg.bptt]
            x = x[:, :y.size(1)]
            logits, state = model(x, state=detach_state(state))
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            step += 1
            tot += loss.item() * y.numel()
            cnt += y.numel()
            if budget.exceeded():
                stopped = True
                break
        vnll, vn = stream_nll(model, val_ids)
        hist["train loss"].append(tot / max(1, cnt))
        hist["validation loss"].append(vnll / max(1, vn))
        keeper.update(model, hist["validation loss"][-1], epoch)
        if not c.quiet:
            print(f"epoch {epoch}: train loss {hist['train loss'][-1]:.4f}, validation loss "
                  f"{hist['validation loss'][-1]:.4f} nats/token, {budget.elapsed():.0f}s", flush=True)
        if stopped:
            break
    keeper.restore(model)
    seconds = budget.elapsed()
    test = score(model, test_ids, cfg.level, len(heldout))
    baselines = {"xz": {"bpc": xz_bpc(heldout)}}
    metrics = {"task": "lm", "test": test, "baselines": baselines,
               "train": {"epochs_run": len(hist["train loss"]), "best_epoch": keeper.epoch, "steps": step,
                         "seconds": seconds, "stopped_by_time_budget": stopped, "history": hist},
               "data": {"source": src, "train_chars": len(train_text), "validation_chars": len(val_text),
                        "heldout_chars": len(heldout), "vocab_size": len(vocab)}}
    settings = {k: v for k, v in asdict(cfg).items() if k != "common"}
    settings.update({"epochs": epochs, "batch_size": bsz, "hidden": hidden, "layers": layers,
                     "time_budget": budget_s})
    out = c.out or "runs/lm"
    with OutputDir(out) as od:
        d = od.path
        save_model(model, d / "model", include_optimizer=False, metadata={"task": "lm"})
        vocab.save(d / "vocab.json")
        write_json(d / "tokenizer.json", tok.to_dict())
        write_json(d / "config.json", base_config("lm", c, **settings))
        write_json(d / "metrics.json", metrics)
        plot_curves(d / "training_curves.png", hist, "language model loss (nats/token)")
        key = "bpc" if cfg.level == "char" else "ppl"
        rows = {"lstm": {key: test[key], "loss": test["loss"]}, "xz": baselines["xz"]}
        notes = [f"held-out text: {len(heldout)} characters; xz bpc = 8*len(xz -9e bytes)/characters",
                 f"trained {len(hist['train loss'])} epochs ({step} steps) in {seconds:.0f} s; best epoch "
                 f"{keeper.epoch}" + (" (stopped by the time budget)" if stopped else "")]
        write_report(d / "report.md", "Language model", rows, plots=["training_curves.png"], notes=notes)
    return metrics


def load(model_dir):
    """(model, vocab, tokenizer) of an ``lm`` task directory."""
    from lstmkit.tasks.common import read_json

    _, model = load_task_dir(model_dir, "lm")
    vocab = Vocab.load(Path(model_dir) / "vocab.json")
    tok = Tokenizer.from_dict(read_json(Path(model_dir) / "tokenizer.json"))
    return model, vocab, tok


def evaluate(args) -> int:
    """``lstmkit evaluate --model DIR --data TEXT``: print held-out bpc (char) or ppl (word) of the text as JSON."""
    model, vocab, tok = load(args.model)
    text = read_text_tree(args.data)
    ids = torch.tensor(vocab.encode(tok(text)), dtype=torch.long)
    if ids.numel() < 2:
        raise UserError(f"--data={args.data!r}: too little text to score")
    res = score(model, ids, tok.level, len(text))
    if tok.level == "char":
        res["xz_bpc"] = xz_bpc(text)
    print(json.dumps(res, indent=2))
    return 0


def predict(args) -> int:
    """Language models do not label data: point the user to ``generate`` and ``evaluate``."""
    raise UserError(f"--model={args.model!r} is a language model; use `lstmkit generate --model DIR` to sample "
                    f"text or `lstmkit evaluate --model DIR --data TEXT` to score text")
