"""One tiny trained run per test session (SS4Rec, joint ranking + rating, ML-100K, windows of 20)."""

from __future__ import annotations

import pytest
import torch

from composing import TINY_JOINT_RUN, compose_train
from threads import one_thread  # noqa: F401 - autouse: every test here runs on one thread


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, isolated_data_dir):
    """The run folder of a tiny trained SS4Rec (its metrics.json holds the test metrics to reproduce)."""
    from ss4rec.training import train

    run = tmp_path_factory.mktemp("serve-run")
    threads = torch.get_num_threads()
    summary = train(compose_train(TINY_JOINT_RUN, run))
    torch.set_num_threads(threads)
    assert summary["status"] == "finished"
    return run
