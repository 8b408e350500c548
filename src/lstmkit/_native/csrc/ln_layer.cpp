// The layer-norm LSTM layer-direction as one C++ autograd node: LN_ih of the input projection, the loop, every gradient.
//
// G_x = LN_ih(X W_ih^T) with gain ln_ih_w and bias ln_ih_b + b_ih + b_hh (the three biases enter the
// pre-activations as one sum), then ln_lstm.cpp's loop. Formulas: formulas.ln_backward, which stays the path with
// zoneout or recurrent dropout, and for the registered torch ops. With lengths the node runs like the LSTM node
// (layer.cpp): the batch is taken into longest-first order (perm) and back, and the projection, LN_ih, dx and the
// weight gradients take only the active rows (a finished sequence costs nothing); the loop reads and writes the
// padded (T, B, .) layout, whose rows past their length it never touches.
#include "fused.h"
#include "gemm.h"
#include "kernels.h"
#include "layer.h"

namespace lstmkit {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OT = c10::optional<Tensor>;

namespace {

// arguments: x, w_ih, ln_ih_w, ln_ih_b, b_ih, b_hh, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, h0, c0, coupled,
// batch_sizes, perm (batch_sizes and perm as for lstm_layer)
struct LstmLnLayer : public torch::autograd::Function<LstmLnLayer> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x_in, const Tensor& w_ih, const Tensor& ln_ih_w,
                               const Tensor& ln_ih_b, const OT& b_ih, const OT& b_hh, const Tensor& w_hh,
                               const Tensor& ln_hh_w, const Tensor& ln_hh_b, const Tensor& ln_c_w,
                               const Tensor& ln_c_b, const OT& w_ph_in, const Tensor& h0_in, const Tensor& c0_in,
                               bool coupled, const OT& batch_sizes, const OT& perm) {
    FlushDenormals ftz;
    const LoopOrder ord = loop_order(x_in, h0_in, c0_in, perm);
    const Tensor &x = ord.x, &h0 = ord.h0, &c0 = ord.c0;
    const int64_t T = x.size(0), B = x.size(1), D = x.size(2), GH = w_ih.size(0);
    const std::vector<int64_t> bs = rows_per_step(batch_sizes, T, B), off = step_offsets(bs);
    const bool packed = bs.back() < B;
    const int64_t R = off.back();  // active rows
    const Tensor x2 = x.reshape({T * B, D}).contiguous(), w_ph = opt(w_ph_in);
    const Tensor xin = packed ? active_rows(x2, bs, off, B) : x2;  // (R, D)
    const Tensor proj = project(xin, w_ih);                          // (R, G*H)
    const Tensor bias = bias_sum(b_ih, b_hh), ln_b = bias.defined() ? ln_ih_b + bias : ln_ih_b;
    // LN_ih into pooled memory as well (a fresh (T*B, G*H) tensor per call would page-fault, see pool.h)
    Tensor ln_out = pool_empty({R, GH}, x2.options()), mean = at::empty({R}, x2.options());
    Tensor rstd = at::empty({R}, x2.options());
    const Tensor ln_w = ln_ih_w.contiguous(), ln_bc = ln_b.contiguous();
    ln_rows_fwd(R, GH, proj.data_ptr<float>(), ln_w.data_ptr<float>(), ln_bc.data_ptr<float>(),
                ln_out.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>());
    // (T, B, G*H) for the loop, which reads only the active rows
    const Tensor gx = packed ? padded_rows(ln_out, bs, off, B, /*zeros=*/false) : ln_out.view({T, B, GH});
    auto o = lstm_ln_fwd_impl(gx, h0.contiguous(), c0.contiguous(), w_hh.contiguous(), ln_hh_w, ln_hh_b, ln_c_w,
                              ln_c_b, w_ph_in, batch_sizes, c10::nullopt, c10::nullopt, c10::nullopt, coupled,
                              /*h0_before_y=*/true);
    const Tensor& y = std::get<0>(o);
    ctx->save_for_backward({xin, w_ih, ln_w, ln_bc, proj, mean, rstd, w_hh, ln_hh_w, ln_c_w, ln_c_b, w_ph, h0, c0, y,
                            std::get<3>(o), std::get<4>(o), std::get<5>(o), std::get<6>(o), std::get<7>(o),
                            std::get<8>(o), std::get<9>(o)});
    ctx->saved_data["has_b_ih"] = opt(b_ih).defined();
    ctx->saved_data["has_b_hh"] = opt(b_hh).defined();
    ctx->saved_data["coupled"] = coupled;
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    ctx->saved_data["bs"] = bs;
    ctx->saved_data["perm"] = ord.perm;
    record_edges(ctx, {true, true, true, true, present(b_ih), present(b_hh), true, true, true, true, true,
                       present(w_ph_in), true, true, false, present(batch_sizes), present(perm)});
    auto caller = [&](const Tensor& t) { return ord.perm.empty() ? t : permute_rows(t, ord.perm, true); };
    return {caller(y), caller(std::get<1>(o)), caller(std::get<2>(o))};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    FlushDenormals ftz;
    const auto s = ctx->get_saved_variables();
    const Tensor &xin = s[0], &w_ih = s[1], &ln_ih_w = s[2], &proj = s[4], &mean = s[5], &rstd = s[6];
    const Tensor &w_hh = s[7], &ln_hh_w = s[8], &ln_c_w = s[9], &ln_c_b = s[10], &w_ph = s[11], &h0 = s[12];
    const Tensor &c0 = s[13], &y = s[14], &gates = s[15], &cn = s[16], &cs = s[17], &n_hh = s[18], &r_hh = s[19];
    const Tensor &n_c = s[20], &r_c = s[21];
    const bool coupled = ctx->saved_data["coupled"].toBool();
    const std::vector<int64_t> bs = ctx->saved_data["bs"].toIntVector(), perm = ctx->saved_data["perm"].toIntVector();
    const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2);
    const std::vector<int64_t> off = step_offsets(bs);
    const bool packed = bs.back() < B;
    const int64_t R = off.back();
    // the incoming gradients in the loop's (sorted) order, the outgoing ones back in the caller's
    auto grad = [&](const Tensor& g, const Tensor& like) {
      if (!g.defined()) return at::zeros_like(like);
      return pooled_as(perm.empty() ? g : permute_rows(g, perm, false), at::kFloat);
    };
    auto caller = [&](const Tensor& t) { return perm.empty() || !t.defined() ? t : permute_rows(t, perm, true); };
    const OT ph = w_ph.defined() ? OT(w_ph) : c10::nullopt;
    const OT batch_sizes = packed ? OT(at::tensor(bs, at::kLong)) : c10::nullopt;
    auto b = lstm_ln_bwd(grad(grads[0], y), grad(grads[1], h0), grad(grads[2], c0), gates, cn, cs, c0.contiguous(),
                         w_hh.contiguous(), n_hh, r_hh, n_c, r_c, ln_hh_w, ln_c_w, ln_c_b, ph, batch_sizes,
                         c10::nullopt, c10::nullopt, c10::nullopt, coupled);
    const Tensor &dA = std::get<0>(b), &dGh = std::get<1>(b), &dcl = std::get<4>(b);  // (T, B, .), zero past lengths
    // the active rows of dA and of the LN_hh output n_hh, as the forward's projection rows
    auto rows = [&](const Tensor& t) { return packed ? active_rows(t.view({T * B, GH}), bs, off, B) : t.view({R, GH}); };
    const Tensor dA_r = rows(dA), n_hh_r = rows(n_hh);
    // one pass over dA: LN_ih's backward and every sum over rows of dA (the LN_ih and LN_hh gains and the one
    // bias gradient: ln_ih_b, b_ih, b_hh and ln_hh_b all enter the pre-activations as plain sums)
    Tensor d_proj = pool_empty({R, GH}, dA.options()), d_ln_ih_w = at::empty({GH}, dA.options());
    Tensor d_ln_b = at::empty({GH}, dA.options()), d_ln_hh_w = at::empty({GH}, dA.options());
    ln_rows_bwd(R, GH, dA_r.data_ptr<float>(), proj.data_ptr<float>(), mean.data_ptr<float>(),
                rstd.data_ptr<float>(), ln_ih_w.data_ptr<float>(), d_proj.data_ptr<float>(),
                d_ln_ih_w.data_ptr<float>(), d_ln_b.data_ptr<float>(), n_hh_r.data_ptr<float>(),
                d_ln_hh_w.data_ptr<float>());
    // LN_c's sums over the padded rows (those past their length hold zeros in dcl)
    Tensor d_ln_c_w = at::empty({H}, dA.options()), d_ln_c_b = at::empty({H}, dA.options());
    ln_rows_bwd(T * B, H, dcl.data_ptr<float>(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                d_ln_c_b.data_ptr<float>(), n_c.data_ptr<float>(), d_ln_c_w.data_ptr<float>());
    Tensor dx, d_w_ih, d_w_hh, d_w_ph;
    if (needs_grad(ctx, 0)) {
      const Tensor dxr = matmul_nt(d_proj, w_ih.t());  // (R, D)
      dx = caller((packed ? padded_rows(dxr, bs, off, B) : dxr).view(ctx->saved_data["x_sizes"].toIntVector()));
    }
    if (needs_grad(ctx, 1)) d_w_ih = mm_tn(d_proj, xin);
    if (needs_grad(ctx, 6)) {
      const Tensor dGh_r = packed ? active_rows(dGh.view({T * B, GH}), bs, off, B) : dGh.view({R, GH});
      d_w_hh = recurrent_weight_grad(dGh_r, h0, y, /*h0_before_y=*/true, &bs, packed ? &off : nullptr);
    }
    if (w_ph.defined() && needs_grad(ctx, 11)) d_w_ph = peephole_grad(dA, c0, cn, coupled);
    // ln_ih_b, b_ih and b_hh enter as one sum: the same gradient, a tensor each
    const Tensor d_b_ih = ctx->saved_data["has_b_ih"].toBool() ? d_ln_b.clone() : Tensor();
    const Tensor d_b_hh = ctx->saved_data["has_b_hh"].toBool() ? d_ln_b.clone() : Tensor();
    return {dx, d_w_ih, d_ln_ih_w, d_ln_b, d_b_ih, d_b_hh, d_w_hh, d_ln_hh_w, d_ln_b.clone(), d_ln_c_w, d_ln_c_b,
            d_w_ph, caller(std::get<2>(b)), caller(std::get<3>(b)), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

// Returns y, h_T, c_T in the caller's batch order.
std::vector<Tensor> lstm_ln_layer(const Tensor& x, const Tensor& w_ih, const Tensor& ln_ih_w, const Tensor& ln_ih_b,
                                  const OT& b_ih, const OT& b_hh, const Tensor& w_hh, const Tensor& ln_hh_w,
                                  const Tensor& ln_hh_b, const Tensor& ln_c_w, const Tensor& ln_c_b, const OT& w_ph,
                                  const Tensor& h0, const Tensor& c0, bool coupled, const OT& batch_sizes,
                                  const OT& perm) {
  return LstmLnLayer::apply(x, w_ih, ln_ih_w, ln_ih_b, b_ih, b_hh, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, h0,
                            c0, coupled, batch_sizes, perm);
}

}  // namespace lstmkit
