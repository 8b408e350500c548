"""The engine's own fp32 GEMM (csrc/gemm.h, used for the input projection and dx) against torch.mm in float64."""
from __future__ import annotations

import pytest
import torch

from lstmkit import backend

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


def _c():
    from lstmkit._native import _C
    return _C


# (M, K, N): ragged row blocks (not a multiple of 6) and panels (not a multiple of 16), K = 1, a single row, the
# row-chunk boundary (192) crossed on both threads, and the grid's projection shapes
SHAPES = [(1, 1, 1), (5, 3, 17), (7, 32, 256), (13, 1, 64), (100, 32, 256), (401, 19, 100), (800, 64, 1024),
          (3200, 64, 1024)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_nt_matches_float64(M, K, N, with_bias, threads, monkeypatch):
    torch.set_num_threads(threads)
    monkeypatch.setenv("LSTMKIT_THREADS", str(threads))
    g = torch.Generator().manual_seed(M * 1000 + K * 10 + N)
    a, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g)
    bias = torch.randn(N, generator=g) if with_bias else None
    out = torch.full((M, N), float("nan"))  # every element must be written
    _c().matmul_nt_out(out, a, b, bias)
    want = a.double() @ b.double().t() + (bias.double() if with_bias else 0)
    # fp32 sums of K products: error grows like sqrt(K) * eps * |a||b|
    torch.testing.assert_close(out.double(), want, atol=1e-5 * (K ** 0.5) * 4, rtol=1e-5)


def test_matmul_nt_reads_strided_operands():
    """a and b as transposed views (dx = dG W_ih passes W_ih^T as b) give the same product."""
    a, w = torch.randn(50, 40), torch.randn(40, 30)
    out = torch.empty(50, 30)
    _c().matmul_nt_out(out, a.t().contiguous().t(), w.t(), None)  # a column-major, b = w^T a view
    torch.testing.assert_close(out, a @ w, atol=1e-4, rtol=1e-5)


def test_matmul_nt_rejects_bad_shapes():
    out = torch.empty(4, 5)
    with pytest.raises(RuntimeError, match=r"expected a \(M, K\), b \(N, K\)"):
        _c().matmul_nt_out(out, torch.randn(4, 3), torch.randn(5, 2), None)
    with pytest.raises(RuntimeError, match="bias"):
        _c().matmul_nt_out(out, torch.randn(4, 3), torch.randn(5, 3), torch.randn(4))
    with pytest.raises(RuntimeError, match="fp32 only"):
        _c().matmul_nt_out(out, torch.randn(4, 3).double(), torch.randn(5, 3), None)


def test_ops_route_plain_fp32_tensors_and_parameters_to_the_engine(monkeypatch):
    """ops._matmul (the dX of the GRU, RNN and projection paths) multiplies by a weight Parameter: that must run on
    the engine's GEMM, as plain tensors do; bf16 goes to ATen. The engine's result must match ATen's."""
    from lstmkit._native import ops

    seen = []
    real = ops._C.matmul_nt_out
    monkeypatch.setattr(ops._C, "matmul_nt_out", lambda *a, **k: (seen.append(1), real(*a, **k))[1])
    torch.manual_seed(0)
    g, w = torch.randn(40, 24), torch.nn.Parameter(torch.randn(24, 7))
    out = ops._matmul(g, w)
    assert seen, "a Parameter operand must take the engine's GEMM"
    torch.testing.assert_close(out, g @ w.detach(), atol=1e-5, rtol=1e-5)
    seen.clear()
    ops._matmul(g.bfloat16(), w.detach().bfloat16())
    assert not seen
