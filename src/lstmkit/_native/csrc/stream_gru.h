// Streaming inference for the GRU and the Elman RNN: a stateful single-step stack, one native call per step (the
// twin of stream.h's LSTMStream).
//
// Per layer and step, the gates whose input and recurrent terms are simply summed (the GRU's r and z, the RNN's one
// pre-activation) take [x_t, h_{t-1}] [W_ih; W_hh]^T as one GEMM with K = D + H. The GRU's candidate keeps the two
// terms apart, n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn)), so it has two GEMMs. Weights are packed
// once, per gate, into 16-column panels; large layers split their hidden units between two threads, with a barrier
// after each layer (the next layer reads the whole new h).
#pragma once
#include "kernels.h"
#include "team.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

namespace lstmkit {

struct CellStreamLayer {
  int64_t D, H;
  std::vector<at::Tensor> w_sum;  // per summed gate (GRU: r, z; RNN: one): [W_ih; W_hh]^T (D+H, H) as panels
  at::Tensor b_sum;               // (S*H): b_ih + b_hh of the S summed gates
  at::Tensor w_xn, w_hn;          // GRU candidate: W_in^T (D, H) and W_hn^T (H, H) as panels
  at::Tensor b_xn, b_hn;          // GRU candidate: b_in, b_hn (H each)
  at::Tensor xh;                  // (2, B, D+H): [x_t, h_{t-1}], the GEMM operand (one copy per thread)
  at::Tensor h[2];                // (B, H) each: the state read this step and the one written (swapped per step)
  at::Tensor g;                   // (B, S*H): the summed gates' pre-activations
  at::Tensor nx, nh;              // (B, H) each: the GRU candidate's input and recurrent terms
};

class CellStream {
 public:
  // layers: per layer (w_ih, w_hh, b_ih or empty, b_hh or empty); batch: B; mode: "gru", "rnn_tanh" or "rnn_relu".
  CellStream(const std::vector<std::vector<at::Tensor>>& layers, int64_t batch, const std::string& mode)
      : B_(batch), gru_(mode == "gru"), relu_(mode == "rnn_relu") {
    TORCH_CHECK(gru_ || relu_ || mode == "rnn_tanh", "lstmkit: CellStream mode must be 'gru', 'rnn_tanh' or "
                "'rnn_relu', got '", mode, "'");
    const int G = gru_ ? 3 : 1, S = gru_ ? 2 : 1;
    auto f32 = [](const at::Tensor& t) { return t.detach().to(at::kFloat).contiguous(); };
    for (const auto& w : layers) {
      CellStreamLayer L;
      const at::Tensor w_ih = f32(w[0]), w_hh = f32(w[1]);
      const int64_t D = w_ih.size(1), H = w_hh.size(1);
      L.D = D;
      L.H = H;
      const at::Tensor b_ih = w[2].numel() ? f32(w[2]) : at::zeros({G * H}, at::kFloat);
      const at::Tensor b_hh = w[3].numel() ? f32(w[3]) : at::zeros({G * H}, at::kFloat);
      const at::Tensor w_cat = at::cat({w_ih.t(), w_hh.t()}, 0);  // (D+H, G*H)
      for (int q = 0; q < S; ++q) L.w_sum.push_back(pack_cols16(w_cat.narrow(1, q * H, H)));
      L.b_sum = (b_ih.narrow(0, 0, S * H) + b_hh.narrow(0, 0, S * H)).contiguous();
      if (gru_) {
        L.w_xn = pack_cols16(w_ih.t().narrow(1, 2 * H, H));
        L.w_hn = pack_cols16(w_hh.t().narrow(1, 2 * H, H));
        L.b_xn = b_ih.narrow(0, 2 * H, H).contiguous();
        L.b_hn = b_hh.narrow(0, 2 * H, H).contiguous();
        L.nx = at::empty({B_, H}, at::kFloat);
        L.nh = at::empty({B_, H}, at::kFloat);
      }
      L.xh = at::zeros({2, B_, D + H}, at::kFloat);
      L.h[0] = at::zeros({B_, H}, at::kFloat);
      L.h[1] = at::zeros({B_, H}, at::kFloat);
      L.g = at::empty({B_, S * H}, at::kFloat);
      // two threads split the hidden units when a layer's step is large enough (team.h)
      if (stream_layer_large(H, (D + H) * G * H * B_)) two_threads_ = true;
      step_macs_ += (D + H) * G * H * B_;
      layers_.push_back(L);
    }
  }

