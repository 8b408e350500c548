// Entry points of the fused LSTM loop (fused_lstm.cpp), shared by the ops (lstm.cpp) and the layer node (layer.cpp).
#pragma once
#include <ATen/ATen.h>

#include <tuple>
#include <vector>

namespace lstmkit {

// Forward without projection or recurrent dropout: gx (T, B, G*H); p_i/p_f/p_o peepholes and zh/zc zoneout masks
// may be null; bs: rows active per step; save: keep per-step gates and cells for backward; bias (G*H) or null is
// added to the pre-activations (when gx was computed without it). Returns y, h_T, c_T, gates, cn, cs, m.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_fused(
    const at::Tensor& gx, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh, const float* p_i,
    const float* p_f, const float* p_o, const float* zh, const float* zc, const std::vector<int64_t>& bs,
    bool coupled, bool save, const float* bias);

// Backward of lstm_fwd_fused: returns dG (T, B, G*H), dh0, dc0 (and an empty tensor). csp: carried cells.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bwd_fused(
    const at::Tensor& dy, const at::Tensor& dhT, const at::Tensor& dcT, const at::Tensor& gates, const at::Tensor& cn,
    const float* csp, const at::Tensor& c0, const at::Tensor& w_hh, const float* p_i, const float* p_f,
    const float* p_o, const float* zh, const float* zc, const std::vector<int64_t>& bs, bool coupled);

}  // namespace lstmkit
