"""Python side of the native engine: loads ``_C`` (its autograd formulas and fake kernels: formulas.py), runs one
layer-direction.

The C++ ops (``torch.ops.lstmkit.*``) hold only the sequential part of a recurrent layer. Around them this
module does, with ordinary differentiable torch ops, the parts that are single large GEMMs over all T*B rows:
the input projection ``G_x = X W_ih^T + b`` before the loop and, in backward, ``dW_hh = dG^T H_prev``,
``dW_hr``, the peephole and bias reductions (autograd derives ``dW_ih = dG^T X`` and ``dX = dG W_ih``).
Variable lengths: the batch is sorted longest first and each step runs only the rows still active.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
import torch.nn.functional as F

from lstmkit._native import formulas
from lstmkit._native.formulas import _mm_tn, _plain_f32  # the engine's GEMMs where they apply (shared)

_C = None
_error: Optional[str] = None
try:
    from lstmkit._native import _C  # noqa: F401  (loads the shared library: registers torch.ops.lstmkit)
except Exception as exc:  # not built (no compiler at install time), or built against another torch
    _error = f"{type(exc).__name__}: {exc}"

# bfloat16: the input projection and the weight-gradient GEMMs that autograd derives from it run in bf16
# (AVX512_BF16 / AMX through oneDNN); the recurrence, the cell state and all accumulation stay in fp32.
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)


def available() -> bool:
    """True when the compiled engine is loaded."""
    return _C is not None


def unavailable_reason() -> str:
    """Why the engine is not available ("" when it is)."""
    return _error or ""


def supports(spec, dtype: torch.dtype) -> bool:
    """Whether the engine runs ``spec`` in ``dtype`` (otherwise the layer uses the reference path)."""
    return available() and dtype in SUPPORTED_DTYPES


def _opt(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


FUNCTIONS = formulas.build(_C) if _C is not None else {}  # autograd Functions by kernel name (formulas.py)


def _all_f32(*ts: Optional[Tensor]) -> bool:
    """Whether every tensor given (None: absent) is fp32."""
    return all(t is None or t.dtype == torch.float32 for t in ts)


# -- one layer-direction ---------------------------------------------------------------------------------
def _reorder(index: Tensor, dim: int, *ts: Optional[Tensor]) -> tuple:
    """Each tensor reordered along ``dim`` by ``index`` (the batch sorted by length, or back); None stays None."""
    return tuple(None if t is None else t.index_select(dim, index) for t in ts)


def _sort_by_length(lengths: Tensor, T: int):
    """Permutation putting the longest sequences first, its inverse, and rows active per step (T,)."""
    lengths = lengths.to(torch.int64).cpu()
    if bool((lengths[:-1] >= lengths[1:]).all()):
        perm = inv = None
        sorted_len = lengths
    else:
        sorted_len, perm = torch.sort(lengths, descending=True, stable=True)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel())
    batch_sizes = (sorted_len.unsqueeze(0) > torch.arange(T).unsqueeze(1)).sum(1)  # (T,)
    return perm, inv, batch_sizes


class _Projection(torch.autograd.Function):
    """``G_x = X W^T + b`` over all T*B rows of ``x (T, B, D)``, into a buffer of the engine's memory pool.

    The same product and gradients as ``F.linear``; its own Function only so that the (T, B, G*H) output, the
    largest tensor of a step, reuses warm pooled memory instead of fresh pages (see csrc/pool.h).
    """

    @staticmethod
    def compute(x, w, b):
        """The product alone: ``(G_x (T, B, G*H), x as (T*B, D))``."""
        T, B, D = x.shape
        x2 = x.reshape(T * B, D)
        out = _C.pool_empty([T * B, w.size(0)])  # (T*B, G*H)
        _C.matmul_nt_out(out, x2, w, b)  # the engine's GEMM (csrc/gemm.h), faster than ATen's mm here
        return out.view(T, B, -1), x2

    @staticmethod
    def forward(ctx, x, w, b):
        out, x2 = _Projection.compute(x, w, b)
        ctx.save_for_backward(x2, w)
        ctx.has_bias = b is not None
        ctx.x_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, g):
        x2, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.size(-1))  # (T*B, G*H)
        dx = _matmul(g2, w).view(ctx.x_shape) if ctx.needs_input_grad[0] else None
        dw = _mm_tn(g2, x2) if ctx.needs_input_grad[1] else None
        db = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for a (M, K) and b (K, N): the engine's GEMM (csrc/gemm.h), or ATen's (see _plain_f32)."""
    if not _plain_f32(a, b):
        return a.mm(b)
    out = _C.pool_empty([a.size(0), b.size(1)])  # pooled: a fresh (rows, D) buffer page-faults (csrc/pool.h)
    _C.matmul_nt_out(out, a, b.t())
    return out


