"""The public recurrent layers: LSTM (with its variants), GRU and RNN, drop-in replacements for torch.nn's."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from torch import Tensor

from lstmkit.nn.rnn import RNNBase

Lengths = Union[Tensor, Sequence[int], None]


class LSTM(RNNBase):
    r"""Multi-layer LSTM, a drop-in for ``torch.nn.LSTM`` with variable lengths and the common variants.

    For each element of the input sequence each layer computes (torch's gate order i, f, g, o)::

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)                     # then h_t = h_t W_hr^T when proj_size > 0

    Variants (keyword-only, composable with each other, with layers, directions and proj_size; the math of each
    is in :func:`lstmkit.functional.lstm_step`):

    - ``peephole``: diagonal peepholes (Gers et al. 2002), i and f see c_{t-1}, o sees c_t.
    - ``coupled``: coupled input-forget gate (CIFG), ``i_t = 1 - f_t``; gate blocks become (f, g, o).
    - ``layer_norm``: layer normalisation of the input and recurrent pre-activations and of c_t (Ba et al. 2016).
    - ``forget_bias``: initial value of the forget-gate bias. Default None keeps torch.nn's initialisation
      exactly (so lstmkit and torch give identically distributed models); 1.0 is Keras' ``unit_forget_bias``
      (Jozefowicz et al. 2015 found it helps learning long dependencies). When set, the forget slice of
      ``bias_ih`` is that value and of ``bias_hh`` zero.
    - ``recurrent_dropout``: variational dropout on h_{t-1} where it enters W_hh, one mask per sequence and
      layer-direction (Gal and Ghahramani 2016); training only.
    - ``zoneout``: each unit of h and c keeps its previous value with this probability at each step
      (Krueger et al. 2016); training only, identity in eval mode.

    Args:
        input_size: D, features per step. hidden_size: H. num_layers: stacked layers (default 1).
        bias: use ``bias_ih``/``bias_hh`` (default True). batch_first: input/output ``(B, T, *)`` (default False).
        dropout: dropout on each layer's output except the last (default 0). bidirectional: default False.
        proj_size: P > 0 projects h to size P (default 0). device, dtype: factory arguments.
        backend: "auto" (native engine if built, else reference, with one warning), "native" or "reference".

    Shapes (``num_dirs = 2`` if bidirectional else 1, ``P = proj_size or H``):
        input: ``(T, B, D)``, ``(B, T, D)`` with batch_first, ``(T, D)`` unbatched, or a PackedSequence.
        hx: optional ``(h_0, c_0)``, ``(num_layers*num_dirs, B, P)`` and ``(num_layers*num_dirs, B, H)``
        (without the B dimension for unbatched input); zeros when omitted.
        lengths: optional ``(B,)`` ints in [1, T]: outputs past each length are zero and ``h_n``, ``c_n`` are the
        states at each sequence's last valid step (what torch returns for pack_padded_sequence(enforce_sorted=False)).
        output: ``(T, B, num_dirs*P)`` (batch_first: ``(B, T, num_dirs*P)``); h_n, c_n like h_0, c_0.

    Parameters (``_reverse`` for the backward direction): ``weight_ih_l{k}`` ``(G*H, D_in)``, ``weight_hh_l{k}``
    ``(G*H, P)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(G*H,)``, ``weight_hr_l{k}`` ``(P, H)``; with G = 4 (i, f, g, o),
    or 3 (f, g, o) when coupled; ``weight_ph_l{k}`` ``(3H,)`` (p_i, p_f, p_o) or ``(2H,)`` (p_f, p_o) when coupled;
    ``ln_{ih,hh}_{weight,bias}_l{k}`` ``(G*H,)`` and ``ln_c_{weight,bias}_l{k}`` ``(H,)``.
    A torch.nn.LSTM state_dict loads into an LSTM built with the same arguments, and back when no variant is used.

    Example:
        >>> import torch, lstmkit.nn as nn
        >>> lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, peephole=True)
        >>> x = torch.randn(4, 10, 8)
        >>> out, (h, c) = lstm(x, lengths=torch.tensor([10, 7, 3, 1]))
        >>> out.shape, h.shape
        (torch.Size([4, 10, 16]), torch.Size([2, 4, 16]))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, peephole: bool = False, coupled: bool = False,
                 layer_norm: bool = False, forget_bias: Optional[float] = None, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, backend: str = "auto") -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, peephole=peephole, coupled=coupled, layer_norm=layer_norm,
                         forget_bias=forget_bias, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         backend=backend)

    def forward(self, input, hx: Optional[tuple[Tensor, Tensor]] = None, lengths: Lengths = None):
        """Run the LSTM; returns ``output, (h_n, c_n)`` (output a PackedSequence when input is one)."""
        return self._forward(input, hx, lengths, with_cell=True)


class GRU(RNNBase):
    r"""Multi-layer GRU, a drop-in for ``torch.nn.GRU`` (same math, parameters and shapes) with ``lengths=``.

    Gate blocks (r, z, n), exactly as torch.nn.GRU::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Args as :class:`LSTM` (no proj_size or LSTM variants); ``recurrent_dropout`` masks h_{t-1} where it enters
    W_hh. Shapes: input as LSTM; hx ``(num_layers*num_dirs, B, H)``; returns ``output, h_n``.
    Parameters: ``weight_ih_l{k}`` ``(3H, D_in)``, ``weight_hh_l{k}`` ``(3H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``.

    Example:
        >>> gru = GRU(8, 16, batch_first=True)
        >>> out, h = gru(torch.randn(4, 10, 8), lengths=[10, 9, 2, 5])
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, recurrent_dropout: float = 0.0, backend: str = "auto") -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype, recurrent_dropout=recurrent_dropout, backend=backend)

    def forward(self, input, hx: Optional[Tensor] = None, lengths: Lengths = None):
        """Run the GRU; returns ``output, h_n``."""
        return self._forward(input, hx, lengths, with_cell=False)


class RNN(RNNBase):
    r"""Multi-layer Elman RNN, a drop-in for ``torch.nn.RNN`` with ``lengths=``::

        h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)        act = tanh (default) or relu

    Args as :class:`GRU` plus ``nonlinearity`` ("tanh" or "relu"). Parameters: ``weight_ih_l{k}`` ``(H, D_in)``,
    ``weight_hh_l{k}`` ``(H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(H,)``. Returns ``output, h_n``.

    Example:
        >>> rnn = RNN(8, 16, nonlinearity="relu")
        >>> out, h = rnn(torch.randn(10, 4, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, recurrent_dropout: float = 0.0, backend: str = "auto") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, recurrent_dropout=recurrent_dropout, backend=backend)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx: Optional[Tensor] = None, lengths: Lengths = None):
        """Run the RNN; returns ``output, h_n``."""
        return self._forward(input, hx, lengths, with_cell=False)
