// Entry points of the LSTM loops (fused_lstm.cpp, fused_lstm_bwd.cpp, ln_lstm.cpp), shared by the ops and the layer
// nodes (layer.cpp).
#pragma once
#include <ATen/ATen.h>

#include "pool.h"

#include <tuple>
#include <vector>

namespace lstmkit {

constexpr int64_t UB = 16;  // hidden units per panel block of the fused loops

// The output buffer of a loop, y (T, B, H) fp32 from the memory pool. h0_before_y: y is a view one step into a
// (T+1, B, H) buffer whose first step is a copy of h0 (B, H), so that the weight gradient reads
// H_prev = [h0; y_0 .. y_{T-2}] as one (T*B, H) matrix (layer.cpp, recurrent_weight_grad).
inline at::Tensor loop_output(const at::Tensor& h0, int64_t T, bool h0_before_y) {
  const int64_t B = h0.size(0), H = h0.size(1);
  if (!h0_before_y) return pool_empty({T, B, H}, h0.options().dtype(at::kFloat));
  at::Tensor yx = pool_empty({T + 1, B, H}, h0.options().dtype(at::kFloat));
  yx[0].copy_(h0);
  return yx.narrow(0, 1, T);
}

// Inference may hand the loop X itself instead of G_x (see lstm_fwd_fused): x (T*B, D) rows and W_ih^T packed by
// pack_cols16 ((D, G*H) as 16-column panels); the biases still come as lstm_fwd_fused's ``bias``.
struct LoopInput {
  const float* x = nullptr;
  int64_t D = 0;
  const float* w_ih_packed = nullptr;
};

// Forward without projection: gx (T, B, G*H); p_i/p_f/p_o peepholes, zh/zc zoneout masks and rd (B, H) the
// recurrent-dropout mask may be null; bs: rows active per step; save: keep per-step gates and cells for
// backward; bias (G*H) or null is added to the pre-activations (when gx was computed without it); h0_before_y:
// y is a view one step into a buffer that starts with a copy of h0 (see there); off (step_offsets of bs): gx
// holds the active rows only, (off[T], G*H), else gx is (T, B, G*H). in (inference, every row active, fp32, H a
// multiple of 16; gx is then ignored): each thread computes G_x for its own units, a few steps at a time, inside
// the loop. Returns y, h_T, c_T, gates, cn, cs, m.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_fused(
    const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh, const float* p_i,
    const float* p_f, const float* p_o, const float* zh, const float* zc, const std::vector<int64_t>& bs,
    bool coupled, bool save, const float* bias, bool h0_before_y = false,
    const std::vector<int64_t>* off = nullptr, const float* rd = nullptr, const LoopInput* in = nullptr);

// Backward of lstm_fwd_fused: returns dG (T, B, G*H), dh0, dc0, and for bf16 weights dG as bf16 ((rows, G*H),
// a view with row stride G*H rounded up to even; else an empty tensor). csp: carried cells.
// db (G*H), when given, receives the bias gradient (dG summed over steps and rows), and dph (3H, coupled 2H) the
// peephole gradient. off (step_offsets of bs): dG holds the active rows only, (off[T], G*H).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bwd_fused(
    const at::Tensor& dy, const at::Tensor& dhT, const at::Tensor& dcT, const at::Tensor& gates, const at::Tensor& cn,
    const float* csp, const at::Tensor& c0, const at::Tensor& w_hh, const float* p_i, const float* p_f,
    const float* p_o, const float* zh, const float* zc, const std::vector<int64_t>& bs, bool coupled,
    float* db = nullptr, float* dph = nullptr, const std::vector<int64_t>* off = nullptr,
    const float* rd = nullptr);

// Layer-norm LSTM recurrence (ln_lstm.cpp; the registered ops lstm_ln_fwd / lstm_ln_bwd; the layer node calls
// lstm_ln_fwd_impl with h0_before_y).
using LnFwd = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                         at::Tensor, at::Tensor, at::Tensor>;
LnFwd lstm_ln_fwd(const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                  const at::Tensor& ln_hh_w, const at::Tensor& ln_hh_b, const at::Tensor& ln_c_w,
                  const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
                  const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
                  const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled);
LnFwd lstm_ln_fwd_impl(const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                       const at::Tensor& ln_hh_w, const at::Tensor& ln_hh_b, const at::Tensor& ln_c_w,
                       const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
                       const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
                       const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled,
                       bool h0_before_y);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_ln_bwd(
    const at::Tensor& dy, const at::Tensor& dhT, const at::Tensor& dcT, const at::Tensor& gates, const at::Tensor& cn,
    const at::Tensor& cs, const at::Tensor& c0, const at::Tensor& w_hh, const at::Tensor& n_hh,
    const at::Tensor& r_hh, const at::Tensor& n_c, const at::Tensor& r_c, const at::Tensor& ln_hh_w,
    const at::Tensor& ln_c_w, const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
    const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
    const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled);

// Row layer norm of the input projection and its backward with the gain and bias sums (ln_lstm.cpp; see there).
void ln_rows_fwd(int64_t R, int64_t N, const float* x, const float* w, const float* b, float* out, float* mean,
                 float* rstd);
void ln_rows_bwd(int64_t R, int64_t N, const float* d, const float* x, const float* mean, const float* rstd,
                 const float* w, float* dx, float* dw, float* db, const float* n2, float* dw2);

}  // namespace lstmkit
