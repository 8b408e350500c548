"""The native engine against the reference path (the spec): values and all gradients, every cell and option."""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

import lstmkit.nn as lnn
from lstmkit import backend

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")

# float32 against float32: the two backends sum in different orders; layer norm's 1/std amplifies that
TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), "ln": dict(atol=1e-4, rtol=1e-4)}


def _use_threads(n: int, monkeypatch) -> None:
    """n intra-op threads (tests/conftest.py restores one after the test) and the engine's n-thread paths forced,
    whatever the two-thread team's barrier costs at the moment."""
    torch.set_num_threads(n)
    monkeypatch.setenv("LSTMKIT_THREADS", str(n))


def _pair(cls, D, H, **kw):
    torch.manual_seed(0)
    ref = cls(D, H, backend="reference", **kw)
    nat = cls(D, H, backend="native", **kw)
    nat.load_state_dict(ref.state_dict())
    return ref, nat


def _run(m, x, lengths, train, seed=7):
    """Outputs, final states, and gradients of input and every parameter of a weighted loss."""
    m.train(train)
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # same dropout / zoneout masks on both backends
    y, st = m(x, lengths=lengths)
    states = st if isinstance(st, tuple) else (st,)
    w = torch.linspace(-1, 1, y.numel()).view_as(y)
    loss = (y * w).sum() + sum((s * s).sum() for s in states)
    loss.backward()
    return [y.detach(), *[s.detach() for s in states], x.grad] + [p.grad for p in m.parameters()]


def _assert_match(ref, nat, x, lengths=None, train=False):
    ln = getattr(ref, "layer_norm", False)
    tol = TOL["ln"] if ln else TOL[torch.float32]
    a, b = _run(ref, x, lengths, train), _run(nat, x, lengths, train)
    names = ["output", "h_n", "c_n", "input.grad"][: len(a) - len(list(ref.parameters()))]
    names += [n + ".grad" for n, _ in ref.named_parameters()]
    assert len(a) == len(b)
    truth = None
    for i, (name, u, v) in enumerate(zip(names, a, b)):
        try:
            torch.testing.assert_close(v, u, **tol, msg=lambda s: f"{name}: {s}")
        except AssertionError:
            if not ln:
                raise
            # Layer norm over few values with a small variance amplifies rounding (1/std up to 1/sqrt(eps)), and
            # elementwise closeness of two fp32 results then fails about once in 30 random shapes. There the
            # float64 reference decides: the native error must be within 4x the fp32 reference's own, or within
            # 1e-4 of the tensor's largest value (seen: up to 5e-5, against 5e-6 for ATen's layer norm).
            truth = truth or _run(copy.deepcopy(ref).double(), x.double(), lengths, train)
            t = truth[i]
            err_native, err_ref = (v.double() - t).abs().max().item(), (u.double() - t).abs().max().item()
            scale = t.abs().max().item()
            assert err_native <= max(4 * err_ref + tol["atol"], 1e-4 * scale), (
                f"{name}: native error {err_native:.2e} against float64 (largest value {scale:.2e}), "
                f"fp32 reference's {err_ref:.2e}")


LSTM_OPTIONS = [{}, {"peephole": True}, {"coupled": True}, {"coupled": True, "peephole": True},
                {"layer_norm": True}, {"layer_norm": True, "coupled": True, "peephole": True},
                {"layer_norm": True, "bias": False},
                {"proj_size": 3}, {"proj_size": 3, "peephole": True}, {"bias": False},
                # absent optional arguments shift the C++ nodes' input edges: the peephole after no biases
                {"bias": False, "peephole": True}, {"layer_norm": True, "bias": False, "peephole": True},
                {"bidirectional": True, "bias": False, "peephole": True, "coupled": True},
                {"num_layers": 2, "bidirectional": True, "proj_size": 2, "peephole": True},
                # layer norm with a projection (ln_lstm.cpp's projection rows, through the registered-op Function)
                {"layer_norm": True, "proj_size": 3}, {"layer_norm": True, "proj_size": 3, "coupled": True,
                                                       "peephole": True, "bias": False},
                {"layer_norm": True, "proj_size": 2, "num_layers": 2, "bidirectional": True}]


