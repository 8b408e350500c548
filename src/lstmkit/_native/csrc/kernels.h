// Low-level pieces of the native engine: a small-matrix GEMM for the per-step recurrence, activations, FTZ.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include "pool.h"
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace lstmkit {

// Denormals slow long recurrences by 10-20x (see docs): flush them to zero while a kernel runs.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// exp for the activations, written so that GCC vectorises it inside `omp simd` loops (no libmvec call): Cody-Waite
// range reduction and Cephes' degree-6 polynomial, about 1 ulp; callers keep |x| <= 30.
static inline float exp_act(float x) {
  const float n = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Built with -ffast-math, which lets the compiler assume no infinities: inputs are clamped so exp never
// overflows (sigmoid(+-30) and tanh(+-15) are 0/1 and -1/1 in fp32 anyway).
static inline float sigmoidf(float x) {
  x = std::fmin(std::fmax(x, -30.0f), 30.0f);
  return 1.0f / (1.0f + exp_act(-x));
}
static inline float tanhf_(float x) {
  x = std::fmin(std::fmax(x, -15.0f), 15.0f);
  return 2.0f / (1.0f + exp_act(-2.0f * x)) - 1.0f;
}

#if defined(__AVX512F__)
// 16-lane activations for the fused gate passes, inlined (no libmvec call, no division): exp by Cody-Waite range
// reduction and Cephes' degree-6 polynomial (about 1 ulp), 1/x by rcp14 and one Newton step (about 2^-28).
// Same clamps as sigmoidf / tanhf_ above.
static inline __m512 exp512(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n
}
static inline __m512 sigmoid512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-30.f)), _mm512_set1_ps(30.f));
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)));
  const __m512 y = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(y, _mm512_fnmadd_ps(d, y, _mm512_set1_ps(2.f)));
}
static inline __m512 tanh512(__m512 x) {  // 2 sigmoid(2x) - 1 (sigmoid's clamp at 30 is tanh's at 15)
  return _mm512_fmsub_ps(_mm512_set1_ps(2.f), sigmoid512(_mm512_add_ps(x, x)), _mm512_set1_ps(1.f));
}
#endif

