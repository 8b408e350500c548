"""One step of the LSTM variants against scalar arithmetic done by hand (math.exp/tanh); zoneout and forget_bias."""
import math

import pytest
import torch

import lstmkit.functional as LF
import lstmkit.nn as lnn

from core_helpers import make_pair

# Small fixed numbers: H = 2, D = 1.  Gate rows are stacked (i, f, g, o) as in torch.
X = 0.5
H0 = [0.1, -0.2]
C0 = [0.3, -0.4]
W_IH = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
W_HH = [[0.2, -0.1], [0.05, 0.3], [-0.3, 0.2], [0.1, 0.1], [0.4, -0.2], [-0.1, 0.25], [0.15, -0.35], [0.2, 0.05]]
B_IH = [0.1, 0.0, -0.1, 0.2, 0.0, 0.05, -0.05, 0.1]
B_HH = [0.0, 0.1, 0.05, -0.1, 0.2, 0.0, 0.1, -0.2]
P_I, P_F, P_O = [0.3, -0.2], [0.1, 0.4], [-0.5, 0.25]


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def hand_peephole_step(x, h, c):
    """Peephole LSTM (Gers et al. 2002) written out unit by unit."""
    a = [W_IH[k] * x + W_HH[k][0] * h[0] + W_HH[k][1] * h[1] + B_IH[k] + B_HH[k] for k in range(8)]
    h_new, c_new = [], []
    for j in range(2):
        i = sig(a[0 + j] + P_I[j] * c[j])
        f = sig(a[2 + j] + P_F[j] * c[j])
        g = math.tanh(a[4 + j])
        cj = f * c[j] + i * g
        o = sig(a[6 + j] + P_O[j] * cj)  # the output gate peeks at the new cell
        c_new.append(cj)
        h_new.append(o * math.tanh(cj))
    return h_new, c_new


def test_peephole_step_by_hand():
    h, c = LF.peephole_lstm_step(t([X]), t(H0), t(C0), t(W_IH).reshape(8, 1), t(W_HH), t(B_IH), t(B_HH),
                                 t(P_I + P_F + P_O))
    h_ref, c_ref = hand_peephole_step(X, H0, C0)
    assert h.tolist() == pytest.approx(h_ref, abs=1e-14)
    assert c.tolist() == pytest.approx(c_ref, abs=1e-14)


def test_peephole_layer_two_steps_by_hand():
    """The layer (T=2, batch of one) holds the same parameters by name and chains the steps."""
    lstm = lnn.LSTM(1, 2, peephole=True, dtype=torch.float64, backend="reference")
    lstm.load_state_dict({"weight_ih_l0": t(W_IH).reshape(8, 1), "weight_hh_l0": t(W_HH), "bias_ih_l0": t(B_IH),
                          "bias_hh_l0": t(B_HH), "weight_ph_l0": t(P_I + P_F + P_O)})
    out, (h_n, c_n) = lstm(t([[[X]], [[-1.5]]]), (t([[H0]]), t([[C0]])))
    h1, c1 = hand_peephole_step(X, H0, C0)
    h2, c2 = hand_peephole_step(-1.5, h1, c1)
    assert out[:, 0].tolist() == [pytest.approx(h1, abs=1e-14), pytest.approx(h2, abs=1e-14)]
    assert h_n[0, 0].tolist() == pytest.approx(h2, abs=1e-14)
    assert c_n[0, 0].tolist() == pytest.approx(c2, abs=1e-14)


def hand_cifg_step(x, h, c, peep):
    """CIFG: gate rows (f, g, o) are the last 6 rows of the tables above; i = 1 - f."""
    a = [W_IH[k] * x + W_HH[k][0] * h[0] + W_HH[k][1] * h[1] + B_IH[k] + B_HH[k] for k in range(2, 8)]
    h_new, c_new = [], []
    for j in range(2):
        f = sig(a[0 + j] + (P_F[j] * c[j] if peep else 0.0))
        g = math.tanh(a[2 + j])
        cj = f * c[j] + (1.0 - f) * g
        o = sig(a[4 + j] + (P_O[j] * cj if peep else 0.0))
        c_new.append(cj)
        h_new.append(o * math.tanh(cj))
    return h_new, c_new


