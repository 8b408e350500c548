"""Parity helpers for the core-layer tests: build torch.nn/lstmkit twins, run forward+backward, compare everything.

Reusable by a native-backend test: every builder takes ``backend=`` and ``BACKENDS`` lists the backends this
process can run ("native" only when ``lstmkit.backend.native_available()``).

Example:
    >>> theirs, ours = make_pair("lstm", 4, 6, num_layers=2, backend="reference")
    >>> x = torch.randn(5, 3, 4, dtype=torch.float64)
    >>> assert_same(run(ours, x), run(theirs, x), tol(x.dtype))
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import lstmkit.nn as lnn
from lstmkit import backend as lk_backend

BACKENDS = ["reference"] + (["native"] if lk_backend.native_available() else [])
KINDS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def tol(dtype: torch.dtype) -> float:
    """Absolute tolerance for parity in ``dtype`` (1e-10 in float64, 1e-5 in float32)."""
    return TOL[dtype]


def torch_module(kind: str, input_size: int, hidden_size: int, dtype=torch.float64, **kw) -> torch.nn.Module:
    """A torch.nn LSTM/GRU/RNN for ``kind`` in KINDS (``kw``: num_layers, bidirectional, batch_first, proj_size...)."""
    if kind == "lstm":
        return torch.nn.LSTM(input_size, hidden_size, dtype=dtype, **kw)
    if kind == "gru":
        return torch.nn.GRU(input_size, hidden_size, dtype=dtype, **kw)
    return torch.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], dtype=dtype, **kw)


def lstmkit_module(kind: str, input_size: int, hidden_size: int, dtype=torch.float64, backend="reference",
                   **kw) -> torch.nn.Module:
    """The lstmkit.nn module for ``kind`` with the same arguments as :func:`torch_module` (plus lstmkit options)."""
    if kind == "lstm":
        return lnn.LSTM(input_size, hidden_size, dtype=dtype, backend=backend, **kw)
    if kind == "gru":
        return lnn.GRU(input_size, hidden_size, dtype=dtype, backend=backend, **kw)
    return lnn.RNN(input_size, hidden_size, nonlinearity=kind[4:], dtype=dtype, backend=backend, **kw)


def make_pair(kind: str, input_size: int, hidden_size: int, dtype=torch.float64, backend="reference", **kw):
    """``(theirs, ours)``: a torch.nn module and the lstmkit one built alike, weights copied by state_dict (strict)."""
    theirs = torch_module(kind, input_size, hidden_size, dtype, **kw)
    ours = lstmkit_module(kind, input_size, hidden_size, dtype, backend, **kw)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def num_states(module) -> int:
    return module.num_layers * (2 if module.bidirectional else 1)


def random_hx(module, batch: Optional[int], dtype=torch.float64, seed: int = 7):
    """Random initial state for ``module`` (an LSTM gets ``(h_0, c_0)``); ``batch=None`` for unbatched input."""
    g = torch.Generator().manual_seed(seed)
    lead = (num_states(module),) if batch is None else (num_states(module), batch)
    hidden = module.hidden_size
    state = module.proj_size if getattr(module, "proj_size", 0) else hidden
    h = torch.randn(*lead, state, generator=g, dtype=dtype)
    if module.mode == "LSTM":
        return h, torch.randn(*lead, hidden, generator=g, dtype=dtype)
    return h


def _weights_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """Fixed pseudo-random loss weights depending only on the shape (same for both modules of a pair)."""
    g = torch.Generator().manual_seed(seed + t.numel())
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)


def _as_tuple(state):
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


def run(module, x: torch.Tensor, hx=None, lengths=None, via_pack: bool = False, packed_input: bool = False):
    """Forward and backward once; return a dict with ``out``, ``states`` and ``grads`` (input, hx, every parameter).

    The loss is a fixed random weighting of the output and of every final state, so every gradient is
    exercised. With ``lengths``: ``via_pack`` feeds torch a pack_padded_sequence(enforce_sorted=False) and
    pads the output back to T; ``packed_input`` feeds the module a PackedSequence and returns its packed data
    as ``out`` (with ``batch_sizes``/indices kept in ``packed``); otherwise ``lengths=`` is passed.
    """
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    hx_in = None
    if hx is not None:
        hx_in = tuple(s.detach().clone().requires_grad_(True) for s in _as_tuple(hx))
    hx_arg = None if hx_in is None else (hx_in if module.mode == "LSTM" else hx_in[0])
    batch_first = getattr(module, "batch_first", False)
    packed = None
    if via_pack or packed_input:
        p = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out, state = module(p, hx_arg)
        assert isinstance(out, PackedSequence)
        if packed_input:
            packed = out
            out = out.data
        else:
            out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.size(1 if batch_first else 0))
    elif lengths is not None:
        out, state = module(x, hx_arg, lengths=lengths)
    else:
        out, state = module(x, hx_arg)
    states = _as_tuple(state)
    loss = (out * _weights_like(out, 1)).sum()
    for k, s in enumerate(states):
        loss = loss + (s * _weights_like(s, 100 * (k + 2))).sum()
    loss.backward()
    grads = {"input": x.grad}
    if hx_in is not None:
        grads.update({f"hx{k}": s.grad for k, s in enumerate(hx_in)})
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return {"out": out.detach(), "states": tuple(s.detach() for s in states), "grads": grads, "packed": packed}


def assert_same(ours: dict, theirs: dict, atol: float, rtol: float = 0.0) -> None:
    """Outputs, final states and every gradient (same names on both sides, none missing) agree within ``atol``."""
    torch.testing.assert_close(ours["out"], theirs["out"], atol=atol, rtol=rtol, msg=lambda m: f"output: {m}")
    assert len(ours["states"]) == len(theirs["states"])
    for k, (a, b) in enumerate(zip(ours["states"], theirs["states"])):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m, k=k: f"final state {k}: {m}")
    assert set(ours["grads"]) == set(theirs["grads"]), (sorted(ours["grads"]), sorted(theirs["grads"]))
    for name, g in theirs["grads"].items():
        assert g is not None and ours["grads"][name] is not None, f"missing gradient for {name}"
        torch.testing.assert_close(ours["grads"][name], g, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"gradient of {name}: {m}")
