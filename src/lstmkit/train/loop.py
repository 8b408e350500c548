"""The training loop behind Model.fit/evaluate/predict: batches, steps, metrics, callbacks, progress, resume, DDP.

Reproducibility: each epoch's shuffle order (of arrays, or of a DataLoader whose sampler has no generator of its
own) comes from a seed drawn once per fit from torch's global RNG plus the epoch index, and BackupAndRestore
saves the RNG state, so a resumed run repeats the uninterrupted one.
Distributed (torchrun): ``batch_size`` is the global batch; rank r trains on samples r, r+N, ... of each global
batch, and its loss is scaled so that DDP's gradient average equals the single-process gradient. With a
DataLoader each batch it yields is a global batch (every rank iterates it; seed torch alike on every rank when it
shuffles).
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from lstmkit.train import checks, data as D, distributed as dist, resume
from lstmkit.train import tbptt as tbptt_mod
from lstmkit.train.callbacks import BackupAndRestore, Callback, History


def _require_compiled(model):
    if getattr(model, "loss_fn", None) is None:
        raise RuntimeError(f"{type(model).__name__}: call model.compile(optimizer, loss) before training or "
                           f"evaluating")


class _Sums:
    """Running sums of the weighted loss and per-sample metrics over an epoch."""

    def __init__(self, metric_names: List[str]):
        self.names = metric_names
        self.loss = 0.0
        self.weight = 0.0
        self.metrics = [0.0] * len(metric_names)
        self.count = 0.0

    def add(self, loss_sum, weight, metric_sums, count):
        self.loss += float(loss_sum)
        self.weight += float(weight)
        self.metrics = [a + float(b) for a, b in zip(self.metrics, metric_sums)]
        self.count += float(count)

    def result(self, reduce: bool = False) -> Dict[str, float]:
        vals = torch.tensor([self.loss, self.weight, self.count] + self.metrics, dtype=torch.float64)
        if reduce:
            vals = dist.all_reduce_sum(vals)
        loss, _, count = vals[:3].tolist()
        out = {"loss": loss / max(count, 1)}
        for n, v in zip(self.names, vals[3:].tolist()):
            out[n] = v / max(count, 1)
        return out

    def state(self):
        return {"loss": self.loss, "weight": self.weight, "metrics": self.metrics, "count": self.count}

    def load(self, s):
        self.loss, self.weight, self.metrics, self.count = s["loss"], s["weight"], s["metrics"], s["count"]


def _step_values(model, runner, xb, yb, wb, n_global: int, train: bool):
    """Forward (and backward + step when ``train``); returns (weighted loss sum, metric sums, n_local)."""
    out = runner(xb)
    per = model.loss_fn(yb, out)
    n_local = xb.shape[0]
    if per.dim() == 0:  # a custom loss that already averaged: weights cannot apply
        loss_sum = per * n_local
    else:
        w = torch.ones(n_local, dtype=per.dtype) if wb is None else wb.to(per.dtype)
        loss_sum = (per * w).sum()
    if train:
        scaled = loss_sum / n_global * dist.world_size()
        scaled.backward()
        if model.clipnorm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), model.clipnorm)
        if model.clipvalue:
            torch.nn.utils.clip_grad_value_(model.parameters(), model.clipvalue)
        model.optimizer.step()
    with torch.no_grad():
        o = out.detach()
        msums = [m.fn(yb, o).sum() for m in model.metric_fns]
    return loss_sum.detach(), msums, n_local


def _prepare(model, x, y, sample_weight, what):
    dtype = D.model_dtype(model)
    xt = D.to_tensor(x, "x", dtype)
    yt = D.to_tensor(y, "y", torch.float32 if dtype == torch.float32 else dtype)
    wt = D.to_tensor(sample_weight, "sample_weight", torch.float64)
    checks.check_arrays(xt, yt, wt, what)
    checks.check_input_shape(model, xt, what)
    return xt, yt, wt


def _probe(model, xt, yt, loss, what):
    """Run two samples in eval mode (builds lazy layers) and check the loss fits the output."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xt[:2])
    except (ValueError, RuntimeError, IndexError) as e:
        raise ValueError(f"{what}: x of shape {tuple(xt.shape)} does not fit the model: {e}") from None
    finally:
        model.train(was)
        if hasattr(model, "reset_states"):
            model.reset_states()
    if yt is not None and torch.is_tensor(out):
        checks.check_targets(model, loss, out, yt[:len(out)] if False else yt, what)


