// The layer-norm LSTM layer as C++ autograd nodes (one direction, or both at once): LN_ih, the loop, every gradient.
//
// G_x = LN_ih(X W_ih^T) with gain ln_ih_w and bias ln_ih_b + b_ih + b_hh (the three biases enter the
// pre-activations as one sum), then ln_lstm.cpp's loop. Formulas: formulas.ln_backward, which stays the path with
// zoneout or recurrent dropout, and for the registered torch ops. With lengths the node runs like the LSTM node
// (layer.cpp): the batch is taken into longest-first order (perm) and back, and the projection, LN_ih, dx and the
// weight gradients take only the active rows (a finished sequence costs nothing); the loop reads and writes the
// padded (T, B, .) layout, whose rows past their length it only fills with zeros (and the carried cell).
#include "fused.h"
#include "gemm.h"
#include "kernels.h"
#include "layer.h"
#include "team.h"

namespace lstmkit {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OT = c10::optional<Tensor>;

namespace {

// One direction's weights, in the node's argument order.
struct LnWeights {
  const Tensor &w_ih, &ln_ih_w, &ln_ih_b;
  const OT &b_ih, &b_hh;
  const Tensor &w_hh, &ln_hh_w, &ln_hh_b, &ln_c_w, &ln_c_b;
  const OT& w_ph;
};

// The node's forward: x (T, B, D) fp32, the weights, h0 and c0 (B, H), batch_sizes and perm as for lstm_layer.
// Returns y, h_T, c_T in the caller's batch order; fills ``s`` (in the sorted order).
variable_list ln_layer_forward(const Tensor& x_in, const LnWeights& w, const Tensor& h0_in, const Tensor& c0_in,
                               bool coupled, const OT& batch_sizes, const OT& perm, LayerSaved& s) {
  FlushDenormals ftz;
  const LoopOrder ord = loop_order(x_in, h0_in, c0_in, perm);
  const Tensor &x = ord.x, &h0 = ord.h0, &c0 = ord.c0;
  const int64_t T = x.size(0), B = x.size(1), D = x.size(2), GH = w.w_ih.size(0);
  const std::vector<int64_t> bs = rows_per_step(batch_sizes, T, B), off = step_offsets(bs);
  const bool packed = bs.back() < B;
  const int64_t R = off.back();  // active rows
  const Tensor x2 = x.reshape({T * B, D}).contiguous(), w_ph = opt(w.w_ph);
  const Tensor xin = packed ? active_rows(x2, bs, off, B) : x2;  // (R, D)
  const Tensor proj = project(xin, w.w_ih);                        // (R, G*H)
  const Tensor bias = bias_sum(w.b_ih, w.b_hh), ln_b = bias.defined() ? w.ln_ih_b + bias : w.ln_ih_b;
  // LN_ih into pooled memory as well (a fresh (T*B, G*H) tensor per call would page-fault, see pool.h)
  Tensor ln_out = pool_empty({R, GH}, x2.options()), mean = at::empty({R}, x2.options());
  Tensor rstd = at::empty({R}, x2.options());
  const Tensor ln_w = w.ln_ih_w.contiguous(), ln_bc = ln_b.contiguous();
  ln_rows_fwd(R, GH, proj.data_ptr<float>(), ln_w.data_ptr<float>(), ln_bc.data_ptr<float>(),
              ln_out.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>());
  // (T, B, G*H) for the loop, which reads only the active rows
  const Tensor gx = packed ? padded_rows(ln_out, bs, off, B, /*zeros=*/false) : ln_out.view({T, B, GH});
  auto o = lstm_ln_fwd_impl(gx, h0.contiguous(), c0.contiguous(), w.w_hh.contiguous(), w.ln_hh_w, w.ln_hh_b,
                            w.ln_c_w, w.ln_c_b, w.w_ph, batch_sizes, c10::nullopt, c10::nullopt, c10::nullopt,
                            coupled, /*h0_before_y=*/true);
  const Tensor& y = std::get<0>(o);
  s.t = {xin, w.w_ih, ln_w, ln_bc, proj, mean, rstd, w.w_hh, w.ln_hh_w, w.ln_c_w, w.ln_c_b, w_ph, h0, c0, y,
         std::get<3>(o), std::get<4>(o), std::get<5>(o), std::get<6>(o), std::get<7>(o), std::get<8>(o),
         std::get<9>(o)};
  s.coupled = coupled;
  s.has_b_ih = opt(w.b_ih).defined();
  s.has_b_hh = opt(w.b_hh).defined();
  s.x_sizes = x.sizes().vec();
  s.bs = bs;
  s.perm = ord.perm;
  auto caller = [&](const Tensor& t) { return permute_rows(t, ord.perm, true); };
  return {caller(y), caller(std::get<1>(o)), caller(std::get<2>(o))};
}

// The node's backward from ``s`` and the gradients of (y, h_T, c_T); needs: whether x, w_ih, w_hh and w_ph need a
// gradient. Returns the gradients of x, w_ih, ln_ih_w, ln_ih_b, b_ih, b_hh, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b,
// w_ph, h0, c0 (undefined where not needed or absent).
variable_list ln_layer_backward(const LayerSaved& saved, const std::array<bool, 4>& needs, const variable_list& grads) {
  FlushDenormals ftz;
  const auto& s = saved.t;
  const Tensor &xin = s[0], &w_ih = s[1], &ln_ih_w = s[2], &proj = s[4], &mean = s[5], &rstd = s[6];
  const Tensor &w_hh = s[7], &ln_hh_w = s[8], &ln_c_w = s[9], &ln_c_b = s[10], &w_ph = s[11], &h0 = s[12];
  const Tensor &c0 = s[13], &y = s[14], &gates = s[15], &cn = s[16], &cs = s[17], &n_hh = s[18], &r_hh = s[19];
  const Tensor &n_c = s[20], &r_c = s[21];
  const std::vector<int64_t> &bs = saved.bs, &perm = saved.perm;
  const int64_t T = gates.size(0), B = gates.size(1), GH = gates.size(2), H = cn.size(2);
  const std::vector<int64_t> off = step_offsets(bs);
  const bool packed = bs.back() < B;
  const int64_t R = off.back();
  // the incoming gradients in the loop's (sorted) order, the outgoing ones back in the caller's
  auto grad = [&](const Tensor& g, const Tensor& like) {
    if (!g.defined()) return at::zeros_like(like);
    return pooled_as(permute_rows(g, perm, false), at::kFloat);
  };
  auto caller = [&](const Tensor& t) { return permute_rows(t, perm, true); };
  const OT ph = w_ph.defined() ? OT(w_ph) : c10::nullopt;
  const OT batch_sizes = packed ? OT(at::tensor(bs, at::kLong)) : c10::nullopt;
  auto b = lstm_ln_bwd(grad(grads[0], y), grad(grads[1], h0), grad(grads[2], c0), gates, cn, cs, c0.contiguous(),
                       w_hh.contiguous(), n_hh, r_hh, n_c, r_c, ln_hh_w, ln_c_w, ln_c_b, ph, batch_sizes,
                       c10::nullopt, c10::nullopt, c10::nullopt, saved.coupled);
  const Tensor &dA = std::get<0>(b), &dGh = std::get<1>(b), &dcl = std::get<4>(b);  // (T, B, .), zero past lengths
  // the active rows of dA and of the LN_hh output n_hh, as the forward's projection rows
  auto rows = [&](const Tensor& t) { return packed ? active_rows(t.view({T * B, GH}), bs, off, B) : t.view({R, GH}); };
  const Tensor dA_r = rows(dA), n_hh_r = rows(n_hh);
  // one pass over dA: LN_ih's backward and every sum over rows of dA (the LN_ih and LN_hh gains and the one
  // bias gradient: ln_ih_b, b_ih, b_hh and ln_hh_b all enter the pre-activations as plain sums)
  Tensor d_proj = pool_empty({R, GH}, dA.options()), d_ln_ih_w = at::empty({GH}, dA.options());
  Tensor d_ln_b = at::empty({GH}, dA.options()), d_ln_hh_w = at::empty({GH}, dA.options());
  ln_rows_bwd(R, GH, dA_r.data_ptr<float>(), proj.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
              ln_ih_w.data_ptr<float>(), d_proj.data_ptr<float>(), d_ln_ih_w.data_ptr<float>(),
              d_ln_b.data_ptr<float>(), n_hh_r.data_ptr<float>(), d_ln_hh_w.data_ptr<float>());
  // LN_c's sums over the padded rows (those past their length hold zeros in dcl)
  Tensor d_ln_c_w = at::empty({H}, dA.options()), d_ln_c_b = at::empty({H}, dA.options());
  ln_rows_bwd(T * B, H, dcl.data_ptr<float>(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
              d_ln_c_b.data_ptr<float>(), n_c.data_ptr<float>(), d_ln_c_w.data_ptr<float>());
  Tensor dx, d_w_ih, d_w_hh, d_w_ph;
  if (needs[0]) {
    const Tensor dxr = matmul_nt(d_proj, w_ih.t());  // (R, D)
    dx = caller((packed ? padded_rows(dxr, bs, off, B) : dxr).view(saved.x_sizes));
  }
  if (needs[1]) d_w_ih = mm_tn(d_proj, xin);
  if (needs[2]) {
    const Tensor dGh_r = packed ? active_rows(dGh.view({T * B, GH}), bs, off, B) : dGh.view({R, GH});
    d_w_hh = recurrent_weight_grad(dGh_r, h0, y, /*h0_before_y=*/true, &bs, packed ? &off : nullptr);
  }
  if (w_ph.defined() && needs[3]) d_w_ph = peephole_grad(dA, c0, cn, saved.coupled);
  // ln_ih_b, b_ih and b_hh enter as one sum: the same gradient, a tensor each
  const Tensor d_b_ih = saved.has_b_ih ? d_ln_b.clone() : Tensor();
  const Tensor d_b_hh = saved.has_b_hh ? d_ln_b.clone() : Tensor();
  return {dx, d_w_ih, d_ln_ih_w, d_ln_b, d_b_ih, d_b_hh, d_w_hh, d_ln_hh_w, d_ln_b.clone(), d_ln_c_w, d_ln_c_b,
          d_w_ph, caller(std::get<2>(b)), caller(std::get<3>(b))};
}

// arguments: x, w_ih, ln_ih_w, ln_ih_b, b_ih, b_hh, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph, h0, c0, coupled,
// batch_sizes, perm (batch_sizes and perm as for lstm_layer)
struct LstmLnLayer : public torch::autograd::Function<LstmLnLayer> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& w_ih, const Tensor& ln_ih_w,
                               const Tensor& ln_ih_b, const OT& b_ih, const OT& b_hh, const Tensor& w_hh,
                               const Tensor& ln_hh_w, const Tensor& ln_hh_b, const Tensor& ln_c_w,
                               const Tensor& ln_c_b, const OT& w_ph, const Tensor& h0, const Tensor& c0,
                               bool coupled, const OT& batch_sizes, const OT& perm) {
    LayerSaved s;
    const LnWeights w{w_ih, ln_ih_w, ln_ih_b, b_ih, b_hh, w_hh, ln_hh_w, ln_hh_b, ln_c_w, ln_c_b, w_ph};
    variable_list out = ln_layer_forward(x, w, h0, c0, coupled, batch_sizes, perm, s);
    save_layer(ctx, {&s});
    record_edges(ctx, {true, true, true, true, present(b_ih), present(b_hh), true, true, true, true, true,
                       present(w_ph), true, true, false, present(batch_sizes), present(perm)});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::array<bool, 4> needs{needs_grad(ctx, 0), needs_grad(ctx, 1), needs_grad(ctx, 6), needs_grad(ctx, 11)};
    variable_list g = ln_layer_backward(load_layer(ctx, 1)[0], needs, grads);
    g.insert(g.end(), {Tensor(), Tensor(), Tensor()});  // coupled, batch_sizes, perm
    return g;
  }
};

// Both directions of a bidirectional layer at once, one per core (as bilayer.cpp does for the LSTM node):
// x_f, x_r (the input reversed within each length), the 11 weights of each direction in LstmLnLayer's order,
// batch_sizes, h0_f, c0_f, h0_r, c0_r, coupled, perm.
struct LstmLnBiLayer : public torch::autograd::Function<LstmLnBiLayer> {
  static constexpr int kW = 11;  // weights per direction
  static variable_list forward(AutogradContext* ctx, const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                               const Tensor& ln_ih_w_f, const Tensor& ln_ih_b_f, const OT& b_ih_f, const OT& b_hh_f,
                               const Tensor& w_hh_f, const Tensor& ln_hh_w_f, const Tensor& ln_hh_b_f,
                               const Tensor& ln_c_w_f, const Tensor& ln_c_b_f, const OT& w_ph_f, const Tensor& w_ih_r,
                               const Tensor& ln_ih_w_r, const Tensor& ln_ih_b_r, const OT& b_ih_r, const OT& b_hh_r,
                               const Tensor& w_hh_r, const Tensor& ln_hh_w_r, const Tensor& ln_hh_b_r,
                               const Tensor& ln_c_w_r, const Tensor& ln_c_b_r, const OT& w_ph_r,
                               const OT& batch_sizes, const Tensor& h0_f, const Tensor& c0_f, const Tensor& h0_r,
                               const Tensor& c0_r, bool coupled, const OT& perm) {
    const LnWeights w[2] = {
        {w_ih_f, ln_ih_w_f, ln_ih_b_f, b_ih_f, b_hh_f, w_hh_f, ln_hh_w_f, ln_hh_b_f, ln_c_w_f, ln_c_b_f, w_ph_f},
        {w_ih_r, ln_ih_w_r, ln_ih_b_r, b_ih_r, b_hh_r, w_hh_r, ln_hh_w_r, ln_hh_b_r, ln_c_w_r, ln_c_b_r, w_ph_r}};
    LayerSaved s[2];
    variable_list out[2];
    run_both([&](int d) {
      out[d] = ln_layer_forward(d ? x_r : x_f, w[d], d ? h0_r : h0_f, d ? c0_r : c0_f, coupled, batch_sizes, perm,
                                s[d]);
    });
    save_layer(ctx, {&s[0], &s[1]});
    std::vector<bool> edges{true, true};
    for (const LnWeights& v : w) {
      const bool e[kW] = {true, true, true, present(v.b_ih), present(v.b_hh), true, true, true, true, true,
                          present(v.w_ph)};
      edges.insert(edges.end(), e, e + kW);
    }
    edges.insert(edges.end(), {present(batch_sizes), true, true, true, true, false, present(perm)});
    record_edges(ctx, edges);
    return {out[0][0], out[0][1], out[0][2], out[1][0], out[1][1], out[1][2]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<LayerSaved> saved = load_layer(ctx, 2);
    // input order: x_f 0, x_r 1, the forward direction's weights from 2, the reverse direction's from 2 + kW;
    // within them w_ih at 0, w_hh at 5, w_ph at 10
    std::array<bool, 4> needs[2];
    for (int d = 0; d < 2; ++d) {
      const int w0 = 2 + d * kW;
      needs[d] = {needs_grad(ctx, d), needs_grad(ctx, w0), needs_grad(ctx, w0 + 5), needs_grad(ctx, w0 + 10)};
    }
    variable_list g[2];
    run_both([&](int d) {
      g[d] = ln_layer_backward(saved[d], needs[d], {grads[3 * d], grads[3 * d + 1], grads[3 * d + 2]});
    });
    // g[d]: x, the kW weights, h0, c0
    variable_list out{g[0][0], g[1][0]};
    for (int d = 0; d < 2; ++d) out.insert(out.end(), g[d].begin() + 1, g[d].begin() + 1 + kW);
    out.push_back(Tensor());  // batch_sizes
    out.insert(out.end(), {g[0][kW + 1], g[0][kW + 2], g[1][kW + 1], g[1][kW + 2], Tensor(), Tensor()});
    return out;
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

// Returns y_f, h_f, c_f, y_r, h_r, c_r (y_r in the reversed input's order; all in the caller's batch order).
std::vector<Tensor> lstm_ln_bilayer(const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                                    const Tensor& ln_ih_w_f, const Tensor& ln_ih_b_f, const OT& b_ih_f,
                                    const OT& b_hh_f, const Tensor& w_hh_f, const Tensor& ln_hh_w_f,
                                    const Tensor& ln_hh_b_f, const Tensor& ln_c_w_f, const Tensor& ln_c_b_f,
                                    const OT& w_ph_f, const Tensor& w_ih_r, const Tensor& ln_ih_w_r,
                                    const Tensor& ln_ih_b_r, const OT& b_ih_r, const OT& b_hh_r, const Tensor& w_hh_r,
                                    const Tensor& ln_hh_w_r, const Tensor& ln_hh_b_r, const Tensor& ln_c_w_r,
                                    const Tensor& ln_c_b_r, const OT& w_ph_r, const OT& batch_sizes,
                                    const Tensor& h0_f, const Tensor& c0_f, const Tensor& h0_r, const Tensor& c0_r,
                                    bool coupled, const OT& perm) {
  return LstmLnBiLayer::apply(x_f, x_r, w_ih_f, ln_ih_w_f, ln_ih_b_f, b_ih_f, b_hh_f, w_hh_f, ln_hh_w_f, ln_hh_b_f,
                              ln_c_w_f, ln_c_b_f, w_ph_f, w_ih_r, ln_ih_w_r, ln_ih_b_r, b_ih_r, b_hh_r, w_hh_r,
                              ln_hh_w_r, ln_hh_b_r, ln_c_w_r, ln_c_b_r, w_ph_r, batch_sizes, h0_f, c0_f, h0_r, c0_r,
                              coupled, perm);
}

}  // namespace lstmkit