@pytest.mark.parametrize("kw", LSTM_OPTIONS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "plain")
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_matches_reference(kw, with_lengths):
    ref, nat = _pair(lnn.LSTM, 5, 7, **kw)
    x = torch.randn(6, 4, 5)
    lengths = torch.tensor([3, 6, 1, 5]) if with_lengths else None
    _assert_match(ref, nat, x, lengths)


@pytest.mark.parametrize("kw", [{"zoneout": 0.3}, {"recurrent_dropout": 0.4}, {"dropout": 0.5, "num_layers": 2},
                                {"zoneout": 0.2, "recurrent_dropout": 0.2, "proj_size": 3, "peephole": True,
                                 "bidirectional": True},
                                {"zoneout": 0.2, "recurrent_dropout": 0.2, "layer_norm": True, "peephole": True},
                                {"zoneout": 0.2, "recurrent_dropout": 0.2, "layer_norm": True, "proj_size": 3,
                                 "peephole": True}])
def test_lstm_training_masks_match_reference(kw):
    ref, nat = _pair(lnn.LSTM, 5, 7, **kw)
    _assert_match(ref, nat, torch.randn(6, 4, 5), torch.tensor([6, 2, 5, 1]), train=True)


@pytest.mark.parametrize("cls,kw", [(lnn.GRU, {}), (lnn.GRU, {"bidirectional": True, "num_layers": 2}),
                                    (lnn.GRU, {"bias": False}), (lnn.RNN, {}),
                                    (lnn.RNN, {"nonlinearity": "relu", "bidirectional": True})])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gru_rnn_match_reference(cls, kw, with_lengths):
    ref, nat = _pair(cls, 5, 7, **kw)
    _assert_match(ref, nat, torch.randn(6, 4, 5), torch.tensor([2, 6, 1, 4]) if with_lengths else None)


@pytest.mark.parametrize("cls", [lnn.GRU, lnn.RNN])
def test_gru_rnn_recurrent_dropout_match_reference(cls):
    ref, nat = _pair(cls, 5, 7, recurrent_dropout=0.3, num_layers=2, dropout=0.3)
    _assert_match(ref, nat, torch.randn(6, 4, 5), torch.tensor([6, 2, 5, 1]), train=True)


@pytest.mark.parametrize("kw", [{}, {"recurrent_dropout": 0.3}])
def test_two_thread_gru_matches_reference(kw, monkeypatch):
    """GRU large enough for the batch split between two threads (uneven rows, lengths, masked tail units)."""
    _use_threads(2, monkeypatch)
    ref, nat = _pair(lnn.GRU, 8, 40, **kw)
    _assert_match(ref, nat, torch.randn(7, 9, 8), torch.tensor([7, 3, 1, 7, 5, 2, 6, 4, 7]),
                  train=bool(kw))