@pytest.mark.parametrize("peep", [False, True], ids=["cifg", "cifg_peephole"])
def test_cifg_step_by_hand(peep):
    kw = {"w_ph": t(P_F + P_O)} if peep else {}
    h, c = LF.cifg_lstm_step(t([X]), t(H0), t(C0), t(W_IH[2:]).reshape(6, 1), t(W_HH[2:]), t(B_IH[2:]),
                             t(B_HH[2:]), **kw)
    h_ref, c_ref = hand_cifg_step(X, H0, C0, peep)
    assert h.tolist() == pytest.approx(h_ref, abs=1e-14)
    assert c.tolist() == pytest.approx(c_ref, abs=1e-14)
    cell = lnn.LSTMCell(1, 2, coupled=True, peephole=peep, dtype=torch.float64)
    state = {"weight_ih": t(W_IH[2:]).reshape(6, 1), "weight_hh": t(W_HH[2:]), "bias_ih": t(B_IH[2:]),
             "bias_hh": t(B_HH[2:])}
    cell.load_state_dict({**state, **({"weight_ph": t(P_F + P_O)} if peep else {})})
    h_cell, c_cell = cell(t([X]), (t(H0), t(C0)))  # unbatched cell
    assert h_cell.tolist() == pytest.approx(h_ref, abs=1e-14)
    assert c_cell.tolist() == pytest.approx(c_ref, abs=1e-14)


def hand_ln(v, gain, bias, eps=1e-5):
    mean = sum(v) / len(v)
    var = sum((e - mean) ** 2 for e in v) / len(v)  # biased variance
    return [gain[k] * (v[k] - mean) / math.sqrt(var + eps) + bias[k] for k in range(len(v))]


LN_IH_W = [1.0, 0.9, 1.1, 1.2, 0.8, 1.0, 0.7, 1.3]
LN_IH_B = [0.0, 0.1, -0.1, 0.05, 0.0, -0.05, 0.2, 0.0]
LN_HH_W = [1.1, 1.0, 0.9, 0.8, 1.2, 1.0, 1.05, 0.95]
LN_HH_B = [0.05, 0.0, 0.0, -0.1, 0.1, 0.0, -0.02, 0.03]
LN_C_W, LN_C_B = [0.9, 1.2], [0.1, -0.1]


def test_layer_norm_step_by_hand():
    gx = [W_IH[k] * X for k in range(8)]
    gh = [W_HH[k][0] * H0[0] + W_HH[k][1] * H0[1] for k in range(8)]
    nx, nh = hand_ln(gx, LN_IH_W, LN_IH_B), hand_ln(gh, LN_HH_W, LN_HH_B)
    a = [nx[k] + nh[k] + B_IH[k] + B_HH[k] for k in range(8)]
    c_ref, o_gate = [], []
    for j in range(2):
        i, f, g, o = sig(a[j]), sig(a[2 + j]), math.tanh(a[4 + j]), sig(a[6 + j])
        c_ref.append(f * C0[j] + i * g)
        o_gate.append(o)
    c_norm = hand_ln(c_ref, LN_C_W, LN_C_B)  # only the cell that feeds tanh is normalised
    h_ref = [o_gate[j] * math.tanh(c_norm[j]) for j in range(2)]

    ln = LF.LayerNormWeights(t(LN_IH_W), t(LN_IH_B), t(LN_HH_W), t(LN_HH_B), t(LN_C_W), t(LN_C_B))
    h, c = LF.layer_norm_lstm_step(t([[X]]), t([H0]), t([C0]), t(W_IH).reshape(8, 1), t(W_HH), t(B_IH),
                                   t(B_HH), ln)
    assert h[0].tolist() == pytest.approx(h_ref, abs=1e-12)
    assert c[0].tolist() == pytest.approx(c_ref, abs=1e-12)

    lstm = lnn.LSTM(1, 2, layer_norm=True, dtype=torch.float64, backend="reference")
    lstm.load_state_dict({"weight_ih_l0": t(W_IH).reshape(8, 1), "weight_hh_l0": t(W_HH), "bias_ih_l0": t(B_IH),
                          "bias_hh_l0": t(B_HH), "ln_ih_weight_l0": t(LN_IH_W), "ln_ih_bias_l0": t(LN_IH_B),
                          "ln_hh_weight_l0": t(LN_HH_W), "ln_hh_bias_l0": t(LN_HH_B),
                          "ln_c_weight_l0": t(LN_C_W), "ln_c_bias_l0": t(LN_C_B)})
    out, (h_n, c_n) = lstm(t([[X]]), (t([H0]), t([C0])))  # unbatched (T=1, D=1)
    assert out[0].tolist() == pytest.approx(h_ref, abs=1e-12)
    assert c_n[0].tolist() == pytest.approx(c_ref, abs=1e-12)


