"""What one process of the two-process evaluation test runs (spawned, so it lives in an importable module).

Each process builds the data module and the same RecModule (a seeded MF, joint task: ranking and rating
metrics), runs the real ``_evaluate`` on every batch of its validation and test loaders, and saves the users
it saw and the metric states as synced across the process group (sums and counts) plus ``compute()``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ss4rec.data import SequenceDataModule
from ss4rec.lightning_module import RecModule

STAGES = ("val", "test")


def build(data_dir: str) -> tuple[SequenceDataModule, RecModule]:
    datamodule = SequenceDataModule(name="ml100k", source="bundled", max_len=20, eval_batch_size=100,
                                    data_dir=data_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    module = RecModule(
        model={"_target_": "ss4rec.models.mf.MF", "dim": 8},
        objective={"_target_": "ss4rec.objectives.Objective",
                   "ranking": {"_target_": "ss4rec.objectives.CrossEntropy"}, "rating_weight": 0.5},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
        n_items=datamodule.n_items, n_users=datamodule.n_users, rating_mean=3.5,
        eval_chunk_size=500,  # several chunks per batch, as on a large catalogue
    )
    return datamodule, module.eval()


def evaluate(datamodule: SequenceDataModule, module: RecModule) -> dict:
    """Users seen per stage, the metric states (synced when a process group runs) and computed values."""
    out: dict = {}
    for stage in STAGES:
        loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
        users: list[int] = []
        with torch.no_grad():
            for batch in loader:
                users += batch["users"].tolist()
                module._evaluate(batch, stage)
        states, computed = {}, {}
        for name, metric in (("ranking", module.ranking_metrics[stage]), ("rating", module.rating_metrics[stage])):
            with metric.sync_context():  # what compute() sums across processes
                states |= {f"{name}.{k}": getattr(metric, k).clone() for k in metric._defaults}
            computed |= {k: v.item() for k, v in metric.compute().items()}
        out[stage] = {"users": users, "states": states, "computed": computed}
    return out


def worker(rank: int, world: int, init_file: str, data_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = evaluate(*build(data_dir))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