@pytest.mark.parametrize("cls,kw", [(lnn.LSTM, {}), (lnn.LSTM, {"peephole": True, "num_layers": 2, "dropout": 0.5}),
                                    (lnn.LSTM, {"coupled": True, "bias": False, "peephole": True}),
                                    (lnn.LSTM, {"layer_norm": True, "peephole": True}),
                                    (lnn.LSTM, {"layer_norm": True, "coupled": True, "bias": False, "num_layers": 2,
                                                "dropout": 0.5}),
                                    (lnn.GRU, {}), (lnn.GRU, {"bias": False, "num_layers": 2, "dropout": 0.5}),
                                    (lnn.LSTM, {"proj_size": 5}),
                                    (lnn.LSTM, {"proj_size": 3, "peephole": True, "coupled": True, "bias": False,
                                                "num_layers": 2})])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_directions_at_once_match_reference(cls, kw, with_lengths, monkeypatch):
    """Two threads: a bidirectional layer runs its directions at once, one per thread (csrc/bilayer.cpp,
    csrc/gru_layer.cpp, csrc/ln_layer.cpp, csrc/lstm.cpp's pair functions for a projection), in training (the pair
    node or Function, every gradient) and in inference."""
    _use_threads(2, monkeypatch)
    ref, nat = _pair(cls, 6, 20, bidirectional=True, **kw)
    x = torch.randn(7, 9, 6)
    lengths = torch.tensor([7, 3, 1, 7, 5, 2, 6, 4, 7]) if with_lengths else None
    _assert_match(ref, nat, x, lengths, train=True)
    with torch.no_grad():
        for a, b in zip(_flat(ref.eval()(x, lengths=lengths)), _flat(nat.eval()(x, lengths=lengths))):
            torch.testing.assert_close(b, a, **TOL[torch.float32])


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "coupled": True}, {"bias": False, "batch_first": True},
                                {"bidirectional": True}, {"zoneout": 0.2, "recurrent_dropout": 0.3},
                                {"num_layers": 2, "dropout": 0.4}])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_loop_taking_the_input_itself_matches_reference(kw, threads, with_lengths, monkeypatch):
    """From B >= 2 (fp32) the fused loop adds x_t W_ih^T inside each step's register blocks instead of reading a
    G_x computed beforehand (csrc/fused.h, input_in_loop): training (every gradient) and inference, with lengths
    (rows finish at different steps), and H = 70 leaves a part-filled last block of 16 units."""
    _use_threads(threads, monkeypatch)
    ref, nat = _pair(lnn.LSTM, 9, 70, **kw)
    x = torch.randn(8, 13, 9) if kw.get("batch_first") else torch.randn(13, 8, 9)
    lengths = torch.tensor([13, 4, 9, 13, 1, 7, 12, 6]) if with_lengths else None
    _assert_match(ref, nat, x, lengths, train=True)
    with torch.no_grad():
        for a, b in zip(_flat(ref.eval()(x, lengths=lengths)), _flat(nat.eval()(x, lengths=lengths))):
            torch.testing.assert_close(b, a, **TOL[torch.float32])


def test_bidirectional_pair_raises_an_error_from_either_thread(monkeypatch):
    """An error inside one direction's thread reaches the caller as an exception (not a crash of the process)."""
    from lstmkit._native import _C

    _use_threads(2, monkeypatch)
    T, B, D, H = 5, 3, 4, 16
    x, w_ih, w_hh, h0 = torch.randn(T, B, D), torch.randn(4 * H, D), torch.randn(4 * H, H), torch.zeros(B, H)
    with pytest.raises(IndexError, match="Dimension out of range"):  # the reverse direction's input is 2-D
        _C.lstm_bilayer_infer(x, x[:, 0], w_ih, w_hh, None, None, None, w_ih, w_hh, None, None, None, None, h0, h0,
                              h0, h0, False, None)


def _flat(out):
    """(y, (h, c)) or (y, h) as a flat list."""
    y, st = out
    return [y, *st] if isinstance(st, tuple) else [y, st]


@pytest.mark.parametrize("kw,dtype", [({}, torch.float32), ({"peephole": True}, torch.float32),
                                      ({"layer_norm": True}, torch.float32), ({}, torch.bfloat16)])
def test_loss_on_output_only(kw, dtype):
    """h_n and c_n get no gradient (the usual ``out.sum()``): the layer node starts its backward from zeros."""
    ref, nat = _pair(lnn.LSTM, 5, 7, **kw)
    ref, nat = ref.to(dtype), nat.to(dtype)
    grads = []
    for m in (ref, nat):
        x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(3)).to(dtype).requires_grad_()
        m(x)[0].float().sum().backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    tol = {"rtol": 5e-2, "atol": 5e-2} if dtype == torch.bfloat16 else TOL[torch.float32]
    for u, v in zip(*grads):
        torch.testing.assert_close(v, u, **tol)


@pytest.mark.parametrize("kw", [{}, {"coupled": True, "peephole": True}, {"zoneout": 0.3},
                                {"recurrent_dropout": 0.3, "zoneout": 0.1, "peephole": True},
                                {"layer_norm": True, "peephole": True, "zoneout": 0.2, "recurrent_dropout": 0.2},
                                {"layer_norm": True, "proj_size": 21, "zoneout": 0.2, "recurrent_dropout": 0.2}])
