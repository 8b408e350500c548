"""Conversions between lstmkit.nn and torch.nn recurrent modules (weights shared by name, values copied)."""
from __future__ import annotations

import torch
from torch import nn

from lstmkit.nn import cells as _cells
from lstmkit.nn import recurrent as _modules


def _layer_kwargs(module: nn.Module) -> dict:
    return dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                bias=module.bias, batch_first=module.batch_first, dropout=float(module.dropout),
                bidirectional=module.bidirectional)


def _factory(module: nn.Module) -> dict:
    p = next(module.parameters())
    return {"device": p.device, "dtype": p.dtype}


def from_torch(module: nn.Module, **options) -> nn.Module:
    """The lstmkit twin of a torch.nn LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, with its weights copied.

    ``options`` are passed to the lstmkit constructor (e.g. ``backend="reference"``). The result is in the
    same train/eval mode as ``module``.

    Example:
        >>> ours = from_torch(torch.nn.LSTM(4, 8, num_layers=2))
    """
    if isinstance(module, nn.LSTM):
        new = _modules.LSTM(**_layer_kwargs(module), proj_size=module.proj_size, **_factory(module), **options)
    elif isinstance(module, nn.GRU):
        new = _modules.GRU(**_layer_kwargs(module), **_factory(module), **options)
    elif isinstance(module, nn.RNN):
        nonlinearity = "relu" if module.mode == "RNN_RELU" else "tanh"
        new = _modules.RNN(**_layer_kwargs(module), nonlinearity=nonlinearity, **_factory(module), **options)
    elif isinstance(module, nn.LSTMCell):
        new = _cells.LSTMCell(module.input_size, module.hidden_size, module.bias, **_factory(module), **options)
    elif isinstance(module, nn.GRUCell):
        new = _cells.GRUCell(module.input_size, module.hidden_size, module.bias, **_factory(module))
    elif isinstance(module, nn.RNNCell):
        new = _cells.RNNCell(module.input_size, module.hidden_size, module.bias, module.nonlinearity,
                             **_factory(module))
    else:
        raise ValueError(f"module must be a torch.nn LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, "
                         f"got {type(module).__name__}")
    new.load_state_dict(module.state_dict())
    return new.train(module.training)


def to_torch(module: nn.Module) -> nn.Module:
    """The torch.nn twin of an lstmkit recurrent module or cell, with its weights copied.

    Raises:
        ValueError: the module uses options torch.nn does not have (peephole, coupled, layer_norm,
            recurrent_dropout, zoneout), which no torch.nn module can reproduce.
    """
    if isinstance(module, _modules.LSTM | _modules.GRU | _modules.RNN):
        extra = module.uses_lstmkit_options()
        if extra:
            raise ValueError(f"cannot convert to torch.nn: the module uses lstmkit-only options {extra}")
        kwargs = _layer_kwargs(module)
        if isinstance(module, _modules.LSTM):
            new = nn.LSTM(**kwargs, proj_size=module.proj_size, **_factory(module))
        elif isinstance(module, _modules.GRU):
            new = nn.GRU(**kwargs, **_factory(module))
        else:
            new = nn.RNN(**kwargs, nonlinearity=module.nonlinearity, **_factory(module))
    elif isinstance(module, _cells.LSTMCell):
        extra = [n for n in ("peephole", "coupled", "layer_norm") if getattr(module, n)]
        if extra:
            raise ValueError(f"cannot convert to torch.nn: the cell uses lstmkit-only options {extra}")
        new = nn.LSTMCell(module.input_size, module.hidden_size, module.bias, **_factory(module))
    elif isinstance(module, _cells.GRUCell):
        new = nn.GRUCell(module.input_size, module.hidden_size, module.bias, **_factory(module))
    elif isinstance(module, _cells.RNNCell):
        new = nn.RNNCell(module.input_size, module.hidden_size, module.bias, module.nonlinearity,
                         **_factory(module))
    else:
        raise ValueError(f"module must be an lstmkit.nn recurrent module or cell, got {type(module).__name__}")
    new.load_state_dict(module.state_dict())
    return new.train(module.training)
