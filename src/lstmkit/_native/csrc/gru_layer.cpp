// One GRU layer-direction as a single C++ autograd node (fp32; no recurrent dropout), its inference twin, and the
// node that runs both directions of a bidirectional GRU layer at once, one per core.
//
// The same math as lstmkit/_native/ops.py's _Projection and formulas.py's gru_backward (the path for every other
// case and for the registered torch ops), from one C++ call per layer forward and backward: G_x = X W_ih^T + b_ih over all
// rows, the loop (gru_rnn.cpp), then dX = dG_x W_ih, dW_ih = dG_x^T X, dW_hh = dG_h^T H_prev and the bias sums.
#include "gemm.h"
#include "kernels.h"
#include "layer.h"
#include "team.h"

namespace lstmkit {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OT = c10::optional<Tensor>;

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_fwd(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                                   const OT&, const OT&);
std::tuple<Tensor, Tensor, Tensor> gru_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                           const Tensor&, const Tensor&, const OT&, const OT&, const OT&);

namespace {

// X (T*B, D) of x (T, B, D)
Tensor rows_of(const Tensor& x) { return x.reshape({x.size(0) * x.size(1), x.size(2)}).contiguous(); }

// G_x = X W_ih^T + b_ih (T, B, 3H) in pooled memory, from X (T*B, D)
Tensor gru_projection(const Tensor& x2, int64_t T, const Tensor& w_ih, const OT& b_ih) {
  const Tensor b = opt(b_ih);
  Tensor gx = pool_empty({x2.size(0), w_ih.size(0)}, x2.options());
  matmul_nt_into(gx, x2, w_ih, b.defined() ? b.data_ptr<float>() : nullptr);
  return gx.view({T, x2.size(0) / T, w_ih.size(0)});
}

// Forward: x (T, B, D), w_ih (3H, D), w_hh (3H, H), biases (3H) or none, batch_sizes (T) or none, h0 (B, H), perm:
// the batch order of batch_sizes (perm[b]: the caller's row that sorted row b is), or none (the caller's order is
// sorted; the node gathers x and h0 into that order and scatters y and h_T back, as the LSTM node does). Returns
// y (T, B, H) and h_T; fills ``s`` with x's rows, the weights, h0, y, the gates and h W_hn^T + b_hn, all sorted.
variable_list gru_layer_forward(const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh, const OT& b_ih,
                                const OT& b_hh, const OT& batch_sizes, const Tensor& h0_in, LayerSaved& s,
                                const OT& perm_in) {
  FlushDenormals ftz;
  s.perm = perm_of(perm_in);
  const Tensor x = permute_rows(x_in, s.perm, false), h0 = permute_rows(h0_in, s.perm, false);
  const Tensor x2 = rows_of(x), bs = opt(batch_sizes);
  auto out = gru_fwd(gru_projection(x2, x.size(0), w_ih, b_ih), h0, w_hh, b_hh, batch_sizes, c10::nullopt,
                     c10::nullopt);
  s.t = {x2, w_ih, w_hh, h0, std::get<0>(out), std::get<2>(out), std::get<3>(out),
         bs.defined() ? bs : at::empty({0}, at::kLong)};
  s.has_b_ih = opt(b_ih).defined();
  s.has_b_hh = opt(b_hh).defined();
  s.x_sizes = x.sizes().vec();
  return {permute_rows(std::get<0>(out), s.perm, true), permute_rows(std::get<1>(out), s.perm, true)};
}

// Backward from ``s`` and the gradients of (y, h_T); needs: x, w_ih, w_hh, b_ih, b_hh. Returns dx, d_w_ih, d_w_hh,
// d_b_ih, d_b_hh, dh0.
variable_list gru_layer_backward(const LayerSaved& saved, const std::array<bool, 5>& needs, const variable_list& grads) {
  FlushDenormals ftz;
  const auto& s = saved.t;
  const Tensor &x2 = s[0], &w_ih = s[1], &w_hh = s[2], &h0 = s[3], &y = s[4], &gates = s[5], &ghn = s[6];
  const OT bs = s[7].numel() ? OT(s[7]) : OT();
  const int64_t T = y.size(0), B = y.size(1), H3 = gates.size(2);
  // the incoming gradients in the loop's (sorted) order; dx and dh0 go back in the caller's
  const Tensor dy = grads[0].defined() ? pooled_as(permute_rows(grads[0], saved.perm, false), at::kFloat)
                                       : at::zeros_like(y);
  const Tensor dhT = grads[1].defined() ? permute_rows(grads[1], saved.perm, false).contiguous() : at::zeros_like(h0);
  auto back = gru_bwd(dy, dhT, gates, ghn, h0, y, w_hh, bs, c10::nullopt, c10::nullopt);
  const Tensor dGx = std::get<0>(back).view({T * B, H3}), dGh = std::get<1>(back).view({T * B, H3});
  Tensor dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh;
  if (needs[0]) dx = permute_rows(matmul_nt(dGx, w_ih.t()).view(saved.x_sizes), saved.perm, true);
  if (needs[1]) d_w_ih = mm_tn(dGx, x2);
  if (needs[2]) d_w_hh = recurrent_weight_grad(dGh, h0, y);
  if (saved.has_b_ih && needs[3]) d_b_ih = dGx.sum(0);
  if (saved.has_b_hh && needs[4]) d_b_hh = dGh.sum(0);
  return {dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh, permute_rows(std::get<2>(back), saved.perm, true)};
}

// arguments: x, w_ih, w_hh, b_ih, b_hh, batch_sizes, h0, perm
struct GruLayer : public torch::autograd::Function<GruLayer> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                               const OT& b_ih, const OT& b_hh, const OT& batch_sizes, const Tensor& h0,
                               const OT& perm) {
    LayerSaved s;
    variable_list out = gru_layer_forward(x, w_ih, w_hh, b_ih, b_hh, batch_sizes, h0, s, perm);
    save_layer(ctx, {&s});
    record_edges(ctx, {true, true, true, present(b_ih), present(b_hh), present(batch_sizes), true, present(perm)});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::array<bool, 5> needs{needs_grad(ctx, 0), needs_grad(ctx, 1), needs_grad(ctx, 2), needs_grad(ctx, 3),
                                    needs_grad(ctx, 4)};
    variable_list g = gru_layer_backward(load_layer(ctx, 1)[0], needs, grads);
    return {g[0], g[1], g[2], g[3], g[4], Tensor(), g[5], Tensor()};
  }
};

