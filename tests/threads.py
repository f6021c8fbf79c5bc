"""One torch thread per test, for folders of small-model tests (imported by their conftest.py): tiny models
gain nothing from a second thread, and spinning OpenMP threads crawl on a busy shared CPU."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
