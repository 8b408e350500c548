// Fused GRU and Elman RNN (tanh/relu) recurrences with recurrent dropout, zoneout and lengths: fwd + bwd.
// Same scheme as lstm.cpp: the caller does the input projection and the weight-gradient GEMMs.
#include "kernels.h"
#include "team.h"

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;

static Tensor opt_contig(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined() && t->numel() > 0) ? t->contiguous() : Tensor();
}

// The GRU gate pass for n <= 16 units j of one row: xg/hg point at unit j of the r block (z and n follow at
// strides H); writes r, z, n into g, h W_hn + b_hn into ghn and the new (zoned-out) h over hb.
static inline void gru_gates16(const float* xg, const float* hg, int64_t H, float* hb, const float* kh, float* g,
                               float* ghn, int64_t n) {
#if defined(__AVX512F__)
  const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
  auto ld = [m](const float* p) { return _mm512_maskz_loadu_ps(m, p); };
  const __m512 hgn = ld(hg + 2 * H);
  const __m512 r = sigmoid512(_mm512_add_ps(ld(xg), ld(hg)));
  const __m512 z = sigmoid512(_mm512_add_ps(ld(xg + H), ld(hg + H)));
  const __m512 nn = tanh512(_mm512_fmadd_ps(r, hgn, ld(xg + 2 * H)));
  const __m512 hprev = ld(hb);
  const __m512 hn = _mm512_fmadd_ps(z, _mm512_sub_ps(hprev, nn), nn);  // (1 - z) n + z h
  _mm512_mask_storeu_ps(g, m, r);
  _mm512_mask_storeu_ps(g + H, m, z);
  _mm512_mask_storeu_ps(g + 2 * H, m, nn);
  _mm512_mask_storeu_ps(ghn, m, hgn);
  _mm512_mask_storeu_ps(hb, m, _mm512_fmadd_ps(ld(kh), _mm512_sub_ps(hprev, hn), hn));
#else
  for (int64_t j = 0; j < n; ++j) {
    const float r = sigmoidf(xg[j] + hg[j]);
    const float z = sigmoidf(xg[H + j] + hg[H + j]);
    const float nn = tanhf_(xg[2 * H + j] + r * hg[2 * H + j]);
    const float hprev = hb[j];
    const float hn = (1.f - z) * nn + z * hprev;
    g[j] = r; g[H + j] = z; g[2 * H + j] = nn;
    ghn[j] = hg[2 * H + j];
    hb[j] = kh[j] * hprev + (1.f - kh[j]) * hn;
  }
#endif
}

