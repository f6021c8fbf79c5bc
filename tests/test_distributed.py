"""Two-process DDP on CPU (gloo) evaluates a checkpoint to exactly the metrics of one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["model=sasrec", "data.max_len=30", "logger=none", "trainer.enable_progress_bar=false", "threads=1",
          "trainer.max_epochs=1"]


def _train(args: list[str], log_dir: Path) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(ROOT / "train.py"), *COMMON, *args, f"paths.log_dir={log_dir}"],
                   check=True, cwd=ROOT, env=env, capture_output=True, timeout=600)
    (path,) = log_dir.glob("runs/*/*/*/metrics.json")
    return json.loads(path.read_text())


# ML-100K; and a small set of ML-25M's kind (half stars, synthetic, an odd user count over 2 processes) with
# the sampled-softmax ML-25M experiment's loss (the full 25M shape is far too slow for 2 shared CPU cores)
DATASETS = {
    "ml100k": [],
    "synthetic_ml25m": ["data=synthetic_ml25m", "data.source.n_rows=30001", "data.source.n_users=201",
                        "data.source.n_items=800", "task/ranking_loss=sampled_softmax", "data.num_workers=0"],
}


@pytest.mark.slow
@pytest.mark.parametrize("data", list(DATASETS))
def test_ddp_evaluation_equals_one_process(tmp_path, data):
    extra = DATASETS[data]
    single = _train(["trainer=cpu", "+trainer.limit_train_batches=3", *extra], tmp_path / "one")
    last = Path(single["run_dir"]) / "checkpoints" / "last.ckpt"
    # resuming a finished run trains nothing more and tests the same best checkpoint, now on 2 processes
    double = _train(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"ckpt_path={last}", *extra],
                    tmp_path / "two")
    assert double["data"] == single["data"] == data
    assert double["test"].keys() == single["test"].keys()
    for name, value in single["test"].items():
        assert double["test"][name] == value, name