def test_projection_step_by_hand():
    w_hr = [[0.5, -1.5]]  # P = 1
    w_hh = [[row[0]] for row in W_HH]  # (8, P)
    a = [W_IH[k] * X + w_hh[k][0] * 0.2 + B_IH[k] + B_HH[k] for k in range(8)]
    pre = []
    for j in range(2):
        cj = sig(a[2 + j]) * C0[j] + sig(a[j]) * math.tanh(a[4 + j])
        pre.append(sig(a[6 + j]) * math.tanh(cj))
    h_ref = w_hr[0][0] * pre[0] + w_hr[0][1] * pre[1]
    h, _ = LF.projection_lstm_step(t([X]), t([0.2]), t(C0), t(W_IH).reshape(8, 1), t(w_hh), t(B_IH), t(B_HH),
                                   t(w_hr))
    assert h.tolist() == pytest.approx([h_ref], abs=1e-14)


def test_zoneout_function_by_hand():
    out = LF.zoneout(t([1.0, 2.0, 3.0]), t([10.0, 20.0, 30.0]), t([1.0, 0.0, 1.0]))
    assert out.tolist() == [1.0, 20.0, 3.0]


# -- zoneout -------------------------------------------------------------------------------------------------
def _twin_with_options(**options):
    """A torch.nn.LSTM and an lstmkit LSTM with the same weights plus lstmkit-only ``options``."""
    theirs, _ = make_pair("lstm", 3, 4, num_layers=2, bidirectional=True)
    ours = lnn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, backend="reference", **options)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def test_zoneout_and_recurrent_dropout_are_identity_in_eval_mode():
    """In eval mode the layer is exactly the plain LSTM (torch.nn's, same weights)."""
    theirs, ours = _twin_with_options(zoneout=0.5, recurrent_dropout=0.5)
    theirs.eval(), ours.eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for a, b in zip((lambda y, s: (y, *s))(*ours(x)), (lambda y, s: (y, *s))(*theirs(x))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_zoneout_changes_training_output():
    """Sanity for the test above: in training the same layer does not compute the plain LSTM."""
    theirs, ours = _twin_with_options(zoneout=0.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert not torch.allclose(ours.train()(x)[0], theirs.eval()(x)[0])


def test_zoneout_one_keeps_state_fixed_in_training():
    lstm = lnn.LSTM(3, 4, zoneout=1.0, dtype=torch.float64, backend="reference").train()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    h0, c0 = torch.randn(1, 2, 4, dtype=torch.float64), torch.randn(1, 2, 4, dtype=torch.float64)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    assert torch.equal(h_n, h0) and torch.equal(c_n, c0)
    assert torch.equal(out, h0.expand(6, 2, 4))


def test_zoneout_training_picks_old_or_new_per_unit():
    """With T=1 every unit of h_1 and c_1 is either its initial value or the plain LSTM step's, and both occur."""
    theirs, ours = make_pair("lstm", 3, 8)
    ours = lnn.LSTM(3, 8, zoneout=0.5, dtype=torch.float64, backend="reference").train()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    h0, c0 = torch.randn(1, 6, 8, dtype=torch.float64), torch.randn(1, 6, 8, dtype=torch.float64)
    _, (h_new, c_new) = theirs(x, (h0, c0))
    _, (h1, c1) = ours(x, (h0, c0))
    for got, old, new in ((h1, h0, h_new), (c1, c0, c_new)):
        kept, updated = torch.isclose(got, old, atol=1e-12, rtol=0), torch.isclose(got, new, atol=1e-12, rtol=0)
        assert bool((kept | updated).all())
        assert bool(kept.any()) and bool(updated.any())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_dropout_is_one_scaled_mask_per_sequence(kind):
    """Training: each sequence's outputs are reproduced by the plain step with ONE mask in {0, 1/(1-p)}^H applied
    to h_{t-1} where it enters W_hh, the same at every step (found by trying all 4 masks for H = 2)."""
    cls = lnn.LSTM if kind == "lstm" else lnn.GRU
    layer = cls(2, 2, recurrent_dropout=0.5, dtype=torch.float64, backend="reference").train()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    h0, c0 = torch.randn(1, 6, 2, dtype=torch.float64), torch.randn(1, 6, 2, dtype=torch.float64)
    out = layer(x, (h0, c0))[0] if kind == "lstm" else layer(x, h0)[0]
    w = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    masks = [t([a, b]) for a in (0.0, 2.0) for b in (0.0, 2.0)]
    found = []
    with torch.no_grad():
        for b in range(6):
            matching = []
            for m in masks:
                h, c, ys = h0[0, b], c0[0, b], []
                for step in range(3):
                    if kind == "lstm":
                        h, c = LF.lstm_step(x[step, b], h, c, *w, dropout_mask=m)
                    else:
                        h = LF.gru_step(x[step, b], h, *w, dropout_mask=m)
                    ys.append(h)
                if torch.allclose(torch.stack(ys), out[:, b], atol=1e-12, rtol=0):
                    matching.append(tuple(m.tolist()))
            assert len(matching) == 1, (b, matching)
            found += matching
    assert len(set(found)) > 1  # masks differ between sequences (fixed seed)


# -- forget_bias ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("coupled", [False, True])
def test_forget_bias_sets_forget_slice(coupled):
    hidden = 5
    lstm = lnn.LSTM(3, hidden, num_layers=2, bidirectional=True, coupled=coupled, forget_bias=1.0,
                    backend="reference")
    f = slice(0, hidden) if coupled else slice(hidden, 2 * hidden)
    bound = 1.0 / math.sqrt(hidden)
    for sfx in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        b_ih, b_hh = getattr(lstm, "bias_ih" + sfx).detach(), getattr(lstm, "bias_hh" + sfx).detach()
        assert torch.equal(b_ih[f], torch.ones(hidden)) and torch.equal(b_hh[f], torch.zeros(hidden))
        rest = torch.cat([b_ih[:f.start], b_ih[f.stop:], b_hh[:f.start], b_hh[f.stop:]])
        assert bool((rest.abs() <= bound).all())  # other gates keep torch's U(-1/sqrt(H), 1/sqrt(H))
    cell = lnn.LSTMCell(3, hidden, coupled=coupled, forget_bias=2.5)
    assert torch.equal(cell.bias_ih.detach()[f], torch.full((hidden,), 2.5))
    assert torch.equal(cell.bias_hh.detach()[f], torch.zeros(hidden))


def test_forget_bias_survives_reset_parameters():
    lstm = lnn.LSTM(2, 3, forget_bias=-0.5, backend="reference")
    with torch.no_grad():
        lstm.bias_ih_l0.zero_()
    lstm.reset_parameters()
    assert torch.equal(lstm.bias_ih_l0.detach()[3:6], torch.full((3,), -0.5))
