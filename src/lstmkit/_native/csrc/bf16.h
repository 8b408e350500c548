// bfloat16 kernels of the fused LSTM loop: packing W_hh as bf16 pairs and AVX512_BF16 dot-product GEMMs.
#pragma once
#include "kernels.h"

#include <cstdint>
#include <cstring>

namespace lstmkit {

using at::Tensor;
constexpr int64_t kBf16UB = 16;  // hidden units per panel block (the same as the fp32 panels)

// ---- bfloat16 GEMMs (AVX512_BF16 dot products of bf16 pairs, fp32 accumulation) ----------------------------
static inline uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// n floats to bf16 (round to nearest even), 16 at a time with AVX512_BF16 where available
static inline void to_bf16_n(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)v);
  }
#endif
  for (; i < n; ++i) dst[i] = to_bf16(src[i]);
}

#if defined(__AVX512BF16__)
constexpr bool kHasBf16 = true;
// (U, ceil(K/2), G*kBf16UB, 2): panel u, pair kp holds (W[k=2kp][col], W[2kp+1][col]) for its G*16 columns
static Tensor pack_panels_bf16(const Tensor& w_hh, int G, int64_t H) {
  const int64_t K = w_hh.size(1), U = (H + kBf16UB - 1) / kBf16UB, KP = (K + 1) / 2;
  Tensor wp = pool_empty({U, KP, G * kBf16UB, 2}, at::TensorOptions().dtype(at::kShort)).zero_();  // pooled (see pool.h)
  const Tensor w = w_hh.to(at::kBFloat16).contiguous();
  const uint16_t* src = reinterpret_cast<const uint16_t*>(w.data_ptr());
  uint16_t* dst = reinterpret_cast<uint16_t*>(wp.data_ptr());
  // in 32-step blocks of k so that reads and writes stay in L1 (see pack_panels)
  const int64_t GU = G * kBf16UB;
  for (int64_t u = 0; u < U; ++u)
    for (int64_t k0 = 0; k0 < K; k0 += 32) {
      const int64_t kn = std::min<int64_t>(32, K - k0);
      for (int q = 0; q < G; ++q)
        for (int64_t l = 0; l < kBf16UB && u * kBf16UB + l < H; ++l) {
          const uint16_t* row = src + (q * H + u * kBf16UB + l) * K;
          for (int64_t k = k0; k < k0 + kn; ++k) dst[((u * KP + k / 2) * GU + q * kBf16UB + l) * 2 + (k & 1)] = row[k];
        }
    }
  return wp;
}

// acc[r][q] += sum over pairs kp < KP of A's pair (2kp, 2kp+1) of row r times Wp's pair for gate block q
template <int R, int G>
static inline void panel_dot_bf16(__m512 (&acc)[R][G], int64_t KP, const uint16_t* A, int64_t lda,
                                  const uint16_t* Wp) {
  for (int64_t kp = 0; kp < KP; ++kp) {
    __m512i b[G];
    for (int q = 0; q < G; ++q) b[q] = _mm512_loadu_si512(Wp + (kp * G * kBf16UB + q * kBf16UB) * 2);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, A + r * lda + 2 * kp, 4);
      const __m512i a = _mm512_set1_epi32(pair);
      for (int q = 0; q < G; ++q) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)a, (__m512bh)b[q]);
    }
  }
}

// The bf16 twin of fused_lstm.cpp's panel_gemm: out = gx (or 0 when null) + bias + A Wp (+ X Wx when XP > 0, the
// input's term: X rows of an even length, Wx from pack_panels_bf16 of W_ih), fp32 accumulation.
template <int R, int G>
static inline void panel_gemm_bf16(int64_t KP, const uint16_t* A, int64_t lda, const uint16_t* Wp, const float* gx,
                                   int64_t ldgx, int64_t H, int64_t u, int64_t nl, float* out, const float* bias,
                                   int64_t XP, const uint16_t* X, int64_t ldx, const uint16_t* Wx) {
  const __mmask16 mask = nl >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nl) - 1);
  __m512 acc[R][G];
  panel_start<R, G>(acc, gx ? gx + u * kBf16UB : nullptr, ldgx, H, mask, bias ? bias + u * kBf16UB : nullptr);
  if (XP) panel_dot_bf16<R, G>(acc, XP, X, ldx, Wx);
  panel_dot_bf16<R, G>(acc, KP, A, lda, Wp);
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < G; ++q) _mm512_storeu_ps(out + (r * G + q) * kBf16UB, acc[r][q]);
}