// both directions: x_f, x_r (reversed within each length), the weights of each, one batch_sizes, h0_f, h0_r, one perm
struct GruBiLayer : public torch::autograd::Function<GruBiLayer> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                               const Tensor& w_hh_f, const OT& b_ih_f, const OT& b_hh_f, const Tensor& w_ih_r,
                               const Tensor& w_hh_r, const OT& b_ih_r, const OT& b_hh_r, const OT& batch_sizes,
                               const Tensor& h0_f, const Tensor& h0_r, const OT& perm) {
    LayerSaved s[2];
    variable_list out[2];
    run_both([&](int d) {
      out[d] = d == 0 ? gru_layer_forward(x_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, batch_sizes, h0_f, s[0], perm)
                      : gru_layer_forward(x_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, h0_r, s[1], perm);
    });
    save_layer(ctx, {&s[0], &s[1]});
    record_edges(ctx, {true, true, true, true, present(b_ih_f), present(b_hh_f), true, true, present(b_ih_r),
                       present(b_hh_r), present(batch_sizes), true, true, present(perm)});
    return {out[0][0], out[0][1], out[1][0], out[1][1]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<LayerSaved> saved = load_layer(ctx, 2);
    auto need = [&](int i) { return needs_grad(ctx, i); };
    // input order: x_f 0, x_r 1, forward weights 2-5, reverse weights 6-9
    const std::array<bool, 5> needs[2] = {{need(0), need(2), need(3), need(4), need(5)},
                                          {need(1), need(6), need(7), need(8), need(9)}};
    variable_list g[2];
    run_both([&](int d) { g[d] = gru_layer_backward(saved[d], needs[d], {grads[2 * d], grads[2 * d + 1]}); });
    const variable_list &f = g[0], &r = g[1];
    return {f[0], r[0], f[1], f[2], f[3], f[4], r[1], r[2], r[3], r[4], Tensor(), f[5], r[5], Tensor()};
  }
};

std::vector<Tensor> gru_infer(const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh, const OT& b_ih,
                              const OT& b_hh, const OT& batch_sizes, const Tensor& h0_in,
                              const OT& perm_in = c10::nullopt) {
  FlushDenormals ftz;
  const std::vector<int64_t> perm = perm_of(perm_in);
  const Tensor x = permute_rows(x_in, perm, false), h0 = permute_rows(h0_in, perm, false);
  auto out = gru_fwd(gru_projection(rows_of(x), x.size(0), w_ih, b_ih), h0, w_hh, b_hh, batch_sizes, c10::nullopt,
                     c10::nullopt);
  return {permute_rows(std::get<0>(out), perm, true), permute_rows(std::get<1>(out), perm, true)};
}

}  // namespace

// Returns y, h_T (in the caller's batch order; perm: see gru_layer_forward).
std::vector<Tensor> gru_layer(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const OT& b_ih,
                              const OT& b_hh, const OT& batch_sizes, const Tensor& h0, const OT& perm) {
  return GruLayer::apply(x, w_ih, w_hh, b_ih, b_hh, batch_sizes, h0, perm);
}

std::vector<Tensor> gru_layer_infer(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const OT& b_ih,
                                    const OT& b_hh, const OT& batch_sizes, const Tensor& h0, const OT& perm) {
  return gru_infer(x, w_ih, w_hh, b_ih, b_hh, batch_sizes, h0, perm);
}

// Returns y_f, h_f, y_r, h_r (y_r in the reversed input's order; all in the caller's batch order: perm as for
// gru_layer).
std::vector<Tensor> gru_bilayer(const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f, const Tensor& w_hh_f,
                                const OT& b_ih_f, const OT& b_hh_f, const Tensor& w_ih_r, const Tensor& w_hh_r,
                                const OT& b_ih_r, const OT& b_hh_r, const OT& batch_sizes, const Tensor& h0_f,
                                const Tensor& h0_r, const OT& perm) {
  return GruBiLayer::apply(x_f, x_r, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes,
                           h0_f, h0_r, perm);
}

std::vector<Tensor> gru_bilayer_infer(const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                                      const Tensor& w_hh_f, const OT& b_ih_f, const OT& b_hh_f, const Tensor& w_ih_r,
                                      const Tensor& w_hh_r, const OT& b_ih_r, const OT& b_hh_r,
                                      const OT& batch_sizes, const Tensor& h0_f, const Tensor& h0_r,
                                      const OT& perm) {
  std::vector<Tensor> out[2];
  run_both([&](int d) {
    out[d] = d == 0 ? gru_infer(x_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, batch_sizes, h0_f, perm)
                    : gru_infer(x_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, batch_sizes, h0_r, perm);
  });
  return {out[0][0], out[0][1], out[1][0], out[1][1]};
}

}  // namespace lstmkit
