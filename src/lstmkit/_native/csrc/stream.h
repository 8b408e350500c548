// Streaming inference: a stateful, single-step stacked LSTM for online use (one native call per step).
//
// Per layer, x_t W_ih^T + h_{t-1} W_hh^T (+ bias) is accumulated into the gate buffer and the fused gate pass
// writes the new h into a second buffer (the two are swapped after each step); the state stays inside the object.
// Large layers split their hidden units between two threads, with a barrier after each layer.
#pragma once
#include "kernels.h"
#include "team.h"

#include <ATen/Parallel.h>
#include <functional>

#include <vector>

namespace lstmkit {

using at::Tensor;

struct StreamLayer {
  int64_t D, H, P, G;
  bool coupled;
  std::vector<Tensor> w_gate;  // per gate: (D+P, H) = W_ih^T on top of W_hh^T, as 16-column panels (pack_cols16)
  Tensor xh;      // (2, B, D+P): [x_t, h_{t-1}], the GEMM operand (one copy per thread)
  Tensor bias;    // (G*H)
  Tensor w_ph;    // (3H) or (2H), or undefined
  Tensor w_hr_t;  // (H, P) row-major, or undefined
  Tensor h[2];    // (B, P) each: the state read this step and the one written (swapped after every step)
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
      const Tensor w_cat = at::cat({w_ih.t(), w_hh.t()}, 0);  // (D+P, G*H)
      for (int q = 0; q < L.G; ++q) L.w_gate.push_back(pack_cols16(w_cat.narrow(1, q * L.H, L.H)));
      L.xh = at::zeros({2, B_, L.D + L.P}, at::kFloat);
      L.bias = w[2].numel() ? w[2].detach().to(at::kFloat).contiguous() : at::zeros({L.G * L.H}, at::kFloat);
      if (w[3].numel()) L.w_hr_t = w[3].detach().to(at::kFloat).t().contiguous();
      if (w[4].numel()) L.w_ph = w[4].detach().to(at::kFloat).contiguous();
      L.h[0] = at::zeros({B_, L.P}, at::kFloat);
      L.h[1] = at::zeros({B_, L.P}, at::kFloat);
      L.c = at::zeros({B_, L.H}, at::kFloat);
      L.gates = at::empty({B_, L.G * L.H}, at::kFloat);
      L.m = at::empty({B_, L.H}, at::kFloat);
      L.zero = at::zeros({L.H}, at::kFloat);
      layers_.push_back(L);
      // two threads split the hidden units when a layer's step is large enough (team.h); a projection's GEMM
      // needs the whole of m, so a stack with one runs on one thread
      if (stream_layer_large(L.H, (L.D + L.P) * L.G * L.H * B_)) two_threads_ = true;
      step_macs_ += (L.D + L.P) * L.G * L.H * B_;
      if (L.w_hr_t.defined()) has_proj_ = true;
    }
  }

  // Advance one step with input x (B, D); returns the last layer's output (B, P) (a new tensor).
  Tensor step(const Tensor& x_in) {
    Tensor x = x_in.to(at::kFloat).contiguous();
    TORCH_CHECK(x.dim() == 2 && x.size(0) == B_ && x.size(1) == layers_[0].D, "lstmkit: stream.step expects x of "
                "shape (", B_, ", ", layers_[0].D, "), got ", x.sizes());
    const float* xp = x.data_ptr<float>();
    if (!has_proj_ && stream_split(two_threads_, step_macs_)) {
      Barrier2 bar;
      std::function<void(int)> job = [&](int tid) { run_layers(xp, tid, 2, &bar); };
      if (!Team2::run(job)) run_layers(xp, 0, 1, nullptr);
    } else {
      run_layers(xp, 0, 1, nullptr);
    }
    cur_ ^= 1;
    const StreamLayer& last = layers_.back();
    return last.h[cur_].clone();
  }

 private:
  // Thread ``tid`` of ``nth`` runs every layer on its share of the hidden units.
  void run_layers(const float* xp, int tid, int nth, Barrier2* bar) {
    FlushDenormals ftz;
    const float* in = xp;
    for (size_t l = 0; l < layers_.size(); ++l) {
      StreamLayer& L = layers_[l];
      const int64_t H = L.H, GH = L.G * L.H, D = L.D, P = L.P;
      int64_t j0, j1;  // this thread's units
      stream_units(H, tid, nth, &j0, &j1);
      const float* hcur = L.h[cur_].data_ptr<float>();
      float* hnew = L.h[cur_ ^ 1].data_ptr<float>();
      float* g = L.gates.data_ptr<float>();
      const float* bias = L.bias.data_ptr<float>();
      // [x_t, h_{t-1}] in one buffer (one per thread: it is tiny), so each gate block is one GEMM with
      // K = D + P over contiguous panels
      float* xh = L.xh.data_ptr<float>() + tid * B_ * (D + P);
      for (int64_t b = 0; b < B_; ++b) {
        std::memcpy(xh + b * (D + P), in + b * D, sizeof(float) * D);
        std::memcpy(xh + b * (D + P) + D, hcur + b * P, sizeof(float) * P);
      }
      for (int q = 0; q < L.G; ++q) {
        const int64_t n0 = q * H + j0, n1 = q * H + j1;
        for (int64_t b = 0; b < B_; ++b) std::memcpy(g + b * GH + n0, bias + n0, sizeof(float) * (n1 - n0));
        gemm_packed_cols(B_, D + P, xh, D + P, L.w_gate[q].data_ptr<float>(), g + q * H, GH, j0, j1);
      }
      const float* ph = L.w_ph.defined() ? L.w_ph.data_ptr<float>() : nullptr;
      const float* zero = L.zero.data_ptr<float>();
      const float *p_i = zero, *p_f = zero, *p_o = zero;
      if (ph) { if (L.coupled) { p_f = ph; p_o = ph + H; } else { p_i = ph; p_f = ph + H; p_o = ph + 2 * H; } }
      const bool proj = L.w_hr_t.defined();
      for (int64_t b = 0; b < B_; ++b) {
        float* gb = g + b * GH;
        float* cb = L.c.data_ptr<float>() + b * H;
        float* out = proj ? L.m.data_ptr<float>() + b * H : hnew + b * P;
        const float* af = L.coupled ? gb : gb + H;
        const float* ag = af + H;
        const float* ao = ag + H;
        if (L.coupled) {
#pragma omp simd
          for (int64_t j = j0; j < j1; ++j) {
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
          for (int64_t j = j0; j < j1; ++j) {
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
      if (proj) {  // single-threaded (nth == 1) when any layer projects
        std::memset(hnew, 0, sizeof(float) * B_ * P);
        gemm_acc_cols((int)B_, (int)H, L.m.data_ptr<float>(), (int)H, L.w_hr_t.data_ptr<float>(), (int)P, hnew,
                      (int)P, 0, (int)P);
      }
      if (bar) bar->wait();  // the next layer reads this layer's whole new h
      in = hnew;
    }
  }

 public:
  void reset() {
    for (auto& L : layers_) { L.h[0].zero_(); L.h[1].zero_(); L.c.zero_(); }
  }

  // (h, c) of every layer: (L, B, P) and (L, B, H).
  std::vector<Tensor> state() const {
    std::vector<Tensor> hs, cs;
    for (const auto& L : layers_) { hs.push_back(L.h[cur_]); cs.push_back(L.c); }
    return {at::stack(hs), at::stack(cs)};
  }

  void set_state(const Tensor& h, const Tensor& c) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      layers_[l].h[cur_].copy_(h[l]);
      layers_[l].c.copy_(c[l]);
    }
  }

 private:
  int64_t B_;
  int cur_ = 0;  // which of each layer's two h buffers holds the current state
  bool two_threads_ = false, has_proj_ = false;
  int64_t step_macs_ = 0;  // multiply-adds of one step over all layers
  std::vector<StreamLayer> layers_;
};

}  // namespace lstmkit
