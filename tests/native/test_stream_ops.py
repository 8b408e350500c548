"""The native engine's streams (one call per step) against the reference layer, its registered ops under torch's
opcheck, its memory pool, and torch.compile around a native layer."""
from __future__ import annotations

import copy

import pytest
import torch

import lstmkit.nn as lnn
from lstmkit import backend
from native_helpers import TOL, _use_threads

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


def test_opcheck_registered_ops():
    """torch.library.opcheck: schema, fake (meta) kernels and autograd registration of the native ops."""
    from lstmkit._native import ops  # noqa: F401  (registers autograd and fake kernels)

    T, B, H = 3, 2, 4
    torch.manual_seed(0)
    gx = torch.randn(T, B, 4 * H, requires_grad=True)
    h0, c0 = torch.randn(B, H, requires_grad=True), torch.randn(B, H, requires_grad=True)
    w_hh = torch.randn(4 * H, H, requires_grad=True)
    w_ph = torch.randn(3 * H, requires_grad=True)
    bs = torch.tensor([2, 2, 1])
    torch.library.opcheck(torch.ops.lstmkit.lstm_fwd, (gx, h0, c0, w_hh, None, w_ph, bs, None, None, None, False))
    ln = [torch.randn(4 * H, requires_grad=True) for _ in range(2)] + [torch.randn(H, requires_grad=True)
                                                                       for _ in range(2)]
    torch.library.opcheck(torch.ops.lstmkit.lstm_ln_fwd, (gx, h0, c0, w_hh, *ln, w_ph, bs, None, None, None, False))
    P = 3  # with a projection W_hr (P, H): h0 and W_hh's columns of size P
    h0p, w_hhp = torch.randn(B, P, requires_grad=True), torch.randn(4 * H, P, requires_grad=True)
    torch.library.opcheck(torch.ops.lstmkit.lstm_ln_fwd, (gx, h0p, c0, w_hhp, *ln, w_ph, bs, None, None, None, False,
                                                          torch.randn(P, H, requires_grad=True)))
    gxg = torch.randn(T, B, 3 * H, requires_grad=True)
    torch.library.opcheck(torch.ops.lstmkit.gru_fwd, (gxg, h0, torch.randn(3 * H, H, requires_grad=True),
                                                      torch.randn(3 * H, requires_grad=True), None, None, None))
    gxr = torch.randn(T, B, H, requires_grad=True)
    torch.library.opcheck(torch.ops.lstmkit.rnn_fwd, (gxr, h0, torch.randn(H, H, requires_grad=True), bs, None,
                                                      None, True))
    # the backward ops on their own (schema and fake kernels; they have no autograd of their own), fed with what
    # their forward ops save
    with torch.no_grad():
        y, _, _, gates, cn, cs, _ = torch.ops.lstmkit.lstm_fwd(gx, h0, c0, w_hh, None, w_ph, bs, None, None, None,
                                                               False)
        torch.library.opcheck(torch.ops.lstmkit.lstm_bwd, (torch.randn_like(y), torch.randn_like(h0),
                                                           torch.randn_like(c0), gates, cn, cs, c0, w_hh, None, w_ph,
                                                           bs, None, None, None, False), test_utils=("test_schema",
                                                                                                  "test_faketensor"))
        o = torch.ops.lstmkit.lstm_ln_fwd(gx, h0p, c0, w_hhp, *ln, w_ph, bs, None, None, None, False,
                                          torch.randn(P, H))
        torch.library.opcheck(torch.ops.lstmkit.lstm_ln_bwd, (torch.randn_like(o[0]), torch.randn_like(h0p),
                                                              torch.randn_like(c0), o[3], o[4], o[5], c0, w_hhp,
                                                              o[6], o[7], o[8], o[9], ln[0], ln[2], ln[3], w_ph, bs,
                                                              None, None, None, False, torch.randn(P, H)),
                              test_utils=("test_schema", "test_faketensor"))
        w_hhg = torch.randn(3 * H, H)
        yg, _, gates_g, ghn = torch.ops.lstmkit.gru_fwd(gxg, h0, w_hhg, None, bs, None, None)
        torch.library.opcheck(torch.ops.lstmkit.gru_bwd, (torch.randn_like(yg), torch.randn_like(h0), gates_g, ghn, h0,
                                                          yg, w_hhg, bs, None, None),
                              test_utils=("test_schema", "test_faketensor"))
        w_hhr = torch.randn(H, H)
        yr, _, hn = torch.ops.lstmkit.rnn_fwd(gxr, h0, w_hhr, bs, None, None, True)
        torch.library.opcheck(torch.ops.lstmkit.rnn_bwd, (torch.randn_like(yr), torch.randn_like(h0), yr, w_hhr, bs,
                                                          None, None, True),
                              test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "num_layers": 2}, {"coupled": True},
                                {"proj_size": 4, "num_layers": 2},
                                # layer norm (csrc/stream_ln.h), with and without biases, a projection, peepholes
                                {"layer_norm": True, "num_layers": 2},
                                {"layer_norm": True, "peephole": True, "coupled": True, "bias": False},
                                {"layer_norm": True, "proj_size": 3, "peephole": True, "num_layers": 2}])
