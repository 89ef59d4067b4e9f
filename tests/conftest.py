"""Shared by every test: one intra-op torch thread. The models are tiny and the machine's 2 cores run two pytest
workers; with OpenMP spinning, two threads per worker make them many times slower than one."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