def _project(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """Input projection (T, B, G*H): pooled fp32 buffers for fp32, F.linear (bf16 GEMMs) otherwise."""
    if x.dtype == torch.float32 and w.dtype == torch.float32 and (b is None or b.dtype == torch.float32):
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
            return _Projection.apply(x, w, b)
        return _Projection.compute(x, w, b)[0]  # inference: no autograd node
    return F.linear(x, w, b)


class _Kernels:
    """``kern.lstm_fwd(...)``: the autograd Function when a gradient is needed, else the bare kernel."""

    def __init__(self, needs_grad: bool):
        self.needs_grad = needs_grad

    def __getattr__(self, name):
        if self.needs_grad:
            return FUNCTIONS[name].apply
        return _C.lstm_fwd_infer if name == "lstm_fwd" else getattr(_C, name)


def lstm_one_call(x: Tensor, w, coupled: bool, common: Optional[int] = None):
    """One fp32 LSTM layer-direction from a zero state, ``x (T, B, D)``, weights ``w`` (DirectionWeights, without
    ``w_hr``): ``(y (T, B, H), h_T (B, H), c_T (B, H))`` in one call (``RNNBase._fast_layer``). Layer norm: its
    node (csrc/ln_layer.cpp); else the layer node when grad mode is on, the inference kernel when not.
    ``common``: every sequence runs only its first ``common`` steps (the kernels' rows-per-step, with y zero past
    them). ``(None, None, None)`` when a weight is not plain fp32 (then the general path runs it)."""
    if not _all_f32(*w):
        return None, None, None
    B = x.size(1)
    h0 = x.new_zeros(B, w.w_hh.size(1))  # h0 and c0: zeros, only read
    batch_sizes = None
    if common is not None:  # B rows for the first `common` steps, none after
        batch_sizes = torch.zeros(x.size(0), dtype=torch.int64)
        batch_sizes[:common] = B
    if w.ln_ih_w is not None:
        return tuple(_C.lstm_ln_layer(x, w.w_ih, w.ln_ih_w, w.ln_ih_b, w.b_ih, w.b_hh, w.w_hh, w.ln_hh_w, w.ln_hh_b,
                                      w.ln_c_w, w.ln_c_b, w.w_ph, h0, h0, coupled, batch_sizes, None))
    layer = _C.lstm_layer if torch.is_grad_enabled() else _C.lstm_layer_infer
    return tuple(layer(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_ph, batch_sizes, h0, h0, coupled, None))


def run_bidirectional(spec, dirs, lengths: Optional[Tensor] = None):
    """Both directions of a bidirectional LSTM or GRU layer at once, one per core (csrc/bilayer.cpp,
    csrc/gru_layer.cpp): ``dirs`` holds, per direction, ``(x, h0, c0, w)`` as for :func:`run_direction` (the
    reverse direction's x already reversed within each length; c0 None for the GRU); returns ``[(y, h_T, c_T)] * 2``
    as two run_direction calls would, or None when the layer is not a case the pair covers: the LSTM, the fp32
    projection LSTM (:func:`_projection_pair`), the fp32 layer-norm LSTM (without projection), the fp32 GRU (the
    caller passes no zoneout or recurrent-dropout masks)."""
    (x, h0f, c0f, wf), (x_rev, h0r, c0r, wr) = dirs
    gru = spec.mode == "gru"
    ln = spec.mode == "lstm" and spec.layer_norm
    if spec.mode == "lstm" and wf.w_hr is not None:
        return None if ln or not _all_f32(x, *wf, *wr) else _projection_pair(spec, dirs, lengths)
    if spec.mode not in ("lstm", "gru") or ((gru or ln) and not _all_f32(x, *wf, *wr)):
        return None
    perm = batch_sizes = None
    if lengths is not None:  # the pair nodes sort the batch themselves (perm), as the one-direction nodes do
        perm, _, batch_sizes = _sort_by_length(lengths, x.size(0))
    states = (h0f, c0f, h0r, c0r)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or x_rev.requires_grad or any(
        t is not None and t.requires_grad for t in (*wf, *wr, *states)))
    low = x.dtype == torch.bfloat16
    h0f, c0f, h0r, c0r = (None if t is None else (t.float() if low else t).contiguous() for t in states)
    if ln:  # one node in training and inference (layer norm has no separate inference twin)
        def lnw(w):
            return (w.w_ih, w.ln_ih_w, w.ln_ih_b, w.b_ih, w.b_hh, w.w_hh, w.ln_hh_w, w.ln_hh_b, w.ln_c_w, w.ln_c_b,
                    w.w_ph)
        out = _C.lstm_ln_bilayer(x, x_rev, *lnw(wf), *lnw(wr), batch_sizes, h0f, c0f, h0r, c0r, spec.coupled, perm)
    elif gru:
        pair = _C.gru_bilayer if needs_grad else _C.gru_bilayer_infer
        out = pair(x, x_rev, wf.w_ih, wf.w_hh, wf.b_ih, wf.b_hh, wr.w_ih, wr.w_hh, wr.b_ih, wr.b_hh, batch_sizes,
                   h0f, h0r, perm)  # y_f, h_f, y_r, h_r
        out = out[:2] + [None] + out[2:] + [None]
    else:
        pair = _C.lstm_bilayer if needs_grad else _C.lstm_bilayer_infer
        out = pair(x, x_rev, wf.w_ih, wf.w_hh, wf.b_ih, wf.b_hh, wf.w_ph, wr.w_ih, wr.w_hh, wr.b_ih, wr.b_hh, wr.w_ph,
                   batch_sizes, h0f, c0f, h0r, c0r, spec.coupled, perm)  # y_f, h_f, c_f, y_r, h_r, c_r
    if low:
        out = [t.to(x.dtype) for t in out]
    return [tuple(out[:3]), tuple(out[3:])]


