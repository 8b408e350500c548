"""Torch-style modules: ``import lstmkit.nn as nn`` is a drop-in for ``import torch.nn as nn``.

lstmkit replaces the recurrent layers and cells (LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell) with versions that
take ``lengths=``, offer the LSTM variants and run on the native engine; everything else is torch.nn's own.
"""
from torch.nn import *  # noqa: F401,F403  (re-export: Linear, Module, CrossEntropyLoss, ...)
from torch.nn import functional, init, parameter, utils  # noqa: F401

from lstmkit.nn.cells import GRUCell, LSTMCell, RNNCell  # noqa: F401
from lstmkit.nn.convert import from_torch, to_torch  # noqa: F401
from lstmkit.nn.recurrent import GRU, LSTM, RNN  # noqa: F401
from lstmkit.nn.rnn import RNNBase  # noqa: F401


def __getattr__(name):
    """Anything torch.nn has that is not re-exported above (submodules such as ``parallel``) comes from torch.nn."""
    import torch.nn as _tnn

    try:
        return getattr(_tnn, name)
    except AttributeError:
        raise AttributeError(f"module 'lstmkit.nn' has no attribute {name!r}") from None
