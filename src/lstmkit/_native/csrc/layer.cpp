// One LSTM layer-direction as a single C++ autograd node: input projection, fused loop, and the whole backward.
//
// The common case (fp32; standard, peephole or coupled; no lengths, zoneout, recurrent dropout or projection) is
// dominated at small sizes by what surrounds the kernels: two Python autograd Functions, their argument
// unwrapping and the backward's Python glue cost more than the recurrence of a (1, 100, 32, 64) layer. Here the
// same math runs from one C++ call per direction, forward and backward. The formulas are those of
// lstmkit/_native/formulas.py (lstm_backward) and ops.py (_Projection), which stay the path for every other case
// and for the registered torch ops. The node's forward and backward are plain functions (layer_forward,
// layer_backward), so that bilayer.cpp can run two directions side by side; the inference twin follows (the
// layer-norm node: ln_layer.cpp).
#include "fused.h"
#include "gemm.h"
#include "gemm_tn.h"
#include "kernels.h"
#include "layer.h"

#include <string>

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

}  // namespace

// G_x = X W_ih^T (T*B, G*H) into pooled memory, without the biases: the kernels add them in their gate passes
// (in the GEMM they would cost a broadcast copy of all T*B rows first).
Tensor project(const Tensor& x2, const Tensor& w_ih) {
  Tensor gx = pool_empty({x2.size(0), w_ih.size(0)}, x2.options());
  matmul_nt_into(gx, x2, w_ih);  // the engine's GEMM (gemm.h): faster than ATen's mm on these shapes
  return gx;
}

