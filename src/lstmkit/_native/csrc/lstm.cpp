// Fused LSTM recurrence (standard, peephole, coupled, projection; zoneout, recurrent dropout, lengths): fwd + bwd,
// and both directions of a bidirectional projection layer at once (the pair functions at the end).
//
// The input projection G_x = X W_ih^T + b (all T*B rows) and the weight gradients are large GEMMs done by the
// caller (lstmkit/_native/ops.py); this file holds only what is sequential: per step one GEMM accumulating
// h_{t-1} W_hh^T into G_t and one fused pass over the gates, and in backward the fused pass and dG_t W_hh.
// Lengths: the batch is sorted longest first, so at step t only the first batch_sizes[t] rows run; rows past
// their length are never touched and keep their final state (PackedSequence's scheme, without packing).
#include "kernels.h"
#include "fused.h"
#include "team.h"

#include <torch/library.h>

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;

// Forward. gx (T, B, G*H) holds x W_ih^T + b_ih + b_hh. Returns y (T,B,P), h_T, c_T and what backward needs:
// gates (T,B,G*H) activated, cn (T,B,H) the new cell before zoneout, cs (T,B,H) the carried cell (only with
// cell zoneout, else empty), m (T,B,H) = o*tanh(cn) (only with projection, else empty).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd_impl(
    bool save, const Tensor& gx_in, const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_hh_in,
    const c10::optional<Tensor>& w_hr_in, const c10::optional<Tensor>& w_ph_in,
    const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& rd_mask_in,
    const c10::optional<Tensor>& zo_h_in, const c10::optional<Tensor>& zo_c_in, bool coupled) {
  FlushDenormals ftz;
  TORCH_CHECK(gx_in.dim() == 3 && gx_in.scalar_type() == at::kFloat, "lstmkit: gx must be (T, B, G*H) float32");
  const Tensor gx = gx_in.contiguous();
  const int64_t T = gx.size(0), B = gx.size(1), GH = gx.size(2);
  const int64_t H = c0_in.size(1), P = h0_in.size(1);
  const int G = coupled ? 3 : 4;
  TORCH_CHECK(GH == G * H, "lstmkit: gx has ", GH, " gate columns, expected ", G * H);
  const bool proj = w_hr_in.has_value() && w_hr_in->defined() && w_hr_in->numel() > 0;
  auto opts = gx.options();
  const bool fusable = !proj;
  // bf16 W_hh is used as such by the fused path (bf16 GEMMs); everything else computes in fp32
  Tensor w_hh = (fusable && w_hh_in.scalar_type() == at::kBFloat16) ? w_hh_in.contiguous()
                                                                    : w_hh_in.to(at::kFloat).contiguous();  // (GH, P)
  Tensor w_hh_t, w_hh_tc;                   // (P, GH): view for the ATen path, row-major for the small kernel
  if (!fusable) { w_hh_t = w_hh.t(); w_hh_tc = w_hh_t.contiguous(); }
  Tensor w_hr, w_hr_t, w_hr_tc;
  if (proj) { w_hr = w_hr_in->contiguous(); w_hr_t = w_hr.t(); w_hr_tc = w_hr_t.contiguous(); }
  const LstmOptions o(H, coupled, w_ph_in, rd_mask_in, zo_h_in, zo_c_in);
  const float *p_i = o.p_i, *p_f = o.p_f, *p_o = o.p_o, *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  // without projection the fused, panel-packed loop (fused_lstm.cpp) runs
  if (!proj)
    return lstm_fwd_fused(gx, h0_in, c0_in, w_hh, p_i, p_f, p_o, zhp, zcp, rows_per_step(batch_sizes, T, B), coupled,
                          save, nullptr, false, nullptr, rdp);

  Tensor y = pool_empty({T, B, P}, opts);
  Tensor gates = gx.clone();                                   // pre-activations, overwritten by activations
  Tensor cn = pool_empty({T, B, H}, opts);
  Tensor cs = zcp ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  Tensor m = proj ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  Tensor h = h0_in.contiguous().clone(), c = c0_in.contiguous().clone();
  Tensor hm = rdp ? at::empty({B, P}, opts) : Tensor();         // h_{t-1} * recurrent-dropout mask
  Tensor hn = (proj || zhp) ? at::zeros({B, P}, opts) : Tensor();
  float *hp = h.data_ptr<float>(), *cp = c.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);

  for (int64_t t = 0; t < T; ++t) {
    const int64_t bt = bs[t];
    float* G_t = gates.data_ptr<float>() + t * B * GH;
    const float* hin = dropped_state(hp, rdp, rdp ? hm.data_ptr<float>() : nullptr, bt * P);
    gemm_acc(bt, GH, P, hin, P, w_hh_tc.data_ptr<float>(), GH, G_t, GH, w_hh_t);
    float* cn_t = cn.data_ptr<float>() + t * B * H;
    float* m_t = proj ? m.data_ptr<float>() + t * B * H : nullptr;
    float* out = (proj || zhp) ? hn.data_ptr<float>() : hp;   // where o*tanh(c) goes
    for (int64_t b = 0; b < bt; ++b) {
      float* g = G_t + b * GH;
      float* cb = cp + b * H;
      float* cnb = cn_t + b * H;
      float* ob = proj ? m_t + b * H : out + b * P;
      const float* kc = zcp ? zcp + (t * B + b) * H : zero;
      if (coupled) {
        float *af = g, *ag = g + H, *ao = g + 2 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float cprev = cb[j];
          const float f = sigmoidf(af[j] + p_f[j] * cprev);
          const float gg = tanhf_(ag[j]);
          const float cnew = f * cprev + (1.f - f) * gg;
          const float o = sigmoidf(ao[j] + p_o[j] * cnew);
          af[j] = f; ag[j] = gg; ao[j] = o;
          cnb[j] = cnew;
          ob[j] = o * tanhf_(cnew);
          cb[j] = kc[j] * cprev + (1.f - kc[j]) * cnew;
        }
      } else {
        float *ai = g, *af = g + H, *ag = g + 2 * H, *ao = g + 3 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float cprev = cb[j];
          const float i = sigmoidf(ai[j] + p_i[j] * cprev);
          const float f = sigmoidf(af[j] + p_f[j] * cprev);
          const float gg = tanhf_(ag[j]);
          const float cnew = f * cprev + i * gg;
          const float o = sigmoidf(ao[j] + p_o[j] * cnew);
          ai[j] = i; af[j] = f; ag[j] = gg; ao[j] = o;
          cnb[j] = cnew;
          ob[j] = o * tanhf_(cnew);
          cb[j] = kc[j] * cprev + (1.f - kc[j]) * cnew;
        }
      }
    }
    if (zcp) std::memcpy(cs.data_ptr<float>() + t * B * H, cp, sizeof(float) * B * H);
    if (proj) {
      float* hnp = hn.data_ptr<float>();
      std::memset(hnp, 0, sizeof(float) * bt * P);
      gemm_acc(bt, P, H, m_t, H, w_hr_tc.data_ptr<float>(), P, hnp, P, w_hr_t);
    }
    if (proj || zhp) {
      const float* hnp = hn.data_ptr<float>();
      for (int64_t b = 0; b < bt; ++b) {
        const float* kh = zhp ? zhp + (t * B + b) * P : nullptr;
        for (int64_t j = 0; j < P; ++j) {
          const int64_t k = b * P + j;
          hp[k] = kh ? kh[j] * hp[k] + (1.f - kh[j]) * hnp[k] : hnp[k];
        }
      }
    }
    float* y_t = y.data_ptr<float>() + t * B * P;
    std::memcpy(y_t, hp, sizeof(float) * bt * P);
    if (bt < B) {
      std::memset(y_t + bt * P, 0, sizeof(float) * (B - bt) * P);
      // rows past their length: gates/cn never read by backward, but keep them finite and deterministic
      std::memset(G_t + bt * GH, 0, sizeof(float) * (B - bt) * GH);
      std::memcpy(cn_t + bt * H, cp + bt * H, sizeof(float) * (B - bt) * H);
      if (zcp) {}  // cs already holds the carried cell for every row
      if (proj) std::memset(m.data_ptr<float>() + t * B * H + bt * H, 0, sizeof(float) * (B - bt) * H);
    }
  }
  return {y, h, c, gates, cn, cs, m};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd(
    const Tensor& gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const c10::optional<Tensor>& w_hr,
    const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& rd_mask,
    const c10::optional<Tensor>& zo_h, const c10::optional<Tensor>& zo_c, bool coupled) {
  return lstm_fwd_impl(true, gx, h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled);
}

