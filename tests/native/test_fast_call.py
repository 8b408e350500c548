"""The one-call path of LSTM (RNNBase._fast_layer; the layer node in grad mode, the inference kernel without):
when it is taken, and that it gives what the reference layer and torch.nn.LSTM give, and exactly what the general
native path gives (gradients included)."""
from __future__ import annotations

import pytest
import torch

import lstmkit.nn as lnn
from lstmkit import backend
from lstmkit._native import ops
from native_helpers import TOL

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


@pytest.fixture
def calls(monkeypatch):
    """Counts the general native path's per-layer calls (one or both directions; the fast path makes none)."""
    seen = []
    for name in ("run_direction", "run_bidirectional"):
        def counting(*args, _general=getattr(ops, name), **kwargs):
            seen.append(1)
            return _general(*args, **kwargs)
        monkeypatch.setattr(ops, name, counting)
    return seen


@pytest.mark.parametrize("kw", [{}, {"batch_first": True}, {"peephole": True}, {"coupled": True, "peephole": True},
                                {"bias": False}, {"layer_norm": True},
                                {"layer_norm": True, "peephole": True, "coupled": True}])
@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_fast_path_matches_reference_and_general_path(kw, context, calls):
    torch.manual_seed(0)
    ref = lnn.LSTM(5, 20, backend="reference", **kw).eval()
    nat = lnn.LSTM(5, 20, backend="native", **kw).eval()
    nat.load_state_dict(ref.state_dict())
    x = torch.randn(3, 9, 5) if kw.get("batch_first") else torch.randn(9, 3, 5)
    zeros = torch.zeros(1, 3, 20)
    with context():
        y, (h, c) = nat(x)
        assert not calls, "the fast path must not go through the general per-direction call"
        y_gen, (h_gen, c_gen) = nat(x, (zeros, zeros))  # an explicit state takes the general path
        assert calls
        y_ref, (h_ref, c_ref) = ref(x)
    assert y.shape == y_ref.shape and h.shape == (1, 3, 20) and c.shape == (1, 3, 20)
    for got, general, want in ((y, y_gen, y_ref), (h, h_gen, h_ref), (c, c_gen, c_ref)):
        torch.testing.assert_close(got, general, atol=0, rtol=0)  # the same kernel on the same inputs
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"batch_first": True}, {"coupled": True, "peephole": True}, {"bias": False},
                                {"layer_norm": True}, {"layer_norm": True, "peephole": True, "bias": False}])
def test_fast_path_in_training_matches_reference_and_general_path(kw, calls):
    """Grad mode: the one call is the layer node; outputs and every gradient equal the general native path's
    (the same node on the same inputs) and match the reference."""
    torch.manual_seed(3)
    ref = lnn.LSTM(5, 20, backend="reference", **kw)
    nat = lnn.LSTM(5, 20, backend="native", **kw)
    nat.load_state_dict(ref.state_dict())
    x = torch.randn(3, 9, 5) if kw.get("batch_first") else torch.randn(9, 3, 5)
    zeros = torch.zeros(1, 3, 20)

    def grads(m, state=None):
        m.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_()
        y, (h, c) = m(xx, state)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().add((h * h).sum() + c.sum()).backward()
        return [y.detach(), h.detach(), c.detach(), xx.grad] + [p.grad for p in m.parameters()]

    fast = grads(nat)
    assert not calls, "the fast path must not go through the general per-direction call"
    general = grads(nat, (zeros, zeros))  # an explicit state takes the general path
    assert calls
    tol = TOL["ln"] if kw.get("layer_norm") else TOL[torch.float32]
    for got, want_general, want_ref in zip(fast, general, grads(ref)):
        torch.testing.assert_close(got, want_general, atol=0, rtol=0)
        torch.testing.assert_close(got, want_ref, **tol)


def test_fast_path_matches_torch_lstm(calls):
    torch.manual_seed(1)
    theirs = torch.nn.LSTM(7, 33, batch_first=True)
    ours = lnn.LSTM.from_torch(theirs, backend="native").eval()
    x = torch.randn(4, 12, 7)
    with torch.no_grad():
        y, (h, c) = ours(x)
        y_t, (h_t, c_t) = theirs(x)
    assert not calls
    torch.testing.assert_close(y, y_t, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(h, h_t, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(c, c_t, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "coupled": True}, {"layer_norm": True}])