@pytest.mark.parametrize("threads", [1, 2])
def test_stream_equals_layer(kw, threads, monkeypatch):
    """The native stream, step by step, against the reference layer over the whole sequence: outputs, state,
    reset, and set_state (continuing from the layer's final state). H = 40: on two threads the units split with a
    part-filled block (a stack with a projection, and layer norm, stay on one)."""
    _use_threads(threads, monkeypatch)
    torch.manual_seed(0)
    ref = lnn.LSTM(5, 40, backend="reference", **kw).eval()
    m = lnn.LSTM(5, 40, backend="native", **kw).eval()
    m.load_state_dict(ref.state_dict())
    tol = TOL["ln"] if kw.get("layer_norm") else dict(atol=1e-5, rtol=1e-5)
    x = torch.randn(12, 3, 5)
    with torch.no_grad():
        y, (h, c) = ref(x)
    s = m.stream(batch_size=3)
    assert s.native
    ys = torch.stack([s.step(x[t]) for t in range(12)])
    torch.testing.assert_close(ys, y, **tol)
    hs, cs = s.state
    torch.testing.assert_close(hs, h, **tol)
    torch.testing.assert_close(cs, c, **tol)
    s.reset()
    torch.testing.assert_close(s.step(x[0]), y[0], **tol)
    s.set_state(h, c)
    with torch.no_grad():
        y_next, _ = ref(x[:1], (h, c))
    torch.testing.assert_close(s.step(x[0]), y_next[0], **tol)


@pytest.mark.parametrize("cls,kw", [(lnn.GRU, {}), (lnn.GRU, {"num_layers": 2, "bias": False}), (lnn.RNN, {}),
                                    (lnn.RNN, {"nonlinearity": "relu", "num_layers": 2})])
@pytest.mark.parametrize("threads", [1, 2])
def test_gru_rnn_stream_equals_reference_layer(cls, kw, threads, monkeypatch):
    """GRU and RNN streams (csrc/stream_gru.h), one native call per step, against the reference layer over the
    whole sequence: outputs, state, reset and set_state. H = 40: the two-thread split has a part-filled block."""
    _use_threads(threads, monkeypatch)
    torch.manual_seed(0)
    ref = cls(6, 40, backend="reference", **kw).eval()
    nat = cls(6, 40, backend="native", **kw).eval()
    nat.load_state_dict(ref.state_dict())
    x = torch.randn(9, 3, 6)
    with torch.no_grad():
        y, h = ref(x)
    s = nat.stream(batch_size=3)
    assert s.native
    ys = torch.stack([s.step(x[t]) for t in range(9)])
    torch.testing.assert_close(ys, y, **TOL[torch.float32])
    torch.testing.assert_close(s.state, h, **TOL[torch.float32])
    s.reset()
    torch.testing.assert_close(s.step(x[0]), y[0], **TOL[torch.float32])
    s.set_state(h)  # continue from the end of the sequence: the next step as the layer from state h would give
    with torch.no_grad():
        y_next, _ = ref(x[:1], h)
    torch.testing.assert_close(s.step(x[0]), y_next[0], **TOL[torch.float32])


@pytest.mark.parametrize("cls,kw", [(lnn.LSTM, {"peephole": True, "num_layers": 2}), (lnn.LSTM, {"proj_size": 4}),
                                    (lnn.LSTM, {"layer_norm": True}), (lnn.GRU, {"num_layers": 2}), (lnn.RNN, {})])
