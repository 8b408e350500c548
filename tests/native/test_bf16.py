"""The native engine in bfloat16 (bf16 GEMMs, fp32 state and accumulation): at least as accurate as the reference
path in bf16, against float64 truth, on one and two threads."""
from __future__ import annotations

import pytest
import torch

import lstmkit.nn as lnn
from lstmkit import backend
from native_helpers import _use_threads

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


@pytest.mark.parametrize("cls,kw,H", [(lnn.LSTM, {}, 16), (lnn.LSTM, {"layer_norm": True, "peephole": True}, 16),
                                      (lnn.LSTM, {"layer_norm": True, "proj_size": 5}, 16),
                                      (lnn.LSTM, {"coupled": True, "peephole": True}, 41),
                                      (lnn.LSTM, {"proj_size": 4, "bidirectional": True}, 16),
                                      (lnn.LSTM, {"bidirectional": True}, 16), (lnn.GRU, {}, 16),
                                      (lnn.RNN, {}, 16)])
def test_bfloat16_at_least_as_accurate_as_reference(cls, kw, H, batch=3, D=8):
    """bf16: native (bf16 GEMMs, fp32 state and accumulation) is within 1.5x the reference bf16 error, against
    float64 truth. Coupled at H=41: 3H is odd, so the kernel's bf16 gate gradients carry a pad column."""
    torch.manual_seed(0)
    base = cls(D, H, backend="reference", **kw)
    models = {"ref": cls(D, H, backend="reference", **kw).to(torch.bfloat16),
              "nat": cls(D, H, backend="native", **kw).to(torch.bfloat16),
              "f64": cls(D, H, backend="reference", **kw).double()}
    for m in models.values():
        m.load_state_dict(base.state_dict())
    x = torch.randn(10, batch, D)
    # with lengths (an LSTM's C++ node then keeps the active rows only) and without
    lengths = torch.tensor(([10, 4, 7] + [1 + (3 * i) % 10 for i in range(batch - 3)])[:batch])
    for lengths in (lengths, None):
        res = {}
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            xx = x.to(next(m.parameters()).dtype).requires_grad_()
            y, _ = m(xx, lengths=lengths)
            (y.double() * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
            assert y.dtype == xx.dtype
            res[name] = [y.double(), xx.grad.double()] + [p.grad.double() for p in m.parameters()]
        for i, truth in enumerate(res["f64"]):
            err_ref = (res["ref"][i] - truth).abs().max().item()
            err_nat = (res["nat"][i] - truth).abs().max().item()
            assert err_nat <= 1.5 * err_ref + 1e-3 * truth.abs().max().item(), (lengths, i, err_nat, err_ref)


@pytest.mark.parametrize("threads", [1, 2])
def test_bfloat16_recurrent_dropout(threads, monkeypatch):
    """bf16 with recurrent dropout (the fused loop feeds its GEMM h * mask as bf16): within 1.5x the reference bf16
    error against float64 truth, with the same masks (same seed) on all three."""
    _use_threads(threads, monkeypatch)
    torch.manual_seed(0)
    base = lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3)
    models = {"ref": lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3).to(torch.bfloat16),
              "nat": lnn.LSTM(8, 41, backend="native", recurrent_dropout=0.3).to(torch.bfloat16),
              "f64": lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3).double()}
    x = torch.randn(10, 3, 8)
    res = {}
    for name, m in models.items():
        m.load_state_dict(base.state_dict())
        xx = x.to(next(m.parameters()).dtype).requires_grad_()
        torch.manual_seed(11)  # the same dropout mask for all three
        y, _ = m(xx)
        (y.double() * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
        res[name] = [y.double(), xx.grad.double()] + [p.grad.double() for p in m.parameters()]
    for i, truth in enumerate(res["f64"]):
        err_ref = (res["ref"][i] - truth).abs().max().item()
        err_nat = (res["nat"][i] - truth).abs().max().item()
        assert err_nat <= 1.5 * err_ref + 1e-3 * truth.abs().max().item(), (i, err_nat, err_ref)


@pytest.mark.parametrize("kw", [{}, {"coupled": True, "peephole": True}])
def test_bfloat16_two_threads(kw, monkeypatch):
    """The bf16 fused loop on two threads (uneven unit split, odd pair padding) keeps the same accuracy."""
    _use_threads(2, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, kw, H=41)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("D,batch", [(7, 3), (8, 1)])
def test_bfloat16_input_in_the_loop_and_not(D, batch, threads, monkeypatch):
    """bf16 from B >= 2: the loop takes the input itself (x_t W_ih^T as bf16 dot products in each step's register
    blocks; an odd D gets a zero pad column, csrc/fused_lstm.cpp). At B = 1 the projection runs first."""
    _use_threads(threads, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, {"peephole": True}, H=41, batch=batch, D=D)


@pytest.mark.parametrize("threads", [1, 2])
def test_bfloat16_many_rows(threads, monkeypatch):
    """13 rows: the bf16 backward GEMM's 6-row register blocks and a remainder (and, with lengths, every count of
    active rows from 13 down), with a partial 16-column block (H=41)."""
    _use_threads(threads, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, {"peephole": True}, H=41, batch=13)


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "coupled": True}])
def test_bfloat16_inference_entry_accuracy(kw):
    """bf16 under inference_mode (the inference entry: bf16 projection, biases added in the kernel): as accurate
    as the reference bf16 layer against float64 truth."""
    torch.manual_seed(0)
    base = lnn.LSTM(8, 24, backend="reference", **kw)
    ref16, nat16 = (lnn.LSTM(8, 24, backend=b, **kw).to(torch.bfloat16) for b in ("reference", "native"))
    f64 = lnn.LSTM(8, 24, backend="reference", **kw).double()
    for m in (ref16, nat16, f64):
        m.load_state_dict(base.state_dict())
    x = torch.randn(12, 5, 8)
    with torch.inference_mode():
        truth = f64(x.double())[0]
        err_ref = (ref16(x.bfloat16())[0].double() - truth).abs().max().item()
        y = nat16(x.bfloat16())[0]
    assert y.dtype == torch.bfloat16
    assert (y.double() - truth).abs().max().item() <= 1.5 * err_ref + 1e-3
