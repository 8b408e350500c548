"""Saving and loading models without pickle: JSON architecture + safetensors weights/optimizer, atomic, checksummed.

A model directory holds::

    config.json                      format marker, class name, get_config(), build shape, compile settings,
                                     sha256 and size of every file below, and any caller metadata (e.g. "task")
    weights-<hash>.safetensors       the state_dict
    optimizer-<hash>.safetensors     optimizer tensors (optional)      + optimizer-<hash>.json (its other state)

Atomicity: data files are written under content-hashed names (temporary file, fsync, rename), then
``config.json`` is replaced atomically last; it is the commit point. A crash at any moment leaves either the old
model or the new one, never a mix. Stale data files are deleted after the commit. Other files in the directory
(plots, logs written by a pipeline) are left alone.

Example::

    from lstmkit.models import save_model, load_model
    save_model(model, "out/model", metadata={"task": "forecast"})
    model2 = load_model("out/model")
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lstmkit import _registry

FORMAT = "lstmkit.model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"


class ModelFileError(ValueError):
    """A model directory is missing, not an lstmkit model, truncated, or fails its checksum."""


# -- low-level atomic file helpers (reusable) -----------------------------------------------------------
def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def tensors_to_bytes(tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    """safetensors bytes of a name -> tensor dict (copies, so shared or non-contiguous storage is fine)."""
    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)


def tensors_digest(tensors: Dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of ``tensors`` (in name order): a checksum that can live
    inside the safetensors header of the file it describes."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}|{tensors[k].dtype}|{tuple(tensors[k].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _safetensors_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of safetensors bytes (header parsed by hand; ValueError if it is not safetensors)."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes, too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"header length {n} exceeds the file size {len(data)}")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header.get("__metadata__") or {}


WEIGHTS_FORMAT = "lstmkit.weights"


def save_weights_file(model, path) -> None:
    """Weights of ``model`` as one safetensors file at ``path``, with a content checksum in its header, written
    atomically."""
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, tensors_to_bytes(sd, {"format": WEIGHTS_FORMAT, "sha256": tensors_digest(sd)}))


def load_weights_file(model, path, strict: bool = True) -> None:
    """Load weights saved by :func:`save_weights_file` (or a model directory, or any safetensors state_dict) into
    the built ``model``. ModelFileError naming the file when it is missing, truncated, corrupted or does not fit."""
    p = Path(path)
    if p.is_dir():
        return load_weights_into(model, p, strict=strict)
    if not p.exists():
        raise ModelFileError(f"weights file {str(p)!r} does not exist")
    data = p.read_bytes()
    try:
        meta = _safetensors_metadata(data)
        sd = st_load(data)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise ModelFileError(f"weights file {str(p)!r} is not a valid safetensors file (truncated or corrupted?): "
                             f"{e}") from None
    if meta.get("format") == WEIGHTS_FORMAT and tensors_digest(sd) != meta.get("sha256"):
        raise ModelFileError(f"weights file {str(p)!r} fails its sha256 checksum (corrupted)")
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ModelFileError(f"weights file {str(p)!r} does not fit {type(model).__name__}: {e}") from None
    if strict and (missing or unexpected):
        raise ModelFileError(f"weights file {str(p)!r} does not fit {type(model).__name__}: missing {missing}, "
                             f"unexpected {unexpected}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- optimizer state without pickle -----------------------------------------------------------------------
def optimizer_state_to_parts(opt: torch.optim.Optimizer):
    """Split ``opt.state_dict()`` into (tensors dict, JSON-able dict)."""
    sd = opt.state_dict()
    tensors, state_json = {}, {}
    for pid, st in sd["state"].items():
        entry = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v
            else:
                entry[k] = v
        state_json[str(pid)] = entry
    groups = json.loads(json.dumps(sd["param_groups"], default=_json_default))
    return tensors, {"state": state_json, "param_groups": groups, "state_keys": sorted(map(str, sd["state"]))}


def optimizer_state_from_parts(tensors: Dict[str, torch.Tensor], info: dict) -> dict:
    """Rebuild an optimizer state_dict from :func:`optimizer_state_to_parts` output."""
    state: Dict[int, Dict[str, Any]] = {int(pid): dict(v) for pid, v in info["state"].items()}
    for key, t in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    groups = info["param_groups"]
    for g in groups:
        for k, v in list(g.items()):
            if k == "betas" and isinstance(v, list):
                g[k] = tuple(v)
    return {"state": state, "param_groups": groups}


def _json_default(o):
    if isinstance(o, (tuple, set)):
        return list(o)
    if torch.is_tensor(o) and o.numel() == 1:
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in JSON")


# -- model directories ------------------------------------------------------------------------------------
def save_model(model, path, *, optimizer: Optional[torch.optim.Optimizer] = None, include_optimizer: bool = True,
               metadata: Optional[dict] = None) -> Path:
    """Save ``model`` (any registered lstmkit Model/Layer with ``get_config``) to directory ``path``.

    Args:
        model: an instance of a class registered with :func:`lstmkit.models.register`.
        path: directory (created if needed).
        optimizer: optimizer whose state to save; default the model's compiled optimizer if any.
        include_optimizer: False skips the optimizer state (default True).
        metadata: extra JSON-able top-level keys for config.json, e.g. ``{"task": "forecast"}``.
    Returns the directory path.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        previous = {f["file"] for f in read_config(path)["files"].values()}
    except ModelFileError:
        previous = set()
    written: list = []
    try:
        return _save_model(model, path, optimizer, include_optimizer, metadata, written)
    except BaseException:
        for name in written:  # a failed save leaves the directory as it was (the old model, if any)
            if name not in previous:
                (path / name).unlink(missing_ok=True)
        raise