def test_bf16_stream_is_native_fp32_math(cls, kw):
    """A bf16 layer streams natively: each step is the fp32 math of its (bf16) weights and input, rounded to bf16
    once at the output. Against the fp32 reference layer with the same weights: within one bf16 rounding of each
    output (|error| <= 2^-8 |y| + 1e-5; the reference cells stepped in bf16 are 17-380x outside that bound, and
    so was this stream while it summed b_ih + b_hh in bf16); against the bf16 layer's own forward (which also
    rounds h before each step's product): within bf16 tolerance. The state comes back in bf16."""

    def within_one_rounding(got, want):
        bound = want.abs() * 2 ** -8 + 1e-5
        assert ((got.float() - want).abs() <= bound).all(), ((got.float() - want).abs() / bound).max()

    torch.manual_seed(0)
    m = cls(6, 40, backend="native", **kw).eval().to(torch.bfloat16)
    ref = cls(6, 40, backend="reference", **kw).eval()
    ref.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    x = torch.randn(10, 3, 6).to(torch.bfloat16)
    s = m.stream(batch_size=3)
    assert s.native
    ys = torch.stack([s.step(x[t]) for t in range(10)])
    assert ys.dtype == torch.bfloat16
    with torch.no_grad():
        y, st = ref(x.float())
        y_bf16, _ = m(x)
    within_one_rounding(ys, y)
    torch.testing.assert_close(ys.float(), y_bf16.float(), atol=1e-2, rtol=1.6e-2)
    state = s.state
    for got, want in zip(state if isinstance(state, tuple) else (state,), st if isinstance(st, tuple) else (st,)):
        assert got.dtype == torch.bfloat16
        within_one_rounding(got, want)


def test_stream_rejects_bad_input():
    s = lnn.LSTM(5, 8, backend="native").eval().stream(batch_size=2)
    with pytest.raises(ValueError, match="x must have shape"):
        s.step(torch.randn(3, 5))
    with pytest.raises(ValueError, match="unidirectional"):
        lnn.LSTM(5, 8, bidirectional=True).stream()


def test_memory_pool_reuses_and_releases():
    """Large engine tensors come back from the pool after they are freed, and release_memory empties it."""
    from lstmkit import backend
    from lstmkit._native import ops
    backend.release_memory()
    lstm = lnn.LSTM(16, 64, backend="native")
    x = torch.randn(300, 32, 16, requires_grad=True)  # gates (300, 32, 256) fp32: about 10 MB
    out, _ = lstm(x)
    out.sum().backward()
    del out
    held = ops._C.pool_cached_bytes()
    assert held >= 300 * 32 * 256 * 4
    out, _ = lstm(x)  # served from the pool: nothing new is cached
    assert ops._C.pool_cached_bytes() < held
    del out
    assert backend.release_memory() >= 300 * 32 * 256 * 4
    assert ops._C.pool_cached_bytes() == 0


def test_torch_compile_runs_the_native_layer_eagerly():
    """Under torch.compile a native layer is one graph break (RNNBase._forward_eager, torch.compiler.disable) without
    dynamo's warnings about untraceable pybind functions; the compiled model gives the eager model's outputs and
    gradients."""
    import warnings

    import torch._dynamo

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(5, 8)
            self.rnn = lnn.LSTM(8, 12, batch_first=True, bidirectional=True, num_layers=2, backend="native")
            self.out = torch.nn.Linear(24, 2)

        def forward(self, x):
            return self.out(self.rnn(torch.relu(self.inp(x)))[0])

    torch.manual_seed(0)
    model = Model()
    x = torch.randn(3, 7, 5)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = torch.compile(model, backend="eager")(x)
    assert not [w for w in caught if "Dynamo" in str(w.message)], [str(w.message)[:200] for w in caught]
    y_eager = model(x)
    torch.testing.assert_close(y, y_eager, atol=0, rtol=0)
    reference = copy.deepcopy(model)  # the same model on the reference path: the values themselves are right
    reference.rnn.backend = "reference"
    torch.testing.assert_close(y, reference(x), **TOL[torch.float32])
    grads = [torch.autograd.grad(out.sum(), list(model.parameters())) for out in (y, y_eager)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch._dynamo.reset()
    assert torch._dynamo.explain(model)(x).graph_break_count == 1
