// Fused LSTM time loop, backward (the twin of fused_lstm.cpp). Each thread runs the gate pass for its units,
// then (after the barrier) dh_{t-1} = dG_t W_hh for its units: one barrier per step, as in the forward.
#include "fused.h"
#include "kernels.h"
#include "team.h"
#include "bf16.h"

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;

struct BwdArgs {
  int64_t T, B, H, G;
  const float *dy, *gates, *cn, *csp, *c0, *p_i, *p_f, *p_o, *zh, *zc, *zero, *w_hh;  // w_hh: pack_cols16
  float *dG, *dh, *dc, *rec;
  const std::vector<int64_t>* bs;
  float* db = nullptr;  // (G*H) bias gradient, summed over steps and rows in the gate pass (zero on entry)
  float* dph = nullptr;  // peephole gradient (3H: p_i, p_f, p_o; coupled 2H), summed likewise (bwd_units<G, true>)
  const int64_t* goff = nullptr;  // dG holds active rows only: step t starts at row goff[t] (null: t * B)
  const float* rd = nullptr;      // recurrent-dropout mask (B, H): h_{t-1} entered the GEMM masked
  const uint16_t* Wb16 = nullptr;  // bf16 path: W_hh packed by pack_cols_bf16, and dG as bf16 (rows like dG's,
  uint16_t* dG16 = nullptr;         // row stride GHp): the per-step GEMM's input, and the caller's weight GEMMs'
  int64_t GHp = 0;
};

// PH: also sum the peephole gradient (i and f see c_{t-1}, o sees c_t) in the same pass
template <int G, bool PH>
static void bwd_units(const BwdArgs& a, int64_t j0, int64_t j1, Barrier2* bar) {
  FlushDenormals ftz;
  const int64_t T = a.T, B = a.B, H = a.H, GH = G * H;
  float *db = a.db, *dph = a.dph;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t bt = (*a.bs)[t];
    const float* cprev_t = t > 0 ? a.csp + (t - 1) * B * H : a.c0;
    float* dG_t = a.dG + (a.goff ? a.goff[t] : t * B) * GH;  // (bt, G*H): this step's gate gradients
    for (int64_t b = 0; b < bt; ++b) {
      const float* g = a.gates + (t * B + b) * GH;
      float* dg = dG_t + b * GH;
      const float* cnb = a.cn + (t * B + b) * H;
      const float* cpb = cprev_t + b * H;
      const float* dyb = a.dy + (t * B + b) * H;
      float* dhb = a.dh + b * H;
      float* dcb = a.dc + b * H;
      const float* kh = a.zh ? a.zh + (t * B + b) * H : a.zero;
      const float* kc = a.zc ? a.zc + (t * B + b) * H : a.zero;
      const float *pi = a.p_i, *pf = a.p_f, *po = a.p_o;
      if (G == 4) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const float d = dyb[j] + dhb[j];
          const float dm = (1.f - kh[j]) * d;
          const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], cnew = cnb[j], cprev = cpb[j];
          const float tc = tanhf_(cnew);
          const float ao = dm * tc * o * (1.f - o);
          const float dcarry = dcb[j];
          const float dcn = dm * o * (1.f - tc * tc) + ao * po[j] + (1.f - kc[j]) * dcarry;
          const float ai = dcn * gg * i * (1.f - i);
          const float af = dcn * cprev * f * (1.f - f);
          const float ag = dcn * i * (1.f - gg * gg);
          dg[j] = ai; dg[H + j] = af; dg[2 * H + j] = ag; dg[3 * H + j] = ao;
          db[j] += ai; db[H + j] += af; db[2 * H + j] += ag; db[3 * H + j] += ao;
          if (PH) { dph[j] += ai * cprev; dph[H + j] += af * cprev; dph[2 * H + j] += ao * cnew; }
          dcb[j] = kc[j] * dcarry + dcn * f + ai * pi[j] + af * pf[j];
          dhb[j] = kh[j] * d;
        }
      } else {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const float d = dyb[j] + dhb[j];
          const float dm = (1.f - kh[j]) * d;
          const float f = g[j], gg = g[H + j], o = g[2 * H + j], cnew = cnb[j], cprev = cpb[j];
          const float tc = tanhf_(cnew);
          const float ao = dm * tc * o * (1.f - o);
          const float dcarry = dcb[j];
          const float dcn = dm * o * (1.f - tc * tc) + ao * po[j] + (1.f - kc[j]) * dcarry;
          const float af = dcn * (cprev - gg) * f * (1.f - f);
          const float ag = dcn * (1.f - f) * (1.f - gg * gg);
          dg[j] = af; dg[H + j] = ag; dg[2 * H + j] = ao;
          db[j] += af; db[H + j] += ag; db[2 * H + j] += ao;
          if (PH) { dph[j] += af * cprev; dph[H + j] += ao * cnew; }
          dcb[j] = kc[j] * dcarry + dcn * f + af * pf[j];
          dhb[j] = kh[j] * d;
        }
      }
    }
    uint16_t* dG16 = a.dG16 ? a.dG16 + (a.goff ? a.goff[t] : t * B) * a.GHp : nullptr;
    if (!a.goff)  // padded layout: finished rows get zero gradients
      for (int64_t b = bt; b < B; ++b)
        for (int q = 0; q < G; ++q) {
          std::memset(dG_t + b * GH + q * H + j0, 0, sizeof(float) * (j1 - j0));
          if (dG16) std::memset(dG16 + b * a.GHp + q * H + j0, 0, sizeof(uint16_t) * (j1 - j0));
        }
    if (dG16)
      for (int64_t b = 0; b < bt; ++b)
        for (int q = 0; q < G; ++q) to_bf16_n(dG_t + b * GH + q * H + j0, dG16 + b * a.GHp + q * H + j0, j1 - j0);
    if (bar) bar->wait();  // dG_t complete (all units) before dG_t W_hh
    // dh_{t-1}[:, j0:j1] += dG_t W_hh[:, j0:j1]
    float* rec = a.rec;  // written whole by either GEMM (accumulate = false)
