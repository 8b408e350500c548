"""Truncated backpropagation through time for fit(tbptt=k): each batch of long sequences in chunks of k steps.

Per batch the recurrent layers start from zero states and carry them (detached) from chunk to chunk; each chunk
gets its own forward, loss, backward and optimizer step, so gradients flow within k steps and memory grows with
k, not with the sequence length. The same as the stateful recipe (docs/keras.md) done by hand: reset_states(),
then ``train_on_batch`` on consecutive chunks. y needs a target per time step; Bidirectional layers are refused.
"""
from __future__ import annotations


def recurrent_layers(model):
    from lstmkit.layers.recurrent import _Recurrent
    return [m for m in model.modules() if isinstance(m, _Recurrent)]


def check(model, k) -> None:
    """ValueError unless ``k`` is a positive int and the model has recurrent layers and no Bidirectional."""
    from lstmkit.layers.wrappers import Bidirectional
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"fit: tbptt={k!r}; expected a positive int (steps per truncated chunk) or None")
    if any(isinstance(m, Bidirectional) for m in model.modules()):
        raise ValueError("fit: tbptt cannot train a Bidirectional layer (its backward pass needs the whole "
                         "sequence); train it on whole sequences")
    if not recurrent_layers(model):
        raise ValueError("fit: tbptt needs a model with lstmkit.layers LSTM/GRU/SimpleRNN layers")


def step(step_values, model, runner, opt, bx, by, bw, n_global: int, k: int):
    """Truncated BPTT on one batch of sequences: states reset, then for each chunk of ``k`` steps a forward from
    the carried (detached) states, the loss on that chunk's targets, backward and an optimizer step. The returned
    sums weight each chunk by its share of the T steps, so they are per-sample means over the whole sequence.
    ``step_values`` is the fit loop's forward/backward/step function (see lstmkit.train.loop)."""
    t_len = bx.shape[1]
    if by.dim() < 2 or by.shape[1] != t_len:
        raise ValueError(f"fit: tbptt needs a target per time step, y of shape (N, {t_len}, ...) like x "
                         f"{tuple(bx.shape)}; got a batch of y of shape {tuple(by.shape)}")
    layers = recurrent_layers(model)
    was = [layer.stateful for layer in layers]
    try:
        for layer in layers:
            layer.stateful = True
            layer.reset_states()
        total, msums_total, n = 0.0, None, 0
        for t0 in range(0, t_len, k):
            sl = slice(t0, min(t0 + k, t_len))
            frac = (sl.stop - sl.start) / t_len
            opt.zero_grad(set_to_none=True)
            loss_sum, msums, n = step_values(model, runner, bx[:, sl], by[:, sl], bw, n_global, train=True)
            total = total + loss_sum * frac
            msums = [m * frac for m in msums]
            msums_total = msums if msums_total is None else [a + b for a, b in zip(msums_total, msums)]
        return total, msums_total, n
    finally:
        for layer, w in zip(layers, was):
            layer.stateful = w
            layer.reset_states()
