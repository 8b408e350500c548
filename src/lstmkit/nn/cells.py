"""Single-step cells LSTMCell, GRUCell and RNNCell: drop-ins for torch.nn's, one readable step each."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from lstmkit import functional as LF
from lstmkit.nn import _checks


class _CellBase(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool, gates: int, device, dtype) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for weights and biases; layer-norm gains 1, biases 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(1.0 if "_weight" in name else 0.0)
                else:
                    p.uniform_(-stdv, stdv)

    def _prepare(self, input: Tensor, states: list, names: list[str]):
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"input must be 1-D (D,) unbatched or 2-D (B, D), got {shape}")
        _checks.check_input(input if input.dim() == 2 else input.unsqueeze(0), self.input_size, self.weight_ih)
        unbatched = input.dim() == 1
        x = input.unsqueeze(0) if unbatched else input
        out = []
        for state, name, size in zip(states, names, self._state_sizes()):
            if state is None:
                out.append(x.new_zeros(x.size(0), size))
            else:
                _checks.check_state(name, state, (size,) if unbatched else (x.size(0), size), x)
                out.append(state.unsqueeze(0) if unbatched else state)
        return x, out, unbatched

    def _state_sizes(self):
        return (self.hidden_size,)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTMCell(_CellBase):
    r"""One LSTM step, a drop-in for ``torch.nn.LSTMCell`` (gates i, f, g, o), with optional variants.

    ``h', c' = LSTMCell(x, (h, c))`` computes :func:`lstmkit.functional.lstm_step`::

        i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g                     h' = o * tanh(c')

    Args:
        input_size: D. hidden_size: H. bias: default True. device, dtype: factory arguments.
        peephole, coupled, layer_norm, forget_bias: as :class:`lstmkit.nn.LSTM` (keyword-only).

    Shapes: input ``(B, D)`` or ``(D,)``; hx ``(h, c)`` each ``(B, H)`` or ``(H,)``, zeros when omitted.
    Parameters: ``weight_ih`` ``(G*H, D)``, ``weight_hh`` ``(G*H, H)``, ``bias_ih``, ``bias_hh`` ``(G*H,)``
    (G = 4, or 3 when coupled), ``weight_ph``, ``ln_*`` as in :class:`lstmkit.nn.LSTM`.

    Example:
        >>> cell = LSTMCell(3, 5)
        >>> h, c = cell(torch.randn(2, 3))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 peephole: bool = False, coupled: bool = False, layer_norm: bool = False,
                 forget_bias: Optional[float] = None) -> None:
        gates = 3 if coupled else 4
        super().__init__(input_size, hidden_size, bias, gates, device, dtype)
        self.peephole, self.coupled, self.layer_norm = bool(peephole), bool(coupled), bool(layer_norm)
        self.forget_bias = forget_bias
        factory = {"device": device, "dtype": dtype}
        if peephole:
            self.weight_ph = nn.Parameter(torch.empty((2 if coupled else 3) * hidden_size, **factory))
        if layer_norm:
            for part, size in (("ih", gates * hidden_size), ("hh", gates * hidden_size), ("c", hidden_size)):
                setattr(self, f"ln_{part}_weight", nn.Parameter(torch.empty(size, **factory)))
                setattr(self, f"ln_{part}_bias", nn.Parameter(torch.empty(size, **factory)))
        self.reset_parameters()
        if forget_bias is not None and bias:
            f = slice(0, hidden_size) if coupled else slice(hidden_size, 2 * hidden_size)
            with torch.no_grad():
                self.bias_ih[f] = float(forget_bias)
                self.bias_hh[f] = 0.0

    def _state_sizes(self):
        return (self.hidden_size, self.hidden_size)

    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None) -> tuple[Tensor, Tensor]:
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise ValueError(f"hx must be a tuple (h, c) for LSTMCell, got {type(hx).__name__}")
        x, (h, c), unbatched = self._prepare(input, list(hx) if hx is not None else [None, None],
                                             ["hx[0] (h)", "hx[1] (c)"])
        ln = LF.LayerNormWeights(self.ln_ih_weight, self.ln_ih_bias, self.ln_hh_weight, self.ln_hh_bias,
                                 self.ln_c_weight, self.ln_c_bias) if self.layer_norm else None
        h, c = LF.lstm_step(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                            w_ph=getattr(self, "weight_ph", None), coupled=self.coupled, ln=ln)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(_CellBase):
    r"""One GRU step, a drop-in for ``torch.nn.GRUCell`` (gates r, z, n; math in :func:`lstmkit.functional.gru_step`).

    Shapes: input ``(B, D)`` or ``(D,)``; hx ``(B, H)`` or ``(H,)``; returns h'. Parameters ``weight_ih``
    ``(3H, D)``, ``weight_hh`` ``(3H, H)``, ``bias_ih``, ``bias_hh`` ``(3H,)``.

    Example:
        >>> h = GRUCell(3, 5)(torch.randn(2, 3))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)
        self.reset_parameters()

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, (h,), unbatched = self._prepare(input, [hx], ["hx"])
        h = LF.gru_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h.squeeze(0) if unbatched else h


class RNNCell(_CellBase):
    r"""One Elman RNN step, a drop-in for ``torch.nn.RNNCell``: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Args: input_size, hidden_size, bias=True, nonlinearity="tanh" (or "relu"), device, dtype.
    Shapes: input ``(B, D)`` or ``(D,)``; hx ``(B, H)`` or ``(H,)``; returns h'.

    Example:
        >>> h = RNNCell(3, 5, nonlinearity="relu")(torch.randn(2, 3))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, (h,), unbatched = self._prepare(input, [hx], ["hx"])
        step = LF.rnn_tanh_step if self.nonlinearity == "tanh" else LF.rnn_relu_step
        h = step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h.squeeze(0) if unbatched else h
