"""Autograd formulas and fake (meta) kernels of the registered ops ``torch.ops.lstmkit.*``, and the autograd
Functions the layers call on the same kernels without the dispatcher (``ops._Kernels``).

:func:`build` is called once by ``ops`` when the compiled engine has loaded: it registers the formulas and fake
kernels with ``torch.library`` (torch.compile, opcheck, export) and returns the Functions by kernel name.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

_C = None  # the compiled engine, set by build()


def _zeros_if_none(g: Optional[Tensor], like: Tensor) -> Tensor:
    if g is None:
        return torch.zeros_like(like)
    if g.is_contiguous() or g.dtype != torch.float32:
        return g.contiguous()
    return _C.pool_empty(list(g.shape)).copy_(g)  # e.g. the expanded ones of y.sum(): a pooled copy, no page faults


# -- fake (meta) kernels: output shapes of the registered ops -----------------------------------------------

def _fake_lstm_fwd(gx, h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled):
    T, B, _g = gx.shape
    H, P = c0.shape[1], h0.shape[1]
    e = gx.new_empty
    return (e(T, B, P), e(B, P), e(B, H), e(T, B, gx.shape[2]), e(T, B, H),
            e(T, B, H) if zo_c is not None else e(0), e(T, B, H) if w_hr is not None else e(0))


def _fake_lstm_bwd(dy, dhT, dcT, gates, cn, cs, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled):
    T, B, GH = gates.shape
    return (gates.new_empty(T, B, GH), dhT.new_empty(dhT.shape), dcT.new_empty(dcT.shape),
            dy.new_empty(dy.shape) if w_hr is not None else dy.new_empty(0))


def _fake_gru_fwd(gx, h0, w_hh, b_hh, batch_sizes, rd_mask, zo_h):
    T, B, H3 = gx.shape
    return gx.new_empty(T, B, H3 // 3), h0.new_empty(h0.shape), gx.new_empty(T, B, H3), gx.new_empty(T, B, H3 // 3)


def _fake_gru_bwd(dy, dhT, gates, ghn, h0, y, w_hh, batch_sizes, rd_mask, zo_h):
    return gates.new_empty(gates.shape), gates.new_empty(gates.shape), dhT.new_empty(dhT.shape)


def _fake_rnn_fwd(gx, h0, w_hh, batch_sizes, rd_mask, zo_h, relu):
    return gx.new_empty(gx.shape), h0.new_empty(h0.shape), gx.new_empty(gx.shape if zo_h is not None else (0,))


def _fake_rnn_bwd(dy, dhT, hn, w_hh, batch_sizes, rd_mask, zo_h, relu):
    return hn.new_empty(hn.shape), dhT.new_empty(dhT.shape)

# -- autograd formulas (shared by the registered torch ops and the Functions the layers call) -------------
def _bwd(ctx):
    """Backward kernels: the bare ones from a layer's Function, the registered ops when traced (compile, opcheck)."""
    return getattr(ctx, "bare_kernels", None) or torch.ops.lstmkit


def _plain_f32(*ts: Tensor) -> bool:
    """Whether the engine's own GEMMs (csrc/gemm.h, gemm_tn.h) may take these tensors: plain fp32 ones (tensors or
    parameters). Not bf16, and not the fake or functional tensors of a traced backward, which have no data to read
    (ATen's then)."""
    return all(t.dtype == torch.float32 and type(t) in _PLAIN for t in ts)


_PLAIN = (Tensor, torch.nn.Parameter)


def _mm_tn(a: Tensor, b: Tensor) -> Tensor:
    """``a^T b`` over all rows: the engine's weight-gradient GEMM (csrc/gemm_tn.h), or ATen's (see _plain_f32)."""
    return _C.matmul_tn(a, [b])[0] if _plain_f32(a, b) else a.t().mm(b)


def _recurrent_weight_grad(dG2: Tensor, h0: Tensor, y: Tensor, rd_mask: Optional[Tensor] = None,
                           dtype: Optional[torch.dtype] = None) -> Tensor:
    """``dW_hh = sum_t dG_t^T (h_{t-1} * mask)`` with ``h_{-1} = h0`` and then ``y_0 .. y_{T-2}``; dG2 (T*B, G*H).

    Without a recurrent-dropout mask: two GEMMs straight from h0 and y, with no (T, B, P) copy of the previous
    states (a fresh tensor that size costs page faults, see csrc/pool.h). ``dtype``: the GEMM's (a bf16 layer's).
    """
    T, B, P = y.shape
    g = dG2.to(dtype or dG2.dtype)
    if rd_mask is not None:
        h_prev = torch.cat([h0.unsqueeze(0), y[:-1]]) if T > 1 else h0.unsqueeze(0)
        return _mm_tn(g, (h_prev * rd_mask).reshape(T * B, P).to(g.dtype))
    if T == 1:
        return _mm_tn(g, h0.to(g.dtype))
    return _mm_tn(g[B:], y[:-1].reshape((T - 1) * B, P).to(g.dtype)).addmm_(g[:B].t(), h0.to(g.dtype))


