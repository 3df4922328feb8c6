"""Shared test settings: one torch thread (tests use tiny tensors; more threads only add contention on a
2-core machine) and offline data fetching (tests never download)."""

import os

import pytest
import torch

os.environ.setdefault("DIFFLAB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield
