"""Classifier internals: padding never reaches the model (lengths=), z-normalisation, the stratified split."""
import numpy as np
import pytest
import torch

from lstmkit.tasks.classify import LSTMClassifier, _logits, _stratified_split, batch, normalise


@pytest.mark.parametrize("bidirectional", [False, True])
def test_logits_do_not_depend_on_padding(bidirectional):
    """A series scored alone (no padding) and in a batch padded to a longer series give the same logits."""
    torch.manual_seed(0)
    m = LSTMClassifier(2, 3, hidden=6, bidirectional=bidirectional, backend="reference").eval()
    rng = np.random.default_rng(0)
    short, long_ = rng.normal(size=(5, 2)).astype(np.float32), rng.normal(size=(11, 2)).astype(np.float32)
    alone = _logits(m, [short])
    together = _logits(m, [long_, short])
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-5, atol=1e-6)
    # and the padding value itself is irrelevant: garbage in the padded steps changes nothing
    x, lens = batch([long_, short])
    x[1, 5:] = 1e3
    with torch.no_grad():
        np.testing.assert_allclose(m(x, lengths=lens)[1].numpy(), alone[0], rtol=1e-5, atol=1e-6)


def test_series_normalisation_uses_own_steps():
    s = [np.array([[1.0, 10.0], [3.0, 10.0]]), np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])]
    out = normalise(s, "series")
    np.testing.assert_allclose(out[0][:, 0], [-1, 1])
    np.testing.assert_allclose(out[0][:, 1], [0, 0])  # constant dimension: centred, not divided by 0
    np.testing.assert_allclose(out[1][:, 1], [-1.224745, 0, 1.224745], rtol=1e-5)
    g = normalise(s, "global", {"mean": [1.0, 2.0], "std": [2.0, 4.0]})
    np.testing.assert_allclose(g[1][:, 1], [-0.5, 0.5, 1.5])
    assert normalise(s, "none")[0].tolist() == s[0].tolist()


def test_stratified_split_keeps_every_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    fit, val = _stratified_split(y, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([fit, val]).tolist()) == list(range(16))
    assert np.bincount(y[val], minlength=3).tolist() == [2, 1, 0]  # class 2's only member stays in training
