"""One tiny trained run per test session (SS4Rec, joint ranking + rating, ML-100K, windows of 20)."""

from __future__ import annotations

import pytest
import torch

from composing import compose_train
from threads import one_thread  # noqa: F401 - autouse: every test here runs on one thread

TINY = ["model=ss4rec", "task=joint", "debug=limit", "data.max_len=20", "data.batch_size=128",
        "data.eval_batch_size=512", "logger=none", "threads=1", "trainer.limit_test_batches=1.0",
        "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "model.hidden=32",
        "model.d_state=16", "model.mamba_d_state=8"]  # fmt: skip




@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, isolated_data_dir):
    """The run folder of a tiny trained SS4Rec (its metrics.json holds the test metrics to reproduce)."""
    from ss4rec.training import train

    run = tmp_path_factory.mktemp("serve-run")
    threads = torch.get_num_threads()
    summary = train(compose_train(TINY, run))
    torch.set_num_threads(threads)
    assert summary["status"] == "finished"
    return run
