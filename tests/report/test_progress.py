"""In-progress curves read from a run's last.ckpt (no metrics.json yet)."""

from __future__ import annotations

import torch

from clean_errors import exit_of, expect_clean_error
from progress_runs import last_ckpt_run as _run
from ss4rec.report.progress import main, read_progress, render

ROWS = [
    {"epoch": 0, "val/ndcg@10": 0.10, "val/hr@10": 0.20, "train/loss": 7.0},
    {"epoch": 1, "val/ndcg@10": 0.15, "val/hr@10": 0.25, "train/loss": 6.0},
    {"epoch": 2, "val/ndcg@10": 0.15, "val/hr@10": 0.30, "train/loss": 5.5},
    {"epoch": 3, "val/ndcg@10": 0.12, "val/hr@10": 0.22, "train/loss": 5.0},
]


def test_table_marks_the_first_best_epoch_in_the_monitored_direction(tmp_path):
    text = render(read_progress(_run(tmp_path, ROWS)))
    assert "4 epochs; best val/ndcg@10 (max) at epoch 1" in text and "learning rate now 0.0003, 0.001" in text
    assert "| **1** | 0.1500 | 0.2500 | 6.0000 |" in text
    assert "| 2 | 0.1500 | 0.3000 | 5.5000 |" in text  # a tie later is not the best (first of equals)
    rmse = [{"epoch": e, "val/rmse": v} for e, v in enumerate([1.1, 0.9, 0.95])]
    assert "best val/rmse (min) at epoch 1" in render(read_progress(_run(tmp_path / "b", rmse, "val/rmse", "min")))


def test_cli_writes_the_file(tmp_path):
    run = _run(tmp_path, ROWS)
    out = tmp_path / "in_progress.md"
    assert main([str(run), "--out", str(out), "--title", "T"]) == 0
    assert out.read_text().startswith("# T\n\n## run_a\n")


def test_bad_runs_are_clean_errors(tmp_path, capsys):
    expect_clean_error(exit_of(main, [str(tmp_path / "nothing")], capsys), r"nothing: no checkpoints/last.ckpt")
    run = _run(tmp_path, ROWS)
    torch.save({"callbacks": {}}, run / "checkpoints" / "last.ckpt")
    expect_clean_error(exit_of(main, [str(run)], capsys), "no per-epoch history")
