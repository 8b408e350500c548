// One LSTM layer-direction as a single C++ autograd node: input projection, fused loop, and the whole backward.
//
// The common case (fp32; standard, peephole or coupled; no lengths, zoneout, recurrent dropout or projection) is
// dominated at small sizes by what surrounds the kernels: two Python autograd Functions, their argument
// unwrapping and the backward's Python glue cost more than the recurrence of a (1, 100, 32, 64) layer. Here the
// same math runs from one C++ call per direction, forward and backward. The formulas are those of
// lstmkit/_native/ops.py (lstm_backward and _Projection), which stay the path for every other case and for the
// registered torch ops.
#include "fused.h"
#include "kernels.h"

#include <torch/csrc/autograd/custom_function.h>

namespace lstmkit {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// The peephole rows (p_i, p_f, p_o) of w_ph, or null pointers (coupled: no p_i).
struct Peepholes {
  const float *p_i = nullptr, *p_f = nullptr, *p_o = nullptr;
  Peepholes(const Tensor& w_ph, int64_t H, bool coupled) {
    if (!w_ph.defined()) return;
    const float* ph = w_ph.data_ptr<float>();
    if (coupled) { p_f = ph; p_o = ph + H; } else { p_i = ph; p_f = ph + H; p_o = ph + 2 * H; }
  }
};

// G_x = X W_ih^T (T*B, G*H) into pooled memory; the bias is left to the kernel (inference) or added here.
Tensor project(const Tensor& x2, const Tensor& w_ih, const Tensor& bias, bool add_bias) {
  Tensor gx = pool_empty({x2.size(0), w_ih.size(0)}, x2.options());
  if (add_bias && bias.defined())
    at::addmm_out(gx, bias, x2, w_ih.t());
  else
    at::mm_out(gx, x2, w_ih.t());
  return gx;
}

Tensor opt(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

}  // namespace

struct LstmLayer : public torch::autograd::Function<LstmLayer> {
  // x (T, B, D); w_ih (G*H, D); w_hh (G*H, H); bias (G*H) = b_ih + b_hh or none; w_ph (3H | 2H) or none;
  // h0, c0 (B, H). Returns y (T, B, H), h_T, c_T.
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                               const c10::optional<Tensor>& bias_in, const c10::optional<Tensor>& w_ph_in,
                               const Tensor& h0, const Tensor& c0, bool coupled) {
    FlushDenormals ftz;
    const int64_t T = x.size(0), B = x.size(1), D = x.size(2), H = c0.size(1), GH = w_ih.size(0);
    const Tensor x2 = x.reshape({T * B, D}).contiguous(), w_ph = opt(w_ph_in), bias = opt(bias_in);
    const Tensor gx = project(x2, w_ih, bias, true).view({T, B, GH});
    const Peepholes ph(w_ph, H, coupled);
    auto out = lstm_fwd_fused(gx, h0.contiguous(), c0.contiguous(), w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o,
                              nullptr, nullptr, std::vector<int64_t>(T, B), coupled, true, nullptr);
    const Tensor &y = std::get<0>(out), &gates = std::get<3>(out), &cn = std::get<4>(out);
    ctx->save_for_backward({x2, w_ih, w_hh, w_ph, h0, c0, y, gates, cn});
    ctx->saved_data["coupled"] = coupled;
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    return {y, std::get<1>(out), std::get<2>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    FlushDenormals ftz;
    const auto s = ctx->get_saved_variables();
    const Tensor &x2 = s[0], &w_ih = s[1], &w_hh = s[2], &w_ph = s[3], &h0 = s[4], &c0 = s[5], &y = s[6];
    const Tensor &gates = s[7], &cn = s[8];
    const bool coupled = ctx->saved_data["coupled"].toBool();
    const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2);
    auto grad = [](const Tensor& g, const Tensor& like) { return g.defined() ? g.contiguous() : at::zeros_like(like); };
    const Peepholes ph(w_ph, H, coupled);
    auto back = lstm_bwd_fused(grad(grads[0], y), grad(grads[1], h0), grad(grads[2], c0), gates, cn,
                               cn.data_ptr<float>(), c0.contiguous(), w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o,
                               nullptr, nullptr, std::vector<int64_t>(T, B), coupled);
    const Tensor dG2 = std::get<0>(back).view({T * B, GH});
    Tensor dx, d_w_ih, d_w_hh, d_bias, d_w_ph;
    if (ctx->needs_input_grad(0)) dx = dG2.mm(w_ih).view(ctx->saved_data["x_sizes"].toIntVector());
    if (ctx->needs_input_grad(1)) d_w_ih = dG2.t().mm(x2);
    if (ctx->needs_input_grad(2)) {
      // dW_hh = sum_t dG_t^T h_{t-1}: the first step's h_{t-1} is h0, the rest are the outputs y_0..y_{T-2}
      d_w_hh = dG2.narrow(0, 0, B).t().mm(h0);
      if (T > 1) d_w_hh.addmm_(dG2.narrow(0, B, (T - 1) * B).t(), y.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(3)) d_bias = dG2.sum(0);
    if (w_ph.defined() && ctx->needs_input_grad(4)) {
      const Tensor dG = std::get<0>(back);
      const Tensor c_prev = T > 1 ? at::cat({c0.unsqueeze(0), cn.narrow(0, 0, T - 1)}) : c0.unsqueeze(0);
      auto block = [&](int q) { return dG.narrow(2, q * H, H); };
      if (coupled)  // (p_f, p_o): f sees c_{t-1}, o sees c_t
        d_w_ph = at::cat({(block(0) * c_prev).sum({0, 1}), (block(2) * cn).sum({0, 1})});
      else
        d_w_ph = at::cat({(block(0) * c_prev).sum({0, 1}), (block(1) * c_prev).sum({0, 1}),
                          (block(3) * cn).sum({0, 1})});
    }
    return {dx, d_w_ih, d_w_hh, d_bias, d_w_ph, std::get<1>(back), std::get<2>(back), Tensor()};
  }
};

// The layer node (training), and the same forward without autograd or saved state (inference: the biases are
// added inside the kernel's gate pass).
std::vector<Tensor> lstm_layer(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                               const c10::optional<Tensor>& bias, const c10::optional<Tensor>& w_ph,
                               const Tensor& h0, const Tensor& c0, bool coupled) {
  return LstmLayer::apply(x, w_ih, w_hh, bias, w_ph, h0, c0, coupled);
}

std::vector<Tensor> lstm_layer_infer(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                     const c10::optional<Tensor>& bias_in, const c10::optional<Tensor>& w_ph_in,
                                     const Tensor& h0, const Tensor& c0, bool coupled) {
  FlushDenormals ftz;
  const int64_t T = x.size(0), B = x.size(1), D = x.size(2), H = c0.size(1), GH = w_ih.size(0);
  const Tensor w_ph = opt(w_ph_in), bias = opt(bias_in);
  const Tensor gx = project(x.reshape({T * B, D}).contiguous(), w_ih, bias, false).view({T, B, GH});
  const Peepholes ph(w_ph, H, coupled);
  auto out = lstm_fwd_fused(gx, h0.contiguous(), c0.contiguous(), w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o,
                            nullptr, nullptr, std::vector<int64_t>(T, B), coupled, false,
                            bias.defined() ? bias.data_ptr<float>() : nullptr);
  return {std::get<0>(out), std::get<1>(out), std::get<2>(out)};
}

}  // namespace lstmkit
