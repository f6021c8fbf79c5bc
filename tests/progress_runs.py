"""A run folder holding only checkpoints/last.ckpt with a per-epoch history, as a run still training has."""

from __future__ import annotations

import torch


def last_ckpt_run(tmp_path, rows, monitor="val/ndcg@10", mode="max", lrs=(0.001, 0.0003)):
    run = tmp_path / "run_a"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({
        "callbacks": {"EarlyStopping{}": {}, "History": {"rows": rows}},
        "hyper_parameters": {"monitor": monitor, "mode": mode},
        "optimizer_states": [{"param_groups": [{"lr": lr} for lr in lrs]}],
    }, run / "checkpoints" / "last.ckpt")  # fmt: skip
    return run
