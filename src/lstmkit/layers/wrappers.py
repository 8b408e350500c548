"""Keras-style cells (LSTMCell, GRUCell, SimpleRNNCell), the RNN(cell) wrapper, and Bidirectional."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lstmkit.layers.base import Layer, register
from lstmkit.layers.recurrent import GRU, LSTM, SimpleRNN, _Recurrent, is_right_padded, reverse_within_lengths


class _Cell(Layer):
    """A single step of a recurrent layer: ``cell(x_t, states) -> (h_t, new_states)`` (Keras cell API).

    Inside :class:`RNN` a built-in cell runs as the fused layer of the same kind (same arguments); used alone it
    runs one step of that layer. ``state_size`` is ``[units, units]`` for LSTMCell, ``units`` otherwise.
    """

    LAYER = LSTM

    def __init__(self, units: int, **kwargs):
        layer_kw = {k: v for k, v in kwargs.items() if k not in ("name", "input_shape", "input_dim", "dtype",
                                                                  "trainable", "batch_input_shape")}
        base_kw = {k: v for k, v in kwargs.items() if k not in layer_kw}
        super().__init__(**base_kw)
        self.units = units
        self.layer_kwargs = layer_kw
        self.step_layer = self.LAYER(units, return_state=True, **layer_kw)  # validates the arguments

    @property
    def state_size(self):
        return [self.units, self.units] if self.LAYER is LSTM else self.units

    def call(self, x, states=None, mask=None):
        if states is not None and not isinstance(states, (list, tuple)):
            states = [states]
        out = self.step_layer(x.unsqueeze(1), initial_state=states)
        return out[1], out[1:]

    def __call__(self, x, states=None, **kwargs):
        if not self.built:
            self.built = True  # the step layer builds itself from x
        return nn.Module.__call__(self, x, states, **kwargs)

    def forward(self, x, states=None, mask=None):
        return self.call(x, states)


@register
class LSTMCell(_Cell):
    """Keras LSTMCell(units, ...): arguments as :class:`lstmkit.layers.LSTM`."""
    LAYER = LSTM


@register
class GRUCell(_Cell):
    """Keras GRUCell(units, ...): arguments as :class:`lstmkit.layers.GRU`."""
    LAYER = GRU


@register
class SimpleRNNCell(_Cell):
    """Keras SimpleRNNCell(units, activation="tanh"|"relu", ...)."""
    LAYER = SimpleRNN


@register
class RNN(Layer):
    """Runs a cell (or a stack of cells, given as a list) over time, as ``keras.layers.RNN``.

    Built-in cells run as their fused layers (``RNN(LSTMCell(64))`` is ``LSTM(64)``); any other object with
    ``state_size`` and ``call(x_t, states) -> (output, new_states)`` runs in a Python loop over time steps.

    Args: cell; return_sequences=False; return_state=False; go_backwards=False; stateful=False.
    With return_state the states of every cell follow the output, in order.
    """

    def __init__(self, cell, return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards, self.stateful = go_backwards, stateful
        if all(isinstance(c, _Cell) for c in cells):
            n = len(cells)
            self.layers = nn.ModuleList([
                c.LAYER(c.units, return_sequences=(i < n - 1) or return_sequences, return_state=True,
                        go_backwards=go_backwards and i == 0, stateful=stateful, **c.layer_kwargs)
                for i, c in enumerate(cells)])
            self.custom = None
        else:
            self.layers = None
            self.custom = nn.ModuleList(cells) if all(isinstance(c, nn.Module) for c in cells) else None
            self._custom_cells = cells

    def call(self, x, mask=None, initial_state=None):
        if self.layers is not None:
            states_all, y = [], x
            for i, layer in enumerate(self.layers):
                init = None
                if initial_state is not None:
                    k = 2 if isinstance(layer, LSTM) else 1
                    init = list(initial_state)[sum(2 if isinstance(l, LSTM) else 1 for l in self.layers[:i]):][:k]
                out = layer(y, mask=mask, initial_state=init)
                mask = layer.compute_mask(y, mask)
                y = out[0]
                states_all += out[1:]
            return [y] + states_all if self.return_state else y
        return self._loop(x, mask, initial_state)

    def _loop(self, x, mask, initial_state):
        cells = self._custom_cells
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        b = x.shape[0]

        def zeros(size):
            sizes = size if isinstance(size, (list, tuple)) else [size]
            return [x.new_zeros(b, int(s)) for s in sizes]

        states = [zeros(c.state_size) for c in cells]
        if initial_state is not None:
            flat, k = list(initial_state), 0
            for i, s in enumerate(states):
                states[i] = flat[k:k + len(s)]
                k += len(s)
        outs = []
        for t in range(x.shape[1]):
            h = x[:, t]
            new_states = []
            for c, st in zip(cells, states):
                h, ns = c(h, st)
                new_states.append(list(ns) if isinstance(ns, (list, tuple)) else [ns])
            if mask is not None:
                m = mask[:, t].unsqueeze(1)
                new_states = [[torch.where(m, n, o) for n, o in zip(ns, os)] for ns, os in zip(new_states, states)]
                h = h * m.to(h.dtype)
            states = new_states
            outs.append(h)
        y = torch.stack(outs, 1) if self.return_sequences else outs[-1]
        flat = [s for st in states for s in st]
        return [y] + flat if self.return_state else y

    def compute_mask(self, x, mask):
        if not self.return_sequences or mask is None:
            return None
        return mask.flip(1) if self.go_backwards else mask

    def reset_states(self):
        for layer in self.layers or []:
            layer.reset_states()


@register
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards and merges the outputs, as ``keras.layers.Bidirectional``.

    Args: layer (LSTM, GRU, SimpleRNN); merge_mode "concat" (default), "sum", "mul", "ave" or None (a list
    [forward, backward]); backward_layer (optional, default a fresh copy of ``layer``'s configuration).
    With a right-padded mask the backward layer reads each sequence reversed within its own length.
    Shapes: ``(B, T, D) -> (B, 2*units)`` for concat (``(B, T, 2*units)`` with return_sequences).
    """

    def __init__(self, layer: _Recurrent, merge_mode: Optional[str] = "concat", backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise ValueError(f"Bidirectional: merge_mode={merge_mode!r}; expected 'concat', 'sum', 'mul', 'ave' "
                             f"or None")
        if not isinstance(layer, _Recurrent):
            raise ValueError(f"Bidirectional: layer must be an lstmkit.layers LSTM, GRU or SimpleRNN; got "
                             f"{type(layer).__name__}")
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            cfg = dict(layer.get_config())
            cfg["name"] = "backward_" + layer.name
            backward_layer = type(layer).from_config(cfg)
        self.backward_layer = backward_layer
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state

    def call(self, x, mask=None, initial_state=None):
        fw_init = bw_init = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fw_init, bw_init = list(initial_state[:half]), list(initial_state[half:])
        fw = self.forward_layer(x, mask=mask, initial_state=fw_init)
        lengths = mask.sum(1) if mask is not None and is_right_padded(mask.bool()) else None
        if lengths is not None:
            xr, mr = reverse_within_lengths(x, lengths), mask
        else:
            xr, mr = x.flip(1), None if mask is None else mask.flip(1)
        bw = self.backward_layer(xr, mask=mr, initial_state=bw_init)
        fw_out, fw_states = (fw[0], fw[1:]) if self.return_state else (fw, [])
        bw_out, bw_states = (bw[0], bw[1:]) if self.return_state else (bw, [])
        if self.return_sequences:  # back into the forward time order
            bw_out = reverse_within_lengths(bw_out, lengths) if lengths is not None else bw_out.flip(1)
        if self.merge_mode == "concat":
            y = torch.cat([fw_out, bw_out], -1)
        elif self.merge_mode == "sum":
            y = fw_out + bw_out
        elif self.merge_mode == "mul":
            y = fw_out * bw_out
        elif self.merge_mode == "ave":
            y = (fw_out + bw_out) / 2
        else:
            y = [fw_out, bw_out]
        if self.return_state:
            return (y if isinstance(y, list) else [y]) + list(fw_states) + list(bw_states)
        return y

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def reset_states(self):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()
