"""from_torch/to_torch conversions, the single-step cells against torch.nn's, and the lstmkit.nn namespace."""
import pytest
import torch

import lstmkit.nn as lnn

from core_helpers import assert_same, random_hx, run, tol, torch_module

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

T, B, D, H = 4, 3, 3, 5


@pytest.mark.parametrize("kind,kw", [("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
                                     ("lstm", {"batch_first": True, "bias": False}),
                                     ("gru", {"num_layers": 2, "batch_first": True}),
                                     ("rnn_relu", {"bidirectional": True}), ("rnn_tanh", {})])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_from_torch_matches(kind, kw, dtype):
    theirs = torch_module(kind, D, H, dtype=dtype, **kw).eval()
    ours = lnn.from_torch(theirs, backend="reference")
    assert type(ours).__module__.startswith("lstmkit.") and not ours.training
    assert next(ours.parameters()).dtype == dtype
    for attr in ("num_layers", "bidirectional", "batch_first", "bias", "hidden_size", "input_size"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    x = torch.randn((B, T, D) if kw.get("batch_first") else (T, B, D), dtype=dtype)
    hx = random_hx(theirs, B, dtype)
    assert_same(run(ours, x, hx), run(theirs, x, hx), atol=tol(dtype))


def test_from_torch_keeps_training_mode_and_classmethod():
    theirs = torch.nn.GRU(D, H, dropout=0.25, num_layers=2)
    ours = lnn.GRU.from_torch(theirs, backend="reference")
    assert ours.training and ours.dropout == 0.25 and ours.backend == "reference"


def test_from_torch_rejects_other_modules():
    with pytest.raises(ValueError, match=r"module must be a torch\.nn LSTM, GRU, RNN.*got Linear"):
        lnn.from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"module must be an lstmkit\.nn recurrent module or cell, got LSTM"):
        lnn.to_torch(torch.nn.LSTM(2, 3))


@pytest.mark.parametrize("build", [
    lambda: lnn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=3, batch_first=True, dtype=torch.float64),
    lambda: lnn.LSTM(D, H, forget_bias=1.0, dtype=torch.float64),  # an init choice only: convertible
    lambda: lnn.GRU(D, H, bias=False, dtype=torch.float64),
    lambda: lnn.RNN(D, H, nonlinearity="relu", num_layers=2, dtype=torch.float64),
], ids=["lstm", "lstm_forget_bias", "gru", "rnn_relu"])
def test_to_torch_round_trip(build):
    ours = build().eval()
    theirs = ours.to_torch()
    assert type(theirs).__module__.startswith("torch.nn") and not theirs.training
    if isinstance(theirs, torch.nn.RNN):
        assert theirs.nonlinearity == ours.nonlinearity
    x = torch.randn((B, T, D) if ours.batch_first else (T, B, D), dtype=torch.float64)
    assert_same(run(ours, x), run(theirs, x), atol=tol(torch.float64))
    back = lnn.from_torch(theirs)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items())


@pytest.mark.parametrize("option", [{"peephole": True}, {"coupled": True}, {"layer_norm": True},
                                    {"recurrent_dropout": 0.2}, {"zoneout": 0.1}])
def test_to_torch_rejects_lstmkit_only_options(option):
    name = next(iter(option))
    with pytest.raises(ValueError, match=rf"cannot convert to torch\.nn: .*lstmkit-only options \['{name}'\]"):
        lnn.LSTM(D, H, **option).to_torch()
    if name in ("peephole", "coupled", "layer_norm"):
        with pytest.raises(ValueError, match=rf"lstmkit-only options \['{name}'\]"):
            lnn.to_torch(lnn.LSTMCell(D, H, **option))


# -- cells ---------------------------------------------------------------------------------------------------
def _cell_pair(name, dtype, **kw):
    theirs = getattr(torch.nn, name)(D, H, dtype=dtype, **kw)
    ours = getattr(lnn, name)(D, H, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def _cell_run(cell, x, hx):
    cell.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    hx = None if hx is None else tuple(s.clone().requires_grad_(True) for s in hx)
    out = cell(x, hx if isinstance(cell, (torch.nn.LSTMCell, lnn.LSTMCell)) or hx is None else hx[0])
    outs = out if isinstance(out, tuple) else (out,)
    sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)).sum() for o in outs).backward()
    grads = [x.grad] + ([s.grad for s in hx] if hx is not None else []) + [p.grad for p in cell.parameters()]
    return outs, grads


