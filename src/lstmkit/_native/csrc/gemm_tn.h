// The weight-gradient GEMMs C_j = A^T B_j over all T*B rows (dW_ih = dG^T X, dW_hh = dG^T H_prev) in one pass.
//
// Why not ATen's mm: MKL's sgemm reached 128-154 GFLOP/s on these transposed shapes ((6400, 2048)^T x (6400, 512)
// and the like) on this machine's AMD cores; this kernel reaches 164-177 on the same pairs of products
// (benchmarks in docs/engine.md). Both products read dG; here dG is packed once, block by block, and every operand
// B_j runs against the packed block while it is in L2 (the "merged GEMMs" of the design).
//
// Layout: A (K, M) with row stride lda (dG: K = rows, M = G*H); each B_j (K, N_j), row stride ldb_j, unit column
// stride (X, H_prev); C_j (M, N_j), row stride ldc_j, written whole (never zero-filled first).
// Blocking: every B_j is first packed into zero-padded 64-column blocks (K x 64 contiguous; each thread packs half
// the blocks). The two threads split the M rows (whole 6-row slivers). Per chunk of kMc rows of C (kept in L2
// across all of K) and kKc rows of A, the A block is packed into 6-row slivers (k-major: the six values one step
// of the kernel broadcasts are adjacent); then for every 64-column block of every B_j, each sliver runs a 6 x 64
// register-blocked kernel over the kKc rows.
#pragma once

#include "kernels.h"
#include "pool.h"
#include "team.h"

#include <cstring>
#include <vector>

namespace lstmkit {

struct TnOperand {
  const float* B;
  int64_t ldb, N;
  float* C;
  int64_t ldc;
};

#if defined(__AVX512F__)
// C[r, 0:NQ*16] (+)= sum_k Ap[k*6 + r] * B[k*ldb + 0:NQ*16] for r < R; the stores masked by mk (B is read whole:
// packed blocks are zero-padded to 64 columns).
template <int R, int NQ, bool Load>
__attribute__((noinline)) static void tn_block(int64_t kn, const float* Ap, const float* B, int64_t ldb, float* C,
                                               int64_t ldc, const __mmask16* mk) {
  // the block's sum starts from zero and is added to C at the end: blocked summation, so the rounding error grows
  // with kKc + K / kKc rather than with K (3200 rows: 9x lower, level with MKL's)
  __m512 acc[R][NQ];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kn; ++k) {
    __m512 b[NQ];
    // unmasked: with masked loads in this loop GCC 12 kept acc on the stack (a store after every FMA)
    for (int q = 0; q < NQ; ++q) b[q] = _mm512_loadu_ps(B + k * ldb + 16 * q);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(Ap[k * 6 + r]);
      for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
    }
  }
  if (Load)
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NQ; ++q)
        acc[r][q] = _mm512_add_ps(acc[r][q], _mm512_maskz_loadu_ps(mk[q], C + r * ldc + 16 * q));
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q) _mm512_mask_storeu_ps(C + r * ldc + 16 * q, mk[q], acc[r][q]);
}
#endif

// Ap (ceil(mn/6), kn, 6) = A[k0 .. k0+kn, m0 .. m0+mn] as k-major 6-row slivers, zero past mn.
static inline void tn_pack_a(const float* A, int64_t lda, int64_t k0, int64_t kn, int64_t m0, int64_t mn,
                             float* Ap) {
  const int64_t nsl = (mn + 5) / 6;
  for (int64_t s = 0; s < nsl; ++s) {
    const int64_t rn = std::min<int64_t>(6, mn - 6 * s);
    float* dst = Ap + s * kn * 6;
    const float* src = A + k0 * lda + m0 + 6 * s;
    if (rn == 6) {
      for (int64_t k = 0; k < kn; ++k) std::memcpy(dst + k * 6, src + k * lda, sizeof(float) * 6);
    } else {
      for (int64_t k = 0; k < kn; ++k)
        for (int64_t r = 0; r < 6; ++r) dst[k * 6 + r] = r < rn ? src[k * lda + r] : 0.f;
    }
  }
}

// B_j (K, N) as 64-column blocks, each K x 64 contiguous and zero past N: (ceil(N/64), K, 64). Blocks [b0, b1).
static inline void tn_pack_b(const TnOperand& op, int64_t K, float* dst, int64_t b0, int64_t b1) {
  for (int64_t nb = b0; nb < b1; ++nb) {
    const int64_t n = nb * 64, w = std::min<int64_t>(64, op.N - n);
    float* d = dst + nb * K * 64;
    for (int64_t k = 0; k < K; ++k) {
      std::memcpy(d + k * 64, op.B + k * op.ldb + n, sizeof(float) * w);
      if (w < 64) std::memset(d + k * 64 + w, 0, sizeof(float) * (64 - w));
    }
  }
}

