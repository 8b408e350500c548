"""Run the benchmark suites and collect every raw timing, ratio and target verdict into one JSON-able dict.

Example:
    >>> from lstmkit.bench import run_bench, format_report
    >>> result = run_bench(suites="lstm-train", shapes=[(1, 5, 4, 8)], repeats=2)   # doctest: +SKIP
    >>> print(format_report(result))                                                # doctest: +SKIP
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from typing import Callable, Optional

import torch

import lstmkit
from lstmkit import backend as _backend
from lstmkit.bench import builders, timing
from lstmkit.bench.suites import GRID, STREAM_HIDDEN, SUITES, parse_suites

SCHEMA = "lstmkit-bench/1"
UNIT_SCALE = {"ms": 1e3, "us": 1e6}


def shape_label(shape) -> str:
    """``(1, 100, 32, 64) -> "1x100x32x64"``; stream shapes ``(1, 1, H, H) -> "H=64"``."""
    return "x".join(str(v) for v in shape)


def parse_shape(text, what: str = "--shapes"):
    """A shape ``(B, T, D, H)`` from ``"1x100x32x64"``, ``"1,100,32,64"`` or a 4-sequence of positive ints.

    Raises:
        ValueError: naming ``what``, the bad value and the expected form.
    """
    parts = re.split(r"[x,\s]+", text.strip().lower()) if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{what} {text!r} is not a shape; expected four positive ints B,T,D,H such as 8x100x32x128")
    return shape


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ratio(comp, subject: timing.Timing, peer: timing.Timing, flops: dict) -> Optional[float]:
    if subject.median is None or peer.median is None or subject.median <= 0:
        return None
    if comp.by_rate:
        return (flops[comp.subject] / subject.median) / (flops[comp.peer] / peer.median)
    return peer.median / subject.median


def run_bench(suites="all", shapes=None, repeats: Optional[int] = None, warmup: int = 1, threads: int = 2,
              quick: bool = False, max_ref_shape=None, stream_hidden=None, stream_steps: Optional[int] = None,
              matmul_size: int = 2048, min_time: float = 0.02, json_path: Optional[str] = None,
              log: Optional[Callable[[str], None]] = None, invocation=None) -> dict:
    """Run the selected suites and return the full result (also written to ``json_path`` when given).

    Args:
        suites: "all", a comma-separated string or a list of names from :data:`lstmkit.bench.suites.SUITES`.
        shapes: grid shapes ``(B, T, D, H)`` (tuples or "BxTxDxH" strings); default the whole :data:`GRID`,
            or its two smallest with ``quick``.
        repeats: timed rounds per block (default 7, or 5 with ``quick``); the median is reported.
        warmup: untimed calls per row before timing. threads: ``torch.set_num_threads`` and ORT intra-op threads.
        quick: the two smallest grid shapes, 5 repeats, 200 stream steps (explicit arguments win).
        max_ref_shape: pure-PyTorch-loop rows are skipped at shapes costlier than this one (None: never).
        stream_hidden: hidden sizes of the stream suite (default 64 and 256). stream_steps: steps per call.
        matmul_size: N of the N x N fp32 matmul of the gflops suite. min_time: seconds per repeat (calibration).
        log: progress callback (default: print to stderr). invocation: the command line or options,
            recorded in ``meta`` as given.

    Returns:
        dict with "schema", "meta", "suites" (per suite: rows with raw ``times`` in the suite's unit per shape,
        medians, comparisons with ratios = peer/lstmkit), "targets" (one entry per comparison and shape with a
        target) and "targets_summary". Ratios and targets are described in docs/benchmarks.md.
    """
    names = parse_suites(suites)
    grid = [parse_shape(s) for s in shapes] if shapes else list(GRID[:2] if quick else GRID)
    repeats = repeats if repeats is not None else (5 if quick else 7)
    stream_steps = stream_steps if stream_steps is not None else (200 if quick else 1000)
    hidden = [int(h) for h in (stream_hidden or STREAM_HIDDEN)]
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("threads", threads, 1),
                             ("stream_steps", stream_steps, 1), ("matmul_size", matmul_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if min(hidden) < 1:
        raise ValueError(f"stream_hidden must be positive ints, got {hidden}")
    ref_shape = None if max_ref_shape in (None, "none", "") else parse_shape(max_ref_shape, "--max-ref-shape")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    native = _backend.native_available()
    ctx = builders.Context(backend="native" if native else "reference", threads=threads,
                           max_ref_work=None if ref_shape is None else builders.work(ref_shape),
                           stream_steps=stream_steps, matmul_size=matmul_size,
                           gflops_shape=max(grid, key=builders.work))
    meta = {"lstmkit_version": lstmkit.__version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "cpu": _cpu_name(), "threads": threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "native_available": native,
            "native_error": _backend.native_error(), "lstmkit_backend": ctx.backend, "repeats": repeats,
            "warmup": warmup, "min_time_s": min_time, "quick": quick, "suites": names,
            "shapes": [shape_label(s) for s in grid], "max_ref_shape": ref_shape and shape_label(ref_shape),
            "stream_hidden": hidden, "stream_steps": stream_steps, "matmul_size": matmul_size,
            "invocation": invocation,
            "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        import onnxruntime

        meta["onnxruntime_version"] = onnxruntime.__version__
    except ImportError:
        meta["onnxruntime_version"] = None
    if repeats < 5:
        meta["warning"] = f"only {repeats} repeats: medians are rough (the issue asks for >= 5)"
    result = {"schema": SCHEMA, "meta": meta, "suites": {}, "targets": []}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        for name in names:
            result["suites"][name] = _run_suite(SUITES[name], grid, hidden, ctx, repeats, warmup, min_time, log)
    finally:
        torch.set_num_threads(old_threads)
    meta["seconds"] = round(time.perf_counter() - started, 2)
    meta["finished_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result["targets"] = collect_targets(result)
    met = [t["met"] for t in result["targets"]]
    result["targets_summary"] = {"met": met.count(True), "missed": met.count(False), "unmeasured": met.count(None)}
    if json_path:
        write_json(result, json_path)
    return result


def _suite_shapes(suite, grid, hidden, ctx):
    if suite.shapes == "stream":
        return [((1, 1, h, h), f"H={h}") for h in hidden]
    if suite.shapes == "largest":
        return [(ctx.gflops_shape, shape_label(ctx.gflops_shape))]
    return [(s, shape_label(s)) for s in grid]


def _run_suite(suite, grid, hidden, ctx, repeats, warmup, min_time, log) -> dict:
    scale = UNIT_SCALE[suite.unit]
    out = {"title": suite.title, "unit": suite.unit, "shapes": [], "rows": {}, "comparisons": [], "extras": {}}
    comparisons = [{"subject": c.subject, "peer": c.peer, "text": c.text, "by_rate": c.by_rate, "ratios": {}}
                   for c in suite.comparisons]
    started = time.perf_counter()
    for shape, label in _suite_shapes(suite, grid, hidden, ctx):
        t0 = time.perf_counter()
        torch.manual_seed(0)
        try:
            rows, extras = suite.build(shape, ctx)
        except Exception as exc:  # a broken implementation must not stop the other suites
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            out.setdefault("errors", {})[label] = message
            log(f"[bench] {suite.name} {label}: could not build the rows: {message}")
            continue
        timings = timing.measure(rows, repeats, warmup, min_time)
        out["shapes"].append(label)
        out["extras"][label] = extras
        for row in rows:
            entry = out["rows"].setdefault(row.key, {"label": row.label, "results": {}})
            t = timings[row.key]
            if t.skipped:
                entry["results"][label] = {"skipped": t.skipped}
            else:
                entry["results"][label] = {"times": [v * scale for v in t.times], "median": t.median * scale,
                                           "min": min(t.times) * scale, "spread": t.spread,
                                           "number": t.number, "per_call_items": row.divisor}
                if row.note:
                    entry["results"][label]["note"] = row.note
            if row.label != entry["label"]:
                entry["results"][label]["label"] = row.label
        for comp, rec in zip(suite.comparisons, comparisons):
            if comp.subject in timings and comp.peer in timings:
                rec["ratios"][label] = _ratio(comp, timings[comp.subject], timings[comp.peer],
                                              extras.get("flops", {}))
        if "flops" in extras:
            extras["gflops"] = {k: extras["flops"][k] / timings[k].median / 1e9
                                for k in extras["flops"] if timings.get(k) and timings[k].median}
        del rows
        log(f"[bench] {suite.name} {label}: {time.perf_counter() - t0:.1f} s")
    out["comparisons"] = comparisons
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def collect_targets(result: dict) -> list[dict]:
    """One entry per (suite, comparison with a target, shape): ratio, required minimum and ``met`` (None: no data)."""
    targets = []
    for name, suite_out in result["suites"].items():
        suite = SUITES[name]
        for comp, rec in zip(suite.comparisons, suite_out["comparisons"]):
            for label, ratio in rec["ratios"].items():
                shape = _shape_of(label)
                required = comp.target(shape) if shape is not None else None
                if required is None:
                    continue
                targets.append({"suite": name, "subject": comp.subject, "peer": comp.peer, "text": comp.text,
                                "shape": label, "ratio": ratio, "required": required,
                                "met": None if ratio is None else bool(ratio >= required)})
    return targets


def _shape_of(label: str):
    if label.startswith("H="):
        h = int(label[2:])
        return (1, 1, h, h)
    return tuple(int(v) for v in label.split("x"))


def write_json(result: dict, path: str) -> None:
    """Write ``result`` as indented JSON to ``path`` (parent directories created)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")
