// Layer-normalised LSTM recurrence (Ba et al. 2016), with peephole, coupled, zoneout, recurrent dropout, lengths.
//
// The caller passes gx = LN_ih(x W_ih^T) + b_ih + b_hh (normalised over all rows at once, before the loop).
// Per step: gh = (h_{t-1} * mask) W_hh^T into a row buffer, LN over each row's G*H values, the gate pass with
// LN of c_t before the output tanh. Saved for backward: normalised gh (n_hh) and c (n_c) and their 1/std.
#include "fused.h"
#include "kernels.h"
#include "team.h"

#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;
constexpr float kLnEps = 1e-5f;

// mean and 1/std of v (n values), two passes (no cancellation in the variance)
static inline void row_stats(const float* v, int64_t n, float* mean_out, float* rstd_out) {
  float mean = 0.f;
#pragma omp simd reduction(+ : mean)
  for (int64_t k = 0; k < n; ++k) mean += v[k];
  mean /= (float)n;
  float var = 0.f;
#pragma omp simd reduction(+ : var)
  for (int64_t k = 0; k < n; ++k) { const float d = v[k] - mean; var += d * d; }
  *mean_out = mean;
  // in double: under -ffast-math GCC turns a float 1/sqrt into rsqrt plus one Newton step (a few ulp off), and
  // a layer norm over few values with a small variance amplifies that into the gradients
  *rstd_out = (float)(1.0 / std::sqrt((double)var / (double)n + (double)kLnEps));
}

// normalise v (n values) into out; returns 1/std
static inline float normalise(const float* v, float* out, int64_t n) {
  float mean, rstd;
  row_stats(v, n, &mean, &rstd);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) out[k] = (v[k] - mean) * rstd;
  return rstd;
}

// dx of y = n * w (+ b), n = (x - mean) * rstd, given dn = dy * w: rstd * (dn - mean(dn) - n * mean(dn * n))
static inline void normalise_backward(const float* dn, const float* n, float rstd, float* dx, int64_t len) {
  float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t k = 0; k < len; ++k) { s1 += dn[k]; s2 += dn[k] * n[k]; }
  s1 /= (float)len;
  s2 /= (float)len;
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) dx[k] = rstd * (dn[k] - s1 - n[k] * s2);
}

// LN_ih of the layer node (csrc/layer.cpp), over the T*B rows of the input projection at once, before the loop:
// out = n * w + b with n = (x - mean) * rstd per row of x (R, N); rstd is saved for the backward, n is not (it is
// recomputed there from x and the row means). ATen's layer_norm costs 2-3x more here: its out= form copies,
// and its backward computes the gain sums in a second pass.
void ln_rows_fwd(int64_t R, int64_t N, const float* x, const float* w, const float* b, float* out, float* mean,
                 float* rstd) {
  at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) {
    FlushDenormals ftz;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * N;
      float* o = out + r * N;
      row_stats(xr, N, mean + r, rstd + r);
      const float m = mean[r], rs = rstd[r];
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) o[k] = (xr[k] - m) * rs * w[k] + b[k];
    }
  });
}

