"""Sweeps record a diverged job as failed, never as a score: the basic multirun and the Optuna search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.max_len=20", "data.batch_size=128", "logger=none", "threads=1", "trainer.enable_progress_bar=false",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1"]  # fmt: skip


def _sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, str(ROOT / "train.py"), *overrides, *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)


def _statuses(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/metrics.json")}


@pytest.mark.slow
def test_multirun_runs_every_job_and_exits_1_with_the_failure(tmp_path):
    done = _sweep(tmp_path, "-m", "model=sasrec", "optimizer.lr=1e12,0.001")
    assert done.returncode == 1
    assert "the training loss is nan at step 1 (epoch 0, batch 1)" in done.stderr
    assert "Traceback" not in done.stderr
    runs = _statuses(tmp_path / "sweep")
    assert runs["0_sasrec_s0"]["status"] == "failed" and "test" not in runs["0_sasrec_s0"]
    assert runs["1_sasrec_s0"]["status"] == "finished"  # the next job still ran


@pytest.mark.slow
def test_optuna_records_a_diverged_trial_as_failed_and_goes_on(tmp_path):
    done = _sweep(tmp_path, "hparams_search=ss4rec_optuna", 'hydra.sweeper.params={optimizer.lr: "choice(1e12,0.001)"}',
                  "hydra.sweeper.n_trials=4")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "Failed experiment: the training loss is nan" in log  # the sweeper's FAIL state, not a value
    runs = _statuses(tmp_path / "sweep")
    assert len(runs) == 4
    failed = [r for r in runs.values() if r["status"] == "failed"]
    assert failed and all(r["config"]["optimizer"]["lr"] == 1e12 for r in failed)
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"]["optimizer.lr"] == 0.001 and best["best_value"] > 0


def test_the_optuna_study_storage_the_readme_shows_keeps_and_resumes_a_study(tmp_path):
    """``hydra.sweeper.storage=sqlite:///optuna.db``: the installed optuna (2.x, the sweeper's) and SQLAlchemy
    must agree (optuna 2.10 fails on SQLAlchemy 2 at the first trial)."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 0.0, 1.0), n_trials=2)
    again = optuna.load_study(study_name="s", storage=storage)
    assert len(again.trials) == 2 and again.best_value == max(t.value for t in study.trials)