def test_two_thread_team_matches_reference(kw, monkeypatch):
    """Shapes large enough for the two-thread fused loop (H split across threads, a barrier per step)."""
    _use_threads(2, monkeypatch)
    ref, nat = _pair(lnn.LSTM, 8, 40, **kw)  # 3 unit blocks: uneven split, masked tail block
    _assert_match(ref, nat, torch.randn(7, 9, 8), torch.tensor([7, 3, 1, 7, 5, 2, 6, 4, 7]),
                  train=bool(kw.get("zoneout")))  # layer norm: batch split by balanced lengths


@pytest.mark.parametrize("kw", [{"layer_norm": True}, {"layer_norm": True, "coupled": True, "peephole": True},
                                {"layer_norm": True, "bias": False},
                                {"layer_norm": True, "peephole": True, "zoneout": 0.2, "recurrent_dropout": 0.2}])
@pytest.mark.parametrize("lengths", [None, torch.tensor([5])])
def test_layer_norm_one_sequence_on_two_threads(kw, lengths, monkeypatch):
    """One sequence through the layer-norm loops on two threads: each step's GEMM split by columns, both threads
    running the row passes. Matches the reference, and equals the one-thread run bit for bit (the same arithmetic
    on the same values, whichever thread's copy of the state is kept)."""
    ref, nat = _pair(lnn.LSTM, 8, 40, **kw)  # G*H = 160: halves of 80 columns, H = 40: of 32 and 8
    x, train = torch.randn(7, 1, 8), bool(kw.get("zoneout"))
    _use_threads(2, monkeypatch)
    _assert_match(ref, nat, x, lengths, train=train)
    runs = []
    for threads in ("2", "1"):
        monkeypatch.setenv("LSTMKIT_THREADS", threads)
        nat.zero_grad(set_to_none=True)  # fresh gradients per run (they would accumulate)
        runs.append([t.clone() for t in _run(nat, x, lengths, train)])
    for u, v in zip(*runs):
        assert torch.equal(u, v)


@pytest.mark.parametrize("lengths", [None, torch.tensor([5])])
@pytest.mark.parametrize("train", [False, True])
def test_layer_norm_projection_one_sequence(lengths, train, monkeypatch):
    """Layer norm with a projection over one sequence (its loops keep it on one thread: each step has a second GEMM,
    r_t = m_t W_hr^T), P not a multiple of 16, with zoneout and recurrent dropout in training."""
    _use_threads(2, monkeypatch)
    kw = {"zoneout": 0.2, "recurrent_dropout": 0.2} if train else {}
    ref, nat = _pair(lnn.LSTM, 8, 40, layer_norm=True, proj_size=17, peephole=True, **kw)
    _assert_match(ref, nat, torch.randn(7, 1, 8), lengths, train=train)


def test_gemm_paths_agree(monkeypatch):
    """A shape large enough for the ATen GEMM path gives the same result as the register-blocked kernel."""
    ref, nat = _pair(lnn.LSTM, 16, 96, proj_size=40)
    x = torch.randn(5, 48, 16)
    _assert_match(ref, nat, x, torch.randint(1, 6, (48,)))


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 5), T=st.integers(1, 6), D=st.integers(1, 6), H=st.integers(1, 20),
       mode=st.sampled_from(["lstm", "peephole", "coupled", "layer_norm", "proj", "ln_proj", "gru", "rnn"]),
       bidir=st.booleans(),
       layers=st.integers(1, 2), use_lengths=st.booleans(), seed=st.integers(0, 10_000))
