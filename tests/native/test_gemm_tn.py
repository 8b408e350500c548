"""The engine's weight-gradient GEMM (csrc/gemm_tn.h: C_j = A^T B_j, several B_j in one pass) against float64."""
from __future__ import annotations

import pytest
import torch

from lstmkit import backend

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


def _c():
    from lstmkit._native import _C
    return _C


# (K, M, [N_j]): one element; ragged 6-row slivers (M % 6 != 0) and 64-column blocks (N % 64 != 0, N < 16);
# K crossing the 256-row blocks (513 = 2 * 256 + 1) with M crossing the 192-row chunks on both threads; and
# dW_ih, dW_hh of the grid shapes (1,100,32,64) and (32,100,64,256) in one call
SHAPES = [(1, 1, [1]), (7, 13, [5, 3]), (300, 100, [32, 64]), (513, 1025, [41, 17, 130]), (100, 256, [32, 64]),
          (3200, 1024, [64, 256])]


@pytest.fixture
def threads(request, monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    monkeypatch.setenv("LSTMKIT_THREADS", str(request.param))
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("K,M,Ns", SHAPES)
def test_matmul_tn_matches_float64(K, M, Ns, threads):
    g = torch.Generator().manual_seed(K * 1000 + M)
    a = torch.randn(K, M, generator=g)
    bs = [torch.randn(K, n, generator=g) for n in Ns]
    outs = _c().matmul_tn(a, bs)
    assert [tuple(o.shape) for o in outs] == [(M, n) for n in Ns]
    for b, out in zip(bs, outs):
        want = a.double().t() @ b.double()
        # blocked fp32 sums of K products: error grows like sqrt(K) * eps * |a||b|
        torch.testing.assert_close(out.double(), want, atol=1e-5 * (K ** 0.5) * 4, rtol=1e-5)


def test_matmul_tn_rounding_is_blocked():
    """Over 6400 rows the blocked sums stay within 2x the error of ATen's mm (a plain running sum was 9x)."""
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(6400, 96, generator=g), torch.randn(6400, 64, generator=g)
    want = a.double().t() @ b.double()
    ours = (_c().matmul_tn(a, [b])[0].double() - want).abs().max()
    aten = ((a.t() @ b).double() - want).abs().max()
    assert ours <= 2 * aten, (ours, aten)


def test_matmul_tn_with_no_rows_is_zero():
    out = _c().matmul_tn(torch.randn(0, 5), [torch.randn(0, 3)])[0]
    assert torch.equal(out, torch.zeros(5, 3))


def test_matmul_tn_reads_strided_operands():
    """a with a padded row stride is read in place; b as a transposed view is copied first: same products."""
    big, bt = torch.randn(40, 35), torch.randn(20, 40)
    a = big[:, :30]  # row stride 35
    out = _c().matmul_tn(a, [bt.t()])[0]
    torch.testing.assert_close(out, a.t() @ bt.t(), atol=1e-4, rtol=1e-5)


def test_matmul_tn_rejects_bad_inputs():
    with pytest.raises(RuntimeError, match=r"expected \(K, M\) fp32"):
        _c().matmul_tn(torch.randn(4, 3).double(), [torch.randn(4, 2)])
    with pytest.raises(RuntimeError, match=r"expected \(4, N\) fp32"):
        _c().matmul_tn(torch.randn(4, 3), [torch.randn(4, 2), torch.randn(5, 2)])
