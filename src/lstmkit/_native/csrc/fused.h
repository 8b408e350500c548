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

// The loop may take the input itself instead of G_x (see lstm_fwd_fused): x (T*B, D) rows, padded (row b of step t
// at t*B + b, also with lengths), and w_ih (G*H, D), both fp32, or both bf16 with a bf16 W_hh. Each step's GEMM
// then adds x_t W_ih^T: G_x is neither written to memory nor read back, and the product runs inside the loop's
// register blocks.
struct LoopInput {
  at::Tensor x;     // (T*B, D)
  at::Tensor w_ih;  // (G*H, D)
};

// Whether the loops should take the input in (LoopInput) rather than read a G_x computed beforehand by one GEMM:
// B >= 2, and x, W_ih and W_hh all fp32, or all bf16 where the bf16 loop runs (AVX512_BF16). Measured against
// G_x first, in one process: fp32 inference 10-14% faster at the grid shapes from 8x100x32x128 up (bidirectional
// 9-23%), training 1-5% (bidirectional 5-8%); from 2x100x32x64 to 4x100x32x128 level or up to 13% faster (one
// run of 4x100x32x64 inference 7% slower, another level). At B = 1 each step is a matrix-vector product, and
// streaming W_ih's panels there costs more than the rows they multiply (inference 6% slower at 1x100x64x256).
// bf16 (the input's term as bf16 dot products, fp32 accumulation; G_x first was a bf16 GEMM rounded to bf16):
// inference 8-26% faster at the grid shapes from 8x100x32x128 up, training 2-4%; 1-15% from 2x100x32x64 to
// 4x100x32x128.
bool input_in_loop(int64_t B, const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh);

// Forward without projection: gx (T, B, G*H); p_i/p_f/p_o peepholes, zh/zc zoneout masks and rd (B, H) the
// recurrent-dropout mask may be null; bs: rows active per step; save: keep per-step gates and cells for
// backward; bias (G*H) or null is added to the pre-activations (when gx was computed without it); h0_before_y:
// y is a view one step into a buffer that starts with a copy of h0 (see there); off (step_offsets of bs): gx
// holds the active rows only, (off[T], G*H), else gx is (T, B, G*H). in (gx is then an empty fp32 tensor):
// the loop computes the input's term itself (see LoopInput). Returns y, h_T, c_T, gates, cn, cs, m.
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
                         at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
LnFwd lstm_ln_fwd(const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                  const at::Tensor& ln_hh_w, const at::Tensor& ln_hh_b, const at::Tensor& ln_c_w,
                  const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
                  const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
                  const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled,
                  const c10::optional<at::Tensor>& w_hr);
LnFwd lstm_ln_fwd_impl(const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
                       const at::Tensor& ln_hh_w, const at::Tensor& ln_hh_b, const at::Tensor& ln_c_w,
                       const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
                       const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
                       const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled,
                       bool h0_before_y, const c10::optional<at::Tensor>& w_hr = c10::nullopt);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_ln_bwd(
    const at::Tensor& dy, const at::Tensor& dhT, const at::Tensor& dcT, const at::Tensor& gates, const at::Tensor& cn,
    const at::Tensor& cs, const at::Tensor& c0, const at::Tensor& w_hh, const at::Tensor& n_hh,
    const at::Tensor& r_hh, const at::Tensor& n_c, const at::Tensor& r_c, const at::Tensor& ln_hh_w,
    const at::Tensor& ln_c_w, const at::Tensor& ln_c_b, const c10::optional<at::Tensor>& w_ph,
    const c10::optional<at::Tensor>& batch_sizes, const c10::optional<at::Tensor>& rd,
    const c10::optional<at::Tensor>& zo_h, const c10::optional<at::Tensor>& zo_c, bool coupled,
    const c10::optional<at::Tensor>& w_hr = c10::nullopt);

// Row layer norm of the input projection and its backward with the gain and bias sums (ln_rows.cpp; see there).
void ln_rows_fwd(int64_t R, int64_t N, const float* x, const float* w, const float* b, float* out, float* mean,
                 float* rstd);
void ln_rows_bwd(int64_t R, int64_t N, const float* d, const float* x, const float* mean, const float* rstd,
                 const float* w, float* dx, float* dw, float* db, const float* n2, float* dw2);

}  // namespace lstmkit
