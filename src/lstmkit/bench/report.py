"""Plain-text report of a benchmark result: one table per suite (rows: implementations, columns: shapes) and
a targets table saying, per suite, shape and target, whether lstmkit met it.

A timing cell is the median time per iteration (``ms``; stream: ``us`` per step), followed by the ratio
``(r x)`` of that row to the lstmkit row it is compared with: ``r = peer time / lstmkit time``, so r > 1 means
lstmkit is faster. Comparisons that do not fit in a cell (a row compared with several lstmkit rows) get their
own ``ratio peer/subject`` line. A cell marked ``~`` had repeats spread over more than half its median.
"""
from __future__ import annotations

NOISY = 0.5  # (max - min) / median above which a cell is marked "~" as noisy


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _ratio_text(ratio, by_rate: bool = False) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio * 100:.0f}%" if by_rate else f"{ratio:.2f}x"


def _grid(lines: list[list[str]], left: int = 1) -> list[str]:
    """Align columns: the first ``left`` columns to the left, the others to the right."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in lines]


def format_suite(name: str, out: dict, repeats: int) -> list[str]:
    """The table of one suite result (``result["suites"][name]``) as text lines."""
    unit = out["unit"]
    head = (f"== {name}: {out['title']} | median {unit} of {repeats} repeats"
            f"{' per step' if unit == 'us' else ''}; (r x) = peer / lstmkit time, > 1: lstmkit faster")
    timed = [c for c in out["comparisons"] if not c["by_rate"]]
    peers = [c["peer"] for c in timed]
    # a row compared with one lstmkit row shows the ratio in its cells; one compared with several gets lines
    inline = {c["peer"]: c for c in timed if peers.count(c["peer"]) == 1}
    extra = [c for c in timed if peers.count(c["peer"]) > 1]
    notes: list[str] = []
    noisy = False
    table = [["implementation"] + out["shapes"]]
    for key, row in out["rows"].items():
        cells = [row["label"]]
        for shape in out["shapes"]:
            res = row["results"].get(shape)
            if res is None:
                cells.append("-")
                continue
            if "skipped" in res:
                if res["skipped"] not in notes:
                    notes.append(res["skipped"])
                cells.append(f"skipped[{notes.index(res['skipped']) + 1}]")
                continue
            cell = f"{_num(res['median'])} {unit}"
            if res.get("spread") is not None and res["spread"] > NOISY:
                cell = "~" + cell
                noisy = True
            comp = inline.get(key)
            if comp is not None:
                cell += f" ({_ratio_text(comp['ratios'].get(shape))})"
            cells.append(cell)
        table.append(cells)
    for comp in extra:
        table.append([f"  ratio {comp['peer']}/{comp['subject']}"]
                     + [_ratio_text(comp["ratios"].get(s)) for s in out["shapes"]])
    lines = [head] + _grid(table)
    for shape, extras in out["extras"].items():
        if "gflops" in extras:
            rates = extras["gflops"]
            mm = rates.get("matmul")
            parts = [f"{k} {v:.1f}" + (f" ({v / mm * 100:.0f}% of matmul)" if mm and k != "matmul" else "")
                     for k, v in rates.items()]
            lines.append(f"  achieved GFLOP/s at {shape}: " + ", ".join(parts))
    if noisy:
        lines.append(f"  ~ noisy: the repeats of this cell spread over more than {NOISY:.0%} of its median "
                     f"(busy machine); see the raw times in the JSON")
    for shape, message in out.get("errors", {}).items():
        lines.append(f"  {shape}: not measured, building the rows failed: {message}")
    for i, note in enumerate(notes):
        lines.append(f"  [{i + 1}] {note}")
    return lines


def format_targets(result: dict) -> list[str]:
    """The targets table: one line per suite and target, one cell per shape: ratio, required, ok/MISS."""
    by_key: dict = {}
    for t in result["targets"]:
        by_key.setdefault((t["suite"], t["text"]), []).append(t)
    table = [["suite", "target", "per shape: measured / required -> verdict"]]
    for (suite, text), items in by_key.items():
        by_rate = suite == "gflops"
        cells = []
        for t in items:
            verdict = {True: "ok", False: "MISS", None: "n/a"}[t["met"]]
            cells.append(f"{t['shape']} {_ratio_text(t['ratio'], by_rate)}/{_ratio_text(t['required'], by_rate)}"
                         f" {verdict}")
        table.append([suite, text, "; ".join(cells)])
    s = result.get("targets_summary", {})
    lines = ["== targets (measured ratio must be >= required; '<= 1.1x own padded' means padded/lengths >= 0.91)"]
    lines += _grid(table, left=3) if len(table) > 1 else ["  (no targets in the selected suites)"]
    lines.append(f"  met {s.get('met', 0)}, missed {s.get('missed', 0)}, not measured {s.get('unmeasured', 0)}")
    return lines


def format_report(result: dict) -> str:
    """The whole report: a header with the set-up, one table per suite, then the targets table."""
    m = result["meta"]
    head = [f"lstmkit bench: lstmkit {m['lstmkit_version']}, torch {m['torch_version']}, "
            f"onnxruntime {m.get('onnxruntime_version')}, threads={m['threads']}, "
            f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, cpu {m['cpu']}",
            f"lstmkit rows run the {m['lstmkit_backend']} backend"
            + ("" if m["native_available"] else f" (native engine unavailable: {m['native_error']})")
            + f"; {m['seconds']} s total"]
    if m.get("warning"):
        head.append(f"warning: {m['warning']}")
    lines = head
    for name, out in result["suites"].items():
        lines += [""] + format_suite(name, out, m["repeats"])
    lines += [""] + format_targets(result)
    cells = [res for out in result["suites"].values() for row in out["rows"].values()
             for res in row["results"].values() if "spread" in res]
    noisy = sum(1 for res in cells if res["spread"] is not None and res["spread"] > NOISY)
    if cells and noisy > len(cells) / 4:
        lines.append(f"\nnote: {noisy} of {len(cells)} cells are noisy (~). The machine is busy; when fewer cores are "
                     f"free than --threads={m['threads']}, multi-threaded kernels stall at every barrier and times "
                     f"swing by 10x or more: rerun on a quiet machine or with --threads 1.")
    return "\n".join(lines)
