"""Fast end-to-end checks that the package imports, the CLI parses, and the core layers match torch.nn."""
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit.nn as nn


@pytest.mark.parametrize("name,kwargs", [("LSTM", {"proj_size": 3}), ("GRU", {}), ("RNN", {"nonlinearity": "relu"})])
def test_layer_with_lengths_matches_torch_packed(name, kwargs):
    theirs = getattr(torch.nn, name)(5, 7, num_layers=2, bidirectional=True, batch_first=True,
                                     dtype=torch.float64, **kwargs)
    ours = nn.from_torch(theirs, backend="reference")
    x = torch.randn(4, 6, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 3, 5])
    y_t, h_t = theirs(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    y_t, _ = pad_packed_sequence(y_t, batch_first=True, total_length=6)
    y_o, h_o = ours(x, lengths=lengths)
    torch.testing.assert_close(y_o, y_t, rtol=0, atol=1e-10)
    for a, b in zip(h_o if isinstance(h_o, tuple) else (h_o,), h_t if isinstance(h_t, tuple) else (h_t,)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "lstmkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: lstmkit" in out.stdout
