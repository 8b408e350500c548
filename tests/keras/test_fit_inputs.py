"""fit inputs: Dataset and DataLoader equal arrays, masks (Embedding mask_zero, Masking) equal explicit lengths in
whole models and in training, and the validation input forms."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import lstmkit.nn as lnn
from lstmkit.layers import LSTM, Dense, Embedding, Masking
from lstmkit.models import Sequential

RNG = np.random.default_rng(4)
X = RNG.standard_normal((48, 6, 2)).astype("float32")
Y = (X[:, :, 0].sum(1, keepdims=True) / 3).astype("float32")


class PairDataset(Dataset):
    """A map-style Dataset returning (x, y) numpy pairs (not tensors)."""

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i], Y[i]


def _fit(data, **kw):
    torch.manual_seed(3)
    model = Sequential([LSTM(4, input_shape=(6, 2)), Dense(1)])
    model.compile("adam", "mse", metrics=["mae"])
    h = model.fit(*data, batch_size=16, epochs=2, shuffle=False, verbose=0, **kw)
    return model, h


def test_dataset_and_dataloader_inputs_equal_arrays():
    ref, href = _fit((X, Y), validation_data=(X[:8], Y[:8]))
    for data, val in [((PairDataset(),), (X[:8], Y[:8])),
                      ((TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),),
                       TensorDataset(torch.from_numpy(X[:8]), torch.from_numpy(Y[:8]))),
                      ((DataLoader(PairDataset(), batch_size=16),),
                       DataLoader(TensorDataset(torch.from_numpy(X[:8]), torch.from_numpy(Y[:8])), batch_size=3))]:
        m, h = _fit(data, validation_data=val)
        np.testing.assert_allclose(m.predict(X), ref.predict(X), rtol=0, atol=1e-6)
        assert list(h.history) == list(href.history) == ["loss", "mae", "val_loss", "val_mae"]
        for k in h.history:
            np.testing.assert_allclose(h.history[k], href.history[k], rtol=1e-5)
    np.testing.assert_allclose(ref.predict(PairDataset()), ref.predict(X), rtol=0, atol=1e-6)
    assert ref.evaluate(DataLoader(PairDataset(), batch_size=5), verbose=0)[0] == pytest.approx(
        ref.evaluate(X, Y, verbose=0)[0], rel=1e-5)


def test_bad_validation_data_is_a_clear_error():
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\)"):
        _fit((X, Y), validation_data=X[:4])


def _padded_ids():
    lengths = torch.tensor([6, 2, 4, 1, 5])
    ids = torch.randint(1, 30, (5, 6))
    for b, n in enumerate(lengths):
        ids[b, n:] = 0
    return ids, lengths


def test_embedding_mask_zero_model_equals_explicit_lengths():
    torch.manual_seed(0)
    ids, lengths = _padded_ids()
    model = Sequential([Embedding(30, 3, mask_zero=True), LSTM(4, return_sequences=True), LSTM(3), Dense(2)])
    out = torch.from_numpy(model.predict(ids.numpy()))
    emb, l1, l2, fc = model.layers
    with torch.no_grad():  # the same network by hand: lstmkit.nn with lengths=
        e = emb.embedding(ids)
        y1, _ = l1.rnn(e, lengths=lengths)
        _, (h, _) = l2.rnn(y1, lengths=lengths)
        ref = fc.linear(h[0])
    torch.testing.assert_close(out, ref)


def test_masking_model_equals_explicit_lengths_and_trains_the_same():
    ids, lengths = _padded_ids()
    x = torch.randn(5, 6, 2)
    x[ids == 0] = 0.0
    y = torch.randn(5, 1)

    torch.manual_seed(1)
    model = Sequential([Masking(0.0, input_shape=(None, 2)), LSTM(4), Dense(1)])
    model.compile("sgd", "mse", learning_rate=0.1)
    lstm, fc = lnn.LSTM(2, 4, batch_first=True), torch.nn.Linear(4, 1)
    lstm.load_state_dict(model.layers[1].rnn.state_dict())
    fc.load_state_dict(model.layers[2].linear.state_dict())
    opt = torch.optim.SGD(list(lstm.parameters()) + list(fc.parameters()), lr=0.1)
    for _ in range(3):
        loss = model.train_on_batch(x, y)
        opt.zero_grad()
        _, (h, _) = lstm(x, lengths=lengths)
        ref = ((fc(h[0]) - y) ** 2).mean()
        ref.backward()
        opt.step()
        assert loss == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(model.layers[1].rnn.weight_ih_l0, lstm.weight_ih_l0)
    # padding changes nothing: the same sequences padded to 9 steps give the same predictions
    longer = torch.cat([x, torch.zeros(5, 3, 2)], 1)
    np.testing.assert_allclose(model.predict(longer), model.predict(x), rtol=0, atol=1e-6)