def _peephole_grad(dG: Tensor, c0: Tensor, carried: Tensor, cn: Tensor, coupled: bool) -> Tensor:
    """Peephole weight gradient from the gate gradients dG (T, B, G*H): i and f see c_{t-1} (c0, then the carried
    cells), o sees the new cell c_t; coupled layers have (p_f, p_o) only."""
    T, H = cn.shape[0], cn.shape[2]
    c_prev = torch.cat([c0.unsqueeze(0), carried[:-1]]) if T > 1 else c0.unsqueeze(0)
    blocks = dG.split(H, dim=-1)
    if coupled:
        return torch.cat([(blocks[0] * c_prev).sum((0, 1)), (blocks[2] * cn).sum((0, 1))])
    return torch.cat([(blocks[0] * c_prev).sum((0, 1)), (blocks[1] * c_prev).sum((0, 1)),
                      (blocks[3] * cn).sum((0, 1))])


# LSTM: inputs (gx, h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled)
def lstm_setup(ctx, inputs, output):
    gx, h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled = inputs
    y, _h, _c, gates, cn, cs, m = output
    ctx.coupled = coupled
    ctx.save_for_backward(h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, y, gates, cn, cs, m)

def _lstm_weight_grads(needs, saved, dG, dhn, coupled):
    """``(dW_hh, dW_hr, dW_ph)`` (None where absent or not needed: ``needs`` for the three) of one LSTM
    layer-direction after its backward kernel, from what lstm_setup saved."""
    h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, y, gates, cn, cs, m = saved
    T, B, GH = gates.shape
    P, H = h0.shape[1], c0.shape[1]
    d_w_hh = d_w_hr = d_w_ph = None
    if needs[0]:  # a bf16 layer: its largest GEMM in bf16 too (fp32 accumulation)
        d_w_hh = _recurrent_weight_grad(dG.view(T * B, GH), h0, y, rd_mask, w_hh.dtype)
    if w_hr is not None and needs[1]:
        d_w_hr = dhn.view(T * B, P).t().mm(m.view(T * B, H))
    if w_ph is not None and needs[2]:
        d_w_ph = _peephole_grad(dG, c0, cs if zo_c is not None else cn, cn, coupled)
    return d_w_hh, d_w_hr, d_w_ph


def lstm_backward(ctx, dy, dhT, dcT, *_unused):
    saved = ctx.saved_tensors
    h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, y, gates, cn, cs, m = saved
    dG, dh0, dc0, dhn = _bwd(ctx).lstm_bwd(
        _zeros_if_none(dy, y), _zeros_if_none(dhT, h0), _zeros_if_none(dcT, c0), gates, cn, cs, c0, w_hh,
        w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, ctx.coupled)
    grads = _lstm_weight_grads(ctx.needs_input_grad[3:6], saved, dG, dhn, ctx.coupled)
    return (dG, dh0, dc0, *grads, None, None, None, None, None)


class LstmPair(torch.autograd.Function):
    """Both directions of a bidirectional projection LSTM's recurrence at once, one per core (``_C.lstm_fwd_pair``,
    csrc/lstm.cpp): inputs ``(gx, h0, c0, w_hh, w_hr, w_ph)`` per direction, then ``batch_sizes`` and
    ``coupled``; outputs lstm_fwd's seven per direction. Gradients as :func:`lstm_backward` gives them."""

    @staticmethod
    def forward(ctx, *inputs):
        batch_sizes, coupled = inputs[12], inputs[13]
        out = _C.lstm_fwd_pair(*inputs, True)
        ctx.coupled = coupled
        dirs = [inputs[:6], inputs[6:12]]
        ctx.save_for_backward(*[t for d in range(2) for t in (*dirs[d][1:], batch_sizes, None, None, None,
                                                              *out[7 * d:7 * d + 1], *out[7 * d + 3:7 * d + 7])])
        ctx.mark_non_differentiable(*out[3:7], *out[10:14])
        ctx.set_materialize_grads(False)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        dirs = [saved[:14], saved[14:]]
        args = []
        for d, (h0, c0, w_hh, w_hr, w_ph, batch_sizes, _rd, _zh, _zc, y, gates, cn, cs, _m) in enumerate(dirs):
            dy, dhT, dcT = grads[7 * d:7 * d + 3]
            args += [_zeros_if_none(dy, y), _zeros_if_none(dhT, h0), _zeros_if_none(dcT, c0), gates, cn, cs, c0,
                     w_hh, w_hr, w_ph]
        back = _C.lstm_bwd_pair(*args, dirs[0][5], ctx.coupled)
        result = []
        for d in range(2):
            dG, dh0, dc0, dhn = back[4 * d:4 * d + 4]
            needs = ctx.needs_input_grad[6 * d + 3:6 * d + 6]
            result += [dG, dh0, dc0, *_lstm_weight_grads(needs, dirs[d], dG, dhn, ctx.coupled)]
        return (*result, None, None)