// Inference: as lstm_fwd, but what only backward reads (gates, cells per step) is not kept.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd_infer(
    const Tensor& gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const c10::optional<Tensor>& w_hr,
    const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& rd_mask,
    const c10::optional<Tensor>& zo_h, const c10::optional<Tensor>& zo_c, bool coupled) {
  return lstm_fwd_impl(false, gx, h0, c0, w_hh, w_hr, w_ph, batch_sizes, rd_mask, zo_h, zo_c, coupled);
}

// Backward. Returns dG (T,B,G*H) = dLoss/d(pre-activations) (also dLoss/dgx), dh0, dc0 and dhn (T,B,P), the
// gradient of each step's projected output (only with projection, else empty) for dW_hr.
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_bwd(
    const Tensor& dy_in, const Tensor& dhT, const Tensor& dcT, const Tensor& gates, const Tensor& cn,
    const Tensor& cs, const Tensor& c0, const Tensor& w_hh_in, const c10::optional<Tensor>& w_hr_in,
    const c10::optional<Tensor>& w_ph_in, const c10::optional<Tensor>& batch_sizes,
    const c10::optional<Tensor>& rd_mask_in, const c10::optional<Tensor>& zo_h_in,
    const c10::optional<Tensor>& zo_c_in, bool coupled) {
  FlushDenormals ftz;
  const Tensor dy = dy_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2);
  const int64_t H = cn.size(2), P = dy.size(2);
  const bool proj = w_hr_in.has_value() && w_hr_in->defined() && w_hr_in->numel() > 0;
  auto opts = gates.options();
  const bool fusable = !proj;
  Tensor w_hh = (fusable && w_hh_in.scalar_type() == at::kBFloat16) ? w_hh_in.contiguous()
                                                                    : w_hh_in.to(at::kFloat).contiguous();  // (GH, P)
  Tensor w_hr = proj ? w_hr_in->contiguous() : Tensor();  // (P, H)
  const LstmOptions o(H, coupled, w_ph_in, rd_mask_in, zo_h_in, zo_c_in);
  const float *p_i = o.p_i, *p_f = o.p_f, *p_o = o.p_o, *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  const Tensor c0c = c0.contiguous();
  const float* csp = zcp ? cs.data_ptr<float>() : cn.data_ptr<float>();  // carried cells, per step
  if (!proj) {  // the op's fourth output is d(h before projection): empty here (not the kernel's bf16 dG)
    auto r = lstm_bwd_fused(dy, dhT, dcT, gates, cn, csp, c0c, w_hh, p_i, p_f, p_o, zhp, zcp,
                            rows_per_step(batch_sizes, T, B), coupled, nullptr, nullptr, nullptr, rdp);
    return {std::get<0>(r), std::get<1>(r), std::get<2>(r), at::empty({0}, opts)};
  }

  Tensor dG = pool_empty({T, B, GH}, opts);
  Tensor dh = dhT.contiguous().clone(), dc = dcT.contiguous().clone();
  Tensor dhn_all = proj ? at::zeros({T, B, P}, opts) : at::empty({0}, opts);
  Tensor dm = at::empty({B, H}, opts);
  Tensor dhn = at::empty({B, P}, opts);
  Tensor dhrec = at::empty({B, P}, opts);
  float *dhp = dh.data_ptr<float>(), *dcp = dc.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);

  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t bt = bs[t];
    const float* G_t = gates.data_ptr<float>() + t * B * GH;
    float* dG_t = dG.data_ptr<float>() + t * B * GH;
    const float* cn_t = cn.data_ptr<float>() + t * B * H;
    const float* cprev_t = t > 0 ? csp + (t - 1) * B * H : c0c.data_ptr<float>();
    const float* dy_t = dy.data_ptr<float>() + t * B * P;
    float* dhnp = dhn.data_ptr<float>();
    // gradient reaching this step's output h_t, split by zoneout into new-output and carried parts
    for (int64_t b = 0; b < bt; ++b) {
      const float* kh = zhp ? zhp + (t * B + b) * P : nullptr;
      for (int64_t j = 0; j < P; ++j) {
        const int64_t k = b * P + j;
        const float d = dy_t[k] + dhp[k];
        dhnp[k] = kh ? (1.f - kh[j]) * d : d;
        dhp[k] = kh ? kh[j] * d : 0.f;
      }
    }
    const float* dmp = dhnp;  // dLoss/d(o*tanh(c)) : equals dhn without projection
    if (proj) {
      std::memcpy(dhn_all.data_ptr<float>() + t * B * P, dhnp, sizeof(float) * bt * P);
      float* d = dm.data_ptr<float>();
      std::memset(d, 0, sizeof(float) * bt * H);
      gemm_acc(bt, H, P, dhnp, P, w_hr.data_ptr<float>(), H, d, H, w_hr);
      dmp = d;
    }
    for (int64_t b = 0; b < bt; ++b) {
      const float* g = G_t + b * GH;
      float* dg = dG_t + b * GH;
      const float* cnb = cn_t + b * H;
      const float* cpb = cprev_t + b * H;
      const float* dmb = dmp + b * (proj ? H : P);
      float* dcb = dcp + b * H;
      const float* kc = zcp ? zcp + (t * B + b) * H : zero;
      if (coupled) {
        const float *f_ = g, *g_ = g + H, *o_ = g + 2 * H;
        float *daf = dg, *dag = dg + H, *dao = dg + 2 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float f = f_[j], gg = g_[j], o = o_[j], cnew = cnb[j], cprev = cpb[j];
          const float tc = tanhf_(cnew);
          const float ao = dmb[j] * tc * o * (1.f - o);
          const float dcarry = dcb[j];
          const float dcn = dmb[j] * o * (1.f - tc * tc) + ao * p_o[j] + (1.f - kc[j]) * dcarry;
          const float af = dcn * (cprev - gg) * f * (1.f - f);
          const float ag = dcn * (1.f - f) * (1.f - gg * gg);
          daf[j] = af; dag[j] = ag; dao[j] = ao;
          dcb[j] = kc[j] * dcarry + dcn * f + af * p_f[j];
        }
      } else {
        const float *i_ = g, *f_ = g + H, *g_ = g + 2 * H, *o_ = g + 3 * H;
        float *dai = dg, *daf = dg + H, *dag = dg + 2 * H, *dao = dg + 3 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float i = i_[j], f = f_[j], gg = g_[j], o = o_[j], cnew = cnb[j], cprev = cpb[j];
          const float tc = tanhf_(cnew);
          const float ao = dmb[j] * tc * o * (1.f - o);
          const float dcarry = dcb[j];
          const float dcn = dmb[j] * o * (1.f - tc * tc) + ao * p_o[j] + (1.f - kc[j]) * dcarry;
          const float ai = dcn * gg * i * (1.f - i);
          const float af = dcn * cprev * f * (1.f - f);
          const float ag = dcn * i * (1.f - gg * gg);
          dai[j] = ai; daf[j] = af; dag[j] = ag; dao[j] = ao;
          dcb[j] = kc[j] * dcarry + dcn * f + ai * p_i[j] + af * p_f[j];
        }
      }
    }
    if (bt < B) std::memset(dG_t + bt * GH, 0, sizeof(float) * (B - bt) * GH);
    // dh_{t-1} += (dG_t W_hh) * mask
    float* rec = dhrec.data_ptr<float>();
    std::memset(rec, 0, sizeof(float) * bt * P);
    gemm_acc(bt, P, GH, dG_t, GH, w_hh.data_ptr<float>(), P, rec, P, w_hh);
    for (int64_t k = 0; k < bt * P; ++k) dhp[k] += rdp ? rec[k] * rdp[k] : rec[k];
  }
  return {dG, dh, dc, dhn_all};
}

}  // namespace lstmkit

