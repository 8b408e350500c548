"""Torch-style modules (placeholder: re-exports torch.nn until lstmkit's own LSTM/GRU/RNN land)."""
from torch.nn import *  # noqa: F401,F403
from torch.nn import functional, init, utils  # noqa: F401
