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


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread for every test, restored afterwards: the models are tiny, and on a shared, loaded machine
    a second thread made them up to 50x slower (a 0.2 s fit took 12 s). Two-thread tests set it themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