Tensor opt(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

// b_ih + b_hh (undefined when the layer has no biases): summed here rather than by the caller, which would add
// two autograd nodes per layer in Python
Tensor bias_sum(const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh) {
  const Tensor a = opt(b_ih), b = opt(b_hh);
  if (!a.defined()) return b;
  return b.defined() ? a + b : a;
}

// The same in fp32 (for a bf16 layer, whose kernel adds the biases in fp32)
Tensor bias_sum_f32(const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh) {
  auto f = [](const c10::optional<Tensor>& t) {
    const Tensor v = opt(t);
    return c10::optional<Tensor>(v.defined() ? v.to(at::kFloat) : Tensor());
  };
  return bias_sum(f(b_ih), f(b_hh));
}

// Peephole weight gradient from the gate gradients dA (T, B, G*H): i and f see c_{t-1}, o sees c_t.
Tensor peephole_grad(const Tensor& dA, const Tensor& c0, const Tensor& cn, bool coupled) {
  const int64_t T = cn.size(0), H = cn.size(2);
  const Tensor c_prev = T > 1 ? at::cat({c0.unsqueeze(0), cn.narrow(0, 0, T - 1)}) : c0.unsqueeze(0);
  auto block = [&](int q) { return dA.narrow(2, q * H, H); };
  if (coupled) return at::cat({(block(0) * c_prev).sum({0, 1}), (block(2) * cn).sum({0, 1})});  // (p_f, p_o)
  return at::cat({(block(0) * c_prev).sum({0, 1}), (block(1) * c_prev).sum({0, 1}), (block(3) * cn).sum({0, 1})});
}

// a^T b over all rows: the engine's TN GEMM (gemm_tn.h) in fp32, ATen's mm otherwise
Tensor mm_tn(const Tensor& a, const Tensor& b) {
  return a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat ? matmul_tn(a, {b})[0] : a.t().mm(b);
}

// H_prev = [h0; y_0 .. y_{T-2}] (rows, H) as one matrix, or undefined when it would need a copy of y. When y is
// lstm_fwd_fused's, h0 sits just before it in the same buffer and H_prev is a view. off (with bs): the weight
// gradients take only the active rows, and so must H_prev.
Tensor h_prev_rows(const Tensor& h0, const Tensor& y, bool h0_before_y, const std::vector<int64_t>* bs,
                   const std::vector<int64_t>* off) {
  const int64_t T = y.size(0), B = y.size(1), H = y.size(2);
  const bool view = h0_before_y && y.is_contiguous() && y.storage_offset() >= B * H;
  if (!view && !off) return Tensor();
  const Tensor hp = view ? y.as_strided({T * B, H}, {H, 1}, y.storage_offset() - B * H)
                         : at::cat({h0.unsqueeze(0), y.narrow(0, 0, T - 1)}).view({T * B, H});
  return off ? active_rows(hp, *bs, *off, B) : hp;
}

// dW_hh = sum_t dG_t^T h_{t-1} over dG2 (T*B, G*H): one GEMM over H_prev when it is one matrix (h_prev_rows),
// else two (h0's rows, then y's; no copy of y).
Tensor recurrent_weight_grad(const Tensor& dG2, const Tensor& h0, const Tensor& y, bool h0_before_y,
                             const std::vector<int64_t>* bs, const std::vector<int64_t>* off) {
  const int64_t T = y.size(0), B = y.size(1), H = y.size(2);
  const Tensor hp = h_prev_rows(h0, y, h0_before_y, bs, off);
  if (hp.defined()) return mm_tn(dG2, hp);
  if (T == 1) return mm_tn(dG2, h0);
  Tensor d = mm_tn(dG2.narrow(0, B, (T - 1) * B), y.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
  return d.addmm_(dG2.narrow(0, 0, B).t(), h0);
}

// ``t`` as a contiguous ``dtype`` tensor, copied into pooled memory when it is not one already (the bf16 <-> fp32
// conversions of a bf16 layer, and incoming gradients such as the expanded ones of ``y.sum()``).
Tensor pooled_as(const Tensor& t, at::ScalarType dtype) {
  if (t.scalar_type() == dtype && t.is_contiguous()) return t;
  Tensor out = pool_empty(t.sizes(), t.options().dtype(dtype));
  out.copy_(t);
  return out;
}

// G_x (T*B, G*H) fp32 for the loop, without the biases. fp32: X W_ih^T. bf16: the product as a bf16 GEMM, then
// converted.
Tensor projection_f32(const Tensor& x2, const Tensor& w_ih) {
  if (x2.scalar_type() == at::kFloat) return project(x2, w_ih);
  Tensor g16 = pool_empty({x2.size(0), w_ih.size(0)}, x2.options());
  at::mm_out(g16, x2, w_ih.t());
  return pooled_as(g16, at::kFloat);
}

// What the fused loop reads: X itself (input_in_loop, fused.h), or G_x = X_active W_ih^T (rows, G*H) computed first
// by one GEMM. x2 (T*B, D) padded; xin its active rows (bs, off: see rows_per_step, step_offsets), or undefined:
// then taken here, only when the GEMM needs them. The biases are added in the loop either way.
struct LoopSource {
  Tensor gx;  // G_x fp32, or an empty fp32 tensor when the loop takes the input itself
  LoopInput in;
  const LoopInput* input() const { return in.x.defined() ? &in : nullptr; }
};
static LoopSource loop_source(const Tensor& x2, const Tensor& w_ih, const Tensor& w_hh, int64_t B,
                              const std::vector<int64_t>& bs, const std::vector<int64_t>& off,
                              const Tensor& xin = Tensor()) {
  if (input_in_loop(B, x2, w_ih, w_hh))
    return {at::empty({0}, x2.options().dtype(at::kFloat)), LoopInput{x2, w_ih.contiguous()}};
  const Tensor rows = xin.defined() ? xin : bs.back() < B ? active_rows(x2, bs, off, B) : x2;
  return {projection_f32(rows, w_ih), LoopInput{}};
}

LoopOrder loop_order(const Tensor& x, const Tensor& h0, const Tensor& c0, const c10::optional<Tensor>& perm_in) {
  const std::vector<int64_t> perm = perm_of(perm_in);
  return {perm, permute_rows(x, perm, false), permute_rows(h0, perm, false), permute_rows(c0, perm, false)};
}

// The layer node's forward: x (T, B, D) fp32 or bf16 (then every weight bf16); w_ih (G*H, D); w_hh (G*H, H); b_ih,
// b_hh (G*H) or none; w_ph (3H | 2H) or none; batch_sizes (T) rows active per step (batch sorted longest first) or
// none; h0, c0 (B, H) fp32; perm: the batch order of batch_sizes (perm[b]: the caller's row that sorted row b is),
// or none (the caller's order is sorted). Returns y (T, B, H) in x's dtype, h_T and c_T in fp32, in the caller's
// order, and fills ``s`` with what the backward needs (in the sorted order). bf16: the projection and
// weight-gradient GEMMs run in bf16, the loop with bf16 W_hh dot products, the cell state and the gate pass in fp32.
variable_list layer_forward(const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
                            const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
                            const c10::optional<Tensor>& w_ph_in,
                            const c10::optional<Tensor>& batch_sizes, const Tensor& h0_in, const Tensor& c0_in,
                            bool coupled, LayerSaved& s, const c10::optional<Tensor>& perm_in) {
  FlushDenormals ftz;
  const LoopOrder ord = loop_order(x_in, h0_in, c0_in, perm_in);
  const std::vector<int64_t>& perm = ord.perm;
  const Tensor &x = ord.x, &h0 = ord.h0, &c0 = ord.c0;
  const int64_t T = x.size(0), B = x.size(1), D = x.size(2), H = c0.size(1);
  const bool low = x.scalar_type() == at::kBFloat16;
  const std::vector<int64_t> bs = rows_per_step(batch_sizes, T, B);  // lengths: batch sorted longest first
  // with lengths, the GEMMs over all steps (here the projection, in backward the weight gradients and dx) take
  // only the active rows: rows of finished sequences cost nothing
  const bool packed = bs.back() < B;
  const std::vector<int64_t> off = step_offsets(bs);
  const Tensor x2 = x.reshape({T * B, D}).contiguous(), w_ph = opt(w_ph_in);
  const Tensor xin = packed ? active_rows(x2, bs, off, B) : x2;  // (rows, D)
  const Tensor bias = low ? bias_sum_f32(b_ih, b_hh) : bias_sum(b_ih, b_hh);
  const LoopSource src = loop_source(x2, w_ih, w_hh, B, bs, off, xin);
  const Tensor w_ph32 = w_ph.defined() ? w_ph.to(at::kFloat).contiguous() : w_ph;
  const Peepholes ph(w_ph32, H, coupled);
  auto out = lstm_fwd_fused(src.gx, h0.contiguous(), c0.contiguous(), w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o,
                            nullptr, nullptr, bs, coupled, true, bias.defined() ? bias.data_ptr<float>() : nullptr,
                            /*h0_before_y=*/!low, &off, nullptr, src.input());
  const Tensor y = pooled_as(std::get<0>(out), x.scalar_type());
  s.t = {xin, w_ih, w_hh, w_ph32, h0, c0, y, std::get<3>(out), std::get<4>(out)};
  s.coupled = coupled;
  s.has_b_ih = opt(b_ih).defined();
  s.has_b_hh = opt(b_hh).defined();
  s.x_sizes = x.sizes().vec();
  s.bs = bs;
  s.perm = perm;
  return {permute_rows(y, perm, true), permute_rows(std::get<1>(out), perm, true),
          permute_rows(std::get<2>(out), perm, true)};
}

// The layer node's backward from ``s`` and the gradients of (y, h_T, c_T); ``needs``: which of x, w_ih, w_hh, b_ih,
// b_hh, w_ph need a gradient. Returns dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_w_ph, dh0, dc0 (undefined where not
// needed).
variable_list layer_backward(const LayerSaved& saved, const std::array<bool, 6>& needs, const variable_list& grads) {
  FlushDenormals ftz;
  const auto& s = saved.t;
  const std::vector<int64_t>& bs = saved.bs;
  const Tensor &xin = s[0], &w_ih = s[1], &w_hh = s[2], &w_ph = s[3], &h0 = s[4], &c0 = s[5], &y = s[6];
  const Tensor &gates = s[7], &cn = s[8];
  const bool coupled = saved.coupled;
  const at::ScalarType dt = xin.scalar_type();
  const int64_t B = gates.size(1), GH = gates.size(2), H = cn.size(2);
  const bool packed = bs.back() < B;  // as in forward: xin and dG hold the active rows only
  const std::vector<int64_t> off = step_offsets(bs);
  const Peepholes ph(w_ph, H, coupled);
  // the incoming gradients in the loop's (sorted) batch order, the outgoing ones back in the caller's
  const std::vector<int64_t>& perm = saved.perm;
  auto sorted = [&](const Tensor& g) { return permute_rows(g, perm, false); };
  auto caller = [&](const Tensor& g) { return permute_rows(g, perm, true); };
  const Tensor dy = sorted(grads[0]);
  // the bias and peephole gradients are summed by the kernel's gate pass
  Tensor db = at::empty({GH}, gates.options());
  Tensor dph = w_ph.defined() ? at::empty({w_ph.numel()}, gates.options()) : Tensor();
  auto back = lstm_bwd_fused(dy.defined() ? pooled_as(dy, at::kFloat) : at::zeros_like(y, gates.options()),
                             sorted(grads[1]), sorted(grads[2]), gates, cn, cn.data_ptr<float>(), c0.contiguous(),
                             w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o, nullptr, nullptr, bs, coupled,
                             db.data_ptr<float>(), dph.defined() ? dph.data_ptr<float>() : nullptr,
                             packed ? &off : nullptr);
  const Tensor& dG = std::get<0>(back);  // (rows, G*H) fp32
  // the GEMMs run in the layer's dtype: bf16 layers take the kernel's bf16 copy of dG (no conversion pass)
  const Tensor dG2 = dt == at::kBFloat16 && std::get<3>(back).numel() ? std::get<3>(back)
                                                                       : pooled_as(dG, dt).view({off.back(), GH});
  Tensor dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_w_ph;
  if (needs[0]) {
    const Tensor dxr = matmul_nt(dG2, w_ih.t());  // (rows, D)
    dx = caller((packed ? padded_rows(dxr, bs, off, B) : dxr).view(saved.x_sizes));
  }
  // dW_ih = dG^T X and dW_hh = dG^T H_prev: in fp32 one pass over dG for both (gemm_tn.h's merged GEMM)
  const bool want_ih = needs[1], want_hh = needs[2];
  const Tensor hp = want_ih && want_hh && dt == at::kFloat
                        ? h_prev_rows(h0, y, true, &bs, packed ? &off : nullptr) : Tensor();
  if (hp.defined()) {
    std::vector<Tensor> w = matmul_tn(dG2, {xin, hp});
    d_w_ih = w[0];
    d_w_hh = w[1];
  } else {
    if (want_ih) d_w_ih = mm_tn(dG2, xin);
    if (want_hh) d_w_hh = recurrent_weight_grad(dG2, h0.to(dt), y, dt == at::kFloat, &bs, packed ? &off : nullptr);
  }
  const bool g_ih = saved.has_b_ih && needs[3];
  const bool g_hh = saved.has_b_hh && needs[4];
  if (g_ih || g_hh) {  // both biases get the same gradient (each its own tensor: they accumulate separately)
    d_b_ih = db.to(dt);
    if (g_hh) d_b_hh = g_ih ? d_b_ih.clone() : d_b_ih;
    if (!g_ih) d_b_ih = Tensor();
  }
  if (dph.defined() && needs[5]) d_w_ph = dph.to(dt);
  return {dx, d_w_ih, d_w_hh, d_b_ih, d_b_hh, d_w_ph, caller(std::get<1>(back)), caller(std::get<2>(back))};
}

// The saved state of one or more directions in an autograd context: their tensors, concatenated in order, and
// their flags in saved_data with the direction's index as suffix; load_layer splits them back into n directions.
void save_layer(AutogradContext* ctx, const std::vector<const LayerSaved*>& dirs) {
  std::vector<Tensor> all;
  for (size_t d = 0; d < dirs.size(); ++d) {
    const LayerSaved& s = *dirs[d];
    all.insert(all.end(), s.t.begin(), s.t.end());
    const std::string k = std::to_string(d);
    ctx->saved_data["coupled" + k] = s.coupled;
    ctx->saved_data["has_b_ih" + k] = s.has_b_ih;
    ctx->saved_data["has_b_hh" + k] = s.has_b_hh;
    ctx->saved_data["x_sizes" + k] = s.x_sizes;
    ctx->saved_data["bs" + k] = s.bs;
    ctx->saved_data["perm" + k] = s.perm;
  }
  ctx->save_for_backward(all);
}

std::vector<LayerSaved> load_layer(AutogradContext* ctx, size_t n) {
  const auto all = ctx->get_saved_variables();
  std::vector<LayerSaved> out(n);
  const size_t per = all.size() / n;
  for (size_t d = 0; d < n; ++d) {
    LayerSaved& s = out[d];
    s.t.assign(all.begin() + d * per, all.begin() + (d + 1) * per);
    const std::string k = std::to_string(d);
    s.coupled = ctx->saved_data["coupled" + k].toBool();
    s.has_b_ih = ctx->saved_data["has_b_ih" + k].toBool();
    s.has_b_hh = ctx->saved_data["has_b_hh" + k].toBool();
    s.x_sizes = ctx->saved_data["x_sizes" + k].toIntVector();
    s.bs = ctx->saved_data["bs" + k].toIntVector();
    s.perm = ctx->saved_data["perm" + k].toIntVector();
  }
  return out;
}

struct LstmLayer : public torch::autograd::Function<LstmLayer> {
  // see layer_forward
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                               const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
                               const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes,
                               const Tensor& h0, const Tensor& c0, bool coupled, const c10::optional<Tensor>& perm) {
    LayerSaved s;
    variable_list out = layer_forward(x, w_ih, w_hh, b_ih, b_hh, w_ph, batch_sizes, h0, c0, coupled, s, perm);
    save_layer(ctx, {&s});
    record_edges(ctx, {true, true, true, present(b_ih), present(b_hh), present(w_ph), present(batch_sizes), true,
                       true, false, present(perm)});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::array<bool, 6> needs{needs_grad(ctx, 0), needs_grad(ctx, 1), needs_grad(ctx, 2),
                                    needs_grad(ctx, 3), needs_grad(ctx, 4), needs_grad(ctx, 5)};
    variable_list g = layer_backward(load_layer(ctx, 1)[0], needs, grads);
    return {g[0], g[1], g[2], g[3], g[4], g[5], Tensor(), g[6], g[7], Tensor(), Tensor()};
  }
};

// The layer node (training), and the same forward without autograd or saved state (inference: the biases are
// added inside the kernel's gate pass).
std::vector<Tensor> lstm_layer(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                               const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
                               const c10::optional<Tensor>& w_ph, const c10::optional<Tensor>& batch_sizes,
                               const Tensor& h0, const Tensor& c0, bool coupled,
                               const c10::optional<Tensor>& perm) {
  return LstmLayer::apply(x, w_ih, w_hh, b_ih, b_hh, w_ph, batch_sizes, h0, c0, coupled, perm);
}

std::vector<Tensor> lstm_layer_infer(const Tensor& x_in, const Tensor& w_ih, const Tensor& w_hh,
                                     const c10::optional<Tensor>& b_ih, const c10::optional<Tensor>& b_hh,
                                     const c10::optional<Tensor>& w_ph_in,
                                     const c10::optional<Tensor>& batch_sizes, const Tensor& h0_in,
                                     const Tensor& c0_in, bool coupled, const c10::optional<Tensor>& perm_in) {
  FlushDenormals ftz;
  const LoopOrder ord = loop_order(x_in, h0_in, c0_in, perm_in);
  const std::vector<int64_t>& perm = ord.perm;
  const Tensor &x = ord.x, &h0 = ord.h0, &c0 = ord.c0;
  const int64_t T = x.size(0), B = x.size(1), D = x.size(2), H = c0.size(1);
  const Tensor w_ph = opt(w_ph_in), bias = bias_sum_f32(b_ih, b_hh);
  const Tensor w_ph32 = w_ph.defined() ? w_ph.to(at::kFloat).contiguous() : w_ph;
  const std::vector<int64_t> bs = rows_per_step(batch_sizes, T, B), off = step_offsets(bs);
  const Tensor x2 = x.reshape({T * B, D}).contiguous();
  const Peepholes ph(w_ph32, H, coupled);
  const float* b = bias.defined() ? bias.data_ptr<float>() : nullptr;
  const LoopSource src = loop_source(x2, w_ih, w_hh, B, bs, off);
  auto out = lstm_fwd_fused(src.gx, h0.contiguous(), c0.contiguous(), w_hh.contiguous(), ph.p_i, ph.p_f, ph.p_o,
                            nullptr, nullptr, bs, coupled, false, b, false, &off, nullptr, src.input());
  std::vector<Tensor> res{pooled_as(std::get<0>(out), x.scalar_type()), std::get<1>(out), std::get<2>(out)};
  for (Tensor& r : res) r = permute_rows(r, perm, true);
  return res;
}

}  // namespace lstmkit
