// The engine's own fp32 GEMM for the products over all T*B rows (input projection, dx): packed panels, two threads.
//
// Why not ATen's mm: on this machine's AMD cores the MKL sgemm that torch ships reached 105-160 GFLOP/s on the
// projection shapes ((6400, 128) x (128, 1024) and the like), and about 19 GFLOP/s on small ones such as
// (100, 32) x (32, 256), where its threading costs more than the product. The register-blocked panel kernel of
// kernels.h (6 rows x 64 columns of accumulators), with the output written once and never zero-filled first,
// reached 150-190 and 70 on the same shapes (benchmarks in docs/engine.md).
#pragma once

#include "kernels.h"
#include "team.h"

#include <cstring>

namespace lstmkit {

// out (M, N) = a (M, K) b^T (+ bias (N)) for b (N, K): what at::mm_out(out, a, b.t()) (at::addmm_out) computes,
// fp32; out contiguous, a and b any strides.
// The rows are split between the two threads of the team (each runs the whole of the packed b over chunks of
// kRowChunk rows, so a chunk of a stays in L2 while the 64-column panel blocks stream through L1). Small products
// run on the calling thread (gemm_row_halves in team.h).
inline void matmul_nt_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const float* bias = nullptr) {
  constexpr int64_t kRowChunk = 192;
  TORCH_CHECK(a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat,
              "matmul_nt_into: fp32 only, got ", a.scalar_type(), ", ", b.scalar_type());
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1) && out.size(0) == a.size(0) &&
                  out.size(1) == b.size(0) && out.is_contiguous(),
              "matmul_nt_into: a ", a.sizes(), ", b ", b.sizes(), ", out ", out.sizes(),
              ": expected a (M, K), b (N, K), out (M, N) contiguous");
  const int64_t M = a.size(0), K = a.size(1), N = b.size(0);
  if (M == 0 || N == 0) return;
#if defined(__AVX512F__)
  constexpr bool kPanels = true;
#else
  constexpr bool kPanels = false;  // the panel kernel is AVX-512 only (its scalar fallback is for correctness)
#endif
  if (!kPanels || K == 0) {
    at::mm_out(out, a, b.t());
    if (bias) out.add_(at::from_blob(const_cast<float*>(bias), {N}, out.options()));
    return;
  }
  const at::Tensor ac = a.contiguous();
  const at::Tensor bp = pack_cols16(b.t());  // (ceil(N/16) + 3, K, 16)
  const float *A = ac.data_ptr<float>(), *Bp = bp.data_ptr<float>();
  float* C = out.data_ptr<float>();
  auto rows = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m += kRowChunk) {
      const int64_t mc = std::min(kRowChunk, m1 - m);
      if (bias)  // the chunk's rows start at the bias (they are in cache for the GEMM that follows)
        for (int64_t r = m; r < m + mc; ++r) std::memcpy(C + r * N, bias, sizeof(float) * N);
      gemm_packed_cols(mc, K, A + m * K, K, Bp, C + m * N, N, 0, N, /*accumulate=*/bias != nullptr);
    }
  };
  gemm_row_halves(M, M * N * K, [&](int, int64_t m0, int64_t m1, Barrier2*) { rows(m0, m1); });
}

// a (M, K) b^T as a new tensor (fp32), or from ATen's mm for other dtypes.
inline at::Tensor matmul_nt(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kFloat || b.scalar_type() != at::kFloat) return a.mm(b.t());
  at::Tensor out = pool_empty({a.size(0), b.size(0)}, a.options());
  matmul_nt_into(out, a, b);
  return out;
}

// The binding (torch.ops-free, for ops.py): out = a b^T (+ bias), a (M, K), b (N, K), out (M, N) fp32.
inline void matmul_nt_out(at::Tensor out, const at::Tensor& a, const at::Tensor& b,
                          const c10::optional<at::Tensor>& bias) {
  at::Tensor bc;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == b.size(0) && bias->scalar_type() == at::kFloat, "matmul_nt_out: bias ",
                bias->sizes(), " ", bias->scalar_type(), ": expected (", b.size(0), ") fp32");
    bc = bias->contiguous();
  }
  matmul_nt_into(out, a, b, bc.defined() ? bc.data_ptr<float>() : nullptr);
}

}  // namespace lstmkit
