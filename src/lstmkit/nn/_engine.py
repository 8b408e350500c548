"""The seam between a recurrent layer and a backend: one call runs one layer in one direction.

A layer (``lstmkit.nn.rnn``) validates its input, samples every random mask and reverses sequences for the
backward direction; then per layer and direction it calls :func:`run_direction`, which dispatches to the
reference loop below (the spec, built on ``lstmkit.functional``) or to the native engine. For a bidirectional
layer it first offers both directions to :func:`run_bidirectional` (the native engine runs them at once).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from lstmkit import backend as _backend
from lstmkit import functional as LF

MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")


@dataclass(frozen=True)
class CellSpec:
    """What one direction of one layer computes.

    Attributes:
        mode: "lstm", "gru", "rnn_tanh" or "rnn_relu".
        hidden_size: H. proj_size: P (0 = no projection; then the hidden state has size H).
        peephole, coupled, layer_norm: LSTM variants (see :func:`lstmkit.functional.lstm_step`).
    """

    mode: str
    hidden_size: int
    proj_size: int = 0
    peephole: bool = False
    coupled: bool = False
    layer_norm: bool = False

    @property
    def gates(self) -> int:
        """Number of ``H``-row gate blocks G in ``weight_ih``/``weight_hh``."""
        if self.mode == "lstm":
            return 3 if self.coupled else 4
        return 3 if self.mode == "gru" else 1

    @property
    def state_size(self) -> int:
        """Size P of the hidden state h (proj_size if set, else hidden_size)."""
        return self.proj_size or self.hidden_size


class DirectionWeights(NamedTuple):
    """The tensors of one layer-direction (None where absent); shapes in docs/design.md."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Optional[Tensor] = None
    b_hh: Optional[Tensor] = None
    w_hr: Optional[Tensor] = None
    w_ph: Optional[Tensor] = None
    ln_ih_w: Optional[Tensor] = None
    ln_ih_b: Optional[Tensor] = None
    ln_hh_w: Optional[Tensor] = None
    ln_hh_b: Optional[Tensor] = None
    ln_c_w: Optional[Tensor] = None
    ln_c_b: Optional[Tensor] = None


def reference_step(spec: CellSpec, w: DirectionWeights, x: Tensor, h: Tensor, c: Optional[Tensor],
                   dropout_mask: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
    """One step of the cell ``spec`` with weights ``w``: returns ``(h_t, c_t)`` (``c_t`` None but for LSTM)."""
    if spec.mode == "lstm":
        ln = LF.LayerNormWeights(w.ln_ih_w, w.ln_ih_b, w.ln_hh_w, w.ln_hh_b, w.ln_c_w, w.ln_c_b) \
            if spec.layer_norm else None
        return LF.lstm_step(x, h, c, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w_hr=w.w_hr, w_ph=w.w_ph,
                            coupled=spec.coupled, ln=ln, dropout_mask=dropout_mask)
    step = {"gru": LF.gru_step, "rnn_tanh": LF.rnn_tanh_step, "rnn_relu": LF.rnn_relu_step}[spec.mode]
    return step(x, h, w.w_ih, w.w_hh, w.b_ih, w.b_hh, dropout_mask=dropout_mask), None


def reference_run_direction(spec: CellSpec, x: Tensor, h0: Tensor, c0: Optional[Tensor], w: DirectionWeights,
                            lengths: Optional[Tensor] = None, rd_mask: Optional[Tensor] = None,
                            zo_h: Optional[Tensor] = None, zo_c: Optional[Tensor] = None):
    """Run one layer-direction step by step over ``x`` ``(T, B, D)``; see docs/design.md for the contract.

    Returns ``y (T, B, P)`` (zero past each length), ``h_T (B, P)`` and ``c_T (B, H)`` (None but for LSTM),
    the states at each sequence's last valid step.
    """
    h, c = h0, c0
    ys = []
    for t in range(x.size(0)):
        h_new, c_new = reference_step(spec, w, x[t], h, c, rd_mask)
        if zo_h is not None:
            h_new = LF.zoneout(h, h_new, zo_h[t])
        if zo_c is not None and c is not None:
            c_new = LF.zoneout(c, c_new, zo_c[t])
        if lengths is not None:
            valid = (lengths > t).unsqueeze(-1)  # (B, 1): which sequences are still running
            ys.append(torch.where(valid, h_new, torch.zeros_like(h_new)))
            h = torch.where(valid, h_new, h)
            c = torch.where(valid, c_new, c) if c is not None else None
        else:
            ys.append(h_new)
            h, c = h_new, c_new
    return torch.stack(ys), h, c


def run_direction(which: str, spec: CellSpec, x: Tensor, h0: Tensor, c0: Optional[Tensor],
                  w: DirectionWeights, lengths: Optional[Tensor] = None, rd_mask: Optional[Tensor] = None,
                  zo_h: Optional[Tensor] = None, zo_c: Optional[Tensor] = None):
    """Run one layer-direction on the backend ``which`` ("native" or "reference", from backend.resolve)."""
    if which == "native":
        ops = _backend.native_module()
        if ops.supports(spec, x.dtype):
            return ops.run_direction(spec, x, h0, c0, w, lengths, rd_mask, zo_h, zo_c)
    return reference_run_direction(spec, x, h0, c0, w, lengths, rd_mask, zo_h, zo_c)


def run_bidirectional(which: str, spec: CellSpec, dirs, lengths: Optional[Tensor] = None):
    """Both directions of a bidirectional layer at once on the native backend (``dirs``: per direction ``(x, h0,
    c0, weights)``, see ``lstmkit._native.ops.run_bidirectional``), or None: then the caller runs them one by one."""
    if which != "native":
        return None
    ops = _backend.native_module()
    return ops.run_bidirectional(spec, dirs, lengths) if ops.supports(spec, dirs[0][0].dtype) else None