def _projection_pair(spec, dirs, lengths: Optional[Tensor]):
    """Both directions of an fp32 projection LSTM layer: each direction's input projection, then the two recurrences
    at once, one per core (formulas.LstmPair, csrc/lstm.cpp's pair functions); as :func:`run_bidirectional`."""
    T = dirs[0][0].size(0)
    perm = inv = batch_sizes = None
    if lengths is not None:
        perm, inv, batch_sizes = _sort_by_length(lengths, T)
    args, needs_grad = [], False
    for x, h0, c0, w in dirs:
        if perm is not None:
            (x,), (h0, c0) = _reorder(perm, 1, x), _reorder(perm, 0, h0, c0)
        bias = None if w.b_ih is None else w.b_ih + w.b_hh
        gx = _project(x, w.w_ih, bias)  # (T, B, 4H): one GEMM over all T*B rows
        args += [gx, h0.contiguous(), c0.contiguous(), w.w_hh, w.w_hr, w.w_ph]
        needs_grad = needs_grad or any(t is not None and t.requires_grad for t in (gx, h0, c0, w.w_hh, w.w_hr, w.w_ph))
    needs_grad = needs_grad and torch.is_grad_enabled()
    if needs_grad:
        out = FUNCTIONS["lstm_fwd_pair"].apply(*args, batch_sizes, spec.coupled)
    else:
        out = _C.lstm_fwd_pair(*args, batch_sizes, spec.coupled, False)
    results = []
    for d in range(2):
        y, h, c = out[7 * d:7 * d + 3]
        if inv is not None:
            (y,), (h, c) = _reorder(inv, 1, y), _reorder(inv, 0, h, c)
        results.append((y, h, c))
    return results


