"""Keras weight import: Keras LSTM / GRU / SimpleRNN weights into lstmkit.nn (torch-layout) parameters.

Keras stores, per layer, ``kernel`` (D, G*H), ``recurrent_kernel`` (H, G*H) and ``bias``; torch/lstmkit store
``weight_ih`` (G*H, D), ``weight_hh`` (G*H, H) and two biases ``bias_ih``, ``bias_hh`` (G*H,). So weights are
transposed and gate blocks reordered:

| Keras layer | Keras gate order | torch gate order | bias |
|---|---|---|---|
| LSTM | i, f, c, o | i, f, g, o (same) | (4H,) -> bias_ih; bias_hh = 0 |
| GRU (reset_after=True) | z, r, h | r, z, n | (2, 3H): row 0 -> bias_ih, row 1 -> bias_hh |
| SimpleRNN | - | - | (H,) -> bias_ih; bias_hh = 0 |

Keras' GRU with reset_after=True computes ``h~ = tanh(W_h x + b_xh + r * (U_h h + b_hh))`` and
``h = z * h_prev + (1 - z) * h~``, which is torch's GRU exactly; reset_after=False (Keras 2's old default)
applies r before U_h and has no torch equivalent, so it raises ValueError.

Example::

    import keras, lstmkit.nn as nn
    k = keras.layers.LSTM(16); k.build((None, None, 8))
    m = nn.LSTM(8, 16, batch_first=True)
    load_keras_lstm(m, k.get_weights())
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from torch import Tensor, nn


def _t(a) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _check(name: str, a: Tensor, shape: tuple) -> None:
    if tuple(a.shape) != shape:
        raise ValueError(f"Keras {name} has shape {tuple(a.shape)}; expected {shape}")


def keras_lstm_to_torch(kernel, recurrent_kernel, bias=None) -> Dict[str, Tensor]:
    """Keras LSTM weights -> {weight_ih (4H, D), weight_hh (4H, H), bias_ih, bias_hh (4H,)} (float64).

    Args: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,) or None (use_bias=False).
    """
    k, r = _t(kernel), _t(recurrent_kernel)
    if k.dim() != 2 or k.shape[1] % 4:
        raise ValueError(f"Keras LSTM kernel has shape {tuple(k.shape)}; expected (D, 4H)")
    h = k.shape[1] // 4
    _check("LSTM recurrent_kernel", r, (h, 4 * h))
    out = {"weight_ih": k.T.contiguous(), "weight_hh": r.T.contiguous()}
    if bias is not None:
        b = _t(bias)
        _check("LSTM bias", b, (4 * h,))
        out["bias_ih"], out["bias_hh"] = b.clone(), torch.zeros_like(b)
    return out


def _zrh_to_rzn(w: Tensor, h: int) -> Tensor:
    """Reorder the gate blocks of the last axis from Keras' (z, r, h) to torch's (r, z, n)."""
    z, r, n = w[..., :h], w[..., h:2 * h], w[..., 2 * h:]
    return torch.cat([r, z, n], -1)


def keras_gru_to_torch(kernel, recurrent_kernel, bias=None, reset_after: bool = True) -> Dict[str, Tensor]:
    """Keras GRU weights (reset_after=True) -> {weight_ih (3H, D), weight_hh (3H, H), bias_ih, bias_hh (3H,)}.

    Args: kernel (D, 3H), recurrent_kernel (H, 3H), bias (2, 3H) [input bias; recurrent bias] or None.
    """
    if not reset_after:
        raise ValueError("Keras GRU with reset_after=False has no torch/lstmkit equivalent (the reset gate acts "
                         "before the recurrent matmul); use reset_after=True, Keras 3's default")
    k, r = _t(kernel), _t(recurrent_kernel)
    if k.dim() != 2 or k.shape[1] % 3:
        raise ValueError(f"Keras GRU kernel has shape {tuple(k.shape)}; expected (D, 3H)")
    h = k.shape[1] // 3
    _check("GRU recurrent_kernel", r, (h, 3 * h))
    out = {"weight_ih": _zrh_to_rzn(k, h).T.contiguous(), "weight_hh": _zrh_to_rzn(r, h).T.contiguous()}
    if bias is not None:
        b = _t(bias)
        if tuple(b.shape) == (3 * h,):
            raise ValueError("Keras GRU bias has shape (3H,), which is reset_after=False; expected (2, 3H)")
        _check("GRU bias", b, (2, 3 * h))
        out["bias_ih"], out["bias_hh"] = _zrh_to_rzn(b[0], h), _zrh_to_rzn(b[1], h)
    return out


def keras_simple_rnn_to_torch(kernel, recurrent_kernel, bias=None) -> Dict[str, Tensor]:
    """Keras SimpleRNN weights -> {weight_ih (H, D), weight_hh (H, H), bias_ih, bias_hh (H,)}."""
    k, r = _t(kernel), _t(recurrent_kernel)
    h = k.shape[1]
    _check("SimpleRNN recurrent_kernel", r, (h, h))
    out = {"weight_ih": k.T.contiguous(), "weight_hh": r.T.contiguous()}
    if bias is not None:
        b = _t(bias)
        _check("SimpleRNN bias", b, (h,))
        out["bias_ih"], out["bias_hh"] = b.clone(), torch.zeros_like(b)
    return out


_CONVERTERS = {"lstm": keras_lstm_to_torch, "gru": keras_gru_to_torch, "rnn": keras_simple_rnn_to_torch}


def load_keras_weights(module: nn.Module, weights: Sequence, kind: str, layer: int = 0,
                       reverse: bool = False) -> None:
    """Copy one Keras layer's ``get_weights()`` list ([kernel, recurrent_kernel, bias?]) into ``module``'s
    parameters of layer ``layer`` and direction (``reverse`` for the ``_reverse`` ones), in place.

    ``module`` is an lstmkit.nn (or torch.nn) LSTM/GRU/RNN (``kind`` "lstm"/"gru"/"rnn") or the matching cell.
    Shapes are checked against the module; dtypes follow the module.
    """
    if kind not in _CONVERTERS:
        raise ValueError(f"kind={kind!r}; expected one of {sorted(_CONVERTERS)}")
    weights = list(weights)
    if len(weights) not in (2, 3):
        raise ValueError(f"Keras {kind} weights: got {len(weights)} arrays; expected [kernel, recurrent_kernel] "
                         f"or [kernel, recurrent_kernel, bias]")
    conv = _CONVERTERS[kind](*weights)
    is_cell = hasattr(module, "weight_ih") and not hasattr(module, "weight_ih_l0")
    suffix = "" if is_cell else f"_l{layer}" + ("_reverse" if reverse else "")
    with torch.no_grad():
        for name, value in conv.items():
            p = getattr(module, name + suffix, None)
            if p is None:
                raise ValueError(f"{type(module).__name__} has no parameter {name + suffix!r} (bias=False while "
                                 f"Keras has a bias, or the wrong layer/direction)")
            if tuple(p.shape) != tuple(value.shape):
                raise ValueError(f"{type(module).__name__}.{name + suffix} has shape {tuple(p.shape)}; the Keras "
                                 f"weights give {tuple(value.shape)} (check input size and units)")
            p.copy_(value.to(p.dtype))
        if len(conv) == 2 and getattr(module, "bias_ih" + suffix, None) is not None:
            raise ValueError(f"Keras {kind} has no bias (use_bias=False) but the module has one; build it with "
                             f"bias=False")


def load_keras_lstm(module: nn.Module, weights: Sequence, layer: int = 0, reverse: bool = False) -> None:
    """:func:`load_keras_weights` for an LSTM."""
    load_keras_weights(module, weights, "lstm", layer, reverse)


def load_keras_gru(module: nn.Module, weights: Sequence, layer: int = 0, reverse: bool = False) -> None:
    """:func:`load_keras_weights` for a GRU (Keras reset_after=True)."""
    load_keras_weights(module, weights, "gru", layer, reverse)


def load_keras_simple_rnn(module: nn.Module, weights: Sequence, layer: int = 0, reverse: bool = False) -> None:
    """:func:`load_keras_weights` for a SimpleRNN into an RNN."""
    load_keras_weights(module, weights, "rnn", layer, reverse)