def test_random_shapes_match_reference(B, T, D, H, mode, bidir, layers, use_lengths, seed):
    torch.manual_seed(seed)
    kw = dict(num_layers=layers, bidirectional=bidir)
    cls = {"gru": lnn.GRU, "rnn": lnn.RNN}.get(mode, lnn.LSTM)
    if mode in ("peephole", "coupled", "layer_norm"):
        kw[mode] = True
    if mode in ("layer_norm", "ln_proj"):
        kw["layer_norm"] = True
        # LN of the cell over one or two units is degenerate (0, or +-1 whatever c is): its gradient is rounding
        # noise amplified by 1/std, on both sides
        H = max(H, 3)
    if mode in ("proj", "ln_proj"):
        H = max(H, 3 if mode == "ln_proj" else 2)
        kw["proj_size"] = H - 1
    ref, nat = _pair(cls, D, H, **kw)
    x = torch.randn(T, B, D)
    lengths = torch.randint(1, T + 1, (B,)) if use_lengths else None
    _assert_match(ref, nat, x, lengths)


def test_opcheck_registered_ops():
    """torch.library.opcheck: schema, fake (meta) kernels and autograd registration of the native ops."""
    from lstmkit._native import ops  # noqa: F401  (registers autograd and fake kernels)

    T, B, H, D = 3, 2, 4, 3
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
def test_stream_equals_layer(kw):
    """The native stream, step by step, against the reference layer over the whole sequence: outputs, state,
    reset, and set_state (continuing from the layer's final state)."""
    torch.manual_seed(0)
    ref = lnn.LSTM(5, 8, backend="reference", **kw).eval()
    m = lnn.LSTM(5, 8, backend="native", **kw).eval()
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


def test_stream_rejects_bad_input():
    s = lnn.LSTM(5, 8, backend="native").eval().stream(batch_size=2)
    with pytest.raises(ValueError, match="x must have shape"):
        s.step(torch.randn(3, 5))
    with pytest.raises(ValueError, match="unidirectional"):
        lnn.LSTM(5, 8, bidirectional=True).stream()


@pytest.mark.parametrize("cls,kw,H", [(lnn.LSTM, {}, 16), (lnn.LSTM, {"layer_norm": True, "peephole": True}, 16),
                                      (lnn.LSTM, {"layer_norm": True, "proj_size": 5}, 16),
                                      (lnn.LSTM, {"coupled": True, "peephole": True}, 41),
                                      (lnn.LSTM, {"proj_size": 4, "bidirectional": True}, 16),
                                      (lnn.LSTM, {"bidirectional": True}, 16), (lnn.GRU, {}, 16),
                                      (lnn.RNN, {}, 16)])
