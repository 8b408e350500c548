"""Crash-safe training state for BackupAndRestore: one safetensors blob + state.json, written atomically.

``state.json`` is written last with the name and sha256 of the tensor file it belongs to, so a SIGKILL at any
moment leaves the previous complete backup (or none). Tensors: the model state_dict (``model.*``), optimizer
tensors (``optim.*``) and the torch RNG state (``rng.torch``); JSON: optimizer scalars, epoch, batch position,
shuffle seed, running sums and callback states.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Optional, Tuple

import torch
from safetensors.torch import load as st_load

from lstmkit.models.saving import (ModelFileError, _json_default, atomic_write_bytes, optimizer_state_from_parts,
                                   optimizer_state_to_parts, tensors_to_bytes)

STATE = "state.json"


def save(backup_dir, model, optimizer, info: dict) -> None:
    """Write a complete backup of ``model``, ``optimizer``, the torch RNG and ``info`` (JSON-able)."""
    d = Path(backup_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_info = None
    if optimizer is not None:
        ot, opt_info = optimizer_state_to_parts(optimizer)
        tensors.update({f"optim.{k}": v for k, v in ot.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    data = tensors_to_bytes(tensors)
    digest = hashlib.sha256(data).hexdigest()
    name = f"backup-{digest[:16]}.safetensors"
    atomic_write_bytes(d / name, data)
    state = {"format": "lstmkit.backup", "file": name, "sha256": digest, "optimizer": opt_info, "info": info}
    atomic_write_bytes(d / STATE, json.dumps(state, default=_json_default).encode())
    for p in d.glob("backup-*.safetensors"):
        if p.name != name:
            p.unlink(missing_ok=True)


def load(backup_dir, model, optimizer) -> Optional[dict]:
    """Restore a backup into ``model``/``optimizer`` and the torch RNG; returns its ``info`` or None if none."""
    d = Path(backup_dir)
    sp = d / STATE
    if not sp.exists():
        return None
    try:
        state = json.loads(sp.read_text())
    except json.JSONDecodeError as e:
        raise ModelFileError(f"backup {str(sp)!r} is not valid JSON ({e})") from None
    if state.get("format") != "lstmkit.backup":
        raise ModelFileError(f"backup {str(sp)!r} is not an lstmkit training backup")
    fp = d / str(state.get("file"))
    if not fp.is_file():
        raise ModelFileError(f"backup {str(fp)!r} is missing ({STATE} refers to it); delete {str(d)!r} to start "
                             f"training afresh")
    data = fp.read_bytes()
    if hashlib.sha256(data).hexdigest() != state["sha256"]:
        raise ModelFileError(f"backup {str(d / state['file'])!r} fails its sha256 checksum (corrupted)")
    tensors = st_load(data)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and state.get("optimizer") is not None:
        ot = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load_state_dict(optimizer_state_from_parts(ot, state["optimizer"]))
    torch.set_rng_state(tensors["rng.torch"])
    return state["info"]


def delete(backup_dir) -> None:
    shutil.rmtree(backup_dir, ignore_errors=True)
