"""Keras-style layers against independent references: lstmkit.nn stacks, explicit lengths, per-sequence runs."""
import math

import numpy as np
import pytest
import torch

import lstmkit.nn as lnn
from lstmkit.layers import (GRU, LSTM, RNN, Bidirectional, Dense, Embedding, GRUCell, LSTMCell, Masking, SimpleRNN,
                            TimeDistributed)
from lstmkit.models import Sequential


def test_sequential_lstm_stack_equals_lstmkit_nn_modules():
    torch.manual_seed(1)
    model = Sequential([LSTM(6, return_sequences=True, input_shape=(None, 3)), LSTM(4), Dense(2)])
    l1, l2 = lnn.LSTM(3, 6, batch_first=True), lnn.LSTM(6, 4, batch_first=True)
    fc = torch.nn.Linear(4, 2)
    l1.load_state_dict(model.layers[0].rnn.state_dict())
    l2.load_state_dict(model.layers[1].rnn.state_dict())
    fc.load_state_dict(model.layers[2].linear.state_dict())
    x = torch.randn(5, 9, 3)
    y, _ = l1(x)
    _, (h, _) = l2(y)
    ref = fc(h[-1])
    out = model(x)
    torch.testing.assert_close(out, ref)
    ref.sum().backward()
    out.sum().backward()
    torch.testing.assert_close(model.layers[0].rnn.weight_hh_l0.grad, l1.weight_hh_l0.grad)


def test_keras_initialisation():
    layer = LSTM(8)
    layer(torch.zeros(2, 3, 5))
    rnn = layer.rnn
    assert torch.all(rnn.bias_ih_l0[8:16] == 1) and torch.all(rnn.bias_ih_l0[:8] == 0)  # unit_forget_bias
    assert torch.all(rnn.bias_hh_l0 == 0)
    lim = math.sqrt(6 / (5 + 32))  # glorot_uniform on the (5, 32) Keras kernel
    assert rnn.weight_ih_l0.abs().max() <= lim
    w = rnn.weight_hh_l0  # (32, 8): orthonormal columns = Keras' (8, 32) orthogonal kernel
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)


def test_unsupported_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="activation='relu'.*tanh"):
        LSTM(4, activation="relu")
    with pytest.raises(ValueError, match="reset_after"):
        GRU(4, reset_after=False)
    SimpleRNN(4, activation="relu")  # supported


def test_simple_rnn_relu_matches_nn_rnn():
    layer = SimpleRNN(4, activation="relu", return_sequences=True)
    x = torch.randn(2, 5, 3)
    out = layer(x)
    ref = lnn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    ref.load_state_dict(layer.rnn.state_dict())
    torch.testing.assert_close(out, ref(x)[0])


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_embedding_mask_equals_explicit_lengths(cls):
    torch.manual_seed(2)
    emb, rec = Embedding(20, 4, mask_zero=True), cls(5, return_sequences=True)
    ids = torch.randint(1, 20, (4, 7))
    lengths = torch.tensor([7, 3, 1, 5])
    for b, L in enumerate(lengths):
        ids[b, L:] = 0
    x = emb(ids)
    out = rec(x, mask=emb.compute_mask(ids, None))
    ref, _ = rec.rnn(x, lengths=lengths)  # the lstmkit.nn module with explicit lengths
    torch.testing.assert_close(out, ref)
    # and the last-state output equals each sequence run alone on its valid steps
    rec.return_sequences = False
    last = rec(x, mask=emb.compute_mask(ids, None))
    for b, L in enumerate(lengths):
        _, hn = rec.rnn(x[b:b + 1, :L])
        h = hn[0] if isinstance(hn, tuple) else hn
        torch.testing.assert_close(last[b], h[0, 0])