// Calls f(std::integral_constant<int, R>{}) for a row count R in 1..6 known only at run time: the register-blocked
// kernels take their row count as a template argument.
template <class F>
static inline void with_rows(int R, F&& f) {
  switch (R) {
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

// Calls f(r0, R) for blocks of at most 6 rows covering rows 0..M-1. Up to 12 rows: 6s and then the rest (8 rows as
// 6 + 2, whose two-row kernel doubles its accumulators, was not slower than 4 + 4); above, blocks as even as 6
// allows (32 rows: 6, 6, 5, 5, 5, 5 instead of five 6s and a 2): LSTM training and inference 0.3-1.7% faster from
// 32x100x64x256 up, in one process with the order of the two alternated.
template <class F>
static inline void for_row_blocks(int64_t M, F&& f) {
  if (M <= 12) {
    for (int64_t r0 = 0; r0 < M; r0 += 6) f(r0, (int)std::min<int64_t>(6, M - r0));
    return;
  }
  const int64_t n = (M + 5) / 6, base = M / n, extra = M % n;
  for (int64_t k = 0, r0 = 0; k < n; ++k) {
    const int R = (int)(base + (k < extra));
    f(r0, R);
    r0 += R;
  }
}

// Above this many multiply-adds a per-step GEMM goes to ATen (MKL/oneDNN, both threads); below it the
// call overhead dominates and the register-blocked kernel below wins.
// LSTMKIT_GEMM_MACS overrides the switch-over point (for tuning on other machines).
static inline int64_t aten_gemm_macs() {
  static const int64_t v = [] {
    const char* e = std::getenv("LSTMKIT_GEMM_MACS");
    return e ? std::atoll(e) : (int64_t)1 << 22;
  }();
  return v;
}

#if defined(__AVX512F__)
// The starting accumulators of one 16-unit panel of a fused loop's GEMM (fused_lstm.cpp, bf16.h): acc[r][q] =
// gx[r*ldgx + q*H + l] (zero when gx is null) + bias[q*H + l] (when given) for the lanes l in mask; gx and bias
// point at the panel's first unit.
template <int R, int G>
static inline void panel_start(__m512 (&acc)[R][G], const float* gx, int64_t ldgx, int64_t H, __mmask16 mask,
                               const float* bias) {
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < G; ++q)
      acc[r][q] = gx ? _mm512_maskz_loadu_ps(mask, gx + r * ldgx + q * H) : _mm512_setzero_ps();
  if (bias)
    for (int q = 0; q < G; ++q) {
      const __m512 bq = _mm512_maskz_loadu_ps(mask, bias + q * H);
      for (int r = 0; r < R; ++r) acc[r][q] = _mm512_add_ps(acc[r][q], bq);
    }
}

// Store/load masks of the four 16-lane vectors of a 64-column block that has ``left`` valid columns.
static inline void block_masks(int64_t left, __mmask16 mk[4]) {
  for (int q = 0; q < 4; ++q) {
    const int64_t l = left - 16 * q;
    mk[q] = l >= 16 ? (__mmask16)0xFFFF : (l <= 0 ? (__mmask16)0 : (__mmask16)((1u << l) - 1));
  }
}

// C[MR, nr<=64] += A[MR, K] * B[K, nr]  (B row-major, one 64-column panel kept in 4*MR zmm registers).
// Full (nr == 64): B is loaded unmasked. With masked loads in the k-loop, GCC 12 at -O3 stores every accumulator
// to the stack after each FMA (about half the speed), so only a last, narrower block pays for them.
template <int MR, bool Full>
static inline void gemm_block(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                              int nr) {
  __mmask16 mk[4];
  block_masks(nr, mk);
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_maskz_loadu_ps(mk[q], C + r * ldc + 16 * q);
  for (int k = 0; k < K; ++k) {
    const float* bk = B + (int64_t)k * ldb;
    __m512 b0 = Full ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(mk[0], bk);
    __m512 b1 = Full ? _mm512_loadu_ps(bk + 16) : _mm512_maskz_loadu_ps(mk[1], bk + 16);
    __m512 b2 = Full ? _mm512_loadu_ps(bk + 32) : _mm512_maskz_loadu_ps(mk[2], bk + 32);
    __m512 b3 = Full ? _mm512_loadu_ps(bk + 48) : _mm512_maskz_loadu_ps(mk[3], bk + 48);
    for (int r = 0; r < MR; ++r) {
      __m512 a = _mm512_set1_ps(A[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(a, b2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(a, b3, acc[r][3]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < 4; ++q) _mm512_mask_storeu_ps(C + r * ldc + 16 * q, mk[q], acc[r][q]);
}
#endif

// C(M, N) += A(M, K) B(K, N), all row-major fp32 with leading dimensions; columns [n0, n1) only.
static inline void gemm_acc_cols(int M, int K, const float* A, int lda, const float* B, int ldb, float* C,
                                 int ldc, int n0, int n1) {
#if defined(__AVX512F__)
  for (int n = n0; n < n1; n += 64) {
    const int nr = std::min(64, n1 - n);
    auto rows = [&](auto full) {
      constexpr bool F = decltype(full)::value;
      int m = 0;
      for (; m + 4 <= M; m += 4) gemm_block<4, F>(K, A + m * lda, lda, B + n, ldb, C + m * ldc + n, ldc, nr);
      switch (M - m) {
        case 3: gemm_block<3, F>(K, A + m * lda, lda, B + n, ldb, C + m * ldc + n, ldc, nr); break;
        case 2: gemm_block<2, F>(K, A + m * lda, lda, B + n, ldb, C + m * ldc + n, ldc, nr); break;
        case 1: gemm_block<1, F>(K, A + m * lda, lda, B + n, ldb, C + m * ldc + n, ldc, nr); break;
        default: break;
      }
    };
    if (nr == 64) rows(std::true_type{}); else rows(std::false_type{});
  }
#else
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) {
      const float a = A[m * lda + k];
      const float* bk = B + (int64_t)k * ldb;
      float* cm = C + m * ldc;
      for (int n = n0; n < n1; ++n) cm[n] += a * bk[n];
    }
#endif
}

// C(M, N) += A(M, K) B(K, N): the small kernel, or ATen's GEMM (multi-threaded) for large products.
// ``Bt`` is the same matrix as ``B`` viewed as (N, K) row-major (i.e. B = Bt^T), used by the ATen path.
static inline void gemm_acc(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                            int ldc, const at::Tensor& B_tensor) {
  if (M <= 0) return;
  if ((int64_t)M * N * K >= aten_gemm_macs()) {
    auto opts = at::TensorOptions().dtype(at::kFloat);
    at::Tensor a = at::from_blob(const_cast<float*>(A), {M, K}, {lda, 1}, opts);
    at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
    c.addmm_(a, B_tensor);
    return;
  }
  gemm_acc_cols(M, K, A, lda, B, ldb, C, ldc, 0, N);
}

#if defined(__AVX512F__)
// dst[j * ds + i] = src[i * ss + j] for a 16 x 16 block (the weight packers' tiles: about 10x a scalar copy with
// a strided side). Interleaves 32-bit, then 64-bit pairs, then 128-bit and 256-bit lanes; the rows come out in
// order.
static inline void transpose16x16(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ss);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    _mm512_storeu_ps(dst + j * ds, _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
    _mm512_storeu_ps(dst + (j + 8) * ds, _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd));
  }
}
#endif

// W (K, N) fp32 as 16-column panels, each K x 16 contiguous, zero past N and with 3 spare zero panels so a
// 64-column block may always read 4 panels: (ceil(N/16) + 3, K, 16). W may be a transposed view (W_hh^T): it is
// read in place, a panel at a time, without a contiguous copy.
static inline at::Tensor pack_cols16(const at::Tensor& w_in) {
  at::Tensor w = w_in.to(at::kFloat);
  if (w.stride(1) != 1 && w.stride(0) != 1) w = w.contiguous();
  const int64_t K = w.size(0), N = w.size(1), NB = (N + 15) / 16, sk = w.stride(0), sn = w.stride(1);
  at::Tensor bp = pool_empty({NB + 3, K, 16}, w.options());  // pooled: a multi-MB W would page-fault per call
  float* dst = bp.data_ptr<float>();
  const float* src = w.data_ptr<float>();
  std::memset(dst + NB * K * 16, 0, sizeof(float) * 3 * K * 16);
  for (int64_t nb = 0; nb < NB; ++nb) {
    const int64_t nl = std::min<int64_t>(16, N - nb * 16);
    float* panel = dst + nb * K * 16;
    if (nl < 16) std::memset(panel, 0, sizeof(float) * K * 16);
    if (sn == 1) {  // rows of W are contiguous: 16 consecutive values per k
      for (int64_t k = 0; k < K; ++k) std::memcpy(panel + k * 16, src + k * sk + nb * 16, sizeof(float) * nl);
    } else {  // columns of W are contiguous (W = V^T): one column per lane, written with a 64-byte stride
      int64_t k0 = 0;
#if defined(__AVX512F__)
      if (nl == 16)  // whole 16 x 16 tiles transposed in registers
        for (; k0 + 16 <= K; k0 += 16) transpose16x16(src + nb * 16 * sn + k0, sn, panel + k0 * 16, 16);
#endif
      for (int64_t l = 0; l < nl; ++l) {
        const float* col = src + (nb * 16 + l) * sn;
        for (int64_t k = k0; k < K; ++k) panel[k * 16 + l] = col[k];
      }
    }
  }
  return bp;
}

#if defined(__AVX512F__)
// C[R, NQ*16] += A[R, K] Bp[K, NQ*16] for NQ consecutive 16-column panels of Bp (panel stride K*16); the last
// panel's columns are masked by mk. NQ < 4 when a thread owns fewer than 64 columns: the absent panels cost nothing.
// Kept out of line: inlined into the streaming step, it left GCC unable to vectorise that function's gate loop
// (a 64-unit step went from 5.4 to 7 us). Load = false: C = A Bp (C is only written).
template <int R, int NQ, bool Load = true>
__attribute__((noinline)) static void packed_block(int64_t K, const float* A, int64_t lda, const float* Bp,
                                                   const __mmask16* mk, float* C, int64_t ldc) {
  __m512 acc[R][NQ];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q)
      acc[r][q] = Load ? _mm512_maskz_loadu_ps(mk[q], C + r * ldc + 16 * q) : _mm512_setzero_ps();
  const int64_t ps = K * 16;  // panel stride
  int64_t k = 0;
  if (R * NQ <= 8) {
    // few accumulators (one or two rows, or a narrow block): they cannot hide the FMA latency, so odd k go to a
    // second set
    __m512 acc2[R][NQ];
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NQ; ++q) acc2[r][q] = _mm512_setzero_ps();
    for (; k + 2 <= K; k += 2) {
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(A[r * lda + k]), a2 = _mm512_set1_ps(A[r * lda + k + 1]);
        for (int q = 0; q < NQ; ++q) {
          acc[r][q] = _mm512_fmadd_ps(a, _mm512_loadu_ps(Bp + q * ps + k * 16), acc[r][q]);
          acc2[r][q] = _mm512_fmadd_ps(a2, _mm512_loadu_ps(Bp + q * ps + (k + 1) * 16), acc2[r][q]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_add_ps(acc[r][q], acc2[r][q]);
  }
  for (; k < K; ++k) {
    __m512 b[NQ];
    for (int q = 0; q < NQ; ++q) b[q] = _mm512_loadu_ps(Bp + q * ps + k * 16);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < NQ; ++q) _mm512_mask_storeu_ps(C + r * ldc + 16 * q, mk[q], acc[r][q]);
}

// All M rows of one block of NQ panels, in the row blocks of for_row_blocks.
template <int NQ, bool Load>
static inline void packed_rows(int64_t M, int64_t K, const float* A, int64_t lda, const float* panel,
                               const __mmask16* mk, float* C, int64_t ldc) {
  for_row_blocks(M, [&](int64_t m, int R) {
    with_rows(R, [&](auto r) {
      packed_block<decltype(r)::value, NQ, Load>(K, A + m * lda, lda, panel, mk, C + m * ldc, ldc);
    });
  });
}
#endif

// C(M, [n0, n1)) += A(M, K) W(K, :) with W from pack_cols16; n0 a multiple of 16. Panel-outer, so each 64-column
// block of W streams once per call through all row blocks; a block narrower than 64 columns (the last one, or a
// thread's share of a small layer) runs only its panels. accumulate = false: C = A W (C is only written).
static inline void gemm_packed_cols(int64_t M, int64_t K, const float* A, int64_t lda, const float* Bp, float* C,
                                    int64_t ldc, int64_t n0, int64_t n1, bool accumulate = true) {
#if defined(__AVX512F__)
  for (int64_t n = n0; n < n1; n += 64) {
    __mmask16 mk[4];
    block_masks(n1 - n, mk);
    const float* panel = Bp + (n / 16) * K * 16;
    auto rows = [&](auto load) {
      constexpr bool L = decltype(load)::value;
      switch (std::min<int64_t>(4, (n1 - n + 15) / 16)) {
        case 4: packed_rows<4, L>(M, K, A, lda, panel, mk, C + n, ldc); break;
        case 3: packed_rows<3, L>(M, K, A, lda, panel, mk, C + n, ldc); break;
        case 2: packed_rows<2, L>(M, K, A, lda, panel, mk, C + n, ldc); break;
        default: packed_rows<1, L>(M, K, A, lda, panel, mk, C + n, ldc); break;
      }
    };
    if (accumulate) rows(std::true_type{}); else rows(std::false_type{});
  }
#else
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = n0; n < n1; ++n)
        C[m * ldc + n] = (accumulate || k ? C[m * ldc + n] : 0.f) + A[m * lda + k] * Bp[((n / 16) * K + k) * 16 + n % 16];
#endif
}

// The optional per-call tensors of an LSTM layer-direction as raw pointers. Absent peepholes and cell zoneout
// point at zeros, so the fused gate loops stay branch-free (and vectorise); absent recurrent dropout and hidden
// zoneout are null (their loops are skipped).
struct LstmOptions {
  at::Tensor w_ph, rd, zoh, zoc, zero_buf;
  const float *p_i, *p_f, *p_o, *rdp, *zhp, *zcp, *zero;

  LstmOptions(int64_t H, bool coupled, const c10::optional<at::Tensor>& w_ph_in,
              const c10::optional<at::Tensor>& rd_in, const c10::optional<at::Tensor>& zo_h_in,
              const c10::optional<at::Tensor>& zo_c_in) {
    auto take = [](const c10::optional<at::Tensor>& t) {
      return (t.has_value() && t->defined() && t->numel() > 0) ? t->to(at::kFloat).contiguous() : at::Tensor();
    };
    w_ph = take(w_ph_in); rd = take(rd_in); zoh = take(zo_h_in); zoc = take(zo_c_in);
    zero_buf = at::zeros({H}, at::TensorOptions().dtype(at::kFloat));
    zero = zero_buf.data_ptr<float>();
    p_i = p_f = p_o = zero;
    if (w_ph.defined()) {
      const float* ph = w_ph.data_ptr<float>();
      if (coupled) { p_f = ph; p_o = ph + H; } else { p_i = ph; p_f = ph + H; p_o = ph + 2 * H; }
    }
    rdp = rd.defined() ? rd.data_ptr<float>() : nullptr;
    zhp = zoh.defined() ? zoh.data_ptr<float>() : nullptr;
    zcp = zoc.defined() ? zoc.data_ptr<float>() : nullptr;
  }
};

// h_{t-1} as the recurrent GEMM reads it: h itself, or h * mask (recurrent dropout) written to buf; n values.
static inline const float* dropped_state(const float* h, const float* mask, float* buf, int64_t n) {
  if (!mask) return h;
  for (int64_t k = 0; k < n; ++k) buf[k] = h[k] * mask[k];
  return buf;
}

// Rows active at each step (the batch sorted longest first): batch_sizes, or B at every step when absent.
static inline std::vector<int64_t> rows_per_step(const c10::optional<at::Tensor>& batch_sizes, int64_t T, int64_t B) {
  std::vector<int64_t> bs(T, B);
  if (batch_sizes.has_value() && batch_sizes->defined()) {
    const at::Tensor acc = batch_sizes->contiguous().to(at::kLong);
    const int64_t* p = acc.data_ptr<int64_t>();
    for (int64_t t = 0; t < T; ++t) bs[t] = p[t];
  }
  return bs;
}

// Where step t starts in a step-major matrix of the active rows only (rows of finished sequences left out):
// rows off[t] .. off[t] + bs[t] - 1; off[T] is the row count. With every row active, off[t] = t * B.
static inline std::vector<int64_t> step_offsets(const std::vector<int64_t>& bs) {
  std::vector<int64_t> off(bs.size() + 1, 0);
  for (size_t t = 0; t < bs.size(); ++t) off[t + 1] = off[t] + bs[t];
  return off;
}

// The active rows of a step-major (T*B, F) tensor, stacked: (off[T], F). Rows of step t are contiguous (the batch
// is sorted longest first), so this is one copy per step.
static inline at::Tensor active_rows(const at::Tensor& src, const std::vector<int64_t>& bs,
                                     const std::vector<int64_t>& off, int64_t B) {
  const at::Tensor s = src.contiguous();
  const int64_t F = s.size(-1), es = s.element_size();
  at::Tensor out = pool_empty({off.back(), F}, s.options());
  const char* in = static_cast<const char*>(s.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  for (size_t t = 0; t < bs.size(); ++t)
    std::memcpy(o + off[t] * F * es, in + (int64_t)t * B * F * es, bs[t] * F * es);
  return out;
}

// The inverse: (off[T], F) active rows back into a zero-padded (T, B, F) tensor; zeros = false leaves the rows past
// their length unwritten (pooled memory; for a reader that never touches them, such as the layer-norm loop's G_x).
static inline at::Tensor padded_rows(const at::Tensor& src, const std::vector<int64_t>& bs,
                                     const std::vector<int64_t>& off, int64_t B, bool zeros = true) {
  const int64_t T = (int64_t)bs.size(), F = src.size(-1), es = src.element_size();
  at::Tensor out = zeros ? at::zeros({T, B, F}, src.options()) : pool_empty({T, B, F}, src.options());
  const char* in = static_cast<const char*>(src.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  for (int64_t t = 0; t < T; ++t) std::memcpy(o + t * B * F * es, in + off[t] * F * es, bs[t] * F * es);
  return out;
}

// A batch permutation as a vector (empty: none). perm[b] is the caller's row that sorted row b holds.
static inline std::vector<int64_t> perm_of(const c10::optional<at::Tensor>& perm) {
  if (!perm.has_value() || !perm->defined()) return {};
  const at::Tensor p = perm->to(at::kLong).contiguous();
  return std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.numel());
}

// The rows of a (T, B, F) or (B, F) tensor in another batch order, into pooled memory: gather (out[.., b] =
// in[.., perm[b]]) takes the caller's batch into the sorted order the loops run in, scatter (out[.., perm[b]] =
// in[.., b]) takes results back. One pass each, instead of index_select and its backward outside the node; a
// strided input (a batch_first x, the expanded gradient of y.sum()) is read in place by ATen's index_select. No
// permutation (perm empty) or an undefined tensor: src itself.
static inline at::Tensor permute_rows(const at::Tensor& src, const std::vector<int64_t>& perm, bool scatter) {
  if (perm.empty() || !src.defined()) return src;
  const int64_t B = (int64_t)perm.size();
  std::vector<int64_t> idx(perm);  // out[.., b] = in[.., idx[b]]
  if (scatter)
    for (int64_t b = 0; b < B; ++b) idx[perm[b]] = b;
  if (!src.is_contiguous()) {
    at::Tensor out = pool_empty(src.sizes(), src.options());
    at::index_select_out(out, src, src.dim() - 2, at::tensor(idx, at::kLong));
    return out;
  }
  const int64_t row = src.size(-1) * src.element_size();
  const int64_t T = B ? src.numel() / (B * src.size(-1)) : 0;
  at::Tensor out = pool_empty(src.sizes(), src.options());
  const char* in = static_cast<const char*>(src.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, T, 8, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t b = 0; b < B; ++b) std::memcpy(o + (t * B + b) * row, in + (t * B + idx[b]) * row, row);
  });
  return out;
}

}  // namespace lstmkit
