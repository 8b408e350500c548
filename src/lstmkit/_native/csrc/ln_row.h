// The layer-norm LSTM's row passes, one row of one step: forward (ln_lstm.cpp's loops, stream_ln.h) and backward.
#pragma once

#include "kernels.h"
#include "ln_math.h"

#include <cstdint>

namespace lstmkit {

// What every row of a layer-norm step shares: sizes, gains, biases, peepholes.
struct LnStep {
  int64_t H, GH;
  bool coupled;
  const float *lhw, *lhb, *lcw, *lcb;  // LN_hh gain and bias (G*H), LN_c gain and bias (H)
  const float *p_i, *p_f, *p_o;        // peepholes (zeros when absent; coupled: no p_i)
};

// One row of a forward step. Reads gh = h_{t-1} W_hh^T (raw), the G_x row xg and the zoneout rows kc, kh (zeros
// without zoneout); writes the saved values nh (LN_hh's normalised gh), g (activated gates), cn (new cell), nc
// (LN_c's normalised cell) and their 1/std; updates the state c and h (H each) in place. kh null: hb is written,
// not updated (o * tanh(LN_c(c)) of a projection layer, whose zoneout acts on the projected state).
inline void ln_fwd_row(const LnStep& s, const float* gh, const float* xg, const float* kc, const float* kh, float* nh,
                       float* g, float* cnb, float* nc, float* r_hh, float* r_c, float* cb, float* hb) {
  const int64_t H = s.H, GH = s.GH;
  *r_hh = normalise(gh, nh, GH);
  {
    const float *w = s.lhw, *bb = s.lhb;
#pragma omp simd
    for (int64_t k = 0; k < GH; ++k) g[k] = xg[k] + w[k] * nh[k] + bb[k];  // pre-activations
  }
  const float *p_i = s.p_i, *p_f = s.p_f, *p_o = s.p_o;
  if (s.coupled) {
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
  float* og = g + (s.coupled ? 2 : 3) * H;
  *r_c = normalise(cnb, nc, H);
  const float *cw = s.lcw, *cbias = s.lcb;
  if (!kh) {  // hb only receives the new h (a projection layer's m_t, zoneout applied after the projection)
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const float o = sigmoidf(og[j] + p_o[j] * cnb[j]);
      og[j] = o;
      hb[j] = o * tanhf_(cw[j] * nc[j] + cbias[j]);
    }
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const float o = sigmoidf(og[j] + p_o[j] * cnb[j]);
    og[j] = o;
    const float hn = o * tanhf_(cw[j] * nc[j] + cbias[j]);
    hb[j] = kh[j] * hb[j] + (1.f - kh[j]) * hn;
  }
}

// One row of a backward step (the reverse of ln_fwd_row). Reads dy (the row's output gradient), the saved g, nc,
// nh, their 1/std r_c and r_hh, c_{t-1} (cpb) and the zoneout rows; updates the carried dh and dc (H each) in place
// (dh: only the zoneout part here; the step's GEMM adds dGh W_hh); writes da (dLoss/dgx, G*H), dcl (dLoss/dLN_c(c),
// H) and dgh (dLoss/d(h W_hh^T), G*H). dn: scratch of G*H values, dcnl: of H.
inline void ln_bwd_row(const LnStep& s, const float* dyr, const float* g, const float* nc, const float* nh,
                       float r_c, float r_hh, const float* cpb, const float* kc, const float* kh, float* dhr,
                       float* dcb, float* da, float* dclb, float* dgh, float* dn, float* dcnl) {
  const int64_t H = s.H, GH = s.GH;
  const bool coupled = s.coupled;
  const float *cw = s.lcw, *cbias = s.lcb, *p_i = s.p_i, *p_f = s.p_f, *p_o = s.p_o;
  const float* og = coupled ? g + 2 * H : g + 3 * H;
  float* dao = coupled ? da + 2 * H : da + 3 * H;
  float* dnc = dn;  // dLoss/dn_c, H values
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
  normalise_backward(dnc, nc, r_c, dcnl, H);
  // two loops rather than a branch on coupled inside one: GCC left that one scalar
  if (coupled) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const float cprev = cpb[j], dcarry = dcb[j];
      const float dcn = dcnl[j] + dao[j] * p_o[j] + (1.f - kc[j]) * dcarry;
      const float f = g[j], gv = g[H + j];
      const float af = dcn * (cprev - gv) * f * (1.f - f);
      da[j] = af;
      da[H + j] = dcn * (1.f - f) * (1.f - gv * gv);
      dcb[j] = kc[j] * dcarry + dcn * f + af * p_f[j];
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const float cprev = cpb[j], dcarry = dcb[j];
      const float dcn = dcnl[j] + dao[j] * p_o[j] + (1.f - kc[j]) * dcarry;
      const float i = g[j], f = g[H + j], gv = g[2 * H + j];
      const float ai = dcn * gv * i * (1.f - i), af = dcn * cprev * f * (1.f - f);
      da[j] = ai; da[H + j] = af;
      da[2 * H + j] = dcn * i * (1.f - gv * gv);
      dcb[j] = kc[j] * dcarry + dcn * f + ai * p_i[j] + af * p_f[j];
    }
  }
  // through LN_hh: dgh = LN backward of (dA * gain)
  const float* w = s.lhw;
#pragma omp simd
  for (int64_t k = 0; k < GH; ++k) dn[k] = da[k] * w[k];
  normalise_backward(dn, nh, r_hh, dgh, GH);
}

}  // namespace lstmkit
