"""Model tests run single-threaded: tiny models, and spinning OpenMP threads crawl on a busy shared CPU."""

import pytest

from threads import one_thread  # noqa: F401 - autouse: every test here runs on one thread


@pytest.fixture(scope="session")
def mamba_ssm():
    """``(mamba_simple, selective_scan_interface)`` of mamba_ssm (see tests/mamba_reference.py), or skip."""
    import mamba_reference

    loaded = mamba_reference.load()
    if isinstance(loaded, str):
        pytest.skip(loaded)
    return loaded