def test_bfloat16_at_least_as_accurate_as_reference(cls, kw, H, batch=3, D=8):
    """bf16: native (bf16 GEMMs, fp32 state and accumulation) is within 1.5x the reference bf16 error, against
    float64 truth. Coupled at H=41: 3H is odd, so the kernel's bf16 gate gradients carry a pad column."""
    torch.manual_seed(0)
    base = cls(D, H, backend="reference", **kw)
    models = {"ref": cls(D, H, backend="reference", **kw).to(torch.bfloat16),
              "nat": cls(D, H, backend="native", **kw).to(torch.bfloat16),
              "f64": cls(D, H, backend="reference", **kw).double()}
    for m in models.values():
        m.load_state_dict(base.state_dict())
    x = torch.randn(10, batch, D)
    # with lengths (an LSTM's C++ node then keeps the active rows only) and without
    lengths = torch.tensor(([10, 4, 7] + [1 + (3 * i) % 10 for i in range(batch - 3)])[:batch])
    for lengths in (lengths, None):
        res = {}
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            xx = x.to(next(m.parameters()).dtype).requires_grad_()
            y, _ = m(xx, lengths=lengths)
            (y.double() * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
            assert y.dtype == xx.dtype
            res[name] = [y.double(), xx.grad.double()] + [p.grad.double() for p in m.parameters()]
        for i, truth in enumerate(res["f64"]):
            err_ref = (res["ref"][i] - truth).abs().max().item()
            err_nat = (res["nat"][i] - truth).abs().max().item()
            assert err_nat <= 1.5 * err_ref + 1e-3 * truth.abs().max().item(), (lengths, i, err_nat, err_ref)


@pytest.mark.parametrize("threads", [1, 2])
def test_bfloat16_recurrent_dropout(threads, monkeypatch):
    """bf16 with recurrent dropout (the fused loop feeds its GEMM h * mask as bf16): within 1.5x the reference bf16
    error against float64 truth, with the same masks (same seed) on all three."""
    _use_threads(threads, monkeypatch)
    torch.manual_seed(0)
    base = lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3)
    models = {"ref": lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3).to(torch.bfloat16),
              "nat": lnn.LSTM(8, 41, backend="native", recurrent_dropout=0.3).to(torch.bfloat16),
              "f64": lnn.LSTM(8, 41, backend="reference", recurrent_dropout=0.3).double()}
    x = torch.randn(10, 3, 8)
    res = {}
    for name, m in models.items():
        m.load_state_dict(base.state_dict())
        xx = x.to(next(m.parameters()).dtype).requires_grad_()
        torch.manual_seed(11)  # the same dropout mask for all three
        y, _ = m(xx)
        (y.double() * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
        res[name] = [y.double(), xx.grad.double()] + [p.grad.double() for p in m.parameters()]
    for i, truth in enumerate(res["f64"]):
        err_ref = (res["ref"][i] - truth).abs().max().item()
        err_nat = (res["nat"][i] - truth).abs().max().item()
        assert err_nat <= 1.5 * err_ref + 1e-3 * truth.abs().max().item(), (i, err_nat, err_ref)


@pytest.mark.parametrize("kw", [{}, {"coupled": True, "peephole": True}])
def test_bfloat16_two_threads(kw, monkeypatch):
    """The bf16 fused loop on two threads (uneven unit split, odd pair padding) keeps the same accuracy."""
    _use_threads(2, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, kw, H=41)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("D,batch", [(7, 3), (8, 1)])
def test_bfloat16_input_in_the_loop_and_not(D, batch, threads, monkeypatch):
    """bf16 from B >= 2: the loop takes the input itself (x_t W_ih^T as bf16 dot products in each step's register
    blocks; an odd D gets a zero pad column, csrc/fused_lstm.cpp). At B = 1 the projection runs first."""
    _use_threads(threads, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, {"peephole": True}, H=41, batch=batch, D=D)


@pytest.mark.parametrize("threads", [1, 2])
def test_bfloat16_many_rows(threads, monkeypatch):
    """13 rows: the bf16 backward GEMM's 6-row register blocks and a remainder (and, with lengths, every count of
    active rows from 13 down), with a partial 16-column block (H=41)."""
    _use_threads(threads, monkeypatch)
    test_bfloat16_at_least_as_accurate_as_reference(lnn.LSTM, {"peephole": True}, H=41, batch=13)


@pytest.mark.parametrize("scale", [50.0, 1e4])
def test_saturated_gates_stay_finite_and_match(scale):
    """Huge pre-activations (saturated gates) give finite values and gradients equal to the reference's."""
    ref, nat = _pair(lnn.LSTM, 5, 7, peephole=True)
    with torch.no_grad():
        for m in (ref, nat):
            m.weight_ih_l0.mul_(scale)
    x = torch.randn(6, 4, 5)
    a, b = _run(ref, x, None, False), _run(nat, x, None, False)
    for u, v in zip(a, b):
        assert torch.isfinite(v).all()
        torch.testing.assert_close(v, u, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"peephole": True}, {"coupled": True}, {"proj_size": 3}, {"bias": False},
                                {"num_layers": 2, "bidirectional": True}])
