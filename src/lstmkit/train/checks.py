"""Checks before training starts: each problem a clear ValueError naming the argument, its value and the need."""
from __future__ import annotations

import torch

from lstmkit.train import losses as L


def check_arrays(x: torch.Tensor, y, sample_weight=None, what: str = "fit") -> None:
    """Same number of samples in x, y and sample_weight; no NaN or inf."""
    if y is not None and len(x) != len(y):
        raise ValueError(f"{what}: x has {len(x)} samples but y has {len(y)}; expected the same number")
    if sample_weight is not None and len(sample_weight) != len(x):
        raise ValueError(f"{what}: sample_weight has {len(sample_weight)} values; expected one per sample "
                         f"({len(x)})")
    if len(x) == 0:
        raise ValueError(f"{what}: x is empty; expected at least one sample")
    for name, a in (("x", x), ("y", y)):
        if a is not None and a.is_floating_point():
            bad = ~torch.isfinite(a)
            if bool(bad.any()):
                first = tuple(int(i) for i in bad.nonzero()[0])
                kind = "NaN" if bool(torch.isnan(a).any()) else "inf"
                raise ValueError(f"{what}: {name} contains {int(bad.sum())} non-finite values ({kind}), first at "
                                 f"index {first}; expected only finite numbers")


def check_input_shape(model, x: torch.Tensor, what: str = "fit") -> None:
    """Rank and fixed sizes of x against the model's declared input shape (Sequential's first layer)."""
    hint = getattr(model, "input_shape_hint", None)
    if hint is None:
        spec = getattr(model, "_build_spec", None)
        if spec is None:
            return
        hint = tuple(spec["shape"][1:])
        hint = tuple(None if i == 0 and len(hint) > 1 else d for i, d in enumerate(hint))  # time axis is free
    if x.dim() != len(hint) + 1:
        raise ValueError(f"{what}: x has shape {tuple(x.shape)} (rank {x.dim()}); the model expects rank "
                         f"{len(hint) + 1}: (samples,) + {tuple(hint)}")
    for i, (got, want) in enumerate(zip(x.shape[1:], hint)):
        if want is not None and got != want:
            raise ValueError(f"{what}: x has shape {tuple(x.shape)}; axis {i + 1} has size {got}, the model expects "
                             f"{want} (input shape {tuple(hint)})")


def check_targets(model, loss, out: torch.Tensor, y: torch.Tensor, what: str = "fit") -> None:
    """The loss fits the output (units, label range, target shape)."""
    name = L.canonical(loss) if loss is not None else ""
    units = out.shape[-1] if out.dim() > 1 else 1
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy") and units == 1:
        raise ValueError(f"{what}: loss={loss!r} needs one output unit per class, but the model outputs "
                         f"{units} unit; for two classes use loss='binary_crossentropy' with Dense(1, "
                         f"activation='sigmoid'), or Dense(2, activation='softmax')")
    if name == "sparse_categorical_crossentropy":
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError(f"{what}: sparse_categorical_crossentropy needs integer class labels in y; got "
                             f"non-integer values (one-hot targets need loss='categorical_crossentropy')")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= units:
            raise ValueError(f"{what}: class labels in y range over [{lo}, {hi}] but the model outputs {units} "
                             f"classes; expected labels in [0, {units - 1}]")
        return
    if name == "categorical_crossentropy":
        if y.shape[-1] != units or y.dim() != out.dim():
            hint = (" (integer labels need loss='sparse_categorical_crossentropy')"
                    if y.dim() == 1 or y.shape[-1] == 1 else "")
            raise ValueError(f"{what}: categorical_crossentropy needs one-hot y of shape (N, {units}); got y of "
                             f"shape {tuple(y.shape)}{hint}")
        return
    if name == "binary_crossentropy" and y.is_floating_point() and (float(y.min()) < 0 or float(y.max()) > 1):
        raise ValueError(f"{what}: binary_crossentropy needs targets in [0, 1]; y ranges over "
                         f"[{float(y.min())}, {float(y.max())}]")
    if name and y[0].numel() != out[0].numel():
        raise ValueError(f"{what}: y has shape {tuple(y.shape)} ({y[0].numel()} values per sample) but the model "
                         f"outputs shape {tuple(out.shape[1:])} per sample ({out[0].numel()} values)")
