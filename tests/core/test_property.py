"""Property test: a layer in eval mode equals a plain per-sequence Python loop over lstmkit.functional steps."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmkit.functional as LF

from core_helpers import lstmkit_module, random_hx


def _step_fn(module, sfx):
    """One step ``(x, h, c) -> (h, c)`` of layer-direction ``sfx``, via the named step function of the variant."""
    p = lambda stem: getattr(module, stem + sfx, None)  # noqa: E731
    w = (p("weight_ih"), p("weight_hh"), p("bias_ih"), p("bias_hh"))
    if module.mode == "GRU":
        return lambda x, h, c: (LF.gru_step(x, h, *w), None)
    if module.mode == "RNN_TANH":
        return lambda x, h, c: (LF.rnn_tanh_step(x, h, *w), None)
    if module.mode == "RNN_RELU":
        return lambda x, h, c: (LF.rnn_relu_step(x, h, *w), None)
    kw = {"w_hr": p("weight_hr")}
    if module.layer_norm:
        kw["ln"] = LF.LayerNormWeights(p("ln_ih_weight"), p("ln_ih_bias"), p("ln_hh_weight"), p("ln_hh_bias"),
                                       p("ln_c_weight"), p("ln_c_bias"))
    if module.coupled:
        return lambda x, h, c: LF.cifg_lstm_step(x, h, c, *w, w_ph=p("weight_ph"), **kw)
    if module.peephole:
        return lambda x, h, c: LF.peephole_lstm_step(x, h, c, *w, p("weight_ph"), **kw)
    if module.layer_norm:
        return lambda x, h, c: LF.layer_norm_lstm_step(x, h, c, *w, **kw)
    if module.proj_size:
        return lambda x, h, c: LF.projection_lstm_step(x, h, c, *w, kw["w_hr"])
    return lambda x, h, c: LF.lstm_step(x, h, c, *w)


def python_loop(module, x, hx, lengths):
    """Independent reference: each sequence alone, truncated to its length, layer by layer and direction by
    direction (the reverse direction walks the truncated sequence backwards); outputs zero-padded to T."""
    steps, batch = x.size(0), x.size(1)
    dirs = 2 if module.bidirectional else 1
    state = module.proj_size or module.hidden_size
    lstm = module.mode == "LSTM"
    h0, c0 = hx if lstm else (hx, None)
    out = torch.zeros(steps, batch, dirs * state, dtype=x.dtype)
    h_n = torch.zeros(module.num_layers * dirs, batch, state, dtype=x.dtype)
    c_n = torch.zeros(module.num_layers * dirs, batch, module.hidden_size, dtype=x.dtype)
    for b in range(batch):
        n = lengths[b]
        seq = [x[t, b] for t in range(n)]  # unbatched (D,) steps
        for layer in range(module.num_layers):
            parts = [[] for _ in range(n)]
            for d in range(dirs):
                k = layer * dirs + d
                step = _step_fn(module, f"_l{layer}" + ("_reverse" if d else ""))
                h, c = h0[k, b], (c0[k, b] if lstm else None)
                for t in (range(n) if d == 0 else reversed(range(n))):
                    h, c = step(seq[t], h, c)
                    parts[t].append(h)
                h_n[k, b] = h
                if lstm:
                    c_n[k, b] = c
            seq = [torch.cat(p) for p in parts]
        for t in range(n):
            out[t, b] = seq[t]
    return out, h_n, (c_n if lstm else None)


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(["lstm", "lstm", "lstm", "gru", "rnn_tanh", "rnn_relu"]))
    hidden = draw(st.integers(2, 4))
    kw = {"num_layers": draw(st.integers(1, 2)), "bidirectional": draw(st.booleans()),
          "batch_first": draw(st.booleans()), "bias": draw(st.integers(0, 3)) > 0}
    if kind == "lstm":
        kw.update(peephole=draw(st.booleans()), coupled=draw(st.booleans()), layer_norm=draw(st.booleans()),
                  proj_size=draw(st.sampled_from([0, 0, 1, hidden - 1])))
    batch, steps = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, steps), min_size=batch, max_size=batch)))
    return dict(kind=kind, input_size=draw(st.integers(1, 3)), hidden=hidden, kw=kw, batch=batch, steps=steps,
                lengths=lengths, with_hx=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs())
def test_layer_equals_python_loop_over_step_functions(cfg, backend):
    torch.manual_seed(cfg["seed"])
    module = lstmkit_module(cfg["kind"], cfg["input_size"], cfg["hidden"], backend=backend, **cfg["kw"]).eval()
    with torch.no_grad():  # every parameter random, layer-norm gains around 1
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "ln_" in name and "weight" in name else 0.0))
    x = torch.randn(cfg["steps"], cfg["batch"], cfg["input_size"], dtype=torch.float64)  # (T, B, D)
    hx = random_hx(module, cfg["batch"], seed=cfg["seed"]) if cfg["with_hx"] else None
    lengths = cfg["lengths"] or [cfg["steps"]] * cfg["batch"]
    with torch.no_grad():
        y, state = module(x.transpose(0, 1) if module.batch_first else x, hx, lengths=cfg["lengths"])
        if module.batch_first:
            y = y.transpose(0, 1)
        if hx is None:  # zeros, as documented
            hx = tuple(torch.zeros_like(s) for s in random_hx(module, cfg["batch"])) if module.mode == "LSTM" \
                else torch.zeros_like(random_hx(module, cfg["batch"]))
        y_ref, h_ref, c_ref = python_loop(module, x, hx, lengths)
    h_n, c_n = state if module.mode == "LSTM" else (state, None)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(h_n, h_ref, atol=1e-10, rtol=0)
    if c_ref is not None:
        torch.testing.assert_close(c_n, c_ref, atol=1e-10, rtol=0)
