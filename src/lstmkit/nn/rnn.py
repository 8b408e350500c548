"""Torch-style recurrent layers LSTM, GRU and RNN: torch.nn's interface plus lengths= and the LSTM variants."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmkit import backend as _backend
from lstmkit.nn import _checks
from lstmkit.nn._engine import CellSpec, DirectionWeights, run_bidirectional, run_direction

_TORCH_MODE = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


def _check_prob(name: str, value: float, upper_inclusive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value and (
        value <= 1 if upper_inclusive else value < 1)
    if not ok:
        raise ValueError(f"{name} must be a number in [0, 1{']' if upper_inclusive else ')'}, got {value!r}")
    return float(value)


# DirectionWeights' fields, as parameter-name stems
_WEIGHT_STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ph", "ln_ih_weight",
                 "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")


class RNNBase(nn.Module):
    """Shared machinery of :class:`LSTM`, :class:`GRU` and :class:`RNN`: parameters, validation, the layer loop.

    A layer validates its input, turns ``lengths`` or a PackedSequence into per-sequence lengths, samples the
    random masks (training only), and per layer and direction calls one backend function
    (``lstmkit.nn._engine.run_direction``): the reference loop over ``lstmkit.functional`` or the native engine.
    The native engine runs the two directions of a bidirectional LSTM or GRU layer at once (``run_bidirectional``).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, peephole: bool = False, coupled: bool = False,
                 layer_norm: bool = False, forget_bias: Optional[float] = None, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, backend: str = "auto") -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"proj_size must be a non-negative int, got {proj_size!r}")
        if proj_size and mode != "lstm":
            raise ValueError(f"proj_size is only supported by LSTM, got proj_size={proj_size} for {mode}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
        if mode != "lstm" and (peephole or coupled or layer_norm or forget_bias is not None or zoneout):
            raise ValueError(f"peephole, coupled, layer_norm, forget_bias and zoneout are LSTM options; "
                             f"{_TORCH_MODE[mode]} does not take them")
        self.mode = _TORCH_MODE[mode]
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = _check_prob("dropout", dropout, upper_inclusive=True)
        self.proj_size = proj_size
        self.peephole, self.coupled, self.layer_norm = bool(peephole), bool(coupled), bool(layer_norm)
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        self.recurrent_dropout = _check_prob("recurrent_dropout", recurrent_dropout)
        self.zoneout = _check_prob("zoneout", zoneout, upper_inclusive=True)  # no rescaling: 1.0 is valid
        self.backend = _backend.validate(backend)
        self.spec = CellSpec(mode, hidden_size, proj_size, self.peephole, self.coupled, self.layer_norm)
        factory = {"device": device, "dtype": dtype}
        gh = self.spec.gates * hidden_size
        state = self.spec.state_size
        num_dirs = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        self._extra_weights_names: list[list[str]] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else state * num_dirs
            for direction in range(num_dirs):
                sfx = f"_l{layer}{'_reverse' if direction else ''}"
                shapes = [(f"weight_ih{sfx}", (gh, layer_in)), (f"weight_hh{sfx}", (gh, state))]
                if bias:
                    shapes += [(f"bias_ih{sfx}", (gh,)), (f"bias_hh{sfx}", (gh,))]
                if proj_size:
                    shapes += [(f"weight_hr{sfx}", (proj_size, hidden_size))]
                extra = []
                if peephole:
                    extra += [(f"weight_ph{sfx}", ((2 if coupled else 3) * hidden_size,))]
                if layer_norm:
                    extra += [(f"ln_ih_weight{sfx}", (gh,)), (f"ln_ih_bias{sfx}", (gh,)),
                              (f"ln_hh_weight{sfx}", (gh,)), (f"ln_hh_bias{sfx}", (gh,)),
                              (f"ln_c_weight{sfx}", (hidden_size,)), (f"ln_c_bias{sfx}", (hidden_size,))]
                for name, shape in shapes + extra:
                    setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
                self._flat_weights_names += [n for n, _ in shapes]
                self._all_weights.append([n for n, _ in shapes])
                self._extra_weights_names.append([n for n, _ in extra])
        self.reset_parameters()

    # -- parameters -------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); layer-norm gains 1 and
        biases 0; with ``forget_bias`` set, the forget-gate slice of ``bias_ih`` is that value and of ``bias_hh`` 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(1.0 if "_weight" in name else 0.0)
                else:
                    p.uniform_(-stdv, stdv)
            if self.forget_bias is not None and self.bias:
                f = slice(0, self.hidden_size) if self.coupled else slice(self.hidden_size, 2 * self.hidden_size)
                for names in self._all_weights:
                    getattr(self, names[2])[f] = self.forget_bias
                    getattr(self, names[3])[f] = 0.0

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """torch.nn's parameter groups per layer-direction (lstmkit-only parameters follow in each group)."""
        return [[getattr(self, n) for n in names + extra]
                for names, extra in zip(self._all_weights, self._extra_weights_names)]

    def stream(self, batch_size: int = 1, backend: Optional[str] = None):
        """A stateful single-step runner for online inference: see :class:`lstmkit.nn.stream.Stream`.

        ``s = layer.stream(); y_t = s.step(x_t)`` gives, step by step, what ``layer(x)`` gives for the
        whole sequence (eval mode; unidirectional layers). One native call per step for an LSTM.
        """
        from lstmkit.nn.stream import Stream

        return Stream(self, batch_size, backend)

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (torch compacts cuDNN weights here; lstmkit keeps them separate)."""

    def _direction_weights(self, index: int) -> DirectionWeights:
        # nn.Module.__getattr__ costs about 2 us a name, and far more for an absent one (it raises): for a small
        # layer that is as much as the kernel. So: the names this layer-direction has, then plain dict lookups
        # (getattr only for a weight that is not a registered Parameter, e.g. one moved by nn.utils.parametrize).
        names = self.__dict__.get("_direction_names")
        if names is None:
            names = [self._weight_names(i) for i in range(len(self._all_weights))]
            self.__dict__["_direction_names"] = names
        params = self._parameters
        return DirectionWeights(*[None if n is None else (params.get(n) if n in params else getattr(self, n))
                                  for n in names[index]])

    def _weight_names(self, index: int) -> tuple:
        """The parameter name of each DirectionWeights field for layer-direction ``index`` (None where absent)."""
        present = set(self._all_weights[index] + self._extra_weights_names[index])
        sfx = self._suffix(index)
        return tuple(stem + sfx if stem + sfx in present else None for stem in _WEIGHT_STEMS)

    def _suffix(self, index: int) -> str:
        num_dirs = 2 if self.bidirectional else 1
        return f"_l{index // num_dirs}{'_reverse' if index % num_dirs else ''}"

    def uses_lstmkit_options(self) -> list[str]:
        """Names of the options set here that torch.nn does not have (empty: convertible with to_torch)."""
        opts = [n for n in ("peephole", "coupled", "layer_norm") if getattr(self, n)]
        opts += [n for n in ("recurrent_dropout", "zoneout") if getattr(self, n)]
        return opts

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False),
                              ("peephole", False), ("coupled", False), ("layer_norm", False),
                              ("forget_bias", None), ("recurrent_dropout", 0.0), ("zoneout", 0.0),
                              ("backend", "auto")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    # -- forward ----------------------------------------------------------------------------------------
    def _prepare(self, input, lengths):
        """Return ``(x (T, B, D), lengths, common, unbatched, packed_input)`` after validating everything;
        ``common``: the length L < T all sequences share, else None (see _checks.lengths_and_common)."""
        # dtype and device the input must match (a dict lookup: this runs on every call)
        ref = self._parameters.get("weight_ih_l0")
        ref = self.weight_ih_l0 if ref is None else ref
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must be None when input is a PackedSequence (it carries its lengths)")
            x, lens = pad_packed_sequence(input)  # (T, B, D) in the caller's batch order
            _checks.check_input(x, self.input_size, ref)
            return (x, *_checks.lengths_and_common(lens, x.size(1), x.size(0)), False, input)
        unbatched = _checks.check_input(input, self.input_size, ref)
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        if x.size(0) == 0:
            raise ValueError(f"input must have at least one time step, got shape {tuple(input.shape)}")
        return (x, *_checks.lengths_and_common(lengths, x.size(1), x.size(0)), unbatched, None)

    def _initial_state(self, name: str, hx: Optional[Tensor], size: int, x: Tensor, unbatched: bool) -> Tensor:
        num = self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            return None  # zeros, made per layer-direction by _run (cheaper than slicing a stacked tensor)
        expected = (num, size) if unbatched else (num, x.size(1), size)
        _checks.check_state(name, hx, expected, x)
        return hx.unsqueeze(1) if unbatched else hx

    def _run(self, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], lengths: Optional[Tensor],
             with_cell: bool, which: str):
        """The layer loop over ``x (T, B, D)``: returns ``y (T, B, dirs*P)``, ``h_n``, ``c_n`` (None unless
        ``with_cell``). ``h0``/``c0`` None mean zeros; ``which``: the resolved backend."""
        num_dirs = 2 if self.bidirectional else 1
        steps, batch = x.size(0), x.size(1)
        state, hidden = self.spec.state_size, self.hidden_size
        layer_input, hs, cs = x, [], []
        for layer in range(self.num_layers):
            dirs, masks = [], []  # per direction: (x, h0, c0, weights), (rd, zo_h, zo_c)
            for direction in range(num_dirs):
                index = layer * num_dirs + direction
                rd = zo_h = zo_c = None
                if self.training and self.recurrent_dropout > 0:
                    keep = 1.0 - self.recurrent_dropout
                    rd = x.new_empty(batch, state).bernoulli_(keep).div_(keep)
                if self.training and self.zoneout > 0:
                    zo_h = x.new_empty(steps, batch, state).bernoulli_(self.zoneout)
                    zo_c = x.new_empty(steps, batch, hidden).bernoulli_(self.zoneout)
                seq = layer_input if direction == 0 else _checks.reverse_padded(layer_input, lengths)
                h_i = x.new_zeros(batch, state) if h0 is None else h0[index]
                c_i = None
                if with_cell:  # zero states are only read, so h and c may share one zero tensor
                    c_i = c0[index] if c0 is not None else (h_i if h0 is None and hidden == state
                                                              else x.new_zeros(batch, hidden))
                dirs.append((seq, h_i, c_i, self._direction_weights(index)))
                masks.append((rd, zo_h, zo_c))
            # two directions without masks: at once, one per core (native LSTM and GRU), else one after the other
            pair = (run_bidirectional(which, self.spec, dirs, lengths)
                    if num_dirs == 2 and not any(m is not None for ms in masks for m in ms) else None)
            results = pair or [run_direction(which, self.spec, *d, lengths, *m) for d, m in zip(dirs, masks)]
            outputs = []
            for direction, (y, h_t, c_t) in enumerate(results):
                outputs.append(y if direction == 0 else _checks.reverse_padded(y, lengths))
                hs.append(h_t)
                cs.append(c_t)
            layer_input = outputs[0] if num_dirs == 1 else torch.cat(outputs, dim=-1)  # (T, B, dirs*P)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        stack = (lambda ts: ts[0].unsqueeze(0)) if len(hs) == 1 else torch.stack  # noqa: E731
        return layer_input, stack(hs), (stack(cs) if with_cell else None)

    def _finish(self, y: Tensor, packed: Optional[PackedSequence], unbatched: bool, lengths):
        if packed is not None:
            order = packed.sorted_indices
            y_sorted = y if order is None else y.index_select(1, order)  # (T, B, F) longest first
            lens = torch.full((y.size(1),), y.size(0), dtype=torch.int64) if lengths is None else lengths
            lens_sorted = lens if order is None else lens.index_select(0, order.cpu())
            valid = torch.arange(y.size(0)).unsqueeze(1) < lens_sorted.unsqueeze(0)  # (T, B), time-major order
            return PackedSequence(y_sorted[valid.to(y.device)], packed.batch_sizes, packed.sorted_indices,
                                  packed.unsorted_indices)
        if unbatched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y

    def _fast_layer(self, x: Tensor, common: Optional[int], which: str):
        """The most common layer, a one-layer unidirectional fp32 LSTM (peephole, coupled and layer-norm included;
        in training without recurrent dropout or zoneout) from a zero state over ``x (T, B, D)`` (validated; every
        sequence running all T steps, or ``common`` < T of them), as one native call: the layer node
        (``lstm_layer``, ``lstm_ln_layer``) when a gradient is wanted, else the inference kernel. The general
        layer loop's Python costs 20-60 us a call, as much as the kernel of a small layer. Returns ``(y (T, B, H),
        h_T (B, H), c_T (B, H))`` with zeros in y past ``common``, or None when the call is not that case."""
        if (self.mode != "LSTM" or self.num_layers != 1 or self.bidirectional or self.proj_size
                or (self.training and (self.recurrent_dropout or self.zoneout)) or x.dtype != torch.float32
                or which != "native"):
            return None
        y, h, c = _backend.native_module().lstm_one_call(x, self._direction_weights(0), self.coupled, common)
        return None if y is None else (y, h, c)

    def _forward(self, input, hx, lengths, with_cell: bool):
        which = _backend.resolve(self.backend)  # once a call: the layer loop and the one-call path take it
        if which == "native" and torch.compiler.is_compiling():
            return self._forward_eager(input, hx, lengths, with_cell, which)
        return self._forward_impl(input, hx, lengths, with_cell, which)

    # The native engine's entry points are pybind functions that torch.compile cannot trace. Under torch.compile a
    # native layer therefore runs eagerly, as one graph break without dynamo's warnings, and the rest of the model
    # compiles. Eager calls skip the wrapper, which cost about 2 us a call (is_compiling: 0.2 us).
    @torch.compiler.disable
    def _forward_eager(self, input, hx, lengths, with_cell: bool, which: str):
        return self._forward_impl(input, hx, lengths, with_cell, which)

    def _forward_impl(self, input, hx, lengths, with_cell: bool, which: str):
        x, lens, common, unbatched, packed = self._prepare(input, lengths)
        if with_cell:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise ValueError(f"hx must be a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
            h_in, c_in = hx if hx is not None else (None, None)
            h0 = self._initial_state("hx[0] (h_0)", h_in, self.spec.state_size, x, unbatched)
            c0 = self._initial_state("hx[1] (c_0)", c_in, self.hidden_size, x, unbatched)
        else:
            h0 = self._initial_state("hx", hx, self.hidden_size, x, unbatched)
            c0 = None
        steps = x.size(0)
        fast = None
        if with_cell and h0 is None and c0 is None and (lens is None or common is not None):
            fast = self._fast_layer(x, common, which)
        if fast is not None:
            y, h_n, c_n = fast[0], fast[1].unsqueeze(0), fast[2].unsqueeze(0)
        else:
            run_lens = lens
            if common is not None:  # every sequence has the same length L < T: run L steps, no masking
                x, run_lens = x[:common], None
            y, h_n, c_n = self._run(x, h0, c0, run_lens, with_cell, which)
            if y.size(0) < steps:  # zero outputs past the common length
                y = torch.cat([y, y.new_zeros((steps - y.size(0),) + tuple(y.shape[1:]))])
        out = self._finish(y, packed, unbatched, lens)
        if unbatched:
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return out, ((h_n, c_n) if with_cell else h_n)

    # -- conversions ------------------------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module: nn.Module, **options):
        """Build the lstmkit equivalent of a torch.nn.LSTM/GRU/RNN with its weights (``options`` as backend=)."""
        from lstmkit.nn.convert import from_torch

        return from_torch(module, **options)

    def to_torch(self) -> nn.Module:
        """The equivalent torch.nn module with these weights; raises ValueError if lstmkit-only options are set."""
        from lstmkit.nn.convert import to_torch

        return to_torch(self)
