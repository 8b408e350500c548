"""Text summary of a model: one row per layer with output shape and parameter count, then totals."""
from __future__ import annotations

from typing import List

from torch import nn


def _children(model):
    layers = getattr(model, "layers", None)
    if isinstance(layers, (list, tuple, nn.ModuleList)):
        return list(layers)
    return list(model.children())


def summary_lines(model) -> List[str]:
    """Rows like keras.Model.summary(); shapes are those seen on the last call (batch shown as None)."""
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer in _children(model):
        name = getattr(layer, "name", "")
        shape = getattr(layer, "output_shape_seen", None)
        n = sum(p.numel() for p in layer.parameters())
        rows.append((f"{name} ({type(layer).__name__})", str(shape) if shape is not None else "?", f"{n:,}"))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    line = "=" * sum(widths)
    out = [f'Model: "{getattr(model, "name", type(model).__name__)}"', line]
    out.append("".join(c.ljust(w) for c, w in zip(rows[0], widths)))
    out.append(line)
    for r in rows[1:]:
        out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
    out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", "=" * sum(widths)]
    return out
