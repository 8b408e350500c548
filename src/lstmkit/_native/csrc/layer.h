// The LSTM layer node's forward and backward as plain functions (layer.cpp), shared by the one-direction node and
// the node that runs both directions of a bidirectional layer at once (bilayer.cpp).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <array>
#include <vector>

namespace lstmkit {

// Helpers of the layer nodes (layer.cpp), shared with the GRU node (gru_layer.cpp) and the layer-norm node
// (ln_layer.cpp):
// G_x = X W_ih^T (rows, G*H) fp32 into pooled memory, without biases
at::Tensor project(const at::Tensor& x2, const at::Tensor& w_ih);
// an optional tensor, contiguous, or undefined
at::Tensor opt(const c10::optional<at::Tensor>& t);
// a^T b over all rows: the engine's TN GEMM (gemm_tn.h) in fp32, ATen's mm otherwise
at::Tensor mm_tn(const at::Tensor& a, const at::Tensor& b);
// dW_hh = sum_t dG_t^T h_{t-1} over dG2 (T*B, G*H) with h_{-1} = h0 and then y (see layer.cpp)
at::Tensor recurrent_weight_grad(const at::Tensor& dG2, const at::Tensor& h0, const at::Tensor& y,
                                 bool h0_before_y = false, const std::vector<int64_t>* bs = nullptr,
                                 const std::vector<int64_t>* off = nullptr);
// ``t`` as a contiguous ``dtype`` tensor, copied into pooled memory when it is not one already
at::Tensor pooled_as(const at::Tensor& t, at::ScalarType dtype);
// b_ih + b_hh, or the one that is there, or undefined
at::Tensor bias_sum(const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh);
// the peephole weight gradient from the gate gradients dA (T, B, G*H), c0 (B, H) and the new cells cn (T, B, H)
at::Tensor peephole_grad(const at::Tensor& dA, const at::Tensor& c0, const at::Tensor& cn, bool coupled);

// The batch in the order the loop runs it: with lengths in no particular order (perm, see perm_of in kernels.h), x
// and the initial states gathered into longest-first order; the callers put the results back at the end.
struct LoopOrder {
  std::vector<int64_t> perm;  // empty: the caller's order is the loop's
  at::Tensor x, h0, c0;
};
LoopOrder loop_order(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                     const c10::optional<at::Tensor>& perm);

// What one direction's backward needs: the tensors (x's rows, weights, states, y, gates, cells) and the flags.
struct LayerSaved {
  std::vector<at::Tensor> t;
  bool coupled = false, has_b_ih = false, has_b_hh = false;
  std::vector<int64_t> x_sizes, bs;
  std::vector<int64_t> perm;  // the batch order the loop ran in (perm_of; empty: the caller's)
};

torch::autograd::variable_list layer_forward(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                             const c10::optional<at::Tensor>& b_ih,
                                             const c10::optional<at::Tensor>& b_hh,
                                             const c10::optional<at::Tensor>& w_ph,
                                             const c10::optional<at::Tensor>& batch_sizes, const at::Tensor& h0,
                                             const at::Tensor& c0, bool coupled, LayerSaved& s,
                                             const c10::optional<at::Tensor>& perm = c10::nullopt);
torch::autograd::variable_list layer_backward(const LayerSaved& s, const std::array<bool, 6>& needs,
                                              const torch::autograd::variable_list& grads);
void save_layer(torch::autograd::AutogradContext* ctx, const std::vector<const LayerSaved*>& dirs);
std::vector<LayerSaved> load_layer(torch::autograd::AutogradContext* ctx, size_t n);

// needs_input_grad by argument position. A node's edges (what needs_input_grad indexes) skip absent optional
// tensors and non-tensor arguments, so forward records each position's edge with record_edges (``present``: one
// flag per argument, whether it is a tensor that is there) and backward asks needs_grad(ctx, position).
inline void record_edges(torch::autograd::AutogradContext* ctx, const std::vector<bool>& present) {
  std::vector<int64_t> edge;
  int64_t next = 0;
  for (bool p : present) edge.push_back(p ? next++ : -1);
  ctx->saved_data["edges"] = edge;
}

inline bool needs_grad(torch::autograd::AutogradContext* ctx, int64_t position) {
  const int64_t e = ctx->saved_data["edges"].toIntList().get(position);
  return e >= 0 && ctx->needs_input_grad(e);
}

inline bool present(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

std::vector<at::Tensor> lstm_layer_infer(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                         const c10::optional<at::Tensor>& b_ih,
                                         const c10::optional<at::Tensor>& b_hh,
                                         const c10::optional<at::Tensor>& w_ph,
                                         const c10::optional<at::Tensor>& batch_sizes, const at::Tensor& h0,
                                         const at::Tensor& c0, bool coupled,
                                         const c10::optional<at::Tensor>& perm = c10::nullopt);

}  // namespace lstmkit