// One pass over the gradient d (R, N) of a layer-norm output: column sums sum_r d (into db) and sum_r d * n2
// (into dw2, when n2 is given: a gain whose normalised values were saved); and when x is given, the backward of
// ln_rows_fwd: dx (R, N) and the gain sum sum_r d * n (into dw) with n recomputed from x, mean and rstd.
// Column sums go through per-thread partials added in thread order, so results do not depend on timing.
void ln_rows_bwd(int64_t R, int64_t N, const float* d, const float* x, const float* mean, const float* rstd,
                 const float* w, float* dx, float* dw, float* db, const float* n2, float* dw2) {
  const int nt = at::get_num_threads();
  std::vector<float> parts((size_t)nt * 3 * N, 0.f);
  at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) {
    FlushDenormals ftz;
    const int tid = at::get_thread_num();  // 0 when run inline (inside another parallel region)
    float* pw = parts.data() + (size_t)(tid < nt ? tid : 0) * 3 * N;
    float *pb = pw + N, *pw2 = pw + 2 * N;
    std::vector<float> nbuf(x ? N : 0), dn(x ? N : 0);
    for (int64_t r = r0; r < r1; ++r) {
      const float* dr = d + r * N;
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) pb[k] += dr[k];
      if (n2) {
        const float* nr = n2 + r * N;
#pragma omp simd
        for (int64_t k = 0; k < N; ++k) pw2[k] += dr[k] * nr[k];
      }
      if (!x) continue;
      const float* xr = x + r * N;
      const float m = mean[r], rs = rstd[r];
      float* n = nbuf.data();
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) {
        n[k] = (xr[k] - m) * rs;
        dn[k] = dr[k] * w[k];
        pw[k] += dr[k] * n[k];
      }
      normalise_backward(dn.data(), n, rs, dx + r * N, N);
    }
  });
  for (int64_t k = 0; k < N; ++k) {
    float sw = 0.f, sb = 0.f, sw2 = 0.f;
    for (int i = 0; i < nt; ++i) {
      const float* p = parts.data() + (size_t)i * 3 * N;
      sw += p[k]; sb += p[N + k]; sw2 += p[2 * N + k];
    }
    if (dw) dw[k] = sw;
    if (db) db[k] = sb;
    if (dw2) dw2[k] = sw2;
  }
}

