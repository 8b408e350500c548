"""Stateful recurrent layers: chunked runs equal whole runs, reset_states, and truncated BPTT (the documented
recipe: stateful layers + train_on_batch over chunks) against a hand-written torch TBPTT loop."""
import numpy as np
import pytest
import torch

import lstmkit.nn as lnn
from lstmkit.layers import GRU, LSTM, Bidirectional, Dense, SimpleRNN
from lstmkit.models import Sequential, load_model


def _stack(stateful):
    torch.manual_seed(3)
    return Sequential([LSTM(5, stateful=stateful, return_sequences=True, input_shape=(None, 2)),
                       GRU(4, stateful=stateful, return_sequences=True), Dense(1)])


def test_model_over_chunks_equals_one_run_over_the_whole_sequence():
    x = np.random.default_rng(0).standard_normal((3, 20, 2)).astype("float32")
    stateful, plain = _stack(True), _stack(False)
    plain.load_state_dict(stateful.state_dict())
    whole = plain.predict(x)
    chunks = np.concatenate([stateful.predict(x[:, t:t + 6], batch_size=3) for t in range(0, 20, 6)], 1)
    np.testing.assert_allclose(chunks, whole, rtol=0, atol=1e-6)
    # without reset the next call continues the sequence; after reset_states it starts afresh
    cont = stateful.predict(x[:, :6], batch_size=3)
    assert not np.allclose(cont, whole[:, :6], atol=1e-3)
    stateful.reset_states()
    np.testing.assert_allclose(stateful.predict(x[:, :6], batch_size=3), whole[:, :6], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_reset_states_to_zero_and_to_given_states(cls):
    layer = cls(3, stateful=True, return_state=True)
    x = torch.randn(2, 4, 2)
    first = layer(x)
    states = [s.clone() for s in first[1:]]
    layer.reset_states()
    torch.testing.assert_close(layer(x)[0], first[0])  # from zeros again
    layer.reset_states(states)  # set explicitly: same as continuing from those states
    ref = layer.rnn(x, states[0].unsqueeze(0) if cls is not LSTM else tuple(s.unsqueeze(0) for s in states))
    h = ref[1][0] if cls is LSTM else ref[1]
    torch.testing.assert_close(layer(x)[0], h[0])


def test_bidirectional_and_saved_model_reset():
    bi = Sequential([Bidirectional(LSTM(3, stateful=True), input_shape=(None, 2))])
    x = torch.randn(2, 5, 2)
    a = bi(x)
    assert not torch.allclose(bi(x), a)
    bi.reset_states()
    torch.testing.assert_close(bi(x), a)


def test_loaded_stateful_model_starts_from_zero_state(tmp_path):
    m = _stack(True)
    x = np.random.default_rng(1).standard_normal((3, 6, 2)).astype("float32")
    m.predict(x, batch_size=3)  # leaves carried states behind
    m.save(tmp_path / "m")
    m.reset_states()
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(x, batch_size=3), m.predict(x, batch_size=3))


