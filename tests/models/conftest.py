"""Model tests run single-threaded: tiny models, and spinning OpenMP threads crawl on a busy shared CPU."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mamba_ssm():
    """``(mamba_simple, selective_scan_interface)`` of mamba_ssm (see tests/mamba_reference.py), or skip."""
    import mamba_reference

    loaded = mamba_reference.load()
    if isinstance(loaded, str):
        pytest.skip(loaded)
    return loaded
