"""Keras-style layers running lstmkit.nn modules: ``from lstmkit.layers import LSTM, Dense``."""
from lstmkit.layers.base import Layer  # noqa: F401
from lstmkit.layers.core import Activation, Dense, Dropout, Embedding, Flatten, Masking, TimeDistributed  # noqa: F401
from lstmkit.layers.recurrent import GRU, LSTM, SimpleRNN  # noqa: F401
from lstmkit.layers.wrappers import RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNNCell  # noqa: F401