def _save_model(model, path: Path, optimizer, include_optimizer: bool, metadata, written: list) -> Path:
    cfg: Dict[str, Any] = dict(metadata or {})
    cfg.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_name": _registry.registered_name(model),
        "config": model.get_config(),
        "build": getattr(model, "_build_spec", None),
    })
    compile_cfg = getattr(model, "_compile_config", None)
    if compile_cfg is not None:
        cfg["compile"] = compile_cfg
    files: Dict[str, dict] = {}

    def put(prefix: str, ext: str, data: bytes) -> str:
        digest = _sha256(data)
        name = f"{prefix}-{digest[:16]}.{ext}"
        written.append(name)
        atomic_write_bytes(path / name, data)
        files[prefix] = {"file": name, "sha256": digest, "size": len(data)}
        return name

    put("weights", "safetensors", tensors_to_bytes(dict(model.state_dict())))
    if optimizer is None and include_optimizer:
        optimizer = getattr(model, "optimizer", None)
    if include_optimizer and isinstance(optimizer, torch.optim.Optimizer):
        tensors, info = optimizer_state_to_parts(optimizer)
        info["class_name"] = type(optimizer).__name__
        put("optimizer", "safetensors", tensors_to_bytes(tensors))
        put("optimizer_info", "json", json.dumps(info, default=_json_default).encode())
    cfg["files"] = files
    atomic_write_bytes(path / CONFIG_NAME, json.dumps(cfg, indent=2, default=_json_default).encode())
    keep = {f["file"] for f in files.values()}
    for p in path.iterdir():  # stale data files of previous saves
        if p.name not in keep and p.name.split("-")[0] in ("weights", "optimizer", "optimizer_info") \
                and p.suffix in (".safetensors", ".json"):
            p.unlink(missing_ok=True)
    return path


