"""Streaming inference: feed a trained recurrent layer one time step at a time, keeping its state between calls.

For online use (a sensor reading, a token) calling a whole layer per step costs far more than the step itself.
``layer.stream()`` returns a :class:`Stream`; each :meth:`Stream.step` runs every layer once for the new input,
in one native call (LSTM with any option, GRU, RNN) when the engine is built (weights are copied and laid out once,
at creation). A bfloat16 layer streams natively too: its weights are widened to fp32 once, each step computes in
fp32 and returns the output in the input's dtype (more exact than the bf16 layer itself, which rounds ``h`` to
bf16 before each step's product); float64 layers step through the reference cells, in float64.

Example::

    lstm = lstmkit.nn.LSTM(8, 64, num_layers=2).eval()
    s = lstm.stream(batch_size=1)
    for x_t in sensor():                 # x_t: (1, 8)
        y_t = s.step(x_t)                # (1, 64): the top layer's h_t, same as lstm(x)[0][t]
    s.reset()                            # zero state for a new sequence

The stream is a snapshot: it does not see later changes to the layer's parameters (make a new one).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from lstmkit import backend as _backend
from lstmkit.nn._engine import reference_step


class Stream:
    """Stateful single-step runner of a unidirectional ``lstmkit.nn`` LSTM, GRU or RNN (inference only).

    Args:
        layer: the recurrent module (its current weights are used; dropout, zoneout are off as in eval mode).
        batch_size: B, the number of parallel streams (default 1).
        backend: "auto", "native" or "reference" (default: the layer's own ``backend``).

    ``step(x)`` takes ``(B, D)`` (or ``(D,)`` when B = 1) and returns ``(B, P)`` (or ``(P,)``), P the output
    size of the top layer. ``state`` is ``h`` of shape ``(num_layers, B, P)`` (and ``c`` ``(num_layers, B, H)``
    for an LSTM), the same layout as the layer's ``hx``.
    """

    def __init__(self, layer, batch_size: int = 1, backend: Optional[str] = None):
        if layer.bidirectional:
            raise ValueError("stream() needs a unidirectional layer: a bidirectional layer must see the whole "
                             "sequence before its first output (got bidirectional=True)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.layer, self.batch_size = layer, batch_size
        self._x_shape = torch.Size([batch_size, layer.input_size])
        self.spec = layer.spec
        which = _backend.resolve(backend or layer.backend)
        self._native = None
        weights = [layer._direction_weights(i) for i in range(layer.num_layers)]
        self._weights = [tuple(None if t is None else t.detach() for t in w) for w in weights]
        self._weights = [type(weights[0])(*w) for w in self._weights]
        self._dtype = self._weights[0].w_ih.dtype
        if which == "native" and self._dtype in (torch.float32, torch.bfloat16):
            from lstmkit._native import ops

            empty = torch.empty(0)

            def f32(t):  # sums of biases are taken after this: in bf16 they would round
                return empty if t is None else t.float()
            if self.spec.layer_norm:  # csrc/stream_ln.h; b_ih and b_hh join LN_ih's bias, as in the layer
                packed = [[w.w_ih.float(), w.w_hh.float(), w.ln_ih_w.float(),
                           (f32(w.ln_ih_b) if w.b_ih is None else f32(w.ln_ih_b) + f32(w.b_ih) + f32(w.b_hh)),
                           w.ln_hh_w.float(), w.ln_hh_b.float(), w.ln_c_w.float(), w.ln_c_b.float(), f32(w.w_hr),
                           f32(w.w_ph)] for w in self._weights]
                self._native = ops._C.LnLSTMStream(packed, batch_size, self.spec.coupled)
            elif self.spec.mode == "lstm":
                packed = [[w.w_ih.float(), w.w_hh.float(), empty if w.b_ih is None else f32(w.b_ih) + f32(w.b_hh),
                           f32(w.w_hr), f32(w.w_ph)] for w in self._weights]
                self._native = ops._C.LSTMStream(packed, batch_size, self.spec.coupled)
            else:  # GRU, RNN (csrc/stream_gru.h)
                packed = [[w.w_ih.float(), w.w_hh.float(), f32(w.b_ih), f32(w.b_hh)] for w in self._weights]
                self._native = ops._C.CellStream(packed, batch_size, self.spec.mode)
        self.reset()

    @property
    def native(self) -> bool:
        """True when steps run in the native engine."""
        return self._native is not None

    def reset(self) -> None:
        """Zero the state (start new sequences)."""
        L, B = self.layer.num_layers, self.batch_size
        self._h = torch.zeros(L, B, self.spec.state_size, dtype=self._dtype)
        self._c = torch.zeros(L, B, self.spec.hidden_size, dtype=self._dtype) if self.spec.mode == "lstm" else None
        if self._native is not None:
            self._native.reset()

    @property
    def state(self) -> Tuple[Tensor, ...] | Tensor:
        """Current ``(h, c)`` for an LSTM, ``h`` otherwise (copies, in the layer's dtype)."""
        if self._native is not None:  # (h, c) from an LSTM's stream, h from a GRU's or RNN's: fp32
            def copy(t):
                return t.clone() if self._dtype == torch.float32 else t.to(self._dtype)
            state = self._native.state()
            return copy(state) if self._c is None else (copy(state[0]), copy(state[1]))
        return (self._h.clone(), self._c.clone()) if self._c is not None else self._h.clone()

    def set_state(self, h: Tensor, c: Optional[Tensor] = None) -> None:
        """Set the state (shapes as :attr:`state`), e.g. the final state of a previous ``layer(x)`` call."""
        if tuple(h.shape) != tuple(self._h.shape):
            raise ValueError(f"h must have shape {tuple(self._h.shape)}, got {tuple(h.shape)}")
        if self._c is not None and (c is None or tuple(c.shape) != tuple(self._c.shape)):
            raise ValueError(f"c must have shape {tuple(self._c.shape)}, got "
                             f"{None if c is None else tuple(c.shape)}")
        if self._native is not None:
            self._native.set_state(*[t.float() for t in ((h,) if self._c is None else (h, c))])
        else:
            self._h.copy_(h)
            if c is not None:
                self._c.copy_(c)

    @torch.no_grad()
    def step(self, x: Tensor) -> Tensor:
        """Advance every layer one step with input ``x`` ``(B, D)``; returns the top layer's output ``(B, P)``."""
        if self._native is not None and x.shape == self._x_shape:  # the common case, with little Python
            y = self._native.step(x)  # fp32, whatever x's dtype
            return y if x.dtype == torch.float32 else y.to(x.dtype)
        squeeze = x.dim() == 1 and self.batch_size == 1
        if squeeze:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.size(0) != self.batch_size or x.size(1) != self.layer.input_size:
            raise ValueError(f"x must have shape ({self.batch_size}, {self.layer.input_size}), got "
                             f"{tuple(x.shape)}")
        if self._native is not None:
            y = self._native.step(x).to(x.dtype)
        else:
            inp = x
            for i, w in enumerate(self._weights):
                h, c = reference_step(self.spec, w, inp, self._h[i], None if self._c is None else self._c[i])
                self._h[i] = h
                if c is not None:
                    self._c[i] = c
                inp = h
            y = inp.clone()
        return y.squeeze(0) if squeeze else y
