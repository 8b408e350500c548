"""One torch thread for these tests: their models are tiny, and on a shared, loaded machine a second intra-op
thread made them up to 50x slower (measured: a 0.2 s fit took 12 s with 2 threads under load 10)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
