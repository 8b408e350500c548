"""lstmkit.nn LSTM/GRU/RNN against torch.nn with the same weights: outputs, final states, every gradient."""
import pytest
import torch

from core_helpers import KINDS, assert_same, make_pair, random_hx, run, tol

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

B, T, D, H = 3, 5, 4, 6

# Each configuration axis is covered on its own, then in a few combinations (not the full product).
CONFIGS = {
    "plain": {},
    "layers2": {"num_layers": 2},
    "layers3": {"num_layers": 3},
    "bidir": {"bidirectional": True},
    "batch_first": {"batch_first": True},
    "no_bias": {"bias": False},
    "bidir_layers2_batch_first": {"num_layers": 2, "bidirectional": True, "batch_first": True},
    "bidir_layers3_eval_dropout": {"num_layers": 3, "bidirectional": True, "dropout": 0.5},
}
PROJ_CONFIGS = {
    "proj": {"proj_size": 3},
    "proj_bidir_layers2": {"proj_size": 2, "num_layers": 2, "bidirectional": True},
    "proj_layers3_batch_first": {"proj_size": 4, "num_layers": 3, "batch_first": True},
}


def _input(kw, dtype, batch=B):
    shape = (batch, T, D) if kw.get("batch_first") else (T, batch, D)
    return torch.randn(shape, dtype=dtype)


def _check(kind, kw, dtype, with_hx, backend, unbatched=False):
    theirs, ours = make_pair(kind, D, H, dtype=dtype, backend=backend, **kw)
    theirs.eval(), ours.eval()  # dropout between layers is then off in both, as torch does
    x = torch.randn(T, D, dtype=dtype) if unbatched else _input(kw, dtype)
    hx = random_hx(theirs, None if unbatched else B, dtype) if with_hx else None
    assert_same(run(ours, x, hx), run(theirs, x, hx), atol=tol(dtype))


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "hx"])
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_float64_matches_torch(kind, config, with_hx, backend):
    _check(kind, CONFIGS[config], torch.float64, with_hx, backend)


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "hx"])
@pytest.mark.parametrize("config", list(PROJ_CONFIGS), ids=list(PROJ_CONFIGS))
def test_lstm_proj_size_matches_torch(config, with_hx, backend):
    _check("lstm", PROJ_CONFIGS[config], torch.float64, with_hx, backend)


@pytest.mark.parametrize("kind,config", [(k, "bidir_layers2_batch_first") for k in KINDS] + [("lstm", "plain")])
def test_float32_matches_torch(kind, config, backend):
    _check(kind, CONFIGS[config], torch.float32, True, backend)


def test_float32_lstm_proj_matches_torch(backend):
    _check("lstm", PROJ_CONFIGS["proj_bidir_layers2"], torch.float32, True, backend)


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "hx"])
@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("lstm", {"proj_size": 3, "bidirectional": True}),
                                     ("gru", {"num_layers": 2}), ("rnn_tanh", {"bidirectional": True}),
                                     ("rnn_relu", {"num_layers": 2, "bidirectional": True})])
def test_unbatched_input_matches_torch(kind, kw, with_hx, backend):
    _check(kind, kw, torch.float64, with_hx, backend, unbatched=True)


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes_match_torch(kind):
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True}
    if kind == "lstm":
        kw["proj_size"] = 2
    theirs, ours = make_pair(kind, D, H, **kw)
    x = _input(kw, torch.float64)
    (y_t, s_t), (y_o, s_o) = theirs(x), ours(x)
    assert y_o.shape == y_t.shape
    s_t, s_o = (s_t, s_o) if kind == "lstm" else ((s_t,), (s_o,))
    assert [s.shape for s in s_o] == [s.shape for s in s_t]


def test_state_dict_keys_and_shapes_match_torch():
    theirs, ours = make_pair("lstm", D, H, num_layers=2, bidirectional=True, proj_size=3)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
