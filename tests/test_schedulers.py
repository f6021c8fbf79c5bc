"""Learning-rate schedules: a plateau schedule watches the task's selection metric in its direction."""

from __future__ import annotations

import pytest
import torch

from composing import compose_train
from ss4rec.lightning_module import RecModule
from ss4rec.training import train

PLATEAU = {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True, "factor": 0.5, "patience": 0}


@pytest.mark.parametrize(("monitor", "mode"), [("val/ndcg@10", "max"), ("val/rmse", "min")])
def test_plateau_schedule_watches_the_selection_metric_in_its_direction(monitor, mode):
    module = RecModule(
        model={"_target_": "ss4rec.models.mf.MF", "dim": 2},
        objective={"_target_": "ss4rec.objectives.Objective", "ranking": None, "rating_weight": 1.0},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        scheduler=PLATEAU, n_items=5, n_users=2, monitor=monitor, mode=mode,
    )  # fmt: skip
    plan = module.configure_optimizers()["lr_scheduler"]
    assert plan["monitor"] == monitor and plan["scheduler"].mode == mode and plan["interval"] == "epoch"


def test_plateau_schedule_cuts_the_rate_of_a_real_run(tmp_path):
    """Every epoch after the first counts as no improvement (an absolute threshold of 10 on RMSE), so the
    rate halves after epochs 1 and 2; last.ckpt is written before epoch 3's step: 0.004 -> 0.001."""
    scheduler = "scheduler={_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, " \
                "factor: 0.5, patience: 0, threshold: 10, threshold_mode: abs}"
    cfg = compose_train(
        ["model=mf", "task=rating", "trainer.max_epochs=4", "+trainer.limit_train_batches=2", "logger=none",
         "optimizer.lr=0.004", "test_after_training=false", scheduler], tmp_path)  # fmt: skip
    assert train(cfg)["status"] == "finished"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert {group["lr"] for group in state["optimizer_states"][0]["param_groups"]} == {0.001}
