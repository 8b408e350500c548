"""Keras-style recurrent layers LSTM, GRU, SimpleRNN (running lstmkit.nn modules), with masks and stateful mode.

Each layer holds one ``lstmkit.nn.LSTM`` / ``GRU`` / ``RNN`` (batch_first, one layer, one direction) created on
the first call, initialised as Keras does: kernel glorot_uniform, recurrent kernel orthogonal, bias zeros, and
for LSTM ``unit_forget_bias=True`` (forget-gate bias 1). Keras' single bias is ``bias_ih``; ``bias_hh`` starts at 0.

Masks (from ``Embedding(mask_zero=True)`` or ``Masking``): a right-padded mask becomes ``lengths=`` of the
lstmkit.nn module (fused, fast); any other mask runs step by step, keeping the state unchanged on masked steps.
Outputs at masked steps are zero, and the final state is the one at each sequence's last valid step.

Activations: the engines compute Keras' defaults (tanh, sigmoid gates). Other values for LSTM/GRU raise
ValueError; SimpleRNN accepts ``activation`` "tanh" or "relu". For any other activation write a custom cell
(an object with ``state_size`` and ``call(x, states)``) and wrap it in :class:`RNN`.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

import lstmkit.nn as lnn
from lstmkit.layers.base import Layer, init_weight, register


def is_right_padded(mask: Tensor) -> bool:
    """True when every row of the (B, T) bool mask is some Trues followed only by Falses."""
    m = mask.to(torch.int8)
    return bool((m[:, 1:] <= m[:, :-1]).all())


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of (B, T, ...) ``x`` within its first ``lengths[b]`` steps; padding stays put."""
    b, t = x.shape[:2]
    ar = torch.arange(t, device=x.device).unsqueeze(0).expand(b, t)
    L = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(ar < L, L - 1 - ar, ar)
    return x.gather(1, idx.view(b, t, *([1] * (x.dim() - 2))).expand_as(x))