// Rows [m_lo, m_hi) of every C_j = A^T B_j (one thread's share), B_j packed by tn_pack_b at bp[j].
static inline void tn_rows(const float* A, int64_t lda, int64_t K, int64_t m_lo, int64_t m_hi,
                           const std::vector<TnOperand>& ops, const std::vector<const float*>& bp) {
  constexpr int64_t kMc = 192, kKc = 256;
  // the packed dG block (192 KB): kept per thread, so a call does not map and fault in fresh pages each time
  thread_local std::vector<float> ap;
  ap.resize((size_t)kMc * kKc);
  for (int64_t m0 = m_lo; m0 < m_hi; m0 += kMc) {
    const int64_t mn = std::min(kMc, m_hi - m0), nsl = (mn + 5) / 6;
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      const int64_t kn = std::min(kKc, K - k0);
      tn_pack_a(A, lda, k0, kn, m0, mn, ap.data());
      for (size_t j = 0; j < ops.size(); ++j) {
        const TnOperand& op = ops[j];
        for (int64_t n = 0; n < op.N; n += 64) {
          const float* b = bp[j] + (n / 64) * K * 64 + k0 * 64;  // (kn, 64) contiguous
#if defined(__AVX512F__)
          __mmask16 mk[4];
          block_masks(op.N - n, mk);
          const int nq = (int)std::min<int64_t>(4, (op.N - n + 15) / 16);
          for (int64_t s = 0; s < nsl; ++s) {
            float* c = op.C + (m0 + 6 * s) * op.ldc + n;
            const float* a = ap.data() + s * kn * 6;
            auto run = [&](auto r, auto load) {
              constexpr int R = decltype(r)::value;
              constexpr bool L = decltype(load)::value;
              switch (nq) {
                case 4: tn_block<R, 4, L>(kn, a, b, 64, c, op.ldc, mk); break;
                case 3: tn_block<R, 3, L>(kn, a, b, 64, c, op.ldc, mk); break;
                case 2: tn_block<R, 2, L>(kn, a, b, 64, c, op.ldc, mk); break;
                default: tn_block<R, 1, L>(kn, a, b, 64, c, op.ldc, mk); break;
              }
            };
            with_rows((int)std::min<int64_t>(6, mn - 6 * s), [&](auto r) {
              if (k0 > 0) run(r, std::true_type{}); else run(r, std::false_type{});
            });
          }
#else
          const int64_t n1 = std::min(op.N, n + 64);
          for (int64_t m = m0; m < m0 + mn; ++m)
            for (int64_t col = n; col < n1; ++col) {
              float sum = 0.f;
              for (int64_t k = 0; k < kn; ++k)
                sum += ap[((m - m0) / 6 * kn + k) * 6 + (m - m0) % 6] * b[k * 64 + col - n];
              op.C[m * op.ldc + col] = k0 > 0 ? op.C[m * op.ldc + col] + sum : sum;
            }
#endif
        }
      }
    }
  }
}

// Every C_j = A^T B_j (A (K, M), lda; see the top of the file). With two threads, each packs half of the B blocks,
// they meet at a barrier, and each computes its half of the M rows (when the products are large enough to pay
// for the team's start-up).
inline void matmul_tn_multi(const float* A, int64_t lda, int64_t K, int64_t M, const std::vector<TnOperand>& ops) {
  int64_t n_total = 0, blocks = 0;
  for (const TnOperand& op : ops) {
    n_total += op.N;
    blocks += (op.N + 63) / 64;
  }
  if (M == 0 || n_total == 0) return;
  if (K == 0) {
    for (const TnOperand& op : ops)
      for (int64_t m = 0; m < M; ++m) std::memset(op.C + m * op.ldc, 0, sizeof(float) * op.N);
    return;
  }
  const at::Tensor packed = pool_empty({blocks, K, 64}, at::TensorOptions().dtype(at::kFloat));
  std::vector<const float*> bp;
  std::vector<std::pair<size_t, int64_t>> work;  // (operand, block) in packing order
  float* base = packed.data_ptr<float>();
  for (size_t j = 0; j < ops.size(); ++j) {
    bp.push_back(base);
    for (int64_t nb = 0; nb < (ops[j].N + 63) / 64; ++nb) work.emplace_back(j, nb);
    base += (ops[j].N + 63) / 64 * K * 64;
  }
  auto pack = [&](size_t w0, size_t w1) {
    for (size_t w = w0; w < w1; ++w)
      tn_pack_b(ops[work[w].first], K, const_cast<float*>(bp[work[w].first]), work[w].second, work[w].second + 1);
  };
  gemm_row_halves(M, M * n_total * K, [&](int tid, int64_t m0, int64_t m1, Barrier2* bar) {
    if (bar) {  // two threads: each packs half of the B blocks; all are packed before either reads one
      const size_t wmid = work.size() / 2;
      tid == 0 ? pack(0, wmid) : pack(wmid, work.size());
      bar->wait();
    } else {
      pack(0, work.size());
    }
    tn_rows(A, lda, K, m0, m1, ops, bp);
  });
}

// a^T b_j for a (K, M) and each b_j (K, N_j), fp32, as new (M, N_j) tensors. Operands with a non-unit column
// stride, or a row stride other than a plain matrix's, are copied contiguous first.
inline std::vector<at::Tensor> matmul_tn(const at::Tensor& a, const std::vector<at::Tensor>& bs) {
  TORCH_CHECK(a.dim() == 2 && a.scalar_type() == at::kFloat, "matmul_tn: a ", a.sizes(), " ", a.scalar_type(),
              ": expected (K, M) fp32");
  const at::Tensor ac = a.stride(1) == 1 && a.stride(0) >= a.size(1) ? a : a.contiguous();
  const int64_t K = ac.size(0), M = ac.size(1);
  std::vector<at::Tensor> outs, keep;
  std::vector<TnOperand> ops;
  for (const at::Tensor& b : bs) {
    TORCH_CHECK(b.dim() == 2 && b.size(0) == K && b.scalar_type() == at::kFloat, "matmul_tn: b ", b.sizes(), " ",
                b.scalar_type(), ": expected (", K, ", N) fp32 (a is ", a.sizes(), ")");
    const at::Tensor bc = b.stride(1) == 1 && b.stride(0) >= b.size(1) ? b : b.contiguous();
    keep.push_back(bc);
    outs.push_back(pool_empty({M, b.size(1)}, a.options()));
    ops.push_back({bc.data_ptr<float>(), bc.stride(0), bc.size(1), outs.back().data_ptr<float>(), b.size(1)});
  }
  matmul_tn_multi(ac.data_ptr<float>(), ac.stride(0), K, M, ops);
  return outs;
}

}  // namespace lstmkit
