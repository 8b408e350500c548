"""torch.autograd.gradcheck (finite differences, float64) of every layer variant w.r.t. input, h0/c0 and parameters."""
import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from core_helpers import lstmkit_module, random_hx

B, T, D, H = 2, 3, 2, 3

CASES = {
    "lstm": ("lstm", {}),
    "peephole": ("lstm", {"peephole": True}),
    "coupled": ("lstm", {"coupled": True}),
    "coupled_peephole": ("lstm", {"coupled": True, "peephole": True}),
    "layer_norm": ("lstm", {"layer_norm": True}),
    "proj": ("lstm", {"proj_size": 2}),
    "peephole_proj": ("lstm", {"peephole": True, "proj_size": 2}),
    "all_variants_bidir": ("lstm", {"peephole": True, "coupled": True, "layer_norm": True, "proj_size": 2,
                                    "bidirectional": True}),
    "gru": ("gru", {}),
    "rnn_tanh": ("rnn_tanh", {}),
    "rnn_relu": ("rnn_relu", {}),
    "lstm_layers2_bidir": ("lstm", {"num_layers": 2, "bidirectional": True}),
}


def _randomise(module, seed=3):
    """Every parameter random (layer-norm gains near 1), so no term of the gradient is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(1.0 + 0.3 * noise if "ln_" in name and "weight" in name else 0.5 * noise)
    return module


def check_gradients(module, x, hx, lengths=None, seed=None):
    """gradcheck of ``(output, *final_states)`` w.r.t. x, every initial state tensor and every parameter.

    ``seed`` re-seeds torch's RNG before each forward so training-mode masks are identical across evaluations.
    """
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]
    states = [s.detach().clone().requires_grad_(True) for s in (hx if isinstance(hx, tuple) else (hx,))]
    lstm = module.mode == "LSTM"

    def f(x, *rest):
        if seed is not None:
            torch.manual_seed(seed)
        hs, ps = rest[:len(states)], rest[len(states):]
        out, st = functional_call(module, dict(zip(names, ps)), (x, tuple(hs) if lstm else hs[0]),
                                  {"lengths": lengths})
        return (out,) + (tuple(st) if lstm else (st,))

    x = x.detach().clone().requires_grad_(True)
    assert gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_variant(case, backend):
    kind, kw = CASES[case]
    module = _randomise(lstmkit_module(kind, D, H, backend=backend, **kw))
    check_gradients(module, torch.randn(T, B, D, dtype=torch.float64), random_hx(module, B))


@pytest.mark.parametrize("case", ["lstm", "all_variants_bidir", "peephole_proj", "gru", "rnn_tanh",
                                  "lstm_layers2_bidir"])
def test_gradcheck_with_lengths(case, backend):
    kind, kw = CASES[case]
    module = _randomise(lstmkit_module(kind, D, H, backend=backend, batch_first=True, **kw))
    check_gradients(module, torch.randn(B, T, D, dtype=torch.float64), random_hx(module, B), lengths=[1, 3])


def test_gradcheck_unbatched_layer_norm(backend):
    module = _randomise(lstmkit_module("lstm", D, H, backend=backend, layer_norm=True, proj_size=2))
    check_gradients(module, torch.randn(T, D, dtype=torch.float64), random_hx(module, None))


@pytest.mark.parametrize("kind,kw", [("lstm", {"recurrent_dropout": 0.4, "zoneout": 0.3, "peephole": True}),
                                     ("gru", {"recurrent_dropout": 0.4}),
                                     ("lstm", {"num_layers": 2, "dropout": 0.3, "zoneout": 0.5})])
def test_gradcheck_training_masks(kind, kw, backend):
    """Training mode with recurrent dropout / zoneout / inter-layer dropout, masks fixed by re-seeding."""
    module = _randomise(lstmkit_module(kind, D, H, backend=backend, **kw)).train()
    check_gradients(module, torch.randn(T, B, D, dtype=torch.float64), random_hx(module, B), lengths=[3, 2],
                    seed=5)