// Returns y, h_T, c_T, gates (activated), cn (new cell, pre-zoneout), cs (carried cell with zoneout, else
// empty), n_hh (T,B,G*H), rstd_hh (T,B), n_c (T,B,H), rstd_c (T,B). h0_before_y: y is a view one step into a
// buffer that starts with a copy of h0, so that H_prev = [h0; y_0 .. y_{T-2}] is one matrix (as in
// lstm_fwd_fused; the layer node's dW_hh is then one GEMM).
LnFwd lstm_ln_fwd_impl(const Tensor& gx_in, const Tensor& h0, const Tensor& c0, const Tensor& w_hh_in,
                       const Tensor& ln_hh_w, const Tensor& ln_hh_b, const Tensor& ln_c_w, const Tensor& ln_c_b,
                       const c10::optional<Tensor>& w_ph_in, const c10::optional<Tensor>& batch_sizes,
                       const c10::optional<Tensor>& rd_in, const c10::optional<Tensor>& zo_h_in,
                       const c10::optional<Tensor>& zo_c_in, bool coupled, bool h0_before_y) {
  FlushDenormals ftz;
  const Tensor gx = gx_in.contiguous();
  const int64_t T = gx.size(0), B = gx.size(1), GH = gx.size(2), H = c0.size(1);
  auto opts = gx.options();
  // W_hh^T (H, GH) as contiguous 16-column panels: each thread streams them in order, 6 rows at a time
  const Tensor w_pk = pack_cols16(w_hh_in.t());
  const LstmOptions o(H, coupled, w_ph_in, rd_in, zo_h_in, zo_c_in);
  const float *p_i = o.p_i, *p_f = o.p_f, *p_o = o.p_o, *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  const Tensor lhw = ln_hh_w.contiguous(), lhb = ln_hh_b.contiguous(), lcw = ln_c_w.contiguous(), lcb = ln_c_b.contiguous();
  Tensor y = loop_output(h0, T, h0_before_y), gates = pool_empty({T, B, GH}, opts), cn = pool_empty({T, B, H}, opts);
  Tensor cs = zcp ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  // rows past their length are never written: zero-fill only when there are such rows
  const auto bs = rows_per_step(batch_sizes, T, B);
  const bool full = bs.empty() || bs.back() == B;
  auto alloc = [&](at::IntArrayRef size) { return full ? pool_empty(size, opts) : at::zeros(size, opts); };
  Tensor n_hh = alloc({T, B, GH}), r_hh = alloc({T, B});
  Tensor n_c = alloc({T, B, H}), r_c = alloc({T, B});
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  float *hp = h.data_ptr<float>(), *cp = c.data_ptr<float>();
  // raw pointers once (data_ptr<float>() checks the dtype on every call)
  float* n_hh_p = n_hh.data_ptr<float>();
  float* r_hh_p = r_hh.data_ptr<float>();
  float* n_c_p = n_c.data_ptr<float>();
  float* r_c_p = r_c.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  float* gx_p = gx.data_ptr<float>();
  float* lhw_p = lhw.data_ptr<float>();
  float* lhb_p = lhb.data_ptr<float>();
  float* cn_p = cn.data_ptr<float>();
  float* lcw_p = lcw.data_ptr<float>();
  float* lcb_p = lcb.data_ptr<float>();
  float* cs_p = cs.data_ptr<float>();
  float* y_p = y.data_ptr<float>();
  // rows [b0, b1) through the whole time loop (rows are independent: the batch can be split between threads)
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz;
    Tensor gh = at::empty({B, GH}, opts), hm = at::empty({B, H}, opts);
    float* gh_p = gh.data_ptr<float>();
    float* hm_p = hm.data_ptr<float>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;  // active rows [b0, be)
      float* ghp = gh_p + b0 * GH;
      const float* hin = hp + b0 * H;
      hin = dropped_state(hin, rdp ? rdp + b0 * H : nullptr, hm_p + b0 * H, nb * H);
      gemm_packed_cols(nb, H, hin, H, w_pk.data_ptr<float>(), ghp, GH, 0, GH, /*accumulate=*/false);
      for (int64_t b = b0; b < be; ++b) {
        const int64_t row = t * B + b;
        float* nh = n_hh_p + row * GH;
        r_hh_p[row] = normalise(gh_p + b * GH, nh, GH);
        float* g = gates_p + row * GH;
        const float* xg = gx_p + row * GH;
        const float *w = lhw_p, *bb = lhb_p;
#pragma omp simd
        for (int64_t k = 0; k < GH; ++k) g[k] = xg[k] + w[k] * nh[k] + bb[k];  // pre-activations
        float* cb = cp + b * H;
        float* cnb = cn_p + row * H;
        const float* kc = zcp ? zcp + row * H : zero;
        if (coupled) {
          float *fg = g, *gg_ = g + H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const float cprev = cb[j];
            const float f = sigmoidf(fg[j] + p_f[j] * cprev);
            const float gv = tanhf_(gg_[j]);
            const float cnew = f * cprev + (1.f - f) * gv;
            fg[j] = f; gg_[j] = gv;
            cnb[j] = cnew;
            cb[j] = kc[j] * cprev + (1.f - kc[j]) * cnew;
          }
        } else {
          float *ai = g, *fg = g + H, *gg_ = g + 2 * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const float cprev = cb[j];
            const float f = sigmoidf(fg[j] + p_f[j] * cprev);
            const float i = sigmoidf(ai[j] + p_i[j] * cprev);
            const float gv = tanhf_(gg_[j]);
            const float cnew = f * cprev + i * gv;
            ai[j] = i; fg[j] = f; gg_[j] = gv;
            cnb[j] = cnew;
            cb[j] = kc[j] * cprev + (1.f - kc[j]) * cnew;
          }
        }
        float* og = g + (coupled ? 2 : 3) * H;
        float* nc = n_c_p + row * H;
        r_c_p[row] = normalise(cnb, nc, H);
        const float *cw = lcw_p, *cbias = lcb_p;
        const float* kh = zhp ? zhp + row * H : zero;
        float* hb = hp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float o = sigmoidf(og[j] + p_o[j] * cnb[j]);
          og[j] = o;
          const float hn = o * tanhf_(cw[j] * nc[j] + cbias[j]);
          hb[j] = kh[j] * hb[j] + (1.f - kh[j]) * hn;
        }
      }
      if (zcp) std::memcpy(cs_p + (t * B + b0) * H, cp + b0 * H, sizeof(float) * (b1 - b0) * H);
      float* y_t = y_p + t * B * H;
      std::memcpy(y_t + b0 * H, hp + b0 * H, sizeof(float) * nb * H);
      if (be < b1) {
        std::memset(y_t + be * H, 0, sizeof(float) * (b1 - be) * H);
        std::memset(gates_p + (t * B + be) * GH, 0, sizeof(float) * (b1 - be) * GH);
        std::memcpy(cn_p + (t * B + be) * H, cp + be * H, sizeof(float) * (b1 - be) * H);
      }
    }
  };
  split_rows(bs, B, GH * H, body);
  return {y, h, c, gates, cn, cs, n_hh, r_hh, n_c, r_c};
}

