// Streaming inference for the layer-norm LSTM (peephole, coupled, projection): a stateful single-step stack, one
// native call per step (the twin of stream.h's LSTMStream).
//
// Per layer and step: x_t W_ih^T and h_{t-1} W_hh^T as two GEMMs over weights packed once into 16-column panels,
// LN_ih of the first (its bias also carries b_ih + b_hh), then ln_row.h's forward row pass (LN_hh, the gates, LN_c);
// with a projection h_t = m_t W_hr^T. One thread: a layer norm needs the whole row, and a step is small.
#pragma once
#include "kernels.h"
#include "ln_row.h"

#include <vector>

namespace lstmkit {

struct LnStreamLayer {
  int64_t D, H, P, GH;
  at::Tensor w_ih, w_hh, w_hr;  // W_ih^T (D, GH), W_hh^T (P, GH), W_hr^T (H, P) (or undefined) as panels
  at::Tensor ln_ih_w, ln_ih_b;  // LN_ih gain, and its bias plus b_ih + b_hh (GH each)
  at::Tensor ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, zero;
  at::Tensor h, c, m;          // state (B, P), (B, H); m (B, H): o * tanh(LN_c(c)) before the projection
  at::Tensor gx, gh, scratch;  // (B, GH) each; one row's saved values, which a stream does not keep
};

class LnLSTMStream {
 public:
  // layers: per layer (w_ih, w_hh, ln_ih_w, ln_ih_b + b_ih + b_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_hr or empty,
  // w_ph or empty); batch: B.
  LnLSTMStream(const std::vector<std::vector<at::Tensor>>& layers, int64_t batch, bool coupled)
      : B_(batch), coupled_(coupled) {
    auto f32 = [](const at::Tensor& t) { return t.detach().to(at::kFloat).contiguous(); };
    for (const auto& w : layers) {
      LnStreamLayer L;
      const at::Tensor w_ih = f32(w[0]), w_hh = f32(w[1]);
      L.GH = w_ih.size(0);
      L.D = w_ih.size(1);
      L.P = w_hh.size(1);
      L.H = L.GH / (coupled ? 3 : 4);
      L.w_ih = pack_cols16(w_ih.t());
      L.w_hh = pack_cols16(w_hh.t());
      L.ln_ih_w = f32(w[2]);
      L.ln_ih_b = f32(w[3]);
      L.ln_hh_w = f32(w[4]);
      L.ln_hh_b = f32(w[5]);
      L.ln_c_w = f32(w[6]);
      L.ln_c_b = f32(w[7]);
      if (w[8].numel()) L.w_hr = pack_cols16(f32(w[8]).t());
      L.zero = at::zeros({L.H}, at::kFloat);
      L.w_ph = w[9].numel() ? f32(w[9]) : at::Tensor();
      L.h = at::zeros({B_, L.P}, at::kFloat);
      L.c = at::zeros({B_, L.H}, at::kFloat);
      L.m = at::empty({B_, L.H}, at::kFloat);
      L.gx = at::empty({B_, L.GH}, at::kFloat);
      L.gh = at::empty({B_, L.GH}, at::kFloat);
      L.scratch = at::empty({2 * L.GH + 2 * L.H + 2}, at::kFloat);
      layers_.push_back(L);
    }
  }

  // Advance one step with input x (B, D); returns the last layer's output (B, P) (a new tensor).
  at::Tensor step(const at::Tensor& x_in) {
    const at::Tensor x = x_in.to(at::kFloat).contiguous();
    TORCH_CHECK(x.dim() == 2 && x.size(0) == B_ && x.size(1) == layers_[0].D, "lstmkit: stream.step expects x of "
                "shape (", B_, ", ", layers_[0].D, "), got ", x.sizes());
    FlushDenormals ftz;
    const float* in = x.data_ptr<float>();
    for (auto& L : layers_) {
      const int64_t D = L.D, H = L.H, P = L.P, GH = L.GH;
      float *gx = L.gx.data_ptr<float>(), *gh = L.gh.data_ptr<float>(), *h = L.h.data_ptr<float>();
      gemm_packed_cols(B_, D, in, D, L.w_ih.data_ptr<float>(), gx, GH, 0, GH, /*accumulate=*/false);
      gemm_packed_cols(B_, P, h, P, L.w_hh.data_ptr<float>(), gh, GH, 0, GH, /*accumulate=*/false);
      const float *wi = L.ln_ih_w.data_ptr<float>(), *bi = L.ln_ih_b.data_ptr<float>();
      const float* zero = L.zero.data_ptr<float>();
      const float* ph = L.w_ph.defined() ? L.w_ph.data_ptr<float>() : nullptr;
      LnStep st{H, GH, coupled_, L.ln_hh_w.data_ptr<float>(), L.ln_hh_b.data_ptr<float>(),
                L.ln_c_w.data_ptr<float>(), L.ln_c_b.data_ptr<float>(), zero, zero, zero};
      if (ph) {
        if (coupled_) { st.p_f = ph; st.p_o = ph + H; } else { st.p_i = ph; st.p_f = ph + H; st.p_o = ph + 2 * H; }
      }
      const bool proj = L.w_hr.defined();
      float* sc = L.scratch.data_ptr<float>();
      for (int64_t b = 0; b < B_; ++b) {
        float* xg = gx + b * GH;
        normalise(xg, xg, GH);  // LN_ih, in place
#pragma omp simd
        for (int64_t k = 0; k < GH; ++k) xg[k] = xg[k] * wi[k] + bi[k];
        // the new h over the old one (zero zoneout: h = 0 * h + 1 * h_new), or m_t before the projection
        ln_fwd_row(st, gh + b * GH, xg, zero, proj ? nullptr : zero, sc, sc + GH, sc + 2 * GH, sc + 2 * GH + H,
                   sc + 2 * GH + 2 * H, sc + 2 * GH + 2 * H + 1, L.c.data_ptr<float>() + b * H,
                   proj ? L.m.data_ptr<float>() + b * H : h + b * P);
      }
      if (proj)  // h_t = m_t W_hr^T
        gemm_packed_cols(B_, H, L.m.data_ptr<float>(), H, L.w_hr.data_ptr<float>(), h, P, 0, P, /*accumulate=*/false);
      in = h;
    }
    return layers_.back().h.clone();
  }

  void reset() {
    for (auto& L : layers_) { L.h.zero_(); L.c.zero_(); }
  }

  // (h, c) of every layer: (L, B, P) and (L, B, H).
  std::vector<at::Tensor> state() const {
    std::vector<at::Tensor> hs, cs;
    for (const auto& L : layers_) { hs.push_back(L.h); cs.push_back(L.c); }
    return {at::stack(hs), at::stack(cs)};
  }

  void set_state(const at::Tensor& h, const at::Tensor& c) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      layers_[l].h.copy_(h[l]);
      layers_[l].c.copy_(c[l]);
    }
  }

 private:
  int64_t B_;
  bool coupled_;
  std::vector<LnStreamLayer> layers_;
};

}  // namespace lstmkit
