// Registration: the recurrence kernels as torch ops (lstmkit::*, autograd and fake kernels are registered in
// Python, lstmkit/_native/ops.py) and the streaming class as a Python type.
#include <torch/extension.h>
#include <torch/library.h>

#include "gemm.h"
#include "gemm_tn.h"
#include "stream.h"
#include "stream_gru.h"
#include "stream_ln.h"

namespace lstmkit {
using at::Tensor;
using OT = c10::optional<Tensor>;
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&, const OT&,
    const OT&, const OT&, bool);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_fwd_infer(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&, const OT&,
    const OT&, const OT&, bool);
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_bwd(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const OT&, const OT&, const OT&, const OT&, const OT&, const OT&, bool);
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_fwd(const Tensor&, const Tensor&, const Tensor&, const OT&,
                                                   const OT&, const OT&, const OT&);
std::tuple<Tensor, Tensor, Tensor> gru_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                           const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                           const OT&);
std::tuple<Tensor, Tensor, Tensor> rnn_fwd(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                           const OT&, bool);
std::tuple<Tensor, Tensor> rnn_bwd(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&,
                                   const OT&, const OT&, bool);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_ln_fwd(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const OT&, const OT&, const OT&, const OT&, const OT&, bool, const OT&);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_ln_bwd(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const OT&, const OT&, const OT&, const OT&, const OT&, bool, const OT&);
std::vector<Tensor> lstm_fwd_pair(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                  const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                  const OT&, bool, bool);
std::vector<Tensor> lstm_bwd_pair(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const Tensor&,
                                  const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const Tensor&, const OT&, const OT&, const OT&, bool);
std::vector<Tensor> lstm_layer(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&,
                               const OT&, const Tensor&, const Tensor&, bool, const OT&);
std::vector<Tensor> lstm_ln_layer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                  const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&,
                                  const Tensor&, const Tensor&, bool, const OT&, const OT&);
std::vector<Tensor> lstm_ln_bilayer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                    const OT&, const OT&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                    const Tensor&, const OT&, const Tensor&, const Tensor&, const Tensor&, const OT&,
                                    const OT&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                    const Tensor&, const OT&, const OT&, const Tensor&, const Tensor&, const Tensor&,
                                    const Tensor&, bool, const OT&);
std::vector<Tensor> lstm_layer_infer(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&,
                                     const OT&, const Tensor&, const Tensor&, bool, const OT&);
std::vector<Tensor> lstm_bilayer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                 const OT&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&, const OT&,
                                 const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, const OT&);
std::vector<Tensor> lstm_bilayer_infer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&,
                                       const OT&, const OT&, const Tensor&, const Tensor&, const OT&, const OT&,
                                       const OT&, const OT&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&, bool, const OT&);
std::vector<Tensor> gru_layer(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&,
                              const Tensor&, const OT&);
std::vector<Tensor> gru_layer_infer(const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&,
                                    const Tensor&, const OT&);
std::vector<Tensor> gru_bilayer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&, const OT&,
                                const Tensor&, const Tensor&, const OT&, const OT&, const OT&, const Tensor&,
                                const Tensor&, const OT&);
std::vector<Tensor> gru_bilayer_infer(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const OT&,
                                      const OT&, const Tensor&, const Tensor&, const OT&, const OT&, const OT&,
                                      const Tensor&, const Tensor&, const OT&);
}  // namespace lstmkit