// GRU forward. gx (T,B,3H) = x W_ih^T + b_ih. Returns y, h_T, gates (T,B,3H) = (r, z, n) activated and
// ghn (T,B,H) = h_{t-1} W_hn^T + b_hn (what r multiplies), both for backward.
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_fwd(
    const Tensor& gx_in, const Tensor& h0, const Tensor& w_hh_in, const c10::optional<Tensor>& b_hh_in,
    const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& rd_mask_in,
    const c10::optional<Tensor>& zo_h_in) {
  FlushDenormals ftz;
  const Tensor gx = gx_in.contiguous();
  const int64_t T = gx.size(0), B = gx.size(1), H3 = gx.size(2), H = H3 / 3;
  auto opts = gx.options();
  const Tensor w_pk = pack_cols16(w_hh_in.t());  // W_hh^T (H, 3H) as contiguous 16-column panels
  Tensor b_hh = opt_contig(b_hh_in), rd = opt_contig(rd_mask_in), zoh = opt_contig(zo_h_in);
  const float* bh = b_hh.defined() ? b_hh.data_ptr<float>() : nullptr;
  const float* rdp = rd.defined() ? rd.data_ptr<float>() : nullptr;
  const float* zhp = zoh.defined() ? zoh.data_ptr<float>() : nullptr;
  Tensor y = pool_empty({T, B, H}, opts), gates = pool_empty({T, B, H3}, opts), ghn = pool_empty({T, B, H}, opts);
  Tensor zero_buf = at::zeros({H3}, opts);  // "no zoneout" and "no b_hh" read zeros: the gate loop is branch-free
  const float* zero = zero_buf.data_ptr<float>();
  if (!bh) bh = zero;
  Tensor h = h0.contiguous().clone(), gh = at::empty({B, H3}, opts), hm = rdp ? at::empty({B, H}, opts) : Tensor();
  float* hp = h.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  // rows [b0, b1) through the whole time loop: rows are independent, so two threads split the batch
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;  // active rows [b0, be)
      float* ghp = gh.data_ptr<float>();
      for (int64_t b = b0; b < be; ++b) std::memcpy(ghp + b * H3, bh, sizeof(float) * H3);
      const float* hin = dropped_state(hp + b0 * H, rdp ? rdp + b0 * H : nullptr,
                                       rdp ? hm.data_ptr<float>() + b0 * H : nullptr, nb * H);
      gemm_packed_cols(nb, H, hin, H, w_pk.data_ptr<float>(), ghp + b0 * H3, H3, 0, H3);  // (nb, 3H)
      const float* gx_t = gx.data_ptr<float>() + t * B * H3;
      float* G_t = gates.data_ptr<float>() + t * B * H3;
      float* ghn_t = ghn.data_ptr<float>() + t * B * H;
      float* y_t = y.data_ptr<float>() + t * B * H;
      for (int64_t b = b0; b < be; ++b) {
        const float* xg = gx_t + b * H3;
        const float* hg = ghp + b * H3;
        float* g = G_t + b * H3;
        float* hb = hp + b * H;
        const float* kh = zhp ? zhp + (t * B + b) * H : zero;
        for (int64_t j = 0; j < H; j += 16) {
          const int64_t n16 = std::min<int64_t>(16, H - j);
          gru_gates16(xg + j, hg + j, H, hb + j, kh + j, g + j, ghn_t + b * H + j, n16);
        }
      }
      std::memcpy(y_t + b0 * H, hp + b0 * H, sizeof(float) * nb * H);
      if (be < b1) {
        std::memset(y_t + be * H, 0, sizeof(float) * (b1 - be) * H);
        std::memset(G_t + be * H3, 0, sizeof(float) * (b1 - be) * H3);
        std::memset(ghn_t + be * H, 0, sizeof(float) * (b1 - be) * H);
      }
    }
  };
  split_rows(bs, B, H3 * H, body);
  return {y, h, gates, ghn};
}

