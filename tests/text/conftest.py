"""Text tests: one intra-op torch thread (tiny ops; on a shared machine 2 threads ran ~10x slower)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