@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {}),
                                     ("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cells_match_torch(name, kw, batched, with_hx, dtype):
    theirs, ours = _cell_pair(name, dtype, **kw)
    lead = (B,) if batched else ()
    x = torch.randn(*lead, D, dtype=dtype)
    n_states = 2 if name == "LSTMCell" else 1
    hx = tuple(torch.randn(*lead, H, dtype=dtype) for _ in range(n_states)) if with_hx else None
    (o_ours, g_ours), (o_theirs, g_theirs) = _cell_run(ours, x, hx), _cell_run(theirs, x, hx)
    for a, b in zip(o_ours + tuple(g_ours), o_theirs + tuple(g_theirs)):
        torch.testing.assert_close(a, b, atol=tol(dtype), rtol=0)
    assert len(o_ours) == len(o_theirs) and len(g_ours) == len(g_theirs)


@pytest.mark.parametrize("kw", [{"peephole": True}, {"coupled": True, "peephole": True}, {"layer_norm": True}])
def test_variant_cell_stepped_equals_layer(kw):
    """An LSTMCell with a variant, stepped by hand over T, equals the one-layer LSTM with those parameters."""
    cell = lnn.LSTMCell(D, H, dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    layer = lnn.LSTM(D, H, dtype=torch.float64, backend="reference", **kw)
    layer.load_state_dict({f"{k}_l0" if not k.startswith("ln_") else k.replace("_weight", "_weight_l0")
                           .replace("_bias", "_bias_l0"): v for k, v in cell.state_dict().items()})
    x = torch.randn(T, B, D, dtype=torch.float64)
    h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    out, (h_n, c_n) = layer(x, (h[None], c[None]))
    for t in range(T):
        h, c = cell(x[t], (h, c))
        torch.testing.assert_close(out[t], h, atol=1e-12, rtol=0)
    torch.testing.assert_close(c_n[0], c, atol=1e-12, rtol=0)


# -- namespace -----------------------------------------------------------------------------------------------
def test_lstmkit_nn_is_a_drop_in_namespace():
    import lstmkit.nn as nn

    assert nn.Linear is torch.nn.Linear and nn.Module is torch.nn.Module
    assert nn.CrossEntropyLoss is torch.nn.CrossEntropyLoss and nn.Embedding is torch.nn.Embedding
    assert nn.functional is torch.nn.functional and nn.init is torch.nn.init
    assert nn.utils.rnn.pack_padded_sequence is torch.nn.utils.rnn.pack_padded_sequence
    assert nn.parameter.Parameter is torch.nn.Parameter
    assert nn.parallel is torch.nn.parallel  # not re-exported explicitly: falls back to torch.nn
    for name in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
        ours = getattr(nn, name)
        assert ours is not getattr(torch.nn, name) and issubclass(ours, torch.nn.Module)
        assert ours.__module__.startswith("lstmkit.nn")
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchLayer'"):
        nn.NoSuchLayer


def test_model_mixing_lstmkit_and_torch_layers_trains():
    """A typical torch model written against lstmkit.nn runs forward and backward."""
    import lstmkit.nn as nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(10, D), nn.LSTM(D, H, batch_first=True), nn.Linear(H, 4)

        def forward(self, tokens, lengths):
            y, _ = self.rnn(self.emb(tokens), lengths=lengths)
            return self.out(y)

    model = Tagger()
    tokens = torch.randint(0, 10, (B, T))
    loss = nn.functional.cross_entropy(model(tokens, [T, 2, 1]).reshape(-1, 4), torch.randint(0, 4, (B * T,)))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_torch_rnn_methods_user_code_calls():
    """Drop-in: `all_weights` groups like torch's; `flatten_parameters()` (called by much torch code) is accepted."""
    ours = lnn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=2, dtype=torch.float64, backend="reference")
    theirs = ours.to_torch()
    assert [[p.shape for p in g] for g in ours.all_weights] == [[p.shape for p in g] for g in theirs.all_weights]
    x = torch.randn(T, B, D, dtype=torch.float64)
    before = ours(x)[0]
    ours.flatten_parameters()
    torch.testing.assert_close(ours(x)[0], before, atol=0, rtol=0)
    torch.testing.assert_close(before, theirs(x)[0], atol=1e-10, rtol=0)
