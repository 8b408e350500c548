// Layer-normalised LSTM recurrence (Ba et al. 2016), with peephole, coupled, zoneout, recurrent dropout, lengths.
//
// The caller passes gx = LN_ih(x W_ih^T) + b_ih + b_hh (normalised over all rows at once, before the loop).
// Per step: gh = (h_{t-1} * mask) W_hh^T into a row buffer, LN over each row's G*H values, the gate pass with
// LN of c_t before the output tanh. Saved for backward: normalised gh (n_hh) and c (n_c) and their 1/std.
#include "fused.h"
#include "kernels.h"
#include "ln_math.h"
#include "ln_row.h"
#include "team.h"

#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

namespace lstmkit {

using at::Tensor;

namespace {

// The column half [n0, n1) of a G*H- or H-wide GEMM output that thread tid computes in the split-column mode
// (n0 a multiple of 16, as gemm_packed_cols needs).
inline void col_half(int tid, int64_t N, int64_t* n0, int64_t* n1) {
  const int64_t mid = std::min<int64_t>(N, (N / 2 + 15) / 16 * 16);
  *n0 = tid == 0 ? 0 : mid;
  *n1 = tid == 0 ? mid : N;
}

}  // namespace

// Returns y, h_T, c_T, gates (activated), cn (new cell, pre-zoneout), cs (carried cell with zoneout, else
// empty), n_hh (T,B,G*H), rstd_hh (T,B), n_c (T,B,H), rstd_c (T,B), m (T,B,H): o * tanh(LN_c(c)) before the
// projection (w_hr (P, H) given; else empty). With a projection h, y and W_hh's columns have size P, the zoneout
// and recurrent-dropout masks too: h_t = zoneout(h_{t-1}, m_t W_hr^T). h0_before_y: y is a view one step into a
// buffer that starts with a copy of h0, so that H_prev = [h0; y_0 .. y_{T-2}] is one matrix (as in
// lstm_fwd_fused; the layer node's dW_hh is then one GEMM).
//
// Two threads share the loop in one of two ways. With enough rows they split the batch (split_rows, team.h):
// rows are independent, so each runs the whole loop on its rows with no barrier. For one sequence
// (ln_split_cols, team.h) each step's GEMM is split by columns instead, and both threads then run the whole step's row
// passes on the full product: a layer norm needs all of a row, so splitting the units too would need two more
// barriers per step (one per layer norm), while repeating the row passes costs less than one. Each thread keeps
// its own copy of h and c (bit-identical: same arithmetic on the same values), so the next step's GEMM reads its
// own h and one barrier per step suffices; gh is double-buffered by step parity, so a thread writing step t+1's
// product never overwrites what its partner still reads of step t. Thread 0 writes the saved tensors, thread 1
// a scratch row.
LnFwd lstm_ln_fwd_impl(const Tensor& gx_in, const Tensor& h0, const Tensor& c0, const Tensor& w_hh_in,
                       const Tensor& ln_hh_w, const Tensor& ln_hh_b, const Tensor& ln_c_w, const Tensor& ln_c_b,
                       const c10::optional<Tensor>& w_ph_in, const c10::optional<Tensor>& batch_sizes,
                       const c10::optional<Tensor>& rd_in, const c10::optional<Tensor>& zo_h_in,
                       const c10::optional<Tensor>& zo_c_in, bool coupled, bool h0_before_y,
                       const c10::optional<Tensor>& w_hr) {
  FlushDenormals ftz;
  const Tensor gx = gx_in.contiguous();
  // P: the state size h carries (proj_size with a projection W_hr (P, H), else H)
  const int64_t T = gx.size(0), B = gx.size(1), GH = gx.size(2), H = c0.size(1), P = h0.size(1);
  const bool proj = w_hr.has_value() && w_hr->defined();
  auto opts = gx.options();
  // W_hh^T (P, GH) as contiguous 16-column panels: each thread streams them in order, 6 rows at a time
  const Tensor w_pk = pack_cols16(w_hh_in.t());
  const float* w_pk_p = w_pk.data_ptr<float>();
  const LstmOptions o(H, coupled, w_ph_in, rd_in, zo_h_in, zo_c_in);
  const float *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  const Tensor lhw = ln_hh_w.contiguous(), lhb = ln_hh_b.contiguous(), lcw = ln_c_w.contiguous(), lcb = ln_c_b.contiguous();
  const LnStep st{H, GH, coupled, lhw.data_ptr<float>(), lhb.data_ptr<float>(), lcw.data_ptr<float>(),
                  lcb.data_ptr<float>(), o.p_i, o.p_f, o.p_o};
  Tensor y = loop_output(h0, T, h0_before_y), gates = pool_empty({T, B, GH}, opts), cn = pool_empty({T, B, H}, opts);
  Tensor cs = zcp ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  // rows past their length: zeros in y, gates, n_hh, r_hh, n_c, r_c, written per step (finish_step) rather than a
  // zero-fill of every tensor first, which measured 10% of a layer-norm training step with lengths
  const auto bs = rows_per_step(batch_sizes, T, B);
  Tensor n_hh = pool_empty({T, B, GH}, opts), r_hh = pool_empty({T, B}, opts);
  Tensor n_c = pool_empty({T, B, H}, opts), r_c = pool_empty({T, B}, opts);
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  // projection: m_t = o * tanh(LN_c(c_t)) (T, B, H), saved for dW_hr; W_hr^T (H, P) as panels for r_t = m_t W_hr^T
  Tensor m = proj ? pool_empty({T, B, H}, opts) : at::empty({0}, opts);
  const Tensor whr_pk = proj ? pack_cols16(w_hr->t()) : Tensor();
  float* m_p = proj ? m.data_ptr<float>() : nullptr;
  // raw pointers once (data_ptr<float>() checks the dtype on every call)
  float* n_hh_p = n_hh.data_ptr<float>();
  float* r_hh_p = r_hh.data_ptr<float>();
  float* n_c_p = n_c.data_ptr<float>();
  float* r_c_p = r_c.data_ptr<float>();
  float* gates_p = gates.data_ptr<float>();
  const float* gx_p = gx.data_ptr<float>();
  float* cn_p = cn.data_ptr<float>();
  float* cs_p = cs.data_ptr<float>();
  float* y_p = y.data_ptr<float>();
  // after step t's rows [b0, be): y, the carried cell, and the saved values of the finished rows [be, b1)
  auto finish_step = [&](int64_t t, int64_t b0, int64_t be, int64_t b1, const float* hp, const float* cp) {
    if (zcp) std::memcpy(cs_p + (t * B + b0) * H, cp + b0 * H, sizeof(float) * (b1 - b0) * H);
    float* y_t = y_p + t * B * P;
    std::memcpy(y_t + b0 * P, hp + b0 * P, sizeof(float) * (be - b0) * P);
    if (be < b1) {
      const int64_t r0 = t * B + be, nr = b1 - be;
      std::memset(y_t + be * P, 0, sizeof(float) * nr * P);
      if (m_p) std::memset(m_p + r0 * H, 0, sizeof(float) * nr * H);
      std::memset(gates_p + r0 * GH, 0, sizeof(float) * nr * GH);
      std::memset(n_hh_p + r0 * GH, 0, sizeof(float) * nr * GH);
      std::memset(n_c_p + r0 * H, 0, sizeof(float) * nr * H);
      std::memset(r_hh_p + r0, 0, sizeof(float) * nr);
      std::memset(r_c_p + r0, 0, sizeof(float) * nr);
      std::memcpy(cn_p + r0 * H, cp + be * H, sizeof(float) * nr * H);
    }
  };
  auto saved_row = [&](int64_t row, const float* gh, float* cb, float* hb) {
    ln_fwd_row(st, gh, gx_p + row * GH, zcp ? zcp + row * H : zero, zhp ? zhp + row * H : zero,
               n_hh_p + row * GH, gates_p + row * GH, cn_p + row * H, n_c_p + row * H, r_hh_p + row, r_c_p + row,
               cb, hb);
  };
  // (with a projection each step has a second GEMM, r_t = m_t W_hr^T, whose rows the threads would both need:
  // the rows split, or one thread)
  if (!proj && ln_split_cols(B, GH, H)) {
    Tensor gh2 = at::empty({2, B, GH}, opts);  // the step's product, by step parity
    // thread 1's own h and c and a scratch row for the values thread 0 saves; each thread's masked h
    Tensor own = at::cat({h.view(-1), c.view(-1)}), scratch = at::empty({2 * GH + 2 * H + 2}, opts);
    Tensor hms = at::empty({2, B, H}, opts);
    float* gh2_p = gh2.data_ptr<float>();
    Barrier2 bar;
    std::function<void(int)> job = [&](int tid) {
      FlushDenormals ftz_t;
      float* hp = tid ? own.data_ptr<float>() : h.data_ptr<float>();
      float* cp = tid ? hp + B * H : c.data_ptr<float>();
      float* hm = hms.data_ptr<float>() + tid * B * H;
      float* sc = scratch.data_ptr<float>();
      int64_t n0, n1;
      col_half(tid, GH, &n0, &n1);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t be = bs[t];
        float* gh = gh2_p + (t & 1) * B * GH;
        const float* hin = dropped_state(hp, rdp, hm, be * H);
        if (n1 > n0) gemm_packed_cols(be, H, hin, H, w_pk_p, gh, GH, n0, n1, /*accumulate=*/false);
        bar.wait();
        for (int64_t b = 0; b < be; ++b) {
          const int64_t row = t * B + b;
          if (tid == 0) {
            saved_row(row, gh + b * GH, cp + b * H, hp + b * H);
          } else {
            ln_fwd_row(st, gh + b * GH, gx_p + row * GH, zcp ? zcp + row * H : zero, zhp ? zhp + row * H : zero, sc,
                       sc + GH, sc + 2 * GH, sc + 2 * GH + H, sc + 2 * GH + 2 * H, sc + 2 * GH + 2 * H + 1,
                       cp + b * H, hp + b * H);
          }
        }
        if (tid == 0) finish_step(t, 0, be, B, hp, cp);
      }
    };
    if (Team2::run(job)) return {y, h, c, gates, cn, cs, n_hh, r_hh, n_c, r_c, m};
  }
  float *hp = h.data_ptr<float>(), *cp = c.data_ptr<float>();
  const float* whr_p = proj ? whr_pk.data_ptr<float>() : nullptr;
  // rows [b0, b1) through the whole time loop (rows are independent: the batch can be split between threads)
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz_t;
    Tensor gh = at::empty({B, GH}, opts), hm = at::empty({B, P}, opts), rb = at::empty({proj ? B * P : 0}, opts);
    float* gh_p = gh.data_ptr<float>();
    float* hm_p = hm.data_ptr<float>();
    float* rb_p = rb.data_ptr<float>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;  // active rows [b0, be)
      const float* hin = dropped_state(hp + b0 * P, rdp ? rdp + b0 * P : nullptr, hm_p + b0 * P, nb * P);
      gemm_packed_cols(nb, P, hin, P, w_pk_p, gh_p + b0 * GH, GH, 0, GH, /*accumulate=*/false);
      if (!proj) {
        for (int64_t b = b0; b < be; ++b) saved_row(t * B + b, gh_p + b * GH, cp + b * H, hp + b * H);
      } else {
        for (int64_t b = b0; b < be; ++b) {
          const int64_t row = t * B + b;
          ln_fwd_row(st, gh_p + b * GH, gx_p + row * GH, zcp ? zcp + row * H : zero, nullptr, n_hh_p + row * GH,
                     gates_p + row * GH, cn_p + row * H, n_c_p + row * H, r_hh_p + row, r_c_p + row, cp + b * H,
                     m_p + row * H);
        }
        // r_t = m_t W_hr^T (nb, P), then h_t = r_t, or with zoneout h_{t-1} kept where the mask is 1
        gemm_packed_cols(nb, H, m_p + (t * B + b0) * H, H, whr_p, rb_p + b0 * P, P, 0, P, /*accumulate=*/false);
        float* hb = hp + b0 * P;
        const float* rp = rb_p + b0 * P;
        if (zhp) {
          const float* k = zhp + (t * B + b0) * P;
          for (int64_t q = 0; q < nb * P; ++q) hb[q] = k[q] * hb[q] + (1.f - k[q]) * rp[q];
        } else {
          std::memcpy(hb, rp, sizeof(float) * nb * P);
        }
      }
      finish_step(t, b0, be, b1, hp, cp);
    }
  };
  split_rows(bs, B, GH * P + (proj ? H * P : 0), body);
  return {y, h, c, gates, cn, cs, n_hh, r_hh, n_c, r_c, m};
}

