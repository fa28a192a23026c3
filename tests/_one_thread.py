"""A fixture for the audio training/fingerprinter tests: torch on one thread while each test runs.

Tiny models on 2 threads of a busy 2-core machine spend most of their time in thread barriers; one
thread runs these tests several times faster and matches how the training command runs.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
