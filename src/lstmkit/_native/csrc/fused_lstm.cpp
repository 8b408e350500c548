// Fused LSTM time loop, forward (standard, peephole, coupled; zoneout, recurrent dropout; lengths), one or two threads.
//
// W_hh is packed once per call so that one 16-unit block of every gate (i, f, g, o) is a contiguous 64-column
// panel. Per step and row block, a register-blocked GEMM starts from G_x (beta = 1), or from the biases plus
// x_t W_ih^T when the loop takes the input itself (W_ih packed the same way; LoopInput, fused.h), accumulates
// h_{t-1} W_hh^T for one panel, and the gate pass runs on that panel while it is still in L1. Two threads own
// halves of the unit blocks and meet at one spin barrier per step. The backward is in fused_lstm_bwd.cpp.
#include "fused.h"
#include "kernels.h"
#include "team.h"
#include "bf16.h"

#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;
constexpr int MR = 6;  // rows per register block (6 rows x 4 gates = 24 accumulators)
static_assert(UB == kBf16UB, "bf16 and fp32 panels hold the same units");

// (U, K, G*UB): panel u holds, for k = 0..K-1, the G gate rows of units u*UB .. u*UB+15 (zero past H).
// Copied in 16-step blocks of k, so both the rows read and the panel lines written stay in L1 (a plain
// row-by-row copy writes with a 256-byte stride and cost about 1 ns per weight).
static Tensor pack_panels(const Tensor& w_hh, int G, int64_t H) {
  const int64_t K = w_hh.size(1), U = (H + UB - 1) / UB, GU = G * UB;
  Tensor wp = pool_empty({U, K, GU}, w_hh.options());  // pooled: a multi-MB W_hh would page-fault per call
  const Tensor w = w_hh.contiguous();
  const float* src = w.data_ptr<float>();
  float* dst = wp.data_ptr<float>();
  for (int64_t u = 0; u < U; ++u) {
    const int64_t nl = std::min(UB, H - u * UB);
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const int64_t kn = std::min<int64_t>(16, K - k0);
      float* blk = dst + (u * K + k0) * GU;
#if defined(__AVX512F__)
      if (nl == UB && kn == 16) {  // a whole 16 x 16 tile per gate, transposed in registers
        for (int q = 0; q < G; ++q) transpose16x16(src + (q * H + u * UB) * K + k0, K, blk + q * UB, GU);
        continue;
      }
#endif
      for (int q = 0; q < G; ++q)
        for (int64_t l = 0; l < UB; ++l) {
          float* d = blk + q * UB + l;
          if (l < nl) {
            const float* row = src + (q * H + u * UB + l) * K + k0;
            for (int64_t kk = 0; kk < kn; ++kk) d[kk * GU] = row[kk];
          } else {
            for (int64_t kk = 0; kk < kn; ++kk) d[kk * GU] = 0.f;
          }
        }
    }
  }
  return wp;
}

#if defined(__AVX512F__)
// acc[r][q] += sum_k A[r][k] * Wp[k][q*16 .. q*16+15] for k < K (Wp rows of G*16 floats)
template <int R, int G>
static inline void panel_fma(__m512 (&acc)[R][G], int64_t K, const float* A, int64_t lda, const float* Wp) {
  int64_t k = 0;
  if (R <= 2) {
    // few rows: G*R accumulator chains cannot hide the FMA latency; a second set over odd k doubles them
    __m512 acc2[R][G];
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < G; ++q) acc2[r][q] = _mm512_setzero_ps();
    for (; k + 2 <= K; k += 2) {
      __m512 b[G], b2[G];
      for (int q = 0; q < G; ++q) b[q] = _mm512_loadu_ps(Wp + k * G * UB + q * UB);
      for (int q = 0; q < G; ++q) b2[q] = _mm512_loadu_ps(Wp + (k + 1) * G * UB + q * UB);
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(A[r * lda + k]);
        const __m512 a2 = _mm512_set1_ps(A[r * lda + k + 1]);
        for (int q = 0; q < G; ++q) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
        for (int q = 0; q < G; ++q) acc2[r][q] = _mm512_fmadd_ps(a2, b2[q], acc2[r][q]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < G; ++q) acc[r][q] = _mm512_add_ps(acc[r][q], acc2[r][q]);
  }
  for (; k < K; ++k) {
    __m512 b[G];
    for (int q = 0; q < G; ++q) b[q] = _mm512_loadu_ps(Wp + k * G * UB + q * UB);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int q = 0; q < G; ++q) acc[r][q] = _mm512_fmadd_ps(a, b[q], acc[r][q]);
    }
  }
}
#endif

