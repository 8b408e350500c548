"""The native engine against the reference path (the spec): values and all gradients, every cell and option."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

import lstmkit.nn as lnn
from lstmkit import backend
from native_helpers import TOL, _assert_match, _flat, _pair, _run, _use_threads

pytestmark = pytest.mark.skipif(not backend.native_available(), reason=f"native engine not built: "
                                f"{backend.native_error()}")


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


@pytest.mark.parametrize("cls,kw", [(lnn.LSTM, {}), (lnn.LSTM, {"coupled": True}), (lnn.GRU, {})])
def test_every_active_row_count_matches(cls, kw):
    """Lengths 1..32 leave each count of active rows from 32 down to 1 for one step: the row blocks of the
    per-step GEMMs (6s up to 12 rows, evened out above) must cover every row once, forward and backward."""
    ref, nat = _pair(cls, 5, 20, **kw)
    x = torch.randn(32, 32, 5)
    _assert_match(ref, nat, x, torch.randperm(32) + 1, train=True)


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