template <int G>
static void panel_gemm_bf16_rows(int R, int64_t KP, const uint16_t* A, int64_t lda, const uint16_t* Wp,
                                 const float* gx, int64_t ldgx, int64_t H, int64_t u, int64_t nl, float* out,
                                 const float* bias, int64_t XP, const uint16_t* X, int64_t ldx, const uint16_t* Wx) {
  with_rows(R, [&](auto r) {
    panel_gemm_bf16<decltype(r)::value, G>(KP, A, lda, Wp, gx, ldgx, H, u, nl, out, bias, XP, X, ldx, Wx);
  });
}

// (ceil(N/16), ceil(K/2), 16, 2): W (K, N) row-major as bf16 pairs along K, in 16-column blocks
static Tensor pack_cols_bf16(const Tensor& w /* (K, N) */) {
  const int64_t K = w.size(0), N = w.size(1), NB = (N + 15) / 16, KP = (K + 1) / 2;
  Tensor wp = pool_empty({NB, KP, 16, 2}, at::TensorOptions().dtype(at::kShort)).zero_();
  const Tensor wb = w.to(at::kBFloat16).contiguous();
  const uint16_t* src = reinterpret_cast<const uint16_t*>(wb.data_ptr());
  uint16_t* dst = reinterpret_cast<uint16_t*>(wp.data_ptr());
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) dst[(((n / 16) * KP + k / 2) * 16 + n % 16) * 2 + (k & 1)] = src[k * N + n];
  return wp;
}

// C[R, 0:NQ*16] (+)= A(R, K) W(K, nb0*16 ..): A bf16 rows (pairs along K, lda even), W from pack_cols_bf16 (its
// zero-padded 16-column panels are read whole; the stores are masked by mk). R, NQ and Load are compile-time so
// that GCC keeps the R x NQ accumulators in registers (with a run-time NQ it kept them on the stack).
template <int R, int NQ, bool Load>
__attribute__((noinline)) static void cols_bf16_block(int64_t KP, const uint16_t* A, int64_t lda, const uint16_t* Wp,
                                                      int64_t nb0, const __mmask16* mk, float* C, int64_t ldc) {
  __m512 acc[R][NQ];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q)
      acc[r][q] = Load ? _mm512_maskz_loadu_ps(mk[q], C + r * ldc + 16 * q) : _mm512_setzero_ps();
  for (int64_t kp = 0; kp < KP; ++kp) {
    __m512i b[NQ];
    for (int q = 0; q < NQ; ++q) b[q] = _mm512_loadu_si512(Wp + (((nb0 + q) * KP + kp) * 16) * 2);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, A + r * lda + 2 * kp, 4);
      const __m512i a = _mm512_set1_epi32(pair);
      for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], (__m512bh)a, (__m512bh)b[q]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q) _mm512_mask_storeu_ps(C + r * ldc + 16 * q, mk[q], acc[r][q]);
}

// C(M, [n0, n1)) (+)= A(M, K) W(K, N) in 6-row x 64-column register blocks; n0 % 16 == 0. accumulate = false:
// C = A W (C is only written).
static void gemm_cols_bf16(int64_t M, int64_t KP, const uint16_t* A, int64_t lda, const uint16_t* Wp, float* C,
                           int64_t ldc, int64_t n0, int64_t n1, bool accumulate) {
  for (int64_t n = n0; n < n1; n += 64) {
    const int64_t left = std::min<int64_t>(64, n1 - n);
    const int nq = (int)((left + 15) / 16);
    __mmask16 mk[4];
    block_masks(left, mk);
    for (int64_t m = 0; m < M; m += 6) {
      auto run = [&](auto r, auto load) {
        constexpr int R = decltype(r)::value;
        constexpr bool L = decltype(load)::value;
        const uint16_t* a = A + m * lda;
        float* c = C + m * ldc + n;
        switch (nq) {
          case 4: cols_bf16_block<R, 4, L>(KP, a, lda, Wp, n / 16, mk, c, ldc); break;
          case 3: cols_bf16_block<R, 3, L>(KP, a, lda, Wp, n / 16, mk, c, ldc); break;
          case 2: cols_bf16_block<R, 2, L>(KP, a, lda, Wp, n / 16, mk, c, ldc); break;
          default: cols_bf16_block<R, 1, L>(KP, a, lda, Wp, n / 16, mk, c, ldc); break;
        }
      };
      with_rows((int)std::min<int64_t>(6, M - m), [&](auto r) {
        if (accumulate) run(r, std::true_type{}); else run(r, std::false_type{});
      });
    }
  }
}
#else
constexpr bool kHasBf16 = false;
#endif

}  // namespace lstmkit