// One more term of a panel GEMM: sum_k X[r][k] * Wx[k][q*16 + l] for k < K (K = 0: none).
struct PanelTerm {
  int64_t K = 0;
  const float* X = nullptr;
  int64_t ldx = 0;
  const float* W = nullptr;
};

// out[r][q*16 + l] = gx[r][q*H + u*16 + l] (+ bias[q*H + u*16 + l]) + sum_k A[r][k] * Wp[k][q*16 + l] (+ the
// extra term) (r < R, l < 16; gx and bias may be null: zero)
template <int R, int G>
static inline void panel_gemm(int64_t K, const float* A, int64_t lda, const float* Wp, const float* gx,
                              int64_t ldgx, int64_t H, int64_t u, int64_t nl, float* out, const float* bias,
                              const PanelTerm& xt) {
#if defined(__AVX512F__)
  const __mmask16 mask = nl >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nl) - 1);
  __m512 acc[R][G];
  panel_start<R, G>(acc, gx ? gx + u * UB : nullptr, ldgx, H, mask, bias ? bias + u * UB : nullptr);
  if (xt.K) panel_fma<R, G>(acc, xt.K, xt.X, xt.ldx, xt.W);
  panel_fma<R, G>(acc, K, A, lda, Wp);
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < G; ++q) _mm512_storeu_ps(out + (r * G + q) * UB, acc[r][q]);
#else
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < G; ++q)
      for (int64_t l = 0; l < UB; ++l) {
        float s = l < nl ? (gx ? gx[r * ldgx + q * H + u * UB + l] : 0.f) + (bias ? bias[q * H + u * UB + l] : 0.f)
                         : 0.f;
        for (int64_t k = 0; k < xt.K; ++k) s += xt.X[r * xt.ldx + k] * xt.W[k * G * UB + q * UB + l];
        for (int64_t k = 0; k < K; ++k) s += A[r * lda + k] * Wp[k * G * UB + q * UB + l];
        out[(r * G + q) * UB + l] = s;
      }
#endif
}

template <int G>
static void panel_gemm_rows(int R, int64_t K, const float* A, int64_t lda, const float* Wp, const float* gx,
                            int64_t ldgx, int64_t H, int64_t u, int64_t nl, float* out, const float* bias,
                            const PanelTerm& xt) {
  with_rows(R, [&](auto r) {
    panel_gemm<decltype(r)::value, G>(K, A, lda, Wp, gx, ldgx, H, u, nl, out, bias, xt);
  });
}

struct FwdArgs {
  int64_t T, B, H, G;
  const float *gx, *h0, *p_i, *p_f, *p_o, *zh, *zc, *zero;
  const float* Wp;
  float *y, *gates, *cn, *cs, *c;
  const std::vector<int64_t>* bs;
  int64_t gT = 0, cT = 0;  // per-step strides of gates and cn: B*G*H and B*H, or 0 (inference: one scratch step)
  const uint16_t* Wp16 = nullptr;  // bf16 path: packed pairs, and the state h as bf16 (two buffers, row stride KP2)
  uint16_t* h16 = nullptr;
  int64_t KP2 = 0;
  const float* bias = nullptr;  // (G*H) added to the pre-activations when G_x was computed without it, or null
  const int64_t* goff = nullptr;  // G_x holds active rows only: step t starts at row goff[t] (null: t * B)
  const float* rd = nullptr;      // recurrent-dropout mask (B, H), or null
  float* hm = nullptr;            // with rd: h_t * mask, the GEMM's input, in two buffers (2, B, H)
  // the input in the loop (LoopInput; gx is then unused): X rows (T*B, D), and W_ih packed as panels like W_hh's
  // (U, D, G*UB), so that each step's register blocks accumulate x_t W_ih^T before h_{t-1} W_hh^T
  const float *x = nullptr, *w_ihp = nullptr;
  int64_t D = 0;
  const uint16_t *x16 = nullptr, *w_ihp16 = nullptr;  // the same in bf16: X with D padded to even, W_ih as pairs
};

