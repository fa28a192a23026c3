"""Shared test fixtures: fixed seeds, never the clock."""

import os

import faiss
import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The tests use small tensors: on a busy machine two OpenMP threads spend most of their time in
# barriers (10 ms per op seen here), one thread is several times faster and just as deterministic.
torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