LnFwd lstm_ln_fwd(const Tensor& gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, const Tensor& ln_hh_w,
                  const Tensor& ln_hh_b, const Tensor& ln_c_w, const Tensor& ln_c_b,
                  const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes,
                  const c10::optional<Tensor>& rd, const c10::optional<Tensor>& zo_h,
                  const c10::optional<Tensor>& zo_c, bool coupled, const c10::optional<Tensor>& w_hr) {
  return lstm_ln_fwd_impl(gx, h0, c0, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, batch_sizes, rd, zo_h, zo_c,
                          coupled, false, w_hr);
}

// Returns dA (T,B,G*H) = dLoss/dgx, dGh (T,B,G*H) = dLoss/d(h W_hh^T) (before LN), dh0, dc0,
// dcl (T,B,H) = dLoss/dLN_c(c_t) for the LN_c gain and bias gradients, and with a projection (w_hr (P, H))
// dR (T,B,P) = dLoss/d(m_t W_hr^T) for the caller's dW_hr = dR^T m (else empty). The two threads share the loop
// as in the forward: by rows, or (one sequence) each step's GEMM dh_{t-1} += dGh_t W_hh by its H output columns,
// with both threads running the row passes on the whole batch, each carrying its own dh and dc; the GEMM's halves
// meet in a buffer double-buffered by step parity, one barrier per step.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_ln_bwd(const Tensor& dy_in, const Tensor& dhT,
                                const Tensor& dcT, const Tensor& gates,
                                const Tensor& cn, const Tensor& cs, const Tensor& c0, const Tensor& w_hh_in,
                                const Tensor& n_hh, const Tensor& r_hh, const Tensor& n_c, const Tensor& r_c,
                                const Tensor& ln_hh_w, const Tensor& ln_c_w, const Tensor& ln_c_b,
                                const c10::optional<Tensor>& w_ph_in, const c10::optional<Tensor>& batch_sizes,
                                const c10::optional<Tensor>& rd_in, const c10::optional<Tensor>& zo_h_in,
                                const c10::optional<Tensor>& zo_c_in, bool coupled,
                                const c10::optional<Tensor>& w_hr) {
  FlushDenormals ftz;
  const Tensor dy = dy_in.contiguous();
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2), P = dhT.size(1);
  const bool proj = w_hr.has_value() && w_hr->defined();
  auto opts = gates.options();
  const Tensor w_pk = pack_cols16(w_hh_in);  // W_hh (GH, P) as K x N panels for dh = dGh W_hh
  const float* w_pk_p = w_pk.data_ptr<float>();
  const LstmOptions o(H, coupled, w_ph_in, rd_in, zo_h_in, zo_c_in);
  const float *rdp = o.rdp, *zhp = o.zhp, *zcp = o.zcp, *zero = o.zero;
  const Tensor lhw = ln_hh_w.contiguous(), lcw = ln_c_w.contiguous(), lcb = ln_c_b.contiguous(), c0c = c0.contiguous();
  const LnStep st{H, GH, coupled, lhw.data_ptr<float>(), nullptr, lcw.data_ptr<float>(), lcb.data_ptr<float>(),
                  o.p_i, o.p_f, o.p_o};
  const float* csp = zcp ? cs.data_ptr<float>() : cn.data_ptr<float>();
  const auto bs = rows_per_step(batch_sizes, T, B);
  // rows past their length: zeros, written per step (zero_rows) rather than a zero-fill of every tensor first
  Tensor dA = pool_empty({T, B, GH}, opts), dGh = pool_empty({T, B, GH}, opts), dcl = pool_empty({T, B, H}, opts);
  Tensor dh = dhT.contiguous().clone(), dc = dcT.contiguous().clone();
  // projection: dR (T, B, P) = dLoss/dr_t for r_t = m_t W_hr^T (the caller's dW_hr = dR^T m), and W_hr (P, H) as
  // K x N panels for dm_t = dr_t W_hr
  Tensor dR = proj ? pool_empty({T, B, P}, opts) : at::empty({0}, opts);
  const Tensor whr_pk = proj ? pack_cols16(*w_hr) : Tensor();
  float* dR_p = proj ? dR.data_ptr<float>() : nullptr;
  // raw pointers once (data_ptr<float>() checks the dtype on every call)
  const float* gates_p = gates.data_ptr<float>();
  float* dA_p = dA.data_ptr<float>();
  const float* n_c_p = n_c.data_ptr<float>();
  float* dcl_p = dcl.data_ptr<float>();
  const float* dy_p = dy.data_ptr<float>();
  const float* r_c_p = r_c.data_ptr<float>();
  const float* n_hh_p = n_hh.data_ptr<float>();
  const float* r_hh_p = r_hh.data_ptr<float>();
  float* dGh_p = dGh.data_ptr<float>();
  const float* c0c_p = c0c.data_ptr<float>();
  auto zero_rows = [&](int64_t t, int64_t be, int64_t b1) {  // rows [be, b1) of step t
    if (be >= b1) return;
    const int64_t r0 = t * B + be, nr = b1 - be;
    std::memset(dA_p + r0 * GH, 0, sizeof(float) * nr * GH);
    std::memset(dGh_p + r0 * GH, 0, sizeof(float) * nr * GH);
    std::memset(dcl_p + r0 * H, 0, sizeof(float) * nr * H);
    if (dR_p) std::memset(dR_p + r0 * P, 0, sizeof(float) * nr * P);
  };
  // row b of step t: into the saved dA, dcl, dGh, or (out given: the split mode's thread 1) into a scratch row
  auto row_pass = [&](int64_t t, int64_t b, float* dhp, float* dcp, float* dn, float* dcnl, float* out) {
    const int64_t row = t * B + b;
    const float* cprev = (t > 0 ? csp + (t - 1) * B * H : c0c_p) + b * H;
    ln_bwd_row(st, dy_p + row * H, gates_p + row * GH, n_c_p + row * H, n_hh_p + row * GH, r_c_p[row], r_hh_p[row],
               cprev, zcp ? zcp + row * H : zero, zhp ? zhp + row * H : zero, dhp + b * H, dcp + b * H,
               out ? out : dA_p + row * GH, out ? out + GH : dcl_p + row * H, out ? out + GH + H : dGh_p + row * GH,
               dn, dcnl);
  };
  if (!proj && ln_split_cols(B, GH, H)) {  // (with a projection: as in the forward, rows or one thread)
    const int64_t ld1 = 2 * GH + H;  // thread 1's row of da, dcl, dgh
    Tensor dh2 = at::empty({2, B, H}, opts);  // dh_{t-1} by step parity, each thread writing its columns
    // thread 1's dh and dc and its rows' outputs; each thread's product before the mask and its scratch
    Tensor own = at::cat({dh.view(-1), dc.view(-1)}), out1 = at::empty({B, ld1}, opts);
    Tensor rec = at::empty({2, B, H}, opts), scratch = at::empty({2, GH + H}, opts);
    float* dh2_p = dh2.data_ptr<float>();
    Barrier2 bar;
    std::function<void(int)> job = [&](int tid) {
      FlushDenormals ftz_t;
      float* dhp = tid ? own.data_ptr<float>() : dh.data_ptr<float>();
      float* dcp = tid ? dhp + B * H : dc.data_ptr<float>();
      float* rp = rec.data_ptr<float>() + tid * B * H;
      float* dn = scratch.data_ptr<float>() + tid * (GH + H);
      float* o1 = out1.data_ptr<float>();
      int64_t n0, n1;
      col_half(tid, H, &n0, &n1);
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t be = bs[t];
        if (tid == 0) zero_rows(t, be, B);
        if (be == 0) continue;  // no active row: nothing changes (both threads skip the same steps)
        for (int64_t b = 0; b < be; ++b) row_pass(t, b, dhp, dcp, dn, dn + GH, tid ? o1 + b * ld1 : nullptr);
        // this thread's columns of dh_{t-1} = dh (the zoneout part) + (dGh_t W_hh) (* mask), active rows
        const float* dgh = tid ? o1 + GH + H : dGh_p + t * B * GH;
        const int64_t ldg = tid ? ld1 : GH;
        float* nxt = dh2_p + (t & 1) * B * H;
        if (n1 > n0) {
          if (rdp) {
            gemm_packed_cols(be, GH, dgh, ldg, w_pk_p, rp, H, n0, n1, /*accumulate=*/false);
            for (int64_t b = 0; b < be; ++b)
              for (int64_t j = n0; j < n1; ++j) nxt[b * H + j] = dhp[b * H + j] + rp[b * H + j] * rdp[b * H + j];
          } else {
            for (int64_t b = 0; b < be; ++b) std::memcpy(nxt + b * H + n0, dhp + b * H + n0, sizeof(float) * (n1 - n0));
            gemm_packed_cols(be, GH, dgh, ldg, w_pk_p, nxt, H, n0, n1);
          }
        }
        bar.wait();
        std::memcpy(dhp, nxt, sizeof(float) * be * H);
      }
    };
    if (Team2::run(job)) return {dA, dGh, dh, dc, dcl, dR};
  }
  float *dhp = dh.data_ptr<float>(), *dcp = dc.data_ptr<float>();
  const float* whr_p = proj ? whr_pk.data_ptr<float>() : nullptr;
  auto body = [&](int64_t b0, int64_t b1, bool /*split*/) {
    FlushDenormals ftz_t;
    // rec: dGh W_hh before the recurrent-dropout mask (without a mask the GEMM adds into dh itself)
    Tensor rec = rdp ? at::empty({B, P}, opts) : Tensor(), dn = at::empty({GH}, opts), dcn_ln = at::empty({H}, opts);
    float* rec_p = rdp ? rec.data_ptr<float>() : nullptr;
    // projection: dm_t (B, H) = dr_t W_hr, the row pass's output gradient; its carried-h gradient stays zero (the
    // carried gradient is dh (B, P) here, and the row pass gets no zoneout mask)
    Tensor dm = at::empty({proj ? B * H : 0}, opts), dz = at::zeros({proj ? H : 0}, opts);
    float *dm_p = dm.data_ptr<float>(), *dz_p = dz.data_ptr<float>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t be = std::max(b0, std::min(b1, bs[t])), nb = be - b0;
      zero_rows(t, be, b1);
      if (!proj) {
        for (int64_t b = b0; b < be; ++b)
          row_pass(t, b, dhp, dcp, dn.data_ptr<float>(), dcn_ln.data_ptr<float>(), nullptr);
      } else {
        // d = dy_t + dh: dr_t = d (1 - zoneout mask), the rest carried to h_{t-1}
        const int64_t r0 = t * B + b0;
        float *dr = dR_p + r0 * P, *dhb = dhp + b0 * P;
        const float* dyr = dy_p + r0 * P;
        if (zhp) {
          const float* k = zhp + r0 * P;
          for (int64_t q = 0; q < nb * P; ++q) {
            const float d = dyr[q] + dhb[q];
            dr[q] = (1.f - k[q]) * d;
            dhb[q] = k[q] * d;
          }
        } else {
          for (int64_t q = 0; q < nb * P; ++q) dr[q] = dyr[q] + dhb[q];
          std::memset(dhb, 0, sizeof(float) * nb * P);
        }
        gemm_packed_cols(nb, P, dr, P, whr_p, dm_p + b0 * H, H, 0, H, /*accumulate=*/false);  // dm_t = dr_t W_hr
        for (int64_t b = b0; b < be; ++b) {
          const int64_t row = t * B + b;
          const float* cprev = (t > 0 ? csp + (t - 1) * B * H : c0c_p) + b * H;
          ln_bwd_row(st, dm_p + b * H, gates_p + row * GH, n_c_p + row * H, n_hh_p + row * GH, r_c_p[row],
                     r_hh_p[row], cprev, zcp ? zcp + row * H : zero, zero, dz_p, dcp + b * H, dA_p + row * GH,
                     dcl_p + row * H, dGh_p + row * GH, dn.data_ptr<float>(), dcn_ln.data_ptr<float>());
        }
      }
      const float* dgh = dGh_p + (t * B + b0) * GH;
      float* dhb = dhp + b0 * P;
      if (rdp) {  // dh_{t-1} += (dGh W_hh) * mask
        float* rp = rec_p + b0 * P;
        gemm_packed_cols(nb, GH, dgh, GH, w_pk_p, rp, P, 0, P, /*accumulate=*/false);
        for (int64_t k = 0; k < nb * P; ++k) dhb[k] += rp[k] * rdp[b0 * P + k];
      } else {  // dh_{t-1} += dGh W_hh, accumulated by the GEMM itself
        gemm_packed_cols(nb, GH, dgh, GH, w_pk_p, dhb, P, 0, P);
      }
    }
  };
  split_rows(bs, B, GH * P + (proj ? H * P : 0), body);
  return {dA, dGh, dh, dc, dcl, dR};
}

}  // namespace lstmkit