LnFwd lstm_ln_fwd(const Tensor& gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const Tensor& ln_hh_w,
                  const Tensor& ln_hh_b, const Tensor& ln_c_w, const Tensor& ln_c_b,
                  const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes,
                  const c10::optional<Tensor>& rd, const c10::optional<Tensor>& zo_h,
                  const c10::optional<Tensor>& zo_c, bool coupled) {
  return lstm_ln_fwd_impl(gx, h0, c0, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, batch_sizes, rd, zo_h, zo_c,
                          coupled, false);
}

// Returns dA (T,B,G*H) = dLoss/dgx, dGh (T,B,G*H) = dLoss/d(h W_hh^T) (before LN), dh0, dc0, and
// dcl (T,B,H) = dLoss/dLN_c(c_t) for the LN_c gain and bias gradients.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm_ln_bwd(const Tensor& dy_in, const Tensor& dhT, const Tensor& dcT, const Tensor& gates,
                                const Tensor& cn, const Tensor& cs, const Tensor& c0, const Tensor& w_hh_in,
                                const Tensor& n_hh, const Tensor& r_hh, const Tensor& n_c, const Tensor& r_c,
                                const Tensor& ln_hh_w, const Tensor& ln_c_w, const Tensor& ln_c_b,
                                const c10::optional<Tensor>& w_ph_in, const c10::optional<Tensor>& batch_sizes,
                                const c10::optional<Tensor>& rd_in, const c10::optional<Tensor>& zo_h_in,
                                const c10::optional<Tensor>& zo_c_in, bool coupled) {
  FlushDenormals ftz;
  const Tensor dy = dy_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2);
  auto opts = gates.options();
  const Tensor w_pk = pack_cols16(w_hh_in);  // W_hh (GH, H) as K x N panels for dh = dGh W_hh
  const LstmOptions o(H, coupled, w_ph_in, rd_in, zo_h_in, zo_c_in);
  const float *p_i = o.p_i, *p_f = o.p_f, *p_o = o.p_o, *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  const Tensor lhw = ln_hh_w.contiguous(), lcw = ln_c_w.contiguous(), lcb = ln_c_b.contiguous(), c0c = c0.contiguous();
  const float* csp = zcp ? cs.data_ptr<float>() : cn.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  const bool full = bs.empty() || bs.back() == B;  // rows past their length are not written: zero them
  auto alloc = [&](at::IntArrayRef size) { return full ? pool_empty(size, opts) : at::zeros(size, opts); };
  Tensor dA = alloc({T, B, GH}), dGh = alloc({T, B, GH}), dcl = alloc({T, B, H});
  Tensor dh = dhT.contiguous().clone(), dc = dcT.contiguous().clone();
  float *dhp = dh.data_ptr<float>(), *dcp = dc.data_ptr<float>();
  // raw pointers once (data_ptr<float>() checks the dtype on every call)
  float* gates_p = gates.data_ptr<float>();
  float* dA_p = dA.data_ptr<float>();
  float* n_c_p = n_c.data_ptr<float>();
  float* dcl_p = dcl.data_ptr<float>();
  float* lcw_p = lcw.data_ptr<float>();
  float* lcb_p = lcb.data_ptr<float>();
  float* dy_p = dy.data_ptr<float>();
  float* r_c_p = r_c.data_ptr<float>();
  float* lhw_p = lhw.data_ptr<float>();
  float* n_hh_p = n_hh.data_ptr<float>();
  float* r_hh_p = r_hh.data_ptr<float>();
  float* dGh_p = dGh.data_ptr<float>();
  float* c0c_p = c0c.data_ptr<float>();
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz;
    // rec: dGh W_hh before the recurrent-dropout mask (without a mask the GEMM adds into dh itself)
    Tensor rec = rdp ? at::empty({B, H}, opts) : Tensor(), dn = at::empty({GH}, opts), dcn_ln = at::empty({H}, opts);
    float* rec_p = rdp ? rec.data_ptr<float>() : nullptr;
    float* dn_p = dn.data_ptr<float>();
    float* dcn_ln_p = dcn_ln.data_ptr<float>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;
      const float* cprev_t = t > 0 ? csp + (t - 1) * B * H : c0c_p;
      for (int64_t b = b0; b < be; ++b) {
        const int64_t row = t * B + b;
        const float* g = gates_p + row * GH;
        float* da = dA_p + row * GH;
        const float* nc = n_c_p + row * H;
        const float* cpb = cprev_t + b * H;
        const float* kh = zhp ? zhp + row * H : zero;
        const float* kc = zcp ? zcp + row * H : zero;
        float* dclb = dcl_p + row * H;
        const float *cw = lcw_p, *cbias = lcb_p;
        const float* og = coupled ? g + 2 * H : g + 3 * H;
        float* dao = coupled ? da + 2 * H : da + 3 * H;
        float* dnc = dn_p;  // reuse: dLoss/dn_c, H values
        const float* dyr = dy_p + row * H;
        float* dhr = dhp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float d = dyr[j] + dhr[j];
          const float dm = (1.f - kh[j]) * d;
          dhr[j] = kh[j] * d;
          const float o = og[j];
          const float tl = tanhf_(cw[j] * nc[j] + cbias[j]);
          dao[j] = dm * tl * o * (1.f - o);
          dclb[j] = dm * o * (1.f - tl * tl);
          dnc[j] = dclb[j] * cw[j];
        }
        float* dcnl = dcn_ln_p;
        normalise_backward(dnc, nc, r_c_p[row], dcnl, H);
        float* dcb = dcp + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const float cprev = cpb[j], dcarry = dcb[j];
          const float dcn = dcnl[j] + dao[j] * p_o[j] + (1.f - kc[j]) * dcarry;
          if (coupled) {
            const float f = g[j], gv = g[H + j];
            const float af = dcn * (cprev - gv) * f * (1.f - f);
            da[j] = af;
            da[H + j] = dcn * (1.f - f) * (1.f - gv * gv);
            dcb[j] = kc[j] * dcarry + dcn * f + af * p_f[j];
          } else {
            const float i = g[j], f = g[H + j], gv = g[2 * H + j];
            const float ai = dcn * gv * i * (1.f - i), af = dcn * cprev * f * (1.f - f);
            da[j] = ai; da[H + j] = af;
            da[2 * H + j] = dcn * i * (1.f - gv * gv);
            dcb[j] = kc[j] * dcarry + dcn * f + ai * p_i[j] + af * p_f[j];
          }
        }
        // through LN_hh: dGh = LN backward of (dA * gain)
        float* dnh = dn_p;  // now G*H values
        const float* w = lhw_p;
#pragma omp simd
        for (int64_t k = 0; k < GH; ++k) dnh[k] = da[k] * w[k];
        normalise_backward(dnh, n_hh_p + row * GH, r_hh_p[row],
                           dGh_p + row * GH, GH);
      }
      const float* dgh = dGh_p + (t * B + b0) * GH;
      float* dhb = dhp + b0 * H;
      if (rdp) {  // dh_{t-1} += (dGh W_hh) * mask
        float* rp = rec_p + b0 * H;
        gemm_packed_cols(nb, GH, dgh, GH, w_pk.data_ptr<float>(), rp, H, 0, H, /*accumulate=*/false);
        for (int64_t k = 0; k < nb * H; ++k) dhb[k] += rp[k] * rdp[b0 * H + k];
      } else {  // dh_{t-1} += dGh W_hh, accumulated by the GEMM itself
        gemm_packed_cols(nb, GH, dgh, GH, w_pk.data_ptr<float>(), dhb, H, 0, H);
      }
    }
  };
  split_rows(bs, B, GH * H, body);
  return {dA, dGh, dh, dc, dcl};
}

}  // namespace lstmkit
