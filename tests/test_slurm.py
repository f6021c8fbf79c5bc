"""hydra/launcher=slurm with trainer=slurm: composes, and Lightning's DDP matches the SLURM allocation."""

from __future__ import annotations

import hydra
import pytest

from composing import compose_train
from ss4rec.config_checks import check_train_config
from ss4rec.errors import ConfigError

SLURM = ["hydra/launcher=slurm", "trainer=slurm", "experiment=ml25m_bpr"]


@pytest.mark.parametrize("nodes,gpus", [(1, 4), (2, 8), (3, 1)])
def test_devices_and_nodes_follow_the_launcher(nodes, gpus):
    cfg = compose_train([*SLURM, f"hydra.launcher.nodes={nodes}", f"hydra.launcher.gpus_per_node={gpus}"])
    launcher = cfg.hydra.launcher
    assert hydra.utils.get_class(launcher._target_).__name__ == "SlurmLauncher"
    assert launcher.tasks_per_node == launcher.gpus_per_node == gpus  # one process per GPU
    assert cfg.trainer.devices == gpus and cfg.trainer.num_nodes == nodes and cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.strategy.startswith("ddp") and cfg.trainer.use_distributed_sampler is False


def test_slurm_trainer_without_its_launcher_is_refused_with_the_fix():
    cfg = compose_train(["trainer=slurm", "experiment=ml25m_bpr"])
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=null: .*add -m hydra/launcher=slurm"):
        check_train_config(cfg)