@pytest.mark.parametrize("case", ["equal_lengths", "unbatched"])
@pytest.mark.parametrize("train", [False, True])
def test_equal_lengths_and_unbatched_input_take_the_fast_path(case, train, kw, calls):
    """Lengths that are all the same (e.g. one sequence) run that many steps (the kernels' rows per step: B, then
    none), and an unbatched (T, D) input is one row: both reach the one call, and give the reference's outputs and
    gradients (zeros past the length), layer norm included."""
    torch.manual_seed(4)
    ref = lnn.LSTM(5, 20, backend="reference", **kw)
    nat = lnn.LSTM(5, 20, backend="native", **kw)
    nat.load_state_dict(ref.state_dict())
    x = torch.randn(9, 5) if case == "unbatched" else torch.randn(9, 2, 5)
    lengths = [6, 6] if case == "equal_lengths" else None
    res = []
    for m in (nat, ref):
        xx = x.clone().requires_grad_()
        with torch.set_grad_enabled(train):
            y, (h, c) = m(xx, lengths=lengths)
            if train:
                (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().add(h.sum() + (c * c).sum()).backward()
        res.append([y.detach(), h.detach(), c.detach()] + ([xx.grad] + [p.grad for p in m.parameters()] if train
                                                           else []))
        if m is nat:
            assert not calls, "the general path ran"
    tol = dict(atol=1e-4, rtol=1e-4) if kw.get("layer_norm") else dict(atol=2e-5, rtol=1e-4)
    for got, want in zip(*res):
        torch.testing.assert_close(got, want, **tol)
    if case == "equal_lengths":
        assert res[0][0][6:].abs().max() == 0


@pytest.mark.parametrize("case", ["lengths", "two_layers", "bidirectional", "bf16", "proj", "recurrent_dropout",
                                  "zoneout"])
def test_other_calls_take_the_general_path(case, calls):
    kw = {"two_layers": {"num_layers": 2}, "bidirectional": {"bidirectional": True},
          "proj": {"proj_size": 4},
          "recurrent_dropout": {"recurrent_dropout": 0.3}, "zoneout": {"zoneout": 0.2}}.get(case, {})
    m = lnn.LSTM(5, 8, backend="native", **kw)
    m.train(case in ("recurrent_dropout", "zoneout"))  # their masks apply in training only
    x = torch.randn(6, 2, 5)
    if case == "bf16":
        m, x = m.to(torch.bfloat16), x.to(torch.bfloat16)
    m(x, lengths=[6, 3] if case == "lengths" else None)
    assert calls


def test_bad_input_still_names_the_problem():
    m = lnn.LSTM(5, 8, backend="native").eval()
    with torch.no_grad(), pytest.raises(ValueError, match="input_size=5"):
        m(torch.randn(6, 2, 4))
    with torch.no_grad(), pytest.raises(ValueError, match="at least one time step"):
        m(torch.randn(0, 2, 5))


def test_parametrized_weight_is_read_through_its_parametrization(calls):
    """A weight under nn.utils.parametrize is no plain Parameter: the one call must take the parametrized value
    (not a stale tensor), and its gradient must reach the parameter behind it."""
    from torch.nn.utils import parametrize

    class Double(torch.nn.Module):
        def forward(self, w):
            return 2 * w

    torch.manual_seed(2)
    ref = lnn.LSTM(5, 8, peephole=True, backend="reference")
    nat = lnn.LSTM(5, 8, peephole=True, backend="native")
    nat.load_state_dict(ref.state_dict())
    for m in (ref, nat):
        parametrize.register_parametrization(m, "weight_ph_l0", Double())
    x = torch.randn(6, 2, 5)
    res = []
    for m in (nat, ref):
        y, (h, c) = m(x)
        (y.sum() + (c * c).sum()).backward()
        res.append((y.detach(), m.parametrizations.weight_ph_l0.original.grad))
    assert not calls
    for got, want in zip(*res):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    assert res[0][1].abs().sum() > 0
