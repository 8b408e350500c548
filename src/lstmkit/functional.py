"""Reference math: one pure-PyTorch step function per recurrent cell. This file is the spec.

Every function advances one time step for a batch. Shapes: ``x`` is ``(B, D)``, hidden state ``h`` is
``(B, P)`` (``P = proj_size`` for a projection LSTM, else ``H``), cell state ``c`` is ``(B, H)``. Weight
layouts follow torch.nn: ``w_ih`` is ``(G*H, D)``, ``w_hh`` is ``(G*H, P)``, biases ``(G*H,)``, where G is the
number of gate blocks stacked row-wise in the order given by each function. Unbatched ``(D,)`` inputs work
too (every operation broadcasts).

``dropout_mask`` (optional, ``(B, P)``, already scaled by ``1/(1-p)``) is multiplied into ``h_{t-1}`` where it
enters ``W_hh`` only: variational recurrent dropout (Gal and Ghahramani 2016), one mask per sequence.

The native engine (``lstmkit._native``) is tested against these functions for values and gradients.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor
import torch.nn.functional as F

LN_EPS = 1e-5


class LayerNormWeights(NamedTuple):
    """Gains and biases of a layer-normalised LSTM: ``ih``/``hh`` are ``(G*H,)``, ``c`` is ``(H,)``."""

    ih_weight: Tensor
    ih_bias: Tensor
    hh_weight: Tensor
    hh_bias: Tensor
    c_weight: Tensor
    c_bias: Tensor


def _linear(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    return F.linear(x, w, b)


def _masked(h: Tensor, dropout_mask: Optional[Tensor]) -> Tensor:
    return h if dropout_mask is None else h * dropout_mask


def layer_norm(v: Tensor, weight: Tensor, bias: Tensor, eps: float = LN_EPS) -> Tensor:
    """LN(v) = weight * (v - mean(v)) / sqrt(var(v) + eps) + bias over the last dimension (biased variance)."""
    return F.layer_norm(v, (v.size(-1),), weight, bias, eps)


def lstm_step(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None, *,
              w_hr: Optional[Tensor] = None, w_ph: Optional[Tensor] = None, coupled: bool = False,
              ln: Optional[LayerNormWeights] = None,
              dropout_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    r"""One step of an LSTM with forget gate, and every variant lstmkit offers, composable.

    Standard LSTM (Hochreiter and Schmidhuber 1997, forget gate of Gers et al. 2000), torch's gate order
    (i, f, g, o) and torch's two biases::

        [a_i, a_f, a_g, a_o] = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        # (B, 4H)
        i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    Variants (each optional, all composable):

    - peephole (``w_ph``, Gers, Schraudolph and Schmidhuber 2002): diagonal weights p;
      ``a_i += p_i * c_{t-1}``, ``a_f += p_f * c_{t-1}``, and the output gate sees the *new* cell:
      ``a_o += p_o * c_t``. Layout ``(3H,)`` as (p_i, p_f, p_o), or ``(2H,)`` as (p_f, p_o) when coupled.
    - coupled (CIFG): no input-gate rows, the gate blocks are (f, g, o) (G = 3) and ``i = 1 - f``.
    - layer norm (``ln``, Ba, Kiros and Hinton 2016): separate normalisation of the input and recurrent
      pre-activations (each over the whole ``G*H`` vector, learnable gain and bias), and of the cell before
      the output tanh::

          a = LN_ih(x W_ih^T) + LN_hh(h_{t-1} W_hh^T) + b_ih + b_hh
          h_t = o * tanh(LN_c(c_t))          # c_t itself (the state, and what p_o sees) is not normalised

    - projection (``w_hr``, LSTMP, Sak et al. 2014; torch's proj_size): ``h_t = (o * tanh(c_t)) W_hr^T``,
      ``w_hr`` of shape ``(P, H)``, so ``h`` is ``(B, P)`` and ``w_hh`` is ``(G*H, P)``.

    Args:
        x: ``(B, D)`` input at step t.
        h: ``(B, P)`` previous hidden state h_{t-1}.
        c: ``(B, H)`` previous cell state c_{t-1}.
        w_ih: ``(G*H, D)``; w_hh: ``(G*H, P)``; b_ih, b_hh: ``(G*H,)`` or None.
        w_hr: ``(P, H)`` projection, or None. w_ph: peephole weights, or None. coupled: CIFG (default False).
        ln: :class:`LayerNormWeights`, or None. dropout_mask: ``(B, P)`` recurrent-dropout mask, or None.

    Returns:
        ``(h_t, c_t)`` with shapes ``(B, P)`` and ``(B, H)``.

    Example:
        >>> x, h, c = torch.randn(2, 3), torch.zeros(2, 4), torch.zeros(2, 4)
        >>> h, c = lstm_step(x, h, c, torch.randn(16, 3), torch.randn(16, 4))
    """
    gx = _linear(x, w_ih, None)  # (B, G*H)
    gh = _linear(_masked(h, dropout_mask), w_hh, None)  # (B, G*H)
    if ln is not None:
        gx = layer_norm(gx, ln.ih_weight, ln.ih_bias)
        gh = layer_norm(gh, ln.hh_weight, ln.hh_bias)
    gates = gx + gh
    if b_ih is not None:
        gates = gates + b_ih
    if b_hh is not None:
        gates = gates + b_hh
    hidden = c.size(-1)
    if coupled:
        a_f, a_g, a_o = gates.split(hidden, dim=-1)
        p_i = None
        p_f, p_o = w_ph.split(hidden) if w_ph is not None else (None, None)
    else:
        a_i, a_f, a_g, a_o = gates.split(hidden, dim=-1)
        p_i, p_f, p_o = w_ph.split(hidden) if w_ph is not None else (None, None, None)
    if p_f is not None:
        a_f = a_f + p_f * c
    f = torch.sigmoid(a_f)
    if coupled:
        i = 1.0 - f
    else:
        i = torch.sigmoid(a_i + p_i * c if p_i is not None else a_i)
    g = torch.tanh(a_g)
    c_new = f * c + i * g
    o = torch.sigmoid(a_o + p_o * c_new if p_o is not None else a_o)
    c_out = layer_norm(c_new, ln.c_weight, ln.c_bias) if ln is not None else c_new
    h_new = o * torch.tanh(c_out)
    if w_hr is not None:
        h_new = _linear(h_new, w_hr, None)  # (B, P)
    return h_new, c_new


def peephole_lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_ph, **kw) -> tuple[Tensor, Tensor]:
    r"""Peephole LSTM step (Gers, Schraudolph and Schmidhuber 2002); gates (i, f, g, o), peepholes (p_i, p_f, p_o)::

        i = σ(W_i x + U_i h_{t-1} + b_i + p_i * c_{t-1})
        f = σ(W_f x + U_f h_{t-1} + b_f + p_f * c_{t-1})
        g = tanh(W_g x + U_g h_{t-1} + b_g)
        c_t = f * c_{t-1} + i * g
        o = σ(W_o x + U_o h_{t-1} + b_o + p_o * c_t)
        h_t = o * tanh(c_t)

    ``w_ph`` is ``(3H,)``. Other arguments as :func:`lstm_step`, which this calls.
    """
    return lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_ph=w_ph, **kw)


def cifg_lstm_step(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None, **kw) -> tuple[Tensor, Tensor]:
    r"""Coupled input-forget gate LSTM step (CIFG); gate blocks (f, g, o), ``w_ih`` is ``(3H, D)``::

        f = σ(W_f x + U_f h_{t-1} + b_f)      i = 1 - f
        g = tanh(W_g x + U_g h_{t-1} + b_g)   o = σ(W_o x + U_o h_{t-1} + b_o)
        c_t = f * c_{t-1} + (1 - f) * g       h_t = o * tanh(c_t)

    Other arguments as :func:`lstm_step`, which this calls (peepholes, if given, are ``(2H,)`` as (p_f, p_o)).
    """
    return lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, coupled=True, **kw)


def layer_norm_lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, ln: LayerNormWeights, **kw) -> tuple[Tensor, Tensor]:
    r"""Layer-normalised LSTM step (Ba, Kiros and Hinton 2016), gates (i, f, g, o)::

        [a_i, a_f, a_g, a_o] = LN(W x; γ_x, β_x) + LN(U h_{t-1}; γ_h, β_h) + b_ih + b_hh
        c_t = σ(a_f) * c_{t-1} + σ(a_i) * tanh(a_g)
        h_t = σ(a_o) * tanh(LN(c_t; γ_c, β_c))

    ``LN(v; γ, β) = γ * (v - mean(v)) / sqrt(var(v) + 1e-5) + β`` over each row's ``4H`` (or ``H``) values.
    Other arguments as :func:`lstm_step`, which this calls.
    """
    return lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, ln=ln, **kw)


def projection_lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, **kw) -> tuple[Tensor, Tensor]:
    r"""Projection LSTM step (LSTMP, as torch's ``proj_size``): a standard step, then ``h_t = (o * tanh(c_t)) W_hr^T``.

    ``w_hr`` is ``(P, H)``; ``h`` and ``w_hh``'s columns have size P. Other arguments as :func:`lstm_step`.
    """
    return lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr, **kw)


def gru_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
             b_hh: Optional[Tensor] = None, *, dropout_mask: Optional[Tensor] = None) -> Tensor:
    r"""One GRU step exactly as torch.nn.GRU computes it; gate blocks (r, z, n)::

        r = σ(W_ir x + b_ir + W_hr h_{t-1} + b_hr)
        z = σ(W_iz x + b_iz + W_hz h_{t-1} + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    ``w_ih`` is ``(3H, D)``, ``w_hh`` is ``(3H, H)``. The recurrent-dropout mask applies to the ``h_{t-1}``
    that enters ``W_hh``; the interpolation uses the unmasked state. Returns ``h_t`` of shape ``(B, H)``.
    """
    gx = _linear(x, w_ih, b_ih)  # (B, 3H)
    gh = _linear(_masked(h, dropout_mask), w_hh, b_hh)  # (B, 3H)
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h


def rnn_tanh_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
                  b_hh: Optional[Tensor] = None, *, dropout_mask: Optional[Tensor] = None) -> Tensor:
    r"""One Elman RNN step with tanh: ``h_t = tanh(x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, shapes as torch.nn.RNN."""
    return torch.tanh(_linear(x, w_ih, b_ih) + _linear(_masked(h, dropout_mask), w_hh, b_hh))


def rnn_relu_step(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
                  b_hh: Optional[Tensor] = None, *, dropout_mask: Optional[Tensor] = None) -> Tensor:
    r"""One Elman RNN step with ReLU: ``h_t = max(0, x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``."""
    return torch.relu(_linear(x, w_ih, b_ih) + _linear(_masked(h, dropout_mask), w_hh, b_hh))


def zoneout(prev: Tensor, new: Tensor, keep: Tensor) -> Tensor:
    r"""Zoneout (Krueger et al. 2016): each unit keeps its previous value where ``keep`` is 1.

    ``s_t = keep * s_{t-1} + (1 - keep) * s_new`` with ``keep ~ Bernoulli(z)`` drawn per step and unit in
    training; lstmkit applies no zoneout in eval mode (the layer passes no mask).
    """
    return keep * prev + (1.0 - keep) * new