#if defined(__AVX512BF16__)
    if (dG16)
      gemm_cols_bf16(bt, a.GHp / 2, dG16, a.GHp, a.Wb16, rec, H, j0, j1, /*accumulate=*/false);
    else
#endif
    gemm_packed_cols(bt, GH, dG_t, GH, a.w_hh, rec, H, j0, j1, /*accumulate=*/false);
    if (a.rd) {
      for (int64_t b = 0; b < bt; ++b)
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) a.dh[b * H + j] += rec[b * H + j] * a.rd[b * H + j];
    } else {
      for (int64_t b = 0; b < bt; ++b)
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) a.dh[b * H + j] += rec[b * H + j];
    }
  }
}

// Backward of the fused path; same contract as lstm_bwd (lstm.cpp) without projection.
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_bwd_fused(
    const Tensor& dy, const Tensor& dhT, const Tensor& dcT, const Tensor& gates, const Tensor& cn, const float* csp,
    const Tensor& c0, const Tensor& w_hh, const float* p_i, const float* p_f, const float* p_o, const float* zh,
    const float* zc, const std::vector<int64_t>& bs, bool coupled, float* db, float* dph,
    const std::vector<int64_t>* off, const float* rd) {
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2);
  const int G = coupled ? 3 : 4;
  const int64_t U = (H + UB - 1) / UB;
  auto opts = gates.options();
  Tensor dG = off ? pool_empty({off->back(), GH}, opts) : pool_empty({T, B, GH}, opts);
  // dh_T, dc_T undefined: zeros (the layer node's outputs h_T, c_T got no gradient)
  auto carried = [&](const Tensor& g) {
    return g.defined() ? g.to(at::kFloat).contiguous().clone() : at::zeros({B, H}, opts);
  };
  Tensor dh = carried(dhT), dc = carried(dcT), rec = at::empty({B, H}, opts);
  Tensor zero = at::zeros({H}, opts);
  const Tensor c0c = c0.contiguous();
  const bool bf16 = kHasBf16 && w_hh.scalar_type() == at::kBFloat16;
  const Tensor w = bf16 ? w_hh : pack_cols16(w_hh);  // fp32: W_hh (GH x H) as 16-column panels
  const int64_t GHp = 2 * ((GH + 1) / 2);
  Tensor wb16, dG16;
#if defined(__AVX512BF16__)
  if (bf16) {
    wb16 = pack_cols_bf16(w_hh);  // (GH, H) as K x N
    dG16 = pool_empty({dG.numel() / GH, GHp}, opts.dtype(at::kBFloat16));  // every step's dG_t, as bf16
    if (GHp != GH) dG16.narrow(1, GH, 1).zero_();  // the pad column pairs with W's zero row: keep it finite
  }
#endif
  BwdArgs a{T, B, H, G, dy.data_ptr<float>(), gates.data_ptr<float>(), cn.data_ptr<float>(), csp,
            c0c.data_ptr<float>(), p_i ? p_i : zero.data_ptr<float>(), p_f ? p_f : zero.data_ptr<float>(),
            p_o ? p_o : zero.data_ptr<float>(), zh, zc, zero.data_ptr<float>(),
            bf16 ? nullptr : w.data_ptr<float>(), dG.data_ptr<float>(), dh.data_ptr<float>(), dc.data_ptr<float>(),
            rec.data_ptr<float>(), &bs};
  Tensor db_scratch;
  if (!db) {
    db_scratch = at::empty({GH}, opts);
    db = db_scratch.data_ptr<float>();
  }
  std::memset(db, 0, sizeof(float) * GH);
  a.db = db;
  if (dph) std::memset(dph, 0, sizeof(float) * (G - 1) * H);
  a.dph = dph;
  a.goff = off ? off->data() : nullptr;
  a.rd = rd;
  if (bf16) {
    a.Wb16 = reinterpret_cast<const uint16_t*>(wb16.data_ptr());
    a.dG16 = reinterpret_cast<uint16_t*>(dG16.data_ptr());  // bf16 bits
    a.GHp = GHp;
  }
  auto run = [&](int64_t j0, int64_t j1, Barrier2* bar) {
    if (G == 4) {
      if (dph) bwd_units<4, true>(a, j0, j1, bar); else bwd_units<4, false>(a, j0, j1, bar);
    } else {
      if (dph) bwd_units<3, true>(a, j0, j1, bar); else bwd_units<3, false>(a, j0, j1, bar);
    }
  };
  if (use_two_threads(B, GH, H, U)) {
    Barrier2 bar;
    const int64_t split = std::min(H, ((U + 1) / 2) * UB);
    std::function<void(int)> job = [&](int tid) { tid == 0 ? run(0, split, &bar) : run(split, H, &bar); };
    if (!Team2::run(job)) run(0, H, nullptr);
  } else {
    run(0, H, nullptr);
  }
  return {dG, dh, dc, dG16.defined() ? dG16.narrow(1, 0, GH) : at::empty({0}, opts)};
}

}  // namespace lstmkit