def _fake_lstm_ln_fwd(gx, h0, c0, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask, zo_h, zo_c,
                      coupled, w_hr=None):
    T, B, GH = gx.shape
    H, P = c0.shape[1], h0.shape[1]
    e = gx.new_empty
    return (e(T, B, P), e(B, P), e(B, H), e(T, B, GH), e(T, B, H), e(T, B, H) if zo_c is not None else e(0),
            e(T, B, GH), e(T, B), e(T, B, H), e(T, B), e(T, B, H) if w_hr is not None else e(0))


def _fake_lstm_ln_bwd(dy, dhT, dcT, gates, cn, cs, c0, w_hh, n_hh, r_hh, n_c, r_c, ln_hh_w, ln_c_w, ln_c_b, w_ph,
                      batch_sizes, rd_mask, zo_h, zo_c, coupled, w_hr=None):
    return (gates.new_empty(gates.shape), gates.new_empty(gates.shape), dhT.new_empty(dhT.shape),
            dcT.new_empty(dcT.shape), cn.new_empty(cn.shape), dy.new_empty(dy.shape) if w_hr is not None
            else dy.new_empty(0))

# layer-norm LSTM: inputs (gx, h0, c0, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask,
# zo_h, zo_c, coupled[, w_hr]); gx already holds LN_ih(x W_ih^T) + biases (autograd handles that part)

def ln_setup(ctx, inputs, output):
    gx, h0, c0, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled = inputs[:14]
    w_hr = inputs[14] if len(inputs) > 14 else None
    y, _h, _c, gates, cn, cs, n_hh, r_hh, n_c, r_c, m = output
    ctx.coupled = coupled
    ctx.save_for_backward(h0, c0, w_hh, ln_hh_w, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask, zo_h, zo_c, y, gates,
                          cn, cs, n_hh, r_hh, n_c, r_c, w_hr, m)

def ln_backward(ctx, dy, dhT, dcT, *_unused):
    (h0, c0, w_hh, ln_hh_w, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask, zo_h, zo_c, y, gates, cn, cs, n_hh, r_hh,
     n_c, r_c, w_hr, m) = ctx.saved_tensors
    dA, dGh, dh0, dc0, dcl, dR = _bwd(ctx).lstm_ln_bwd(
        _zeros_if_none(dy, y), _zeros_if_none(dhT, h0), _zeros_if_none(dcT, c0), gates, cn, cs, c0, w_hh, n_hh,
        r_hh, n_c, r_c, ln_hh_w, ln_c_w, ln_c_b, w_ph, batch_sizes, rd_mask, zo_h, zo_c, ctx.coupled, w_hr)
    T, B, GH = gates.shape
    d_w_hh = _recurrent_weight_grad(dGh.view(T * B, GH), h0, y, rd_mask)
    d_w_hr = None
    if w_hr is not None and ctx.needs_input_grad[14]:  # r_t = m_t W_hr^T: dW_hr = sum_t dr_t^T m_t
        d_w_hr = _mm_tn(dR.view(T * B, -1), m.view(T * B, -1))
    d_ln_hh_w = (dA * n_hh).sum((0, 1))
    d_ln_hh_b = dA.sum((0, 1))
    d_ln_c_w = (dcl * n_c).sum((0, 1))
    d_ln_c_b = dcl.sum((0, 1))
    d_w_ph = None
    if w_ph is not None:
        d_w_ph = _peephole_grad(dA, c0, cs if zo_c is not None else cn, cn, ctx.coupled)
    grads = (dA, dh0, dc0, d_w_hh, d_ln_hh_w, d_ln_hh_b, d_ln_c_w, d_ln_c_b, d_w_ph, None, None, None, None, None)
    return grads + (d_w_hr,) if len(ctx.needs_input_grad) > 14 else grads  # one gradient per input given

# GRU: inputs (gx, h0, w_hh, b_hh, batch_sizes, rd_mask, zo_h)

def gru_setup(ctx, inputs, output):
    gx, h0, w_hh, b_hh, batch_sizes, rd_mask, zo_h = inputs
    y, _h, gates, ghn = output
    ctx.has_b_hh = b_hh is not None
    ctx.save_for_backward(h0, w_hh, batch_sizes, rd_mask, zo_h, y, gates, ghn)

