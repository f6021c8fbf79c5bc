"""``python -m ss4rec.data data=ml1m [overrides]``: prepare (or load) a dataset and print its statistics.

The last line of the output is the statistics as one JSON object (keys include users, items,
interactions). Bad options or data exit with status 2 and ``error: <message>`` (``ss4rec.errors``).
"""

from __future__ import annotations

import json
import logging
import time

import hydra
from omegaconf import DictConfig

from ss4rec import paths
from ss4rec.errors import reported_errors


@hydra.main(version_base="1.3", config_path=str(paths.CONFIG_DIR), config_name="prepare")
def main(cfg: DictConfig) -> None:
    from rich.console import Console

    from ss4rec.data import stats as stats_mod

    logging.getLogger("ss4rec").setLevel(logging.INFO)
    console = Console(stderr=False)
    started = time.perf_counter()
    with reported_errors():
        from ss4rec.config_checks import check_data_config

        check_data_config(cfg)
        datamodule = hydra.utils.instantiate(cfg.data)
        if cfg.get("force"):
            from ss4rec.data.prepare import prepare

            prepare(datamodule.name, datamodule.source, datamodule.options, datamodule.data_dir, force=True)
        datamodule.prepare_data()
        datamodule.setup()
    stats = datamodule.stats()
    stats["cache"] = str(datamodule.cache_dir)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    source = (
        datamodule.source if isinstance(datamodule.source, str) else (datamodule.source or {}).get("kind")
    )
    console.print(stats_mod.table(stats, title=f"{datamodule.name} (source: {source or 'default'})"))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
