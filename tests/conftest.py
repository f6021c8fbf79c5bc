"""Shared fixtures: an isolated data cache for the session."""

from __future__ import annotations

import pytest
import torch

# CI's skip rule (SS4REC_STRICT_SKIPS=1): list every skip with its reason, fail on one not on the allow-list
from skip_policy import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory):
    """Prepared datasets go to a per-session folder, never the user's cache."""
    folder = tmp_path_factory.mktemp("ss4rec-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SS4REC_DATA_DIR", str(folder))
        yield folder
