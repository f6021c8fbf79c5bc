"""Exact resume: a run killed with SIGKILL mid-epoch and resumed from last.ckpt ends bit-equal to one never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# synthetic data, dropout and sampled negatives (both draw from the global RNG), one thread: bit-equal on CPU
RUN = ["data=synthetic", "data.source.n_rows=30000", "model=sasrec", "task/ranking_loss=bpr", "data.max_len=20",
       "data.batch_size=8", "trainer.max_epochs=3", "logger=none", "threads=1", "trainer.enable_progress_bar=false",
       "seed=3"]  # fmt: skip


def _train(run_dir: Path, data_dir: Path, *extra: str, wait: bool = True):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "SS4REC_DATA_DIR": str(data_dir)}
    command = [sys.executable, str(ROOT / "train.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_equal(tmp_path):
    data = tmp_path / "data"
    whole = _train(tmp_path / "whole", data)
    epoch_s = whole["train_time_s"] / whole["epochs"]

    # the same run, killed in the middle of its second epoch (after epoch 0's last.ckpt was written)
    killed = tmp_path / "killed"
    process = _train(killed, data, wait=False)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), "the run ended or timed out before writing last.ckpt"
    time.sleep(0.4 * epoch_s)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()  # it never finished
    done = torch.load(last, map_location="cpu", weights_only=False)["epoch"]  # the last epoch it completed
    assert done < whole["epochs"] - 1, "killed after its last epoch: nothing left to resume"  # usually 0

    resumed = _train(tmp_path / "resumed", data, f"ckpt_path={last}")
    assert resumed["status"] == "finished" and resumed["epochs"] == whole["epochs"]
    assert resumed["resumed_from"] == {"checkpoint": str(last.resolve()), "epoch": done + 1}
    assert "resumed_from" not in whole
    assert resumed["test"] == whole["test"]  # bit-equal floats
    assert resumed["history"] == whole["history"] and resumed["best_epoch"] == whole["best_epoch"]
    final = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == whole["epochs"] - 1  # last.ckpt follows every epoch, not only the best ones
    a, b = final["state_dict"], _weights(last)  # the resumed run writes into the checkpoint's folder
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# cuts the rate at every epoch after the first (nothing beats the first score by 1e9), so one skipped step shows
PLATEAU = ("scheduler={_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, factor: 0.5, "
           "patience: 0, threshold: 1.0e9, threshold_mode: abs}")  # fmt: skip
SMALL = ["data.source.n_rows=4000", "test_after_training=false", PLATEAU]


def _lr(path: Path) -> float:
    return torch.load(path, map_location="cpu", weights_only=False)["optimizer_states"][0]["param_groups"][0]["lr"]


def test_a_resumed_plateau_scheduler_steps_on_every_epoch_as_an_uninterrupted_run(tmp_path):
    """Lightning skips a ReduceLROnPlateau's step for the epoch a checkpoint was written in; PlateauResume
    applies it, so the rate and every epoch after the resume match a run never stopped. The resumed run's
    training time includes the first process's."""
    data = tmp_path / "data"
    whole = _train(tmp_path / "whole", data, *SMALL, "trainer.max_epochs=4")
    first = _train(tmp_path / "first", data, *SMALL, "trainer.max_epochs=2")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert first["epochs"] == 2 and _lr(last) == 1e-3  # written in epoch 1, before its step (its first cut)
    # the run's training seconds travel in the checkpoint; a large stored value shows they are added
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert 0 < checkpoint["callbacks"]["History"]["train_seconds"] <= first["train_time_s"]
    checkpoint["callbacks"]["History"]["train_seconds"] = 1e6
    torch.save(checkpoint, last)
    resumed = _train(tmp_path / "resumed", data, *SMALL, "trainer.max_epochs=4", f"ckpt_path={last}")
    assert resumed["resumed_from"]["epoch"] == 2
    assert 1e6 < resumed["train_time_s"] <= 1e6 + resumed["wall_time_s"]
    assert _lr(tmp_path / "whole" / "checkpoints" / "last.ckpt") == 1e-3 * 0.5**2  # epoch 3's, before its step
    assert _lr(last) == _lr(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    assert resumed["history"] == whole["history"]
