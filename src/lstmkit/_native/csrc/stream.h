// Streaming inference: a stateful, single-step stacked LSTM for online use (one native call per step).
//
// Per layer, [x_t, h_{t-1}] (B, D+P) times the stacked weights [W_ih^T; W_hh^T] (D+P, G*H) is one small GEMM
// into the bias, followed by the fused gate pass; the state stays inside the object between calls.
#pragma once
#include "kernels.h"

#include <vector>

namespace lstmkit {

using at::Tensor;

struct StreamLayer {
  int64_t D, H, P, G;
  bool coupled;
  Tensor w_cat;   // (D+P, G*H) row-major
  Tensor bias;    // (G*H)
  Tensor w_ph;    // (3H) or (2H), or undefined
  Tensor w_hr_t;  // (H, P) row-major, or undefined
  Tensor xh;      // (B, D+P): input then hidden state
  Tensor c;       // (B, H)
  Tensor gates;   // (B, G*H)
  Tensor m;       // (B, H) (projection only)
  Tensor zero;    // (H) zeros: absent peepholes
};

class LSTMStream {
 public:
  // layers: per layer (w_ih, w_hh, bias or empty, w_hr or empty, w_ph or empty); batch: B.
  LSTMStream(const std::vector<std::vector<Tensor>>& layers, int64_t batch, bool coupled) : B_(batch) {
    for (const auto& w : layers) {
      StreamLayer L;
      const Tensor w_ih = w[0].detach().to(at::kFloat).contiguous(), w_hh = w[1].detach().to(at::kFloat).contiguous();
      L.coupled = coupled;
      L.G = coupled ? 3 : 4;
      L.D = w_ih.size(1);
      L.P = w_hh.size(1);
      L.H = w_ih.size(0) / L.G;
      L.w_cat = at::cat({w_ih.t(), w_hh.t()}, 0).contiguous();
      L.bias = w[2].numel() ? w[2].detach().to(at::kFloat).contiguous() : at::zeros({L.G * L.H}, at::kFloat);
      if (w[3].numel()) L.w_hr_t = w[3].detach().to(at::kFloat).t().contiguous();
      if (w[4].numel()) L.w_ph = w[4].detach().to(at::kFloat).contiguous();
      L.xh = at::zeros({B_, L.D + L.P}, at::kFloat);
      L.c = at::zeros({B_, L.H}, at::kFloat);
      L.gates = at::empty({B_, L.G * L.H}, at::kFloat);
      L.m = at::empty({B_, L.H}, at::kFloat);
      L.zero = at::zeros({L.H}, at::kFloat);
      layers_.push_back(L);
    }
  }

  // Advance one step with input x (B, D); returns the last layer's output (B, P) (a new tensor).
  Tensor step(const Tensor& x_in) {
    FlushDenormals ftz;
    Tensor x = x_in.to(at::kFloat).contiguous();
    TORCH_CHECK(x.dim() == 2 && x.size(0) == B_ && x.size(1) == layers_[0].D, "lstmkit: stream.step expects x of "
                "shape (", B_, ", ", layers_[0].D, "), got ", x.sizes());
    const float* in = x.data_ptr<float>();
    int64_t in_ld = layers_[0].D;
    for (size_t l = 0; l < layers_.size(); ++l) {
      StreamLayer& L = layers_[l];
      const int64_t K = L.D + L.P, GH = L.G * L.H;
      float* xh = L.xh.data_ptr<float>();
      for (int64_t b = 0; b < B_; ++b) std::memcpy(xh + b * K, in + b * in_ld, sizeof(float) * L.D);
      float* g = L.gates.data_ptr<float>();
      const float* bias = L.bias.data_ptr<float>();
      for (int64_t b = 0; b < B_; ++b) std::memcpy(g + b * GH, bias, sizeof(float) * GH);
      gemm_acc_cols(B_, K, xh, K, L.w_cat.data_ptr<float>(), GH, g, GH, 0, GH);
      const float* ph = L.w_ph.defined() ? L.w_ph.data_ptr<float>() : nullptr;
      const int64_t H = L.H;
      const float* zero = L.zero.data_ptr<float>();
      const float *p_i = zero, *p_f = zero, *p_o = zero;
      if (ph) { if (L.coupled) { p_f = ph; p_o = ph + H; } else { p_i = ph; p_f = ph + H; p_o = ph + 2 * H; } }
      const bool proj = L.w_hr_t.defined();
      for (int64_t b = 0; b < B_; ++b) {
        float* gb = g + b * GH;
        float* cb = L.c.data_ptr<float>() + b * H;
        float* out = proj ? L.m.data_ptr<float>() + b * H : xh + b * K + L.D;  // h goes back into xh
        const float* af = L.coupled ? gb : gb + H;
        const float* ag = af + H;
        const float* ao = ag + H;
        if (L.coupled) {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const float cprev = cb[j];
            const float f = sigmoidf(af[j] + p_f[j] * cprev);
            const float cn = f * cprev + (1.f - f) * tanhf_(ag[j]);
            const float o = sigmoidf(ao[j] + p_o[j] * cn);
            cb[j] = cn;
            out[j] = o * tanhf_(cn);
          }
        } else {
          const float* ai = gb;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const float cprev = cb[j];
            const float f = sigmoidf(af[j] + p_f[j] * cprev);
            const float i = sigmoidf(ai[j] + p_i[j] * cprev);
            const float cn = f * cprev + i * tanhf_(ag[j]);
            const float o = sigmoidf(ao[j] + p_o[j] * cn);
            cb[j] = cn;
            out[j] = o * tanhf_(cn);
          }
        }
      }
      if (proj) {
        for (int64_t b = 0; b < B_; ++b) std::memset(xh + b * K + L.D, 0, sizeof(float) * L.P);
        gemm_acc_cols(B_, H, L.m.data_ptr<float>(), H, L.w_hr_t.data_ptr<float>(), L.P, xh + L.D, K, 0, L.P);
      }
      in = xh + L.D;
      in_ld = K;
    }
    const StreamLayer& last = layers_.back();
    return last.xh.narrow(1, last.D, last.P).clone();
  }

  void reset() {
    for (auto& L : layers_) { L.xh.zero_(); L.c.zero_(); }
  }

  // (h, c) of every layer: (L, B, P) and (L, B, H).
  std::vector<Tensor> state() const {
    std::vector<Tensor> hs, cs;
    for (const auto& L : layers_) { hs.push_back(L.xh.narrow(1, L.D, L.P)); cs.push_back(L.c); }
    return {at::stack(hs), at::stack(cs)};
  }

  void set_state(const Tensor& h, const Tensor& c) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      layers_[l].xh.narrow(1, layers_[l].D, layers_[l].P).copy_(h[l]);
      layers_[l].c.copy_(c[l]);
    }
  }

 private:
  int64_t B_;
  std::vector<StreamLayer> layers_;
};

}  // namespace lstmkit