def read_config(path) -> dict:
    """The parsed, validated config.json of a model directory (ModelFileError if it is not one)."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME if path.is_dir() else path
    if not cfg_path.exists():
        raise ModelFileError(f"model path {str(path)!r}: no {CONFIG_NAME} found; expected a directory written "
                             f"by lstmkit save_model / model.save")
    raw = cfg_path.read_bytes()
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"model path {str(path)!r}: {CONFIG_NAME} is not valid JSON ({e}); the file is "
                             f"truncated or corrupted") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise ModelFileError(f"model path {str(path)!r}: not an lstmkit model ({CONFIG_NAME} format={got!r}, "
                             f"expected {FORMAT!r})")
    version = cfg.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"model path {str(path)!r}: format_version {version!r} is not one this lstmkit reads "
                             f"(up to {FORMAT_VERSION}); upgrade lstmkit")
    for key, typ in (("class_name", str), ("config", dict), ("files", dict)):
        if not isinstance(cfg.get(key), typ):
            raise ModelFileError(f"model path {str(path)!r}: {CONFIG_NAME} entry {key!r} is "
                                 f"{cfg.get(key)!r}; expected a {typ.__name__} (file damaged or hand-edited)")
    for key, entry in cfg["files"].items():
        ok = (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("size"), int)
              and isinstance(entry.get("sha256"), str) and entry["file"] == Path(entry["file"]).name)
        if not ok:
            raise ModelFileError(f"model path {str(path)!r}: {CONFIG_NAME} files[{key!r}] = {entry!r}; expected "
                                 f"{{'file': <name in the directory>, 'sha256': str, 'size': int}}")
    return cfg


def read_file_checked(path, cfg: dict, key: str) -> Optional[bytes]:
    """Bytes of data file ``key`` ("weights", "optimizer", ...) after size and sha256 checks; None if absent."""
    entry = cfg.get("files", {}).get(key)
    if entry is None:
        return None
    fp = Path(path) / entry["file"]
    if not fp.exists():
        raise ModelFileError(f"model path {str(path)!r}: {entry['file']} is missing (config.json refers to it)")
    data = fp.read_bytes()
    if len(data) != entry["size"]:
        raise ModelFileError(f"model path {str(path)!r}: {entry['file']} is truncated or altered: "
                             f"{len(data)} bytes, expected {entry['size']}")
    if _sha256(data) != entry["sha256"]:
        raise ModelFileError(f"model path {str(path)!r}: {entry['file']} fails its sha256 checksum "
                             f"(corrupted); expected {entry['sha256']}")
    return data


def _load_tensors(path, cfg, key) -> Optional[Dict[str, torch.Tensor]]:
    data = read_file_checked(path, cfg, key)
    if data is None:
        return None
    try:
        return st_load(data)
    except (SafetensorError, Exception) as e:  # checksum passed, so this is a foreign writer's bad file
        raise ModelFileError(f"model path {str(path)!r}: {key} file is not valid safetensors ({e})") from None


def load_weights_into(model, path, cfg: Optional[dict] = None, strict: bool = True) -> None:
    """Load the checked weights of model directory ``path`` into an already-built ``model``."""
    cfg = cfg or read_config(path)
    sd = _load_tensors(path, cfg, "weights")
    if sd is None:
        raise ModelFileError(f"model path {str(path)!r}: config.json lists no weights file")
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ModelFileError(f"model path {str(path)!r}: weights do not fit {type(model).__name__}: {e}") from None
    if strict and (missing or unexpected):
        raise ModelFileError(f"model path {str(path)!r}: weights do not fit {type(model).__name__}: "
                             f"missing {missing}, unexpected {unexpected}")


def load_optimizer_state(path, optimizer: torch.optim.Optimizer, cfg: Optional[dict] = None) -> bool:
    """Load saved optimizer state into ``optimizer``; False when the directory holds none."""
    cfg = cfg or read_config(path)
    tensors = _load_tensors(path, cfg, "optimizer")
    info = read_file_checked(path, cfg, "optimizer_info")
    if tensors is None or info is None:
        return False
    try:
        optimizer.load_state_dict(optimizer_state_from_parts(tensors, json.loads(info)))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"model path {str(path)!r}: saved optimizer state does not fit "
                             f"{type(optimizer).__name__} ({e})") from None
    return True


def load_model(path, *, compile: bool = True):
    """Rebuild the model saved in directory ``path``: class from the registry, config, build, weights, and
    (compile=True) the compile settings and optimizer state.

    Raises ModelFileError for a missing, foreign, truncated or corrupted directory, ValueError for an unknown
    class (import the module that registers it first).
    """
    cfg = read_config(path)
    import lstmkit.layers  # noqa: F401  (registers the built-in classes)
    import lstmkit.models  # noqa: F401
    try:
        cls = _registry.get_class(cfg["class_name"])
    except ValueError as e:
        raise ModelFileError(f"model path {str(path)!r}: {e}") from None
    try:
        model = cls.from_config(cfg["config"]) if hasattr(cls, "from_config") else cls(**cfg["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"model path {str(path)!r}: {CONFIG_NAME} 'config' does not rebuild "
                             f"{cfg['class_name']} ({type(e).__name__}: {e})") from None
    if cfg.get("build") and hasattr(model, "build_from_spec"):
        model.build_from_spec(cfg["build"])
    load_weights_into(model, path, cfg)
    if compile and cfg.get("compile") and hasattr(model, "compile_from_config"):
        model.compile_from_config(cfg["compile"])
        opt = model._make_optimizer() if hasattr(model, "_make_optimizer") else None
        if opt is not None:
            load_optimizer_state(path, opt, cfg)
    model.eval()
    return model