template <int G>
static void fwd_units(const FwdArgs& a, int64_t u0, int64_t u1, Barrier2* bar) {
  FlushDenormals ftz;
  const int64_t T = a.T, B = a.B, H = a.H, GH = G * H;
  alignas(64) float pre[MR * G * UB];
  for (int64_t t = 0; t < T; ++t) {
    const int64_t bt = (*a.bs)[t];
    const float* hprev = t > 0 ? a.y + (t - 1) * B * H : a.h0;
    // (bt, G*H): this step's G_x, unless the loop takes the input itself
    const float* gx_t = (a.x || a.x16) ? nullptr : a.gx + (a.goff ? a.goff[t] : t * B) * GH;
    const float* hin = a.rd ? a.hm + (t & 1) * B * H : hprev;      // what W_hh multiplies
    // panel-outer: each W_hh panel is loaded once per step and reused, cache-hot, by every row block
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t nl = std::min(UB, H - u * UB);
      for_row_blocks(bt, [&](int64_t r0, int R) {
#if defined(__AVX512BF16__)
        if (a.Wp16) {
          const uint16_t* A16 = a.h16 + (t & 1) * B * a.KP2;
          const int64_t XP = a.x16 ? a.D / 2 : 0;  // the input's term (D even here), when the loop takes it
          panel_gemm_bf16_rows<G>(R, a.KP2 / 2, A16 + r0 * a.KP2, a.KP2, a.Wp16 + u * (a.KP2 / 2) * G * UB * 2,
                                  gx_t ? gx_t + r0 * GH : nullptr, GH, H, u, nl, pre, a.bias, XP,
                                  a.x16 ? a.x16 + (t * B + r0) * a.D : nullptr, a.D,
                                  a.x16 ? a.w_ihp16 + u * XP * G * UB * 2 : nullptr);
        } else
#endif
        {
          PanelTerm xt;  // the input's term, when the loop computes it
          if (a.x) xt = PanelTerm{a.D, a.x + (t * B + r0) * a.D, a.D, a.w_ihp + u * a.D * G * UB};
          panel_gemm_rows<G>(R, H, hin + r0 * H, H, a.Wp + u * H * G * UB, gx_t ? gx_t + r0 * GH : nullptr, GH,
                             H, u, nl, pre, a.bias, xt);  // the biases join here (the projection leaves them out)
        }
        for (int r = 0; r < R; ++r) {
          const int64_t b = r0 + r, j0 = u * UB;
          const float* p = pre + r * G * UB;
          float* gb = a.gates + t * a.gT + b * GH + j0;
          float* cb = a.c + b * H + j0;
          float* cnb = a.cn + t * a.cT + b * H + j0;
          float* yb = a.y + (t * B + b) * H + j0;
          const float* hp = hprev + b * H + j0;
          const float* kh = a.zh ? a.zh + (t * B + b) * H + j0 : a.zero;
          const float* kc = a.zc ? a.zc + (t * B + b) * H + j0 : a.zero;
          const float *pi = a.p_i + j0, *pf = a.p_f + j0, *po = a.p_o + j0;
#if defined(__AVX512F__)
          // the 16 units of this panel are one vector: the gate pass in registers
          const __mmask16 mk = nl >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nl) - 1);
          const __m512 one = _mm512_set1_ps(1.f);
          const __m512 cprev = _mm512_maskz_loadu_ps(mk, cb);
          __m512 i = one, f, g, o;
          if (G == 4) {
            i = sigmoid512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, pi), cprev, _mm512_load_ps(p)));
            f = sigmoid512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, pf), cprev, _mm512_load_ps(p + UB)));
            g = tanh512(_mm512_load_ps(p + 2 * UB));
          } else {
            f = sigmoid512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, pf), cprev, _mm512_load_ps(p)));
            g = tanh512(_mm512_load_ps(p + UB));
            i = _mm512_sub_ps(one, f);
          }
          const __m512 cnew = _mm512_fmadd_ps(f, cprev, _mm512_mul_ps(i, g));
          o = sigmoid512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, po), cnew, _mm512_load_ps(p + (G - 1) * UB)));
          const __m512 hn = _mm512_mul_ps(o, tanh512(cnew));
          if (a.gT) {  // kept for backward (inference keeps nothing)
            if (G == 4) _mm512_mask_storeu_ps(gb, mk, i);
            _mm512_mask_storeu_ps(gb + (G - 3) * H, mk, f);
            _mm512_mask_storeu_ps(gb + (G - 2) * H, mk, g);
            _mm512_mask_storeu_ps(gb + (G - 1) * H, mk, o);
            _mm512_mask_storeu_ps(cnb, mk, cnew);
          }
          const __m512 kcv = _mm512_maskz_loadu_ps(mk, kc), khv = _mm512_maskz_loadu_ps(mk, kh);
          // zoneout: keep the previous value with the mask's weight (zeros when zoneout is off)
          _mm512_mask_storeu_ps(cb, mk, _mm512_fmadd_ps(kcv, _mm512_sub_ps(cprev, cnew), cnew));
          const __m512 yv = _mm512_fmadd_ps(khv, _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, hp), hn), hn);
          _mm512_mask_storeu_ps(yb, mk, yv);
          // h_t as the next step's GEMM reads it, taken from the register: read back from yb, it would wait for
          // the store (a masked store does not forward to a load on AMD Zen 4; 12% of a bf16 step was that wait)
          __m512 nextv = yv;
          if (a.rd) {  // recurrent dropout: h_t * mask, apart from h_t itself (the output, and zoneout's carry)
            nextv = _mm512_mul_ps(yv, _mm512_maskz_loadu_ps(mk, a.rd + b * H + j0));
            _mm512_mask_storeu_ps(a.hm + ((t + 1) & 1) * B * H + b * H + j0, mk, nextv);
          }