def test_truncated_bptt_recipe_equals_manual_torch_tbptt():
    """Recipe: stateful layers, reset_states() per batch of sequences, train_on_batch on consecutive chunks of k
    steps. Gradients then flow only within a chunk; the state crosses chunk boundaries (detached)."""
    torch.manual_seed(0)
    T, k = 24, 8
    x = torch.randn(4, T, 2)
    y = torch.cumsum(x[:, :, :1], 1) * 0.2  # per-step targets
    model = Sequential([LSTM(5, stateful=True, return_sequences=True, input_shape=(None, 2)), Dense(1)])
    model.compile("sgd", "mse", learning_rate=0.1)
    lstm, fc = lnn.LSTM(2, 5, batch_first=True), torch.nn.Linear(5, 1)
    lstm.load_state_dict(model.layers[0].rnn.state_dict())
    fc.load_state_dict(model.layers[1].linear.state_dict())
    opt = torch.optim.SGD(list(lstm.parameters()) + list(fc.parameters()), lr=0.1)
    losses = []
    for epoch in range(3):
        model.reset_states()
        hx = None
        for t in range(0, T, k):
            losses.append(model.train_on_batch(x[:, t:t + k], y[:, t:t + k]))
            # the same by hand
            opt.zero_grad()
            out, (h, c) = lstm(x[:, t:t + k], hx)
            loss = ((fc(out) - y[:, t:t + k]) ** 2).mean()
            loss.backward()
            opt.step()
            hx = (h.detach(), c.detach())
            assert losses[-1] == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(model.layers[0].rnn.weight_hh_l0, lstm.weight_hh_l0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.layers[1].linear.weight, fc.weight, rtol=1e-5, atol=1e-6)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_stateful_fit_requires_fixed_batch_and_keeps_state_across_batches():
    model = Sequential([LSTM(3, stateful=True, input_shape=(None, 2)), Dense(1)])
    model.compile("adam", "mse")
    x, y = np.zeros((10, 4, 2), "float32"), np.zeros((10, 1), "float32")
    with pytest.raises(ValueError, match="stateful with batch size 4; got a batch of 2"):
        model.fit(x, y, batch_size=4, shuffle=False, verbose=0)  # 10 = 4 + 4 + 2
    model.reset_states()
    model.fit(x[:8], y[:8], batch_size=4, shuffle=False, verbose=0)


def _seq_model(stateful):
    torch.manual_seed(4)
    return Sequential([LSTM(5, stateful=stateful, return_sequences=True, input_shape=(None, 2)),
                       GRU(3, stateful=stateful, return_sequences=True), Dense(1)])


def test_fit_tbptt_equals_the_recipe():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 20, 2)).astype("float32")
    y = (np.cumsum(x[:, :, :1], 1) * 0.2).astype("float32")
    auto = _seq_model(False)
    auto.compile("sgd", "mse", metrics=["mae"], learning_rate=0.1)
    h = auto.fit(x, y, batch_size=3, epochs=2, shuffle=False, tbptt=8, verbose=0)  # chunks of 8, 8, 4 steps
    manual = _seq_model(True)
    manual.compile("sgd", "mse", learning_rate=0.1)
    epoch_losses = []
    for epoch in range(2):
        total = 0.0
        for b in (0, 3):
            manual.reset_states()
            for t in range(0, 20, 8):
                n = min(8, 20 - t)
                total += manual.train_on_batch(x[b:b + 3, t:t + 8], y[b:b + 3, t:t + 8]) * n / 20 * 3 / 6
        epoch_losses.append(total)
    for (k, v), v2 in zip(auto.state_dict().items(), manual.state_dict().values()):
        torch.testing.assert_close(v, v2, rtol=1e-6, atol=1e-7, msg=k)
    np.testing.assert_allclose(h.history["loss"], epoch_losses, rtol=1e-5)
    assert not auto.layers[0].stateful and auto.layers[0]._states is None  # fit leaves the layers as they were


def test_fit_tbptt_errors():
    m = Sequential([LSTM(3, input_shape=(None, 2)), Dense(1)])
    m.compile("sgd", "mse")
    x = np.zeros((4, 6, 2), "float32")
    with pytest.raises(ValueError, match=r"tbptt needs a target per time step, y of shape \(N, 6, \.\.\.\)"):
        m.fit(x, np.zeros((4, 1), "float32"), tbptt=3, verbose=0)
    with pytest.raises(ValueError, match="tbptt=0; expected a positive int"):
        m.fit(x, np.zeros((4, 1), "float32"), tbptt=0, verbose=0)
    bi = Sequential([Bidirectional(LSTM(3, return_sequences=True), input_shape=(None, 2)), Dense(1)])
    bi.compile("sgd", "mse")
    with pytest.raises(ValueError, match="tbptt cannot train a Bidirectional"):
        bi.fit(x, np.zeros((4, 6, 1), "float32"), tbptt=3, verbose=0)