def run_direction(spec, x: Tensor, h0: Tensor, c0: Optional[Tensor], w, lengths: Optional[Tensor] = None,
                  rd_mask: Optional[Tensor] = None, zo_h: Optional[Tensor] = None, zo_c: Optional[Tensor] = None):
    """Native twin of ``lstmkit.nn._engine.reference_run_direction`` (same arguments, same results)."""
    T = x.size(0)
    perm = inv = batch_sizes = None
    # the LSTM, layer-norm LSTM and GRU layer nodes (below) take the batch into its sorted order themselves: no
    # index_select (and its backward) here
    node = (spec.mode == "lstm" and not spec.layer_norm and w.w_hr is None and rd_mask is None and zo_h is None
            and zo_c is None)
    gru_node = spec.mode == "gru" and rd_mask is None and _all_f32(x, *w)
    ln_node = (spec.mode == "lstm" and spec.layer_norm and x.dtype != torch.bfloat16 and w.w_hr is None
               and rd_mask is None and zo_h is None and zo_c is None)
    if lengths is not None:
        perm, inv, batch_sizes = _sort_by_length(lengths, T)
        if perm is not None and not (node or gru_node or ln_node):
            x, zo_h, zo_c = _reorder(perm, 1, x, zo_h, zo_c)
            h0, c0, rd_mask = _reorder(perm, 0, h0, c0, rd_mask)
    # inference (nothing needs a gradient): call the kernels directly, without dispatcher or autograd wrapper
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or h0.requires_grad or any(
        t is not None and t.requires_grad for t in w) or (c0 is not None and c0.requires_grad))
    kern = _Kernels(needs_grad)
    low = x.dtype == torch.bfloat16
    f32 = (lambda t: None if t is None else t.float()) if low else _opt  # noqa: E731
    h0 = f32(h0).contiguous()
    c0 = f32(c0).contiguous() if c0 is not None else None
    rd_mask, zo_h, zo_c = f32(rd_mask), f32(zo_h), f32(zo_c)
    if ln_node:
        # one C++ node (csrc/ln_layer.cpp): LN_ih(X W_ih^T) with the three biases as one LN bias, the loop, backward;
        # with lengths it sorts the batch (perm) and runs the GEMMs on the active rows only, as the LSTM node does
        y, h, c = _C.lstm_ln_layer(x, w.w_ih, w.ln_ih_w, w.ln_ih_b, w.b_ih, w.b_hh, w.w_hh, w.ln_hh_w, w.ln_hh_b,
                                   w.ln_c_w, w.ln_c_b, w.w_ph, h0, c0, spec.coupled, batch_sizes, perm)
        perm = inv = None
    elif spec.mode == "lstm" and spec.layer_norm:
        # LN_ih(x W_ih^T) * g + b_ln + b_ih + b_hh: the three biases enter as one LN bias (one pass, one tensor)
        ln_b = w.ln_ih_b if w.b_ih is None else w.ln_ih_b + w.b_ih + w.b_hh
        gx = F.layer_norm(f32(_project(x, w.w_ih, None)), (w.w_ih.size(0),), f32(w.ln_ih_w), f32(ln_b))  # (T,B,GH)
        y, h, c, *_ = kern.lstm_ln_fwd(gx, h0, c0, f32(w.w_hh), f32(w.ln_hh_w), f32(w.ln_hh_b), f32(w.ln_c_w),
                                       f32(w.ln_c_b), f32(w.w_ph), batch_sizes, rd_mask, zo_h, zo_c, spec.coupled,
                                       f32(w.w_hr))
    elif node:
        # the common case (any lengths, fp32 or bf16): projection, loop and (in training) the whole backward in
        # one C++ call and one autograd node (csrc/layer.cpp), which also sorts the batch (perm) and puts the
        # results back in the caller's order; in inference the kernel adds the biases
        layer = _C.lstm_layer if needs_grad else _C.lstm_layer_infer
        y, h, c = layer(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_ph, batch_sizes, h0, c0, spec.coupled, perm)
        perm = inv = None
    elif spec.mode == "lstm":
        bias = None if w.b_ih is None else w.b_ih + w.b_hh
        gx = f32(_project(x, w.w_ih, bias))  # (T, B, G*H): one GEMM over all T*B rows
        # bf16: W_hh goes in as bf16 (the fused loop's per-step GEMMs are bf16 dot products, fp32 accumulation)
        y, h, c, *_ = kern.lstm_fwd(gx, h0, c0, w.w_hh, f32(w.w_hr), f32(w.w_ph), batch_sizes,
                                                 rd_mask, zo_h, zo_c, spec.coupled)
    elif gru_node:
        # fp32 without recurrent dropout: projection, loop and (in training) the whole backward in one C++ call and
        # one autograd node (csrc/gru_layer.cpp), which sorts the batch (perm) as the LSTM node does
        y, h = (_C.gru_layer if needs_grad else _C.gru_layer_infer)(x, w.w_ih, w.w_hh, w.b_ih, w.b_hh, batch_sizes,
                                                                     h0, perm)
        c = None
        perm = inv = None
    elif spec.mode == "gru":
        gx = f32(_project(x, w.w_ih, w.b_ih))  # (T, B, 3H)
        y, h, *_ = kern.gru_fwd(gx, h0, f32(w.w_hh), f32(w.b_hh), batch_sizes, rd_mask, zo_h)
        c = None
    else:
        bias = None if w.b_ih is None else w.b_ih + w.b_hh
        gx = f32(_project(x, w.w_ih, bias))  # (T, B, H)
        y, h, _ = kern.rnn_fwd(gx, h0, f32(w.w_hh), batch_sizes, rd_mask, zo_h,
                                            spec.mode == "rnn_relu")
        c = None
    if low:
        y, h = y.to(x.dtype), h.to(x.dtype)
        c = c.to(x.dtype) if c is not None else None
    if inv is not None:
        (y,), (h, c) = _reorder(inv, 1, y), _reorder(inv, 0, h, c)
    return y, h, c