  // Advance one step with input x (B, D); returns the last layer's output (B, H) (a new tensor).
  at::Tensor step(const at::Tensor& x_in) {
    const at::Tensor x = x_in.to(at::kFloat).contiguous();
    TORCH_CHECK(x.dim() == 2 && x.size(0) == B_ && x.size(1) == layers_[0].D, "lstmkit: stream.step expects x of "
                "shape (", B_, ", ", layers_[0].D, "), got ", x.sizes());
    const float* xp = x.data_ptr<float>();
    bool done = false;
    if (stream_split(two_threads_, step_macs_)) {
      Barrier2 bar;
      std::function<void(int)> job = [&](int tid) { run_layers(xp, tid, 2, &bar); };
      done = Team2::run(job);
    }
    if (!done) run_layers(xp, 0, 1, nullptr);
    cur_ ^= 1;
    return layers_.back().h[cur_].clone();
  }

  void reset() {
    for (auto& L : layers_) { L.h[0].zero_(); L.h[1].zero_(); }
  }

  // h of every layer: (L, B, H).
  at::Tensor state() const {
    std::vector<at::Tensor> hs;
    for (const auto& L : layers_) hs.push_back(L.h[cur_]);
    return at::stack(hs);
  }

  void set_state(const at::Tensor& h) {
    for (size_t l = 0; l < layers_.size(); ++l) layers_[l].h[cur_].copy_(h[l]);
  }

 private:
  // Thread ``tid`` of ``nth`` runs every layer on its share [j0, j1) of the hidden units (16-unit boundaries).
  void run_layers(const float* xp, int tid, int nth, Barrier2* bar) {
    FlushDenormals ftz;
    const float* in = xp;
    for (auto& L : layers_) {
      const int64_t D = L.D, H = L.H, K = D + H, S = (int64_t)L.w_sum.size();
      int64_t j0, j1;  // this thread's units
      stream_units(H, tid, nth, &j0, &j1);
      const int64_t nj = j1 - j0;
      const float* hcur = L.h[cur_].data_ptr<float>();
      float* hnew = L.h[cur_ ^ 1].data_ptr<float>();
      float* xh = L.xh.data_ptr<float>() + tid * B_ * K;
      for (int64_t b = 0; b < B_; ++b) {
        std::memcpy(xh + b * K, in + b * D, sizeof(float) * D);
        std::memcpy(xh + b * K + D, hcur + b * H, sizeof(float) * H);
      }
      float* g = L.g.data_ptr<float>();  // (B, S*H)
      const float* bsum = L.b_sum.data_ptr<float>();
      for (int64_t q = 0; q < S; ++q) {  // pre-activations: bias + [x, h] [W_ih; W_hh]^T
        for (int64_t b = 0; b < B_; ++b) std::memcpy(g + b * S * H + q * H + j0, bsum + q * H + j0, sizeof(float) * nj);
        gemm_packed_cols(B_, K, xh, K, L.w_sum[q].data_ptr<float>(), g + q * H, S * H, j0, j1);
      }
      if (gru_) {
        float *nx = L.nx.data_ptr<float>(), *nh = L.nh.data_ptr<float>();
        for (int64_t b = 0; b < B_; ++b) {
          std::memcpy(nx + b * H + j0, L.b_xn.data_ptr<float>() + j0, sizeof(float) * nj);
          std::memcpy(nh + b * H + j0, L.b_hn.data_ptr<float>() + j0, sizeof(float) * nj);
        }
        gemm_packed_cols(B_, D, xh, K, L.w_xn.data_ptr<float>(), nx, H, j0, j1);      // x W_in^T + b_in
        gemm_packed_cols(B_, H, xh + D, K, L.w_hn.data_ptr<float>(), nh, H, j0, j1);  // h W_hn^T + b_hn
        for (int64_t b = 0; b < B_; ++b) {
          const float *gr = g + b * 2 * H, *gz = gr + H, *nxb = nx + b * H, *nhb = nh + b * H, *hp = hcur + b * H;
          float* hb = hnew + b * H;
#pragma omp simd
          for (int64_t j = j0; j < j1; ++j) {
            const float r = sigmoidf(gr[j]), z = sigmoidf(gz[j]);
            const float n = tanhf_(nxb[j] + r * nhb[j]);
            hb[j] = (1.f - z) * n + z * hp[j];
          }
        }
      } else {
        for (int64_t b = 0; b < B_; ++b) {
          const float* gb = g + b * H;
          float* hb = hnew + b * H;
          if (relu_) {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) hb[j] = std::max(gb[j], 0.f);
          } else {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) hb[j] = tanhf_(gb[j]);
          }
        }
      }
      if (bar) bar->wait();  // the next layer (and the next step) reads this layer's whole new h
      in = hnew;
    }
  }

  int64_t B_;
  bool gru_, relu_;
  int cur_ = 0;  // which of each layer's two h buffers holds the current state
  bool two_threads_ = false;
  int64_t step_macs_ = 0;  // multiply-adds of one step over all layers
  std::vector<CellStreamLayer> layers_;
};

}  // namespace lstmkit
