"""Shared test set-up: deterministic torch, reference backend unless a test asks otherwise."""
import os

import pytest
import torch

# One thread: the tests' models are tiny, and on a shared 2-core machine idle OpenMP threads spinning made
# them many times slower. Tests of the two-thread native path set 2 threads themselves.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