// GRU backward: dGx (T,B,3H) = dLoss/dgx, dGh (T,B,3H) = dLoss/d(h W_hh^T + b_hh), dh0.
std::tuple<Tensor, Tensor, Tensor> gru_bwd(
    const Tensor& dy_in, const Tensor& dhT, const Tensor& gates, const Tensor& ghn, const Tensor& h0,
    const Tensor& y, const Tensor& w_hh_in, const c10::optional<Tensor>& batch_sizes,
    const c10::optional<Tensor>& rd_mask_in, const c10::optional<Tensor>& zo_h_in) {
  FlushDenormals ftz;
  const Tensor dy = dy_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), H3 = gates.size(2), H = H3 / 3;
  auto opts = gates.options();
  const Tensor w_pk = pack_cols16(w_hh_in);  // W_hh (3H, H) as K x N panels for dh = dGh W_hh
  Tensor rd = opt_contig(rd_mask_in), zoh = opt_contig(zo_h_in);
  const float* rdp = rd.defined() ? rd.data_ptr<float>() : nullptr;
  const float* zhp = zoh.defined() ? zoh.data_ptr<float>() : nullptr;
  Tensor dGx = pool_empty({T, B, H3}, opts), dGh = pool_empty({T, B, H3}, opts);
  Tensor zero_buf = at::zeros({H}, opts);
  const float* zero = zero_buf.data_ptr<float>();
  Tensor dh = dhT.contiguous().clone(), rec = at::empty({B, H}, opts);
  const Tensor h0c = h0.contiguous(), yc = y.contiguous();
  float* dhp = dh.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;
      const float* G_t = gates.data_ptr<float>() + t * B * H3;
      const float* ghn_t = ghn.data_ptr<float>() + t * B * H;
      const float* hprev_t = t > 0 ? yc.data_ptr<float>() + (t - 1) * B * H : h0c.data_ptr<float>();
      const float* dy_t = dy.data_ptr<float>() + t * B * H;
      float* dx_t = dGx.data_ptr<float>() + t * B * H3;
      float* dh_t = dGh.data_ptr<float>() + t * B * H3;
      for (int64_t b = b0; b < be; ++b) {
        const float* g = G_t + b * H3;
        const float* kh = zhp ? zhp + (t * B + b) * H : zero;
        float* dxb = dx_t + b * H3;
        float* dhb = dh_t + b * H3;
        float* dcarry = dhp + b * H;
        const float* hpb = hprev_t + b * H;
        const float* dyb = dy_t + b * H;
        const float* gnb = ghn_t + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float r = g[j], z = g[H + j], n = g[2 * H + j];
          const float d = dyb[j] + dcarry[j];
          const float dhn = (1.f - kh[j]) * d;
          const float an = dhn * (1.f - z) * (1.f - n * n);
          const float az = dhn * (hpb[j] - n) * z * (1.f - z);
          const float ar = an * gnb[j] * r * (1.f - r);
          dxb[j] = ar; dxb[H + j] = az; dxb[2 * H + j] = an;
          dhb[j] = ar; dhb[H + j] = az; dhb[2 * H + j] = an * r;
          dcarry[j] = kh[j] * d + dhn * z;
        }
      }
      if (be < b1) {
        std::memset(dx_t + be * H3, 0, sizeof(float) * (b1 - be) * H3);
        std::memset(dh_t + be * H3, 0, sizeof(float) * (b1 - be) * H3);
      }
      float* rp = rec.data_ptr<float>() + b0 * H;
      std::memset(rp, 0, sizeof(float) * nb * H);
      gemm_packed_cols(nb, H3, dh_t + b0 * H3, H3, w_pk.data_ptr<float>(), rp, H, 0, H);
      for (int64_t k = 0; k < nb * H; ++k) dhp[b0 * H + k] += rdp ? rp[k] * rdp[b0 * H + k] : rp[k];
    }
  };
  split_rows(bs, B, H3 * H, body);
  return {dGx, dGh, dh};
}

// Elman RNN forward. gx (T,B,H) = x W_ih^T + b_ih + b_hh. Returns y, h_T and hn (T,B,H), the activation
// output before zoneout (only with zoneout, else empty: then it equals y).
std::tuple<Tensor, Tensor, Tensor> rnn_fwd(
    const Tensor& gx_in, const Tensor& h0, const Tensor& w_hh_in, const c10::optional<Tensor>& batch_sizes,
    const c10::optional<Tensor>& rd_mask_in, const c10::optional<Tensor>& zo_h_in, bool relu) {
  FlushDenormals ftz;
  const Tensor gx = gx_in.contiguous();
  const int64_t T = gx.size(0), B = gx.size(1), H = gx.size(2);
  auto opts = gx.options();
  Tensor w_hh = w_hh_in.contiguous(), w_hh_t = w_hh.t(), w_hh_tc = w_hh_t.contiguous();
  Tensor rd = opt_contig(rd_mask_in), zoh = opt_contig(zo_h_in);
  const float* rdp = rd.defined() ? rd.data_ptr<float>() : nullptr;
  const float* zhp = zoh.defined() ? zoh.data_ptr<float>() : nullptr;
  Tensor y = pool_empty({T, B, H}, opts), act = gx.clone();
  Tensor hn_all = zhp ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  Tensor zero_buf = at::zeros({H}, opts), scratch = at::empty({H}, opts);
  const float* zero = zero_buf.data_ptr<float>();
  Tensor h = h0.contiguous().clone(), hm = rdp ? at::empty({B, H}, opts) : Tensor();
  float* hp = h.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t bt = bs[t];
    float* a = act.data_ptr<float>() + t * B * H;
    const float* hin = dropped_state(hp, rdp, rdp ? hm.data_ptr<float>() : nullptr, bt * H);
    gemm_acc(bt, H, H, hin, H, w_hh_tc.data_ptr<float>(), H, a, H, w_hh_t);
    for (int64_t b = 0; b < bt; ++b) {
      const float* kh = zhp ? zhp + (t * B + b) * H : zero;
      float* hb = hp + b * H;
      float* ab = a + b * H;
      float* hnb = zhp ? hn_all.data_ptr<float>() + (t * B + b) * H : scratch.data_ptr<float>();
      if (relu) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float v = ab[j] > 0.f ? ab[j] : 0.f;
          hnb[j] = v;
          hb[j] = kh[j] * hb[j] + (1.f - kh[j]) * v;
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float v = tanhf_(ab[j]);
          hnb[j] = v;
          hb[j] = kh[j] * hb[j] + (1.f - kh[j]) * v;
        }
      }
    }
    float* y_t = y.data_ptr<float>() + t * B * H;
    std::memcpy(y_t, hp, sizeof(float) * bt * H);
    if (bt < B) {
      std::memset(y_t + bt * H, 0, sizeof(float) * (B - bt) * H);
      if (zhp) std::memset(hn_all.data_ptr<float>() + (t * B + bt) * H, 0, sizeof(float) * (B - bt) * H);
    }
  }
  return {y, h, hn_all};
}

