"""Compose the real Hydra configs in tests, as train.py does."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ss4rec.paths import CONFIG_DIR

#: a tiny SS4Rec run (joint ranking + rating, bundled ML-100K, windows of 20) that trains in seconds
TINY_JOINT_RUN = ["model=ss4rec", "task=joint", "debug=limit", "data.max_len=20", "data.batch_size=128",
                  "data.eval_batch_size=512", "logger=none", "threads=1", "trainer.limit_test_batches=1.0",
                  "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", "model.hidden=32",
                  "model.d_state=16", "model.mamba_d_state=8"]  # fmt: skip


def compose_train(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose conf/train.yaml as train.py would, with Hydra's runtime config set."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def config_names(group: str) -> list[str]:
    """Every option of a config group (file stem under conf/<group>/)."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))