def test_general_mask_skips_masked_steps():
    """Left padding / holes: the state is carried over masked steps, so the result equals the unmasked steps alone."""
    rec = LSTM(3)
    x = torch.randn(2, 6, 2)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    out = rec(x, mask=mask)
    for b in range(2):
        _, (h, _) = rec.rnn(x[b:b + 1, mask[b]])
        torch.testing.assert_close(out[b], h[0, 0])


def test_masking_layer_feeds_mask():
    model = Sequential([Masking(0.0, input_shape=(None, 2)), GRU(3)])
    x = torch.randn(3, 5, 2)
    x[0, 3:] = 0.0
    out = model(x)
    _, h = model.layers[1].rnn(x[0:1, :3])
    torch.testing.assert_close(out[0], h[0, 0])


def test_bidirectional_with_mask_equals_per_sequence_runs():
    bi = Bidirectional(LSTM(3, return_sequences=True), merge_mode="concat")
    x = torch.randn(2, 5, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    out = bi(x, mask=mask)
    for b, L in enumerate([5, 3]):
        fw, _ = bi.forward_layer.rnn(x[b:b + 1, :L])
        bw, _ = bi.backward_layer.rnn(x[b:b + 1, :L].flip(1))
        torch.testing.assert_close(out[b, :L], torch.cat([fw[0], bw[0].flip(0)], -1))
        assert torch.all(out[b, L:] == 0)
    for mode, fn in [("sum", lambda a, b: a + b), ("mul", lambda a, b: a * b), ("ave", lambda a, b: (a + b) / 2)]:
        bi2 = Bidirectional(GRU(3), merge_mode=mode)
        o = bi2(x)
        f, b_ = bi2.forward_layer(x), bi2.backward_layer(x.flip(1))
        torch.testing.assert_close(o, fn(f, b_))


def test_rnn_of_cells_equals_fused_layers():
    rnn = RNN([LSTMCell(4), GRUCell(3)], return_state=True)
    x = torch.randn(2, 5, 2)
    y, h1, c1, h2 = rnn(x)
    l1, l2 = rnn.layers
    ref1, (rh, rc) = l1.rnn(x)
    ref2, rh2 = l2.rnn(ref1)
    torch.testing.assert_close(y, rh2[0])
    torch.testing.assert_close(c1, rc[0])


def test_custom_cell_loop():
    class MinimalCell(torch.nn.Module):
        state_size = 3

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2 + 3, 3)

        def forward(self, x, states):
            h = torch.tanh(self.lin(torch.cat([x, states[0]], -1)))
            return h, [h]

    cell = MinimalCell()
    layer = RNN(cell)
    x = torch.randn(2, 4, 2)
    h = torch.zeros(2, 3)
    for t in range(4):
        h = torch.tanh(cell.lin(torch.cat([x[:, t], h], -1)))
    torch.testing.assert_close(layer(x), h)


def test_stateful_chunks_equal_whole_run():
    layer = LSTM(4, stateful=True, return_sequences=True)
    x = torch.randn(3, 12, 2)
    chunks = torch.cat([layer(x[:, i:i + 4]) for i in range(0, 12, 4)], 1)
    layer.reset_states()
    whole = layer(x)
    torch.testing.assert_close(chunks, whole)
    with pytest.raises(ValueError, match="stateful with batch size 3"):
        layer(torch.randn(2, 4, 2))
    layer.reset_states()
    layer(torch.randn(2, 4, 2))


def test_go_backwards_and_return_state():
    layer = GRU(3, go_backwards=True, return_state=True)
    x = torch.randn(2, 4, 2)
    out, h = layer(x)
    ref, rh = layer.rnn(x.flip(1))
    torch.testing.assert_close(out, rh[0])


def test_time_distributed_dense():
    td = TimeDistributed(Dense(3))
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(td(x), td.layer(x))


def test_input_shape_checked_by_first_layer():
    model = Sequential([LSTM(3, input_shape=(10, 1))])
    with pytest.raises(ValueError, match="dimension 1 is 7, expected 10"):
        model(torch.zeros(2, 7, 1))