@pytest.mark.parametrize("threads", [1, 2])
def test_inference_path_matches_reference(kw, threads, monkeypatch):
    """Under inference_mode the engine takes its inference entry (biases added in the kernel, nothing saved for
    backward): outputs and states must still equal the reference's, with and without lengths."""
    _use_threads(threads, monkeypatch)
    ref, nat = _pair(lnn.LSTM, 8, 40, **kw)
    x = torch.randn(7, 9, 8)
    for lengths in (None, torch.tensor([7, 3, 1, 7, 5, 2, 6, 4, 7])):
        with torch.inference_mode():
            (ya, (ha, ca)), (yb, (hb, cb)) = ref(x, lengths=lengths), nat(x, lengths=lengths)
        for name, u, v in (("output", ya, yb), ("h_n", ha, hb), ("c_n", ca, cb)):
            torch.testing.assert_close(v, u, **TOL[torch.float32], msg=lambda s: f"{name}: {s}")


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


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "coupled": True}])
def test_bfloat16_inference_entry_accuracy(kw):
    """bf16 under inference_mode (the inference entry: bf16 projection, biases added in the kernel): as accurate
    as the reference bf16 layer against float64 truth."""
    torch.manual_seed(0)
    base = lnn.LSTM(8, 24, backend="reference", **kw)
    ref16, nat16 = (lnn.LSTM(8, 24, backend=b, **kw).to(torch.bfloat16) for b in ("reference", "native"))
    f64 = lnn.LSTM(8, 24, backend="reference", **kw).double()
    for m in (ref16, nat16, f64):
        m.load_state_dict(base.state_dict())
    x = torch.randn(12, 5, 8)
    with torch.inference_mode():
        truth = f64(x.double())[0]
        err_ref = (ref16(x.bfloat16())[0].double() - truth).abs().max().item()
        y = nat16(x.bfloat16())[0]
    assert y.dtype == torch.bfloat16
    assert (y.double() - truth).abs().max().item() <= 1.5 * err_ref + 1e-3


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("cls,kw", [(lnn.LSTM, {}), (lnn.LSTM, {"peephole": True, "coupled": True}), (lnn.GRU, {}),
                                    (lnn.LSTM, {"layer_norm": True, "peephole": True}),
                                    (lnn.LSTM, {"bidirectional": True}), (lnn.GRU, {"bidirectional": True}),
                                    (lnn.LSTM, {"bidirectional": True, "layer_norm": True})])
def test_unsorted_lengths_equal_the_presorted_batch_exactly(cls, kw, train):
    """The LSTM, layer-norm LSTM and GRU layer nodes (and the bidirectional pairs) take an unsorted batch into its
    longest-first order themselves (and their results and gradients back): the same numbers, bit for bit, as
    feeding them the batch already in that order."""
    torch.manual_seed(11)
    m = cls(6, 40, batch_first=True, backend="native", **kw)
    x = torch.randn(9, 8, 6)
    lengths = torch.tensor([3, 8, 1, 5, 8, 2, 7, 4, 6])
    order = torch.sort(lengths, descending=True, stable=True).indices
    dirs = 2 if kw.get("bidirectional") else 1
    w0 = torch.linspace(-1, 1, 9 * 8 * 40 * dirs).view(9, 8, 40 * dirs)  # loss weights, following each sequence
    h_init = torch.randn(dirs, 9, 40)  # an initial state too: the node gathers it, and scatters its gradient back
    res = []
    for xx, ll, w, h0 in ((x, lengths, w0, h_init), (x[order], lengths[order], w0[order], h_init[:, order])):
        xx, h0 = xx.clone().requires_grad_(train), h0.clone().requires_grad_(train)
        hx = (h0, torch.zeros_like(h0)) if cls is lnn.LSTM else h0
        with torch.set_grad_enabled(train):
            y, st = m(xx, hx, lengths=ll)
            states = list(st) if isinstance(st, tuple) else [st]
            out = [y.detach()] + [t.detach() for t in states]
            if train:
                m.zero_grad(set_to_none=True)
                ((y * w).sum() + sum((t * t).sum() for t in states)).backward()
                out += [xx.grad, h0.grad] + [p.grad.clone() for p in m.parameters()]
        res.append(out)
    unsorted, presorted = res
    n_states = len(res[0]) - (2 + len(list(m.parameters())) if train else 0) - 1
    for i, (u, p) in enumerate(zip(unsorted, presorted)):
        if i == 0 or i == 1 + n_states:  # y and dx: batch dim 0
            u = u[order]
        elif 1 <= i <= n_states or i == 2 + n_states:  # h_n, c_n and dh0: (1, B, H)
            u = u[:, order]
        torch.testing.assert_close(u, p, atol=0, rtol=0)


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
    grads = [torch.autograd.grad(out.sum(), list(model.parameters())) for out in (y, y_eager)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch._dynamo.reset()
    assert torch._dynamo.explain(model)(x).graph_break_count == 1