def gru_backward(ctx, dy, dhT, *_unused):
    h0, w_hh, batch_sizes, rd_mask, zo_h, y, gates, ghn = ctx.saved_tensors
    dGx, dGh, dh0 = _bwd(ctx).gru_bwd(_zeros_if_none(dy, y), _zeros_if_none(dhT, h0), gates, ghn, h0,
                                              y, w_hh, batch_sizes, rd_mask, zo_h)
    T, B, H3 = gates.shape
    H = H3 // 3
    dGh2 = dGh.view(T * B, H3)
    d_w_hh = _recurrent_weight_grad(dGh2, h0, y, rd_mask) if ctx.needs_input_grad[2] else None
    d_b_hh = dGh2.sum(0) if ctx.has_b_hh and ctx.needs_input_grad[3] else None
    return dGx, dh0, d_w_hh, d_b_hh, None, None, None

# RNN: inputs (gx, h0, w_hh, batch_sizes, rd_mask, zo_h, relu)

def rnn_setup(ctx, inputs, output):
    gx, h0, w_hh, batch_sizes, rd_mask, zo_h, relu = inputs
    y, _h, hn = output
    ctx.relu = relu
    ctx.save_for_backward(h0, w_hh, batch_sizes, rd_mask, zo_h, y, hn)

def rnn_backward(ctx, dy, dhT, *_unused):
    h0, w_hh, batch_sizes, rd_mask, zo_h, y, hn = ctx.saved_tensors
    act = hn if zo_h is not None else y
    dA, dh0 = _bwd(ctx).rnn_bwd(_zeros_if_none(dy, y), _zeros_if_none(dhT, h0), act, w_hh,
                                        batch_sizes, rd_mask, zo_h, ctx.relu)
    T, B, H = y.shape
    d_w_hh = _recurrent_weight_grad(dA.view(T * B, H), h0, y, rd_mask) if ctx.needs_input_grad[2] else None
    return dA, dh0, d_w_hh, None, None, None, None


def _function(kernel_name: str, setup, backward):
    """A torch.autograd.Function running ``_C.<kernel_name>`` directly: the layers' training path, without the
    dispatcher's schema handling (which costs more than a whole small layer)."""
    def forward(ctx, *inputs):
        output = getattr(_C, kernel_name)(*inputs)
        setup(ctx, inputs, output)
        ctx.bare_kernels = _C
        ctx.mark_non_differentiable(*output[3 if kernel_name.startswith("lstm") else 2:])
        # outputs without a gradient (always the saved gates and cells, often h_T) reach backward as None rather
        # than as zero tensors autograd would fill first (a (T, B, G*H) fill was 6% of a GRU's training step)
        ctx.set_materialize_grads(False)
        return output

    return type(kernel_name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                          "backward": staticmethod(backward)})


def _register() -> None:
    """Fake (meta) kernels and autograd for ``torch.ops.lstmkit.*`` (torch.compile, opcheck, export)."""
    lib = "lstmkit::"
    torch.library.register_fake(lib + "lstm_fwd")(_fake_lstm_fwd)
    torch.library.register_fake(lib + "lstm_bwd")(_fake_lstm_bwd)
    torch.library.register_fake(lib + "gru_fwd")(_fake_gru_fwd)
    torch.library.register_fake(lib + "gru_bwd")(_fake_gru_bwd)
    torch.library.register_fake(lib + "rnn_fwd")(_fake_rnn_fwd)
    torch.library.register_fake(lib + "rnn_bwd")(_fake_rnn_bwd)
    torch.library.register_fake(lib + "lstm_ln_fwd")(_fake_lstm_ln_fwd)
    torch.library.register_fake(lib + "lstm_ln_bwd")(_fake_lstm_ln_bwd)

    torch.library.register_autograd(lib + "lstm_fwd", lstm_backward, setup_context=lstm_setup)
    torch.library.register_autograd(lib + "lstm_ln_fwd", ln_backward, setup_context=ln_setup)
    torch.library.register_autograd(lib + "gru_fwd", gru_backward, setup_context=gru_setup)
    torch.library.register_autograd(lib + "rnn_fwd", rnn_backward, setup_context=rnn_setup)


def build(C) -> dict:
    """Register the formulas and fake kernels for the loaded engine ``C`` and return its Functions by name."""
    global _C
    _C = C
    _register()
    return {"lstm_fwd": _function("lstm_fwd", lstm_setup, lstm_backward), "lstm_fwd_pair": LstmPair,
            "lstm_ln_fwd": _function("lstm_ln_fwd", ln_setup, ln_backward),
            "gru_fwd": _function("gru_fwd", gru_setup, gru_backward),
            "rnn_fwd": _function("rnn_fwd", rnn_setup, rnn_backward)}
