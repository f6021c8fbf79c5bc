"""Every ml25m_* experiment end to end on a small ML-25M-like synthetic set (data=synthetic_ml25m, shrunk):
bounded training, full-ranking validation and test over every user and item, then the batch export."""

from __future__ import annotations

import math

import polars as pl
import pytest

from composing import compose_train, config_names
from ss4rec import training
from ss4rec.errors import ConfigError
from ss4rec.recommend import export
from ss4rec.training import train

SMALL = ["data=synthetic_ml25m", "data.source.n_rows=20000", "data.source.n_users=160", "data.source.n_items=600",
         "trainer=cpu", "data.num_workers=0", "data.pin_memory=false", "data.max_len=50", "data.eval_batch_size=64",
         "evaluation.chunk_size=256", "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "logger=none",
         "trainer.enable_progress_bar=false", "threads=1", "model.hidden=16", "model.d_state=8",
         "model.mamba_d_state=8"]


def test_full_softmax_too_large_for_the_device_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "device_bytes", lambda accelerator: (2**20, "RAM"))
    cfg = compose_train(["experiment=ml25m_ce", *SMALL], tmp_path)
    with pytest.raises(ConfigError, match="task.ranking_loss=ce: full cross-entropy over 600 items"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [n for n in config_names("experiment") if n.startswith("ml25m")])
def test_ml25m_experiment_end_to_end_on_small_synthetic_data(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}", *SMALL], tmp_path)
    summary = train(cfg)
    assert summary["status"] == "finished" and summary["data"] == "synthetic_ml25m"
    assert summary["test"] and all(math.isfinite(v) for v in summary["test"].values())
    if experiment != "ml25m_rmse":
        assert "test/ndcg@10" in summary["test"]
    recs = pl.read_parquet(export(tmp_path, tmp_path / "recs.parquet", k=5))
    assert recs.height == 5 * recs["user_id"].n_unique() and recs["user_id"].n_unique() >= 150