// Elman RNN backward: dA (T,B,H) = dLoss/d(pre-activation) (= dLoss/dgx), dh0. ``hn`` is the activation output
// (y, or the pre-zoneout output when zoneout is used).
std::tuple<Tensor, Tensor> rnn_bwd(
    const Tensor& dy_in, const Tensor& dhT, const Tensor& hn, const Tensor& w_hh_in,
    const c10::optional<Tensor>& batch_sizes, const c10::optional<Tensor>& rd_mask_in,
    const c10::optional<Tensor>& zo_h_in, bool relu) {
  FlushDenormals ftz;
  const Tensor dy = dy_in.contiguous(), hnc = hn.contiguous();
  const int64_t T = hnc.size(0), B = hnc.size(1), H = hnc.size(2);
  auto opts = hnc.options();
  Tensor w_hh = w_hh_in.contiguous(), rd = opt_contig(rd_mask_in), zoh = opt_contig(zo_h_in);
  const float* rdp = rd.defined() ? rd.data_ptr<float>() : nullptr;
  const float* zhp = zoh.defined() ? zoh.data_ptr<float>() : nullptr;
  Tensor dA = pool_empty({T, B, H}, opts), dh = dhT.contiguous().clone(), rec = at::empty({B, H}, opts);
  Tensor zero_buf = at::zeros({H}, opts);
  const float* zero = zero_buf.data_ptr<float>();
  float* dhp = dh.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t bt = bs[t];
    const float* v_t = hnc.data_ptr<float>() + t * B * H;
    const float* dy_t = dy.data_ptr<float>() + t * B * H;
    float* da = dA.data_ptr<float>() + t * B * H;
    for (int64_t b = 0; b < bt; ++b) {
      const float* kh = zhp ? zhp + (t * B + b) * H : zero;
      const float* vb = v_t + b * H;
      const float* dyb = dy_t + b * H;
      float* dab = da + b * H;
      float* dhb = dhp + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float d = dyb[j] + dhb[j];
        const float dv = (1.f - kh[j]) * d;
        const float v = vb[j];
        dab[j] = relu ? (v > 0.f ? dv : 0.f) : dv * (1.f - v * v);
        dhb[j] = kh[j] * d;
      }
    }
    if (bt < B) std::memset(da + bt * H, 0, sizeof(float) * (B - bt) * H);
    float* rp = rec.data_ptr<float>();
    std::memset(rp, 0, sizeof(float) * bt * H);
    gemm_acc(bt, H, H, da, H, w_hh.data_ptr<float>(), H, rp, H, w_hh);
    for (int64_t k = 0; k < bt * H; ++k) dhp[k] += rdp ? rp[k] * rdp[k] : rp[k];
  }
  return {dA, dh};
}

}  // namespace lstmkit