namespace lstmkit {

using OT = c10::optional<Tensor>;

// Both directions of a bidirectional projection LSTM layer at once, one per core (the Function path's pair,
// ops.py's run_bidirectional): lstm_fwd (save) or lstm_fwd_infer on each direction's G_x, no masks. Returns the
// forward direction's seven outputs, then the reverse direction's.
std::vector<Tensor> lstm_fwd_pair(const Tensor& gx_f, const Tensor& h0_f, const Tensor& c0_f, const Tensor& w_hh_f,
                                  const OT& w_hr_f, const OT& w_ph_f, const Tensor& gx_r, const Tensor& h0_r,
                                  const Tensor& c0_r, const Tensor& w_hh_r, const OT& w_hr_r, const OT& w_ph_r,
                                  const OT& batch_sizes, bool coupled, bool save) {
  std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> out[2];
  run_both([&](int d) {
    out[d] = d == 0 ? lstm_fwd_impl(save, gx_f, h0_f, c0_f, w_hh_f, w_hr_f, w_ph_f, batch_sizes, c10::nullopt,
                                    c10::nullopt, c10::nullopt, coupled)
                    : lstm_fwd_impl(save, gx_r, h0_r, c0_r, w_hh_r, w_hr_r, w_ph_r, batch_sizes, c10::nullopt,
                                    c10::nullopt, c10::nullopt, coupled);
  });
  std::vector<Tensor> all;
  for (const auto& o : out)
    for (const Tensor& t : {std::get<0>(o), std::get<1>(o), std::get<2>(o), std::get<3>(o), std::get<4>(o),
                            std::get<5>(o), std::get<6>(o)})
      all.push_back(t);
  return all;
}

// The backward of lstm_fwd_pair: lstm_bwd on each direction at once. Returns dG, dh0, dc0, dhn of the forward
// direction, then of the reverse one.
std::vector<Tensor> lstm_bwd_pair(const Tensor& dy_f, const Tensor& dhT_f, const Tensor& dcT_f, const Tensor& gates_f,
                                  const Tensor& cn_f, const Tensor& cs_f, const Tensor& c0_f, const Tensor& w_hh_f,
                                  const OT& w_hr_f, const OT& w_ph_f, const Tensor& dy_r, const Tensor& dhT_r,
                                  const Tensor& dcT_r, const Tensor& gates_r, const Tensor& cn_r, const Tensor& cs_r,
                                  const Tensor& c0_r, const Tensor& w_hh_r, const OT& w_hr_r, const OT& w_ph_r,
                                  const OT& batch_sizes, bool coupled) {
  std::tuple<Tensor, Tensor, Tensor, Tensor> out[2];
  run_both([&](int d) {
    out[d] = d == 0 ? lstm_bwd(dy_f, dhT_f, dcT_f, gates_f, cn_f, cs_f, c0_f, w_hh_f, w_hr_f, w_ph_f, batch_sizes,
                               c10::nullopt, c10::nullopt, c10::nullopt, coupled)
                    : lstm_bwd(dy_r, dhT_r, dcT_r, gates_r, cn_r, cs_r, c0_r, w_hh_r, w_hr_r, w_ph_r, batch_sizes,
                               c10::nullopt, c10::nullopt, c10::nullopt, coupled);
  });
  return {std::get<0>(out[0]), std::get<1>(out[0]), std::get<2>(out[0]), std::get<3>(out[0]),
          std::get<0>(out[1]), std::get<1>(out[1]), std::get<2>(out[1]), std::get<3>(out[1])};
}

}  // namespace lstmkit