#if defined(__AVX512BF16__)
          if (a.h16)
            _mm256_mask_storeu_epi16(a.h16 + ((t + 1) & 1) * B * a.KP2 + b * a.KP2 + j0, mk,
                                     (__m256i)_mm512_cvtneps_pbh(nextv));
#endif
#else
          if (G == 4) {
#pragma omp simd
            for (int64_t l = 0; l < nl; ++l) {
              const float cprev = cb[l];
              const float i = sigmoidf(p[l] + pi[l] * cprev);
              const float f = sigmoidf(p[UB + l] + pf[l] * cprev);
              const float g = tanhf_(p[2 * UB + l]);
              const float cnew = f * cprev + i * g;
              const float o = sigmoidf(p[3 * UB + l] + po[l] * cnew);
              const float hn = o * tanhf_(cnew);
              gb[l] = i; gb[H + l] = f; gb[2 * H + l] = g; gb[3 * H + l] = o;
              cnb[l] = cnew;
              cb[l] = kc[l] * cprev + (1.f - kc[l]) * cnew;
              yb[l] = kh[l] * hp[l] + (1.f - kh[l]) * hn;
            }
          } else {
#pragma omp simd
            for (int64_t l = 0; l < nl; ++l) {
              const float cprev = cb[l];
              const float f = sigmoidf(p[l] + pf[l] * cprev);
              const float g = tanhf_(p[UB + l]);
              const float cnew = f * cprev + (1.f - f) * g;
              const float o = sigmoidf(p[2 * UB + l] + po[l] * cnew);
              const float hn = o * tanhf_(cnew);
              gb[l] = f; gb[H + l] = g; gb[2 * H + l] = o;
              cnb[l] = cnew;
              cb[l] = kc[l] * cprev + (1.f - kc[l]) * cnew;
              yb[l] = kh[l] * hp[l] + (1.f - kh[l]) * hn;
            }
          }
          if (a.rd) {  // recurrent dropout: h_t * mask for the next step's GEMM (no bf16 path without AVX-512)
            float* hmb = a.hm + ((t + 1) & 1) * B * H + b * H + j0;
            const float* mb = a.rd + b * H + j0;
            for (int64_t l = 0; l < nl; ++l) hmb[l] = yb[l] * mb[l];
          }
