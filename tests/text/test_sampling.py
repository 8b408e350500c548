"""Sampling: greedy at temperature 0, top-k support, nucleus support, temperature effect (empirical counts)."""
import pytest
import torch

from lstmkit.errors import UserError
from lstmkit.tasks.generate import sample


def test_temperature_zero_is_greedy():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(50, generator=g)
        assert sample(logits, temperature=0, generator=g) == int(logits.argmax())


def test_top_k_never_outside_k_best():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(30, generator=g)
    best = set(torch.topk(logits, 3).indices.tolist())
    draws = [sample(logits, 1.5, top_k=3, generator=g) for _ in range(2000)]
    assert set(draws) == best  # all three reachable, nothing else


def test_top_p_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    g = torch.Generator().manual_seed(2)
    d = [sample(logits, 1.0, top_p=0.7, generator=g) for _ in range(2000)]
    assert set(d) == {0, 1}  # 0.5 < 0.7 so the second token is needed; 0.8 >= 0.7 so stop
    frac0 = d.count(0) / len(d)
    assert abs(frac0 - 0.5 / 0.8) < 0.04  # renormalised within the nucleus
    assert {sample(logits, 1.0, top_p=0.4, generator=g) for _ in range(200)} == {0}


def test_temperature_sharpens_and_full_support():
    logits = torch.tensor([1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(3)
    hot = [sample(logits, 1.0, generator=g) for _ in range(2500)]
    cold = [sample(logits, 0.3, generator=g) for _ in range(2500)]
    p = torch.softmax(logits, 0)[0].item()
    assert abs(hot.count(0) / 2500 - p) < 0.03
    assert cold.count(0) / 2500 > 0.9
    assert set(hot) == {0, 1, 2}


def test_bad_arguments():
    with pytest.raises(UserError, match="--top-k=0"):
        sample(torch.zeros(3), 1.0, top_k=0)
    with pytest.raises(UserError, match="--top-p=1.5"):
        sample(torch.zeros(3), 1.0, top_p=1.5)
    with pytest.raises(UserError, match="--temperature=-1"):
        sample(torch.zeros(3), -1.0)
