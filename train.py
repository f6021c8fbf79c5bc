"""Train and evaluate a recommender: ``python train.py [overrides]`` (see README)."""

import hydra
from omegaconf import DictConfig

from ss4rec.paths import CONFIG_DIR
from ss4rec.training import run


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