TORCH_LIBRARY(lstmkit, m) {
  m.def("lstm_fwd(Tensor gx, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_hr, Tensor? w_ph, Tensor? batch_sizes, "
        "Tensor? rd_mask, Tensor? zo_h, Tensor? zo_c, bool coupled) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_bwd(Tensor dy, Tensor dhT, Tensor dcT, Tensor gates, Tensor cn, Tensor cs, Tensor c0, Tensor w_hh, "
        "Tensor? w_hr, Tensor? w_ph, Tensor? batch_sizes, Tensor? rd_mask, Tensor? zo_h, Tensor? zo_c, "
        "bool coupled) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_ln_fwd(Tensor gx, Tensor h0, Tensor c0, Tensor w_hh, Tensor ln_hh_w, Tensor ln_hh_b, Tensor ln_c_w, "
        "Tensor ln_c_b, Tensor? w_ph, Tensor? batch_sizes, Tensor? rd_mask, Tensor? zo_h, Tensor? zo_c, "
        "bool coupled, Tensor? w_hr=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("lstm_ln_bwd(Tensor dy, Tensor dhT, Tensor dcT, Tensor gates, Tensor cn, Tensor cs, Tensor c0, "
        "Tensor w_hh, Tensor n_hh, Tensor r_hh, Tensor n_c, Tensor r_c, Tensor ln_hh_w, Tensor ln_c_w, "
        "Tensor ln_c_b, Tensor? w_ph, Tensor? batch_sizes, Tensor? rd_mask, Tensor? zo_h, Tensor? zo_c, "
        "bool coupled, Tensor? w_hr=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_fwd(Tensor gx, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? batch_sizes, Tensor? rd_mask, "
        "Tensor? zo_h) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_bwd(Tensor dy, Tensor dhT, Tensor gates, Tensor ghn, Tensor h0, Tensor y, Tensor w_hh, "
        "Tensor? batch_sizes, Tensor? rd_mask, Tensor? zo_h) -> (Tensor, Tensor, Tensor)");
  m.def("rnn_fwd(Tensor gx, Tensor h0, Tensor w_hh, Tensor? batch_sizes, Tensor? rd_mask, Tensor? zo_h, "
        "bool relu) -> (Tensor, Tensor, Tensor)");
  m.def("rnn_bwd(Tensor dy, Tensor dhT, Tensor hn, Tensor w_hh, Tensor? batch_sizes, Tensor? rd_mask, "
        "Tensor? zo_h, bool relu) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lstmkit, CPU, m) {
  m.impl("lstm_fwd", &lstmkit::lstm_fwd);
  m.impl("lstm_bwd", &lstmkit::lstm_bwd);
  m.impl("lstm_ln_fwd", &lstmkit::lstm_ln_fwd);
  m.impl("lstm_ln_bwd", &lstmkit::lstm_ln_bwd);
  m.impl("gru_fwd", &lstmkit::gru_fwd);
  m.impl("gru_bwd", &lstmkit::gru_bwd);
  m.impl("rnn_fwd", &lstmkit::rnn_fwd);
  m.impl("rnn_bwd", &lstmkit::rnn_bwd);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "lstmkit native engine (ops registered under torch.ops.lstmkit)";
  pybind11::class_<lstmkit::LSTMStream>(mod, "LSTMStream")
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, int64_t, bool>())
      .def("step", &lstmkit::LSTMStream::step)
      .def("reset", &lstmkit::LSTMStream::reset)
      .def("state", &lstmkit::LSTMStream::state)
      .def("set_state", &lstmkit::LSTMStream::set_state);
  pybind11::class_<lstmkit::CellStream>(mod, "CellStream")  // GRU and RNN streams (stream_gru.h)
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, int64_t, const std::string&>())
      .def("step", &lstmkit::CellStream::step)
      .def("reset", &lstmkit::CellStream::reset)
      .def("state", &lstmkit::CellStream::state)
      .def("set_state", &lstmkit::CellStream::set_state);
  pybind11::class_<lstmkit::LnLSTMStream>(mod, "LnLSTMStream")  // layer-norm LSTM streams (stream_ln.h)
      .def(pybind11::init<const std::vector<std::vector<at::Tensor>>&, int64_t, bool>())
      .def("step", &lstmkit::LnLSTMStream::step)
      .def("reset", &lstmkit::LnLSTMStream::reset)
      .def("state", &lstmkit::LnLSTMStream::state)
      .def("set_state", &lstmkit::LnLSTMStream::set_state);
  // direct entry points (the layers' autograd Functions and inference): skip the dispatcher and the Python autograd wrapper
  mod.def("lstm_fwd", &lstmkit::lstm_fwd);
  mod.def("lstm_fwd_infer", &lstmkit::lstm_fwd_infer);
  mod.def("lstm_ln_fwd", &lstmkit::lstm_ln_fwd);
  mod.def("gru_fwd", &lstmkit::gru_fwd);
  mod.def("rnn_fwd", &lstmkit::rnn_fwd);
  mod.def("lstm_bwd", &lstmkit::lstm_bwd);
  mod.def("lstm_ln_bwd", &lstmkit::lstm_ln_bwd);
  mod.def("gru_bwd", &lstmkit::gru_bwd);
  mod.def("rnn_bwd", &lstmkit::rnn_bwd);
  // one LSTM layer-direction in one call (layer.cpp): a C++ autograd node, and its inference twin
  mod.def("lstm_layer", &lstmkit::lstm_layer);
  mod.def("lstm_layer_infer", &lstmkit::lstm_layer_infer);
  mod.def("lstm_ln_layer", &lstmkit::lstm_ln_layer);
  mod.def("lstm_ln_bilayer", &lstmkit::lstm_ln_bilayer);  // both directions at once, one per core (ln_layer.cpp)
  // both directions of a bidirectional layer at once, one per core (bilayer.cpp): the node and its inference twin
  mod.def("lstm_fwd_pair", &lstmkit::lstm_fwd_pair);  // a projection layer's two directions at once (lstm.cpp)
  mod.def("lstm_bwd_pair", &lstmkit::lstm_bwd_pair);
  mod.def("lstm_bilayer", &lstmkit::lstm_bilayer);
  mod.def("lstm_bilayer_infer", &lstmkit::lstm_bilayer_infer);
  // the GRU's layer node, its inference twin, and both directions at once (gru_layer.cpp)
  mod.def("gru_layer", &lstmkit::gru_layer);
  mod.def("gru_layer_infer", &lstmkit::gru_layer_infer);
  mod.def("gru_bilayer", &lstmkit::gru_bilayer);
  mod.def("gru_bilayer_infer", &lstmkit::gru_bilayer_infer);
  // the engine's memory pool (pool.h): fp32 buffers for the input projection, and releasing what it holds
  // the engine's fp32 GEMM for the products over all T*B rows (gemm.h): out = a b^T (+ bias)
  mod.def("matmul_nt_out", &lstmkit::matmul_nt_out, py::arg("out"), py::arg("a"), py::arg("b"),
          py::arg("bias") = py::none());
  mod.def("matmul_tn", &lstmkit::matmul_tn, py::arg("a"), py::arg("bs"));
  mod.def("pool_empty", [](const std::vector<int64_t>& sizes) {
    return lstmkit::pool_empty(sizes, at::TensorOptions().dtype(at::kFloat));
  });
  mod.def("release_pool", []() { return lstmkit::BlockPool::get().release(); });
  mod.def("pool_cached_bytes", []() { return lstmkit::BlockPool::get().cached_bytes(); });
#if defined(__AVX512F__)
  mod.attr("simd") = "avx512";
#else
  mod.attr("simd") = "scalar";
#endif
}