def _callback_keys(cbs) -> Dict[str, Callback]:
    """Callbacks by "ClassName#k" (k-th of its class), so a resumed fit matches saved states to callbacks even
    when the list differs (e.g. a callback that only the crashed run had)."""
    keys, seen = {}, {}
    for cb in cbs:
        name = type(cb).__name__
        keys[f"{name}#{seen.get(name, 0)}"] = cb
        seen[name] = seen.get(name, 0) + 1
    return keys


def _format_logs(logs: Dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def fit(model, x=None, y=None, *, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
        steps_per_epoch=None, validation_batch_size=None, tbptt=None, **unused):
    """Train ``model`` (compiled) and return its History.

    Args: x, y (numpy arrays or tensors, or x a torch Dataset/DataLoader yielding (x, y[, w])); batch_size=32
    (global batch under torchrun); epochs=1; verbose "auto"/1 (progress bar), 2 (one line per epoch), 0 (silent);
    callbacks (list of Callback); validation_split (last fraction of x, y held out, as Keras);
    validation_data ((x_val, y_val[, w_val]) or a Dataset/DataLoader); shuffle=True; class_weight ({class: w});
    sample_weight ((N,)); initial_epoch=0; steps_per_epoch (limit batches per epoch); tbptt (an int k:
    truncated backpropagation through time, see :mod:`lstmkit.train.tbptt`; y needs a target per time step).
    """
    _require_compiled(model)
    if unused:
        raise TypeError(f"fit() got unexpected arguments {sorted(unused)}")
    if tbptt is not None:
        tbptt_mod.check(model, tbptt)
    batch_size = int(batch_size or 32)
    if batch_size < 1:
        raise ValueError(f"fit: batch_size={batch_size!r}; expected a positive integer")
    verbose = 1 if verbose == "auto" else int(verbose)
    distributed = dist.maybe_init()
    if not dist.is_rank0():
        verbose = 0

    loader = None
    if D.is_loader(x):
        loader = D.as_loader(x, batch_size, shuffle)
        first = D.split_batch(next(iter(loader)))
        xt = D.to_tensor(first[0], "x", D.model_dtype(model))
        yt = D.to_tensor(first[1], "y", torch.float32)
        wt = None
        _probe(model, xt, yt, model._compile_config.get("loss") if model._compile_config else None, "fit")
    else:
        xt, yt, wt = _prepare(model, x, y, sample_weight, "fit")
        if yt is None:
            raise ValueError("fit: y is None; expected targets for x (or a Dataset/DataLoader yielding (x, y))")
        if class_weight:
            cw = D.class_weights_for(yt, class_weight).to(torch.float64)
            wt = cw if wt is None else wt * cw
        if validation_split and validation_data is None:
            if not 0 < validation_split < 1:
                raise ValueError(f"fit: validation_split={validation_split!r}; expected a float in (0, 1)")
            k = int(len(xt) * (1 - validation_split))
            validation_data = (xt[k:], yt[k:]) if wt is None else (xt[k:], yt[k:], wt[k:])
            xt, yt, wt = xt[:k], yt[:k], None if wt is None else wt[:k]
        loss_spec = model._compile_config.get("loss") if model._compile_config else None
        _probe(model, xt, yt, loss_spec, "fit")
    if validation_data is not None and not D.is_loader(validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(f"fit: validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or a "
                             f"Dataset/DataLoader; got {type(validation_data).__name__}")
        vx, vy = validation_data[0], validation_data[1]
        vw = validation_data[2] if len(validation_data) > 2 else None
        validation_data = _prepare(model, vx, vy, vw, "fit (validation_data)")
    opt = model._make_optimizer()
    if opt is None:
        raise ValueError(f"fit: {type(model).__name__} has no trainable parameters")
    runner = model
    if distributed:
        runner = torch.nn.parallel.DistributedDataParallel(model)

    history = History()
    cbs: List[Callback] = list(callbacks or []) + [history]  # last, as Keras: it sees keys others add to logs
    for cb in cbs:
        cb.set_model(model)
        cb.params = {"epochs": epochs, "verbose": verbose}
    backup = next((cb for cb in cbs if isinstance(cb, BackupAndRestore)), None)
    names = [m.name for m in model.metric_fns]
    base_seed = int(torch.randint(0, 2 ** 62, (1,)).item())
    start_epoch, start_batch, sums_state, info = initial_epoch, 0, None, None
    if backup is not None:
        info = resume.load(backup.backup_dir, model, opt)
        if info is not None:
            start_epoch, start_batch, base_seed = info["epoch"], info["batch"], info["seed"]
            sums_state = info["sums"]

    def save_backup(epoch, batch, sums):
        if dist.is_rank0():
            resume.save(backup.backup_dir, model, opt, {
                "epoch": epoch, "batch": batch, "seed": base_seed, "sums": sums.state() if sums else None,
                "callbacks": {key: cb.get_state() for key, cb in _callback_keys(cbs).items()}})
        if distributed:
            torch.distributed.barrier()

    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin({})
    if info is not None:  # after on_train_begin, so the restored callback states are not reset
        saved = info["callbacks"]
        for key, cb in _callback_keys(cbs).items():
            if saved.get(key):
                cb.set_state(saved[key])
    logs: Dict[str, float] = {}
    for epoch in range(start_epoch, epochs):
        for cb in cbs:
            cb.on_epoch_begin(epoch, {})
        t0 = time.time()
        sums = _Sums(names)
        if sums_state is not None:
            sums.load(sums_state)
            sums_state = None
        if loader is not None:  # a shuffling sampler without its own generator draws from torch's global RNG:
            with torch.random.fork_rng(devices=[]):  # seed it per epoch (resume-safe), leave the global RNG alone
                torch.manual_seed(base_seed + epoch)
                batches = list(loader)
        else:
            batches = D.index_batches(len(xt), batch_size, shuffle, base_seed + epoch)
        if steps_per_epoch:
            batches = batches[:steps_per_epoch]
        bar = None
        if verbose == 1:
            bar = tqdm(total=len(batches), initial=start_batch, desc=f"Epoch {epoch + 1}/{epochs}",
                       file=sys.stdout, unit="batch", leave=True, mininterval=0.5, ascii=True)
        model.train()
        for b in range(start_batch, len(batches)):
            for cb in cbs:
                cb.on_train_batch_begin(b, {})
            if loader is not None:
                bx, by, bw = D.split_batch(batches[b])
                bx = D.to_tensor(bx, "x", D.model_dtype(model))
                by = D.to_tensor(by, "y", torch.float32)
                n_global = len(bx)
                if distributed:  # every rank reads the same global batch (same seed) and trains on its share
                    local = dist.shard(torch.arange(n_global))
                    bx, by = bx[local], by[local]
                    bw = None if bw is None else bw[local]
            else:
                idx = batches[b]
                n_global = len(idx)
                local = dist.shard(idx)
                bx, by = xt[local], yt[local]
                bw = None if wt is None else wt[local]
            opt.zero_grad(set_to_none=True)
            if tbptt:
                loss_sum, msums, n = tbptt_mod.step(_step_values, model, runner, opt, bx, by, bw, n_global,
                                                    int(tbptt))
            else:
                loss_sum, msums, n = _step_values(model, runner, bx, by, bw, n_global, train=True)
            sums.add(loss_sum, 0.0, msums, n)
            blog = {"loss": float(loss_sum) / max(n, 1)}
            if bar is not None:
                bar.update(1)
                bar.set_postfix(sums.result(), refresh=False)
            for cb in cbs:
                cb.on_train_batch_end(b, blog)
            if backup is not None and backup.save_freq != "epoch" and (b + 1) % backup.save_freq == 0 \
                    and b + 1 < len(batches):
                save_backup(epoch, b + 1, sums)
            if distributed:
                model.stop_training = dist.any_rank(model.stop_training)
            if model.stop_training:
                break
        start_batch = 0
        logs = sums.result(reduce=distributed)
        if validation_data is not None:
            vlogs = _evaluate_logs(model, validation_data, validation_batch_size or batch_size)
            logs.update({f"val_{k}": v for k, v in vlogs.items()})
        if bar is not None:
            bar.set_postfix(logs, refresh=True)
            bar.close()
        elif verbose == 2:
            print(f"Epoch {epoch + 1}/{epochs} - {time.time() - t0:.1f}s - {_format_logs(logs)}", flush=True)
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        if distributed:
            model.stop_training = dist.any_rank(model.stop_training)
        if backup is not None:
            save_backup(epoch + 1, 0, None)
        if model.stop_training:
            break
    for cb in cbs:
        cb.on_train_end(logs)
    if backup is not None and backup.delete_checkpoint and dist.is_rank0():
        resume.delete(backup.backup_dir)
    model.history = history
    return history


def _evaluate_logs(model, data, batch_size: int) -> Dict[str, float]:
    """Loss and metrics over (x, y[, w]) tensors or a Dataset/DataLoader, in eval mode, no gradients."""
    sums = _Sums([m.name for m in model.metric_fns])
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if D.is_loader(data):
                for batch in D.as_loader(data, batch_size, False):
                    bx, by, bw = D.split_batch(batch)
                    bx = D.to_tensor(bx, "x", D.model_dtype(model))
                    by = D.to_tensor(by, "y", torch.float32)
                    sums.add(*_eval_batch(model, bx, by, bw))
            else:
                xt, yt, wt = data
                for i in range(0, len(xt), batch_size):
                    sl = slice(i, i + batch_size)
                    sums.add(*_eval_batch(model, xt[sl], yt[sl], None if wt is None else wt[sl]))
    finally:
        model.train(was)
    return sums.result()


def _eval_batch(model, bx, by, bw):
    loss_sum, msums, n = _step_values(model, model, bx, by, bw, len(bx), train=False)
    return loss_sum, 0.0, msums, n


def evaluate(model, x, y=None, *, batch_size=None, verbose="auto", sample_weight=None, return_dict=False):
    """Loss (and metrics, in compile order) on x, y as Keras returns them: a float without metrics, else a list;
    a dict with return_dict=True."""
    _require_compiled(model)
    batch_size = int(batch_size or 32)
    if D.is_loader(x):
        logs = _evaluate_logs(model, x, batch_size)
    else:
        xt, yt, wt = _prepare(model, x, y, sample_weight, "evaluate")
        if yt is None:
            raise ValueError("evaluate: y is None; expected targets for x")
        loss_spec = model._compile_config.get("loss") if model._compile_config else None
        _probe(model, xt, yt, loss_spec, "evaluate")
        logs = _evaluate_logs(model, (xt, yt, wt), batch_size)
    if verbose not in (0, "0") and dist.is_rank0() and verbose != "auto":
        print(_format_logs(logs))
    if return_dict:
        return logs
    vals = list(logs.values())
    return vals[0] if len(vals) == 1 else vals


def predict(model, x, *, batch_size=None, verbose="auto") -> np.ndarray:
    """Model outputs for x (array, tensor, Dataset or DataLoader), batch by batch in eval mode, as numpy."""
    batch_size = int(batch_size or 32)
    dtype = D.model_dtype(model)
    if D.is_loader(x):
        batches = (D.to_tensor(D.split_batch(b)[0], "x", dtype) for b in D.as_loader(x, batch_size, False))
    else:
        xt = D.to_tensor(x, "x", dtype)
        checks.check_input_shape(model, xt, "predict")
        batches = D.iterate(xt, batch_size)
    outs = []
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for bx in batches:
                outs.append(model(bx))
    finally:
        model.train(was)
    if outs and isinstance(outs[0], (list, tuple)):
        return [torch.cat([o[i] for o in outs]).cpu().numpy() for i in range(len(outs[0]))]
    return torch.cat(outs).cpu().numpy()


def train_on_batch(model, x, y, *, sample_weight=None, class_weight=None, return_dict=False):
    """One optimisation step on (x, y); returns the batch loss (and metrics) as evaluate does."""
    _require_compiled(model)
    xt, yt, wt = _prepare(model, x, y, sample_weight, "train_on_batch")
    if class_weight:
        cw = D.class_weights_for(yt, class_weight).to(torch.float64)
        wt = cw if wt is None else wt * cw
    if model.optimizer is None:
        _probe(model, xt, yt, model._compile_config.get("loss") if model._compile_config else None,
               "train_on_batch")
    opt = model._make_optimizer()
    model.train()
    opt.zero_grad(set_to_none=True)
    loss_sum, msums, n = _step_values(model, model, xt, yt, wt, len(xt), train=True)
    logs = {"loss": float(loss_sum) / n}
    logs.update({m.name: float(s) / n for m, s in zip(model.metric_fns, msums)})
    if return_dict:
        return logs
    vals = list(logs.values())
    return vals[0] if len(vals) == 1 else vals
