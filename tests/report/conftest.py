"""Fake but schema-valid runs (see the metrics.json schema in the README) for the dashboard tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

MODELS = ("pop", "sasrec", "ss4rec", "gru4rec", "mamba4rec", "mf", "ncf", "hybrid_vae")
RATING_MODELS = ("mf", "ncf", "hybrid_vae")  # fake joint runs: ranking and rating metrics
SEEDS = (0, 1, 2)


def fake_run(model: str, seed: int, run_dir: Path, data: str = "ml100k", task: str | None = None) -> dict:
    rng = random.Random(f"{model}-{seed}")
    rating = model in RATING_MODELS
    task = task or ("joint" if rating else "ranking")
    base = 0.05 + 0.01 * MODELS.index(model)
    test = {}
    for k in (1, 5, 10, 20):
        hr = min(1.0, base * k**0.7 + rng.uniform(0, 0.01))
        test |= {f"test/hr@{k}": hr, f"test/ndcg@{k}": hr * 0.55, f"test/mrr@{k}": hr * 0.45}
    if task in ("joint", "rating"):
        test |= {"test/rmse": 0.9 + rng.uniform(0, 0.05), "test/mae": 0.7 + rng.uniform(0, 0.05)}
    epochs = 3 + seed  # seeds stop at different epochs, as early stopping does
    history = []
    for epoch in range(epochs):
        row = {"epoch": epoch, "val/ndcg@10": base * (epoch + 1) / epochs, "train/loss": 7.0 - epoch}
        row["val/hr@10"] = 2 * row["val/ndcg@10"]
        if task in ("joint", "rating"):
            row["val/rmse"] = 1.2 - 0.05 * epoch
        history.append(row)
    return {
        "model": model,
        "data": data,
        "task": task,
        "experiment": None,
        "seed": seed,
        "mask_seen": False,
        "monitor": "val/ndcg@10",
        "test": test,
        "best_val": {"val/ndcg@10": history[-1]["val/ndcg@10"], "val/hr@10": history[-1]["val/hr@10"]},
        "best_epoch": epochs - 1,
        "epochs": epochs,
        "wall_time_s": 100.0 + seed,
        "train_time_s": 90.0 + 10 * MODELS.index(model) + seed,
        "parameters": 1000 * (MODELS.index(model) + 1),
        "peak_memory_mb": 500.0 + 20 * seed,
        "history": history,
        "checkpoint": str(run_dir / "checkpoints" / "best.ckpt"),
        "run_dir": str(run_dir),
        "status": "finished",
        "config": {"model": {"_target_": f"ss4rec.models.{model}"}, "seed": seed},
    }


def write_run(root: Path, name: str, run: dict) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    run["run_dir"] = str(run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(run, indent=2))
    return run_dir


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """Every model x 3 seeds, plus one failed run that the report must skip."""
    root = tmp_path / "runs"
    for i, (model, seed) in enumerate((m, s) for m in MODELS for s in SEEDS):
        write_run(root, f"{i}_{model}_s{seed}", fake_run(model, seed, root))
    failed = fake_run("sasrec", 3, root) | {"status": "failed", "test": {}}
    write_run(root, "99_sasrec_s3", failed)
    return root
