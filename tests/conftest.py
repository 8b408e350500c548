"""Shared test set-up: deterministic torch, reference backend unless a test asks otherwise."""
import os

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