#endif
        }
      });
    }
    // rows past their length: zero output, keep state; copy the carried cell for backward
    const int64_t j0 = u0 * UB, j1 = std::min(H, u1 * UB);
    for (int64_t b = bt; b < B; ++b) {
      std::memset(a.y + (t * B + b) * H + j0, 0, sizeof(float) * (j1 - j0));
      for (int q = 0; q < G; ++q) std::memset(a.gates + t * a.gT + b * GH + q * H + j0, 0, sizeof(float) * (j1 - j0));
      std::memcpy(a.cn + t * a.cT + b * H + j0, a.c + b * H + j0, sizeof(float) * (j1 - j0));
    }
    if (a.cs)
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(a.cs + (t * B + b) * H + j0, a.c + b * H + j0, sizeof(float) * (j1 - j0));
    if (bar) bar->wait();  // h_t complete before any thread starts step t+1
  }
}

bool input_in_loop(int64_t B, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh) {
  const auto dt = x.scalar_type();
  const bool same = w_ih.scalar_type() == dt && w_hh.scalar_type() == dt;
  return B >= 2 && same && (dt == at::kFloat || (dt == at::kBFloat16 && kHasBf16));
}

// Forward of the fused path; same contract as lstm_fwd (lstm.cpp) without projection.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd_fused(
    const Tensor& gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const float* p_i, const float* p_f,
    const float* p_o, const float* zh, const float* zc, const std::vector<int64_t>& bs, bool coupled, bool save,
    const float* bias, bool h0_before_y, const std::vector<int64_t>* off, const float* rd, const LoopInput* in) {
  const int64_t T = (int64_t)bs.size(), B = h0.size(0), H = c0.size(1);
  const int G = coupled ? 3 : 4;
  const int64_t U = (H + UB - 1) / UB;
  auto opts = gx.options();  // fp32 (gx is empty when the loop takes the input itself)
  const Tensor h0c = h0.contiguous();
  // recurrent dropout: the GEMM reads h * mask, from two buffers; the first holds h0 * mask
  Tensor hm;
  if (rd) {
    hm = at::empty({2, B, H}, opts);
    float* hm0 = hm.data_ptr<float>();
    for (int64_t k = 0; k < B * H; ++k) hm0[k] = h0c.data_ptr<float>()[k] * rd[k];
  }
  const float* h_in0 = rd ? hm.data_ptr<float>() : h0c.data_ptr<float>();  // what the first GEMM reads
  // bf16 weights: per-step GEMMs as bf16 dot products (fp32 accumulation), h kept as a bf16 copy for them
  const bool bf16 = kHasBf16 && w_hh.scalar_type() == at::kBFloat16;
  Tensor wp, wp16, h16;
  const int64_t KP2 = 2 * ((H + 1) / 2);
  if (bf16) {
#if defined(__AVX512BF16__)
    wp16 = pack_panels_bf16(w_hh, G, H);
    h16 = at::zeros({2, B, KP2}, at::TensorOptions().dtype(at::kShort));
    uint16_t* hp16 = reinterpret_cast<uint16_t*>(h16.data_ptr());
    for (int64_t b = 0; b < B; ++b) to_bf16_n(h_in0 + b * H, hp16 + b * KP2, H);
#endif
  } else {
    wp = pack_panels(w_hh.to(at::kFloat), G, H);
  }
  // without backward (save = false) the gates and new cells of a step are scratch, overwritten each step
  const int64_t TS = save ? T : 1;
  const Tensor y = loop_output(h0c, T, h0_before_y);  // h0_before_y: see fused.h
  Tensor gates = pool_empty({TS, B, G * H}, opts), cn = pool_empty({TS, B, H}, opts);
  Tensor cs = (zc && save) ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  Tensor m = at::empty({0}, opts);
  Tensor c = c0.contiguous().clone();
  Tensor zero = at::zeros({H}, opts);
  FwdArgs a{T, B, H, G, gx.data_ptr<float>(), h0c.data_ptr<float>(), p_i ? p_i : zero.data_ptr<float>(),
            p_f ? p_f : zero.data_ptr<float>(), p_o ? p_o : zero.data_ptr<float>(), zh, zc, zero.data_ptr<float>(),
            bf16 ? nullptr : wp.data_ptr<float>(), y.data_ptr<float>(), gates.data_ptr<float>(),
            cn.data_ptr<float>(), (zc && save) ? cs.data_ptr<float>() : nullptr, c.data_ptr<float>(), &bs};
  a.bias = bias;
  a.goff = off ? off->data() : nullptr;
  if (rd) {
    a.rd = rd;
    a.hm = hm.data_ptr<float>();
  }
  Tensor wihp, xk;
  if (in) {
    const Tensor& w_ih = in->w_ih;
    const int64_t D = w_ih.size(1);
    TORCH_CHECK(in->x.scalar_type() == w_ih.scalar_type() && in->x.size(1) == D &&
                    (bf16 ? w_ih.scalar_type() == at::kBFloat16 : w_ih.scalar_type() == at::kFloat),
                "lstm_fwd_fused: the input in the loop must be fp32, or bf16 with bf16 weights; got x ",
                in->x.scalar_type(), ", W_ih ", w_ih.scalar_type(), ", W_hh ", w_hh.scalar_type());
    if (bf16) {
#if defined(__AVX512BF16__)
      // the dot products read pairs of inputs: an odd D gets a zero column
      xk = D % 2 ? at::constant_pad_nd(in->x, {0, 1}) : in->x.contiguous();
      wihp = pack_panels_bf16(w_ih, G, H);
      a.x16 = reinterpret_cast<const uint16_t*>(xk.data_ptr());
      a.w_ihp16 = reinterpret_cast<const uint16_t*>(wihp.data_ptr());
      a.D = D + D % 2;
#endif
    } else {
      xk = in->x.contiguous();
      wihp = pack_panels(w_ih, G, H);
      a.x = xk.data_ptr<float>();
      a.w_ihp = wihp.data_ptr<float>();
      a.D = D;
    }
  }
  a.gT = save ? B * G * H : 0;
  a.cT = save ? B * H : 0;
  if (bf16) {
    a.Wp16 = reinterpret_cast<const uint16_t*>(wp16.data_ptr());
    a.h16 = reinterpret_cast<uint16_t*>(h16.data_ptr());
    a.KP2 = KP2;
  }
  auto run = [&](int64_t u0, int64_t u1, Barrier2* bar) {
    if (G == 4) fwd_units<4>(a, u0, u1, bar); else fwd_units<3>(a, u0, u1, bar);
  };
  if (use_two_threads(B, G * H, H, U)) {
    Barrier2 bar;
    const int64_t split = (U + 1) / 2;
    std::function<void(int)> job = [&](int tid) { tid == 0 ? run(0, split, &bar) : run(split, U, &bar); };
    if (!Team2::run(job)) run(0, U, nullptr);
  } else {
    run(0, U, nullptr);
  }
  // final hidden state of each row: its output at its last valid step
  Tensor h = h0c.clone();
  float* hp = h.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t len = 0;
    while (len < T && bs[len] > b) ++len;
    if (len > 0) std::memcpy(hp + b * H, y.data_ptr<float>() + ((len - 1) * B + b) * H, sizeof(float) * H);
  }
  return {y, h, c, gates, cn, cs, m};
}

}  // namespace lstmkit