class _Recurrent(Layer):
    """Shared implementation of LSTM, GRU and SimpleRNN (see module docstring)."""

    MODE = "lstm"

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias: bool = True, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False, reset_after: bool = True,
                 peephole: bool = False, coupled: bool = False, layer_norm: bool = False, zoneout: float = 0.0,
                 backend: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"{type(self).__name__}: units={units!r}; expected a positive integer")
        cls = type(self).__name__
        if self.MODE in ("lstm", "gru"):
            if activation != "tanh" or recurrent_activation not in ("sigmoid",):
                raise ValueError(f"{cls}: activation={activation!r}, recurrent_activation={recurrent_activation!r}; "
                                 f"lstmkit's engines compute activation='tanh' and recurrent_activation='sigmoid' "
                                 f"(Keras' defaults). For other functions wrap a custom cell in lstmkit.layers.RNN")
        elif activation not in ("tanh", "relu"):
            raise ValueError(f"{cls}: activation={activation!r}; expected 'tanh' or 'relu' (or wrap a custom cell "
                             f"in lstmkit.layers.RNN)")
        if self.MODE == "gru" and not reset_after:
            raise ValueError(f"{cls}: reset_after=False is not supported; lstmkit's GRU (as torch's) applies the "
                             f"reset gate after the recurrent matmul, which is Keras' reset_after=True (its default)")
        for arg, v in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout), ("zoneout", zoneout)):
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"{cls}: {arg}={v!r}; expected a float in [0, 1)")
        self.units, self.activation, self.use_bias = units, activation, use_bias
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer, self.unit_forget_bias = bias_initializer, unit_forget_bias
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards, self.stateful = go_backwards, stateful
        self.variants = dict(peephole=peephole, coupled=coupled, layer_norm=layer_norm, zoneout=float(zoneout))
        if self.MODE != "lstm" and (peephole or coupled or layer_norm or zoneout):
            raise ValueError(f"{cls}: peephole, coupled, layer_norm and zoneout are LSTM variants")
        self.backend = backend
        self.rnn: Optional[nn.Module] = None
        self._states: Optional[List[Tensor]] = None

    # -- weights -------------------------------------------------------------------------------------------
    def _make_module(self, d: int) -> nn.Module:
        common = dict(bias=self.use_bias, batch_first=True, backend=self.backend)
        if self.recurrent_dropout:
            common["recurrent_dropout"] = self.recurrent_dropout
        if self.MODE == "lstm":
            v = {k: val for k, val in self.variants.items() if val}
            return lnn.LSTM(d, self.units, **common, **v)
        if self.MODE == "gru":
            return lnn.GRU(d, self.units, **common)
        return lnn.RNN(d, self.units, nonlinearity=self.activation, **common)

    @property
    def gates(self) -> int:
        return {"lstm": 3 if self.variants["coupled"] else 4, "gru": 3, "rnn": 1}[self.MODE]

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer {self.name!r}: expected input of shape (batch, time, features); got shape "
                             f"{tuple(input_shape)}")
        d, h, g = int(input_shape[-1]), self.units, self.gates
        self.rnn = self._make_module(d)
        with torch.no_grad():
            init_weight(self.rnn.weight_ih_l0, self.kernel_initializer, d, g * h)
            init_weight(self.rnn.weight_hh_l0, self.recurrent_initializer, h, g * h)
            if self.use_bias:
                init_weight(self.rnn.bias_ih_l0, self.bias_initializer, d, g * h)
                self.rnn.bias_hh_l0.zero_()
                if self.MODE == "lstm" and self.unit_forget_bias:
                    f = slice(0, h) if self.variants["coupled"] else slice(h, 2 * h)
                    self.rnn.bias_ih_l0[f] = 1.0

    # -- running -------------------------------------------------------------------------------------------
    def reset_states(self, states=None) -> None:
        """Forget the carried state of a stateful layer (or set it to ``states``: list of (B, H) tensors)."""
        self._states = None if states is None else [torch.as_tensor(s) for s in states]

    def _initial(self, x: Tensor, initial_state) -> Optional[list]:
        if initial_state is not None:
            return [s for s in (initial_state if isinstance(initial_state, (list, tuple)) else [initial_state])]
        if self.stateful and self._states is not None:
            if self._states[0].shape[0] != x.shape[0]:
                raise ValueError(f"layer {self.name!r} is stateful with batch size {self._states[0].shape[0]}; "
                                 f"got a batch of {x.shape[0]} (call reset_states() or keep the batch size fixed)")
            return self._states
        return None

    def _hx(self, states):
        if states is None:
            return None
        if self.MODE == "lstm":
            return (states[0].unsqueeze(0), states[1].unsqueeze(0))
        return states[0].unsqueeze(0)

    def _unpack(self, hn) -> list:
        if self.MODE == "lstm":
            return [hn[0][0], hn[1][0]]
        return [hn[0]]

    def run(self, x: Tensor, mask: Optional[Tensor], states: Optional[list]):
        """Process (B, T, D) ``x`` (already in processing order); return (outputs (B, T, H), final states list)."""
        if self.dropout and self.training:
            keep = torch.empty(x.shape[0], 1, x.shape[2], dtype=x.dtype, device=x.device).bernoulli_(1 - self.dropout)
            x = x * keep / (1 - self.dropout)
        if mask is None:
            out, hn = self.rnn(x, self._hx(states))
            return out, self._unpack(hn)
        mask = mask.to(torch.bool)
        if is_right_padded(mask):
            lengths = mask.sum(1)
            empty = lengths == 0
            out, hn = self.rnn(x, self._hx(states), lengths=lengths.clamp(min=1).cpu())
            final = self._unpack(hn)
            if bool(empty.any()):  # a fully masked sequence keeps its initial state and outputs zeros
                init = states or [torch.zeros_like(s) for s in final]
                final = [torch.where(empty.unsqueeze(1), i, f) for i, f in zip(init, final)]
                out = out * (~empty).view(-1, 1, 1).to(out.dtype)
            return out, final
        # general mask: one step at a time, the state frozen where the mask is False
        b = x.shape[0]
        cur = states or [x.new_zeros(b, self.units) for _ in range(2 if self.MODE == "lstm" else 1)]
        outs = []
        for t in range(x.shape[1]):
            y, hn = self.rnn(x[:, t:t + 1], self._hx(cur))
            new = self._unpack(hn)
            m = mask[:, t].unsqueeze(1)
            cur = [torch.where(m, n, c) for n, c in zip(new, cur)]
            outs.append(y[:, 0] * m.to(y.dtype))
        return torch.stack(outs, 1), cur

    def call(self, x, mask=None, initial_state=None):
        if x.dim() != 3:
            raise ValueError(f"layer {self.name!r}: expected input of shape (batch, time, features); got shape "
                             f"{tuple(x.shape)}")
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        states = self._initial(x, initial_state)
        out, final = self.run(x, mask, states)
        if self.stateful:
            self._states = [s.detach() for s in final]
        y = out if self.return_sequences else final[0]
        return [y] + final if self.return_state else y

    def forward(self, x, mask=None, initial_state=None):
        return self.call(x, mask=mask, initial_state=initial_state)

    def compute_mask(self, x, mask):
        if not self.return_sequences or mask is None:
            return None
        return mask.flip(1) if self.go_backwards else mask


@register
class LSTM(_Recurrent):
    """Keras-style LSTM layer (Hochreiter and Schmidhuber 1997) running :class:`lstmkit.nn.LSTM`.

    Args: units; activation="tanh", recurrent_activation="sigmoid" (the only values the engines compute);
    use_bias=True; kernel_initializer="glorot_uniform"; recurrent_initializer="orthogonal";
    bias_initializer="zeros"; unit_forget_bias=True; dropout=0 (on inputs, one mask per sequence);
    recurrent_dropout=0 (variational, lstmkit.nn's); return_sequences=False; return_state=False;
    go_backwards=False; stateful=False; lstmkit variants peephole, coupled, layer_norm, zoneout; backend="auto".
    Shapes: ``(B, T, D) -> (B, units)`` or ``(B, T, units)`` with return_sequences; with return_state
    ``[output, h, c]``. Example: ``LSTM(50, return_sequences=True, input_shape=(None, 10))``.
    """

    MODE = "lstm"


@register
class GRU(_Recurrent):
    """Keras-style GRU layer (Cho et al. 2014), Keras' reset_after=True form, running :class:`lstmkit.nn.GRU`.

    Same arguments as :class:`LSTM` without unit_forget_bias and the LSTM variants. ``[output, h]`` with
    return_state.
    """

    MODE = "gru"


@register
class SimpleRNN(_Recurrent):
    """Keras-style Elman RNN, ``h_t = activation(W x_t + U h_{t-1} + b)``, activation "tanh" or "relu"."""

    MODE = "rnn"

    def __init__(self, units: int, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)
