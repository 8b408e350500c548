// Both directions of a bidirectional LSTM layer at once, one per core: a C++ autograd node and its inference twin.
//
// A direction's recurrence is a chain of dependent steps. Split between the two threads (fused_lstm.cpp) it pays a
// barrier per step, and at small sizes the barrier costs about as much as the halved step saves. The two
// directions of a layer are independent: run together, each on its own core, they need no barrier at all. Every
// kernel inside then runs on its one thread (a parallel region is active: see team_allowed in team.h).
#include "layer.h"
#include "team.h"

namespace lstmkit {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OT = c10::optional<Tensor>;

namespace {

// Arguments of both directions: x_r is the input reversed within each sequence's length (the caller's work), the
// weights of each direction as for lstm_layer, one batch_sizes and one perm (the same lengths both ways).
struct LstmBiLayer : public torch::autograd::Function<LstmBiLayer> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                               const Tensor& w_hh_f, const OT& b_ih_f, const OT& b_hh_f, const OT& w_ph_f,
                               const Tensor& w_ih_r, const Tensor& w_hh_r, const OT& b_ih_r, const OT& b_hh_r,
                               const OT& w_ph_r, const OT& batch_sizes, const Tensor& h0_f, const Tensor& c0_f,
                               const Tensor& h0_r, const Tensor& c0_r, bool coupled, const OT& perm) {
    LayerSaved s[2];
    variable_list out[2];
    run_both([&](int d) {
      out[d] = d == 0 ? layer_forward(x_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_ph_f, batch_sizes, h0_f, c0_f, coupled,
                                      s[0], perm)
                      : layer_forward(x_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_ph_r, batch_sizes, h0_r, c0_r, coupled,
                                      s[1], perm);
    });
    save_layer(ctx, {&s[0], &s[1]});
    record_edges(ctx, {true, true, true, true, present(b_ih_f), present(b_hh_f), present(w_ph_f), true, true,
                       present(b_ih_r), present(b_hh_r), present(w_ph_r), present(batch_sizes), true, true, true,
                       true, false, present(perm)});
    return {out[0][0], out[0][1], out[0][2], out[1][0], out[1][1], out[1][2]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const std::vector<LayerSaved> saved = load_layer(ctx, 2);
    auto need = [&](int i) { return needs_grad(ctx, i); };
    // input order: x_f 0, x_r 1, forward weights 2-6, reverse weights 7-11
    const std::array<bool, 6> needs[2] = {{need(0), need(2), need(3), need(4), need(5), need(6)},
                                          {need(1), need(7), need(8), need(9), need(10), need(11)}};
    variable_list g[2];
    run_both([&](int d) {
      g[d] = layer_backward(saved[d], needs[d], {grads[3 * d], grads[3 * d + 1], grads[3 * d + 2]});
    });
    const variable_list &f = g[0], &r = g[1];
    return {f[0], r[0], f[1], f[2], f[3], f[4], f[5], r[1], r[2], r[3], r[4], r[5], Tensor(),
            f[6], f[7], r[6], r[7], Tensor(), Tensor()};
  }
};

}  // namespace

// Returns y_f, h_f, c_f, y_r, h_r, c_r (y_r in the reversed input's order; all in the caller's batch order: perm
// as for lstm_layer).
std::vector<Tensor> lstm_bilayer(const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f, const Tensor& w_hh_f,
                                 const OT& b_ih_f, const OT& b_hh_f, const OT& w_ph_f, const Tensor& w_ih_r,
                                 const Tensor& w_hh_r, const OT& b_ih_r, const OT& b_hh_r, const OT& w_ph_r,
                                 const OT& batch_sizes, const Tensor& h0_f, const Tensor& c0_f, const Tensor& h0_r,
                                 const Tensor& c0_r, bool coupled, const OT& perm) {
  return LstmBiLayer::apply(x_f, x_r, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_ph_f, w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_ph_r,
                            batch_sizes, h0_f, c0_f, h0_r, c0_r, coupled, perm);
}

std::vector<Tensor> lstm_bilayer_infer(const Tensor& x_f, const Tensor& x_r, const Tensor& w_ih_f,
                                       const Tensor& w_hh_f, const OT& b_ih_f, const OT& b_hh_f, const OT& w_ph_f,
                                       const Tensor& w_ih_r, const Tensor& w_hh_r, const OT& b_ih_r, const OT& b_hh_r,
                                       const OT& w_ph_r, const OT& batch_sizes, const Tensor& h0_f,
                                       const Tensor& c0_f, const Tensor& h0_r, const Tensor& c0_r, bool coupled,
                                       const OT& perm) {
  std::vector<Tensor> out[2];
  run_both([&](int d) {
    out[d] = d == 0 ? lstm_layer_infer(x_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_ph_f, batch_sizes, h0_f, c0_f, coupled,
                                       perm)
                    : lstm_layer_infer(x_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_ph_r, batch_sizes, h0_r, c0_r, coupled,
                                       perm);
  });
  return {out[0][0], out[0][1], out[0][2], out[1][0], out[1][1], out[1][2]};
}

}  // namespace lstmkit
