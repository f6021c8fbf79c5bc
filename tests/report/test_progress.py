"""Validation curves read from a run's last.ckpt (still training) or its metrics.json (no checkpoints kept)."""

from __future__ import annotations

import json

import torch

from clean_errors import exit_of, expect_clean_error
from progress_runs import last_ckpt_run as _run
from ss4rec.report.progress import (
    distinct_names,
    main,
    parse_epochs,
    read_curve,
    read_progress,
    render,
    side_by_side,
)

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


def _record(tmp_path, name, rows, status="finished"):
    """A run folder as a fresh clone has it: metrics.json with the history, no checkpoints."""
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"history": rows, "monitor": "val/ndcg@10", "status": status}))
    return run


def test_a_run_without_checkpoints_is_read_from_its_record(tmp_path):
    text = render(read_curve(_record(tmp_path, "done", ROWS, "stopped")))
    assert "best val/ndcg@10 (max) at epoch 1 (bold); from its metrics.json (status stopped)." in text
    assert "| 3 | 0.1200 | 0.2200 | 5.0000 |" in text
    # a checkpoint, where there is one, is what a run still training has: it wins over an older record
    run = _run(tmp_path, ROWS[:2])
    (run / "metrics.json").write_text(json.dumps({"history": ROWS, "monitor": "val/ndcg@10"}))
    assert "2 epochs;" in render(read_curve(run))


def test_side_by_side_puts_each_run_in_a_column_on_the_epochs_asked_for(tmp_path):
    long = [{"epoch": e, "val/ndcg@10": e / 100} for e in range(30)]
    short = [{"epoch": e, "val/ndcg@10": 1 - e / 100} for e in range(5)]
    runs = [read_curve(_record(tmp_path, "long", long)), read_curve(_record(tmp_path, "short", short))]
    text = side_by_side(runs, "val/ndcg@10", parse_epochs("0:6:2,20::4"))
    lines = text.splitlines()
    assert lines[0] == "| epoch | `long` | `short` |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 0", "| 2", "| 4", "| 20", "| 24", "| 28"]
    assert "| 4 | 0.0400 | 0.9600 |" in lines and "| 24 | 0.2400 |  |" in lines  # a run that ended: blank
    assert len(side_by_side(runs, "val/ndcg@10").splitlines()) == 2 + 30  # no ranges: every epoch of any run
    assert parse_epochs("7") == [(7, 8, 1)] and parse_epochs("::3") == [(0, None, 3)]


def test_runs_of_the_same_name_are_told_apart_by_their_parent_folders(tmp_path):
    rows = [{"epoch": 0, "val/ndcg@10": 0.1}]
    (tmp_path / "paper").mkdir(), (tmp_path / "uniform").mkdir()
    a = _record(tmp_path / "paper", "sasrec_s0", rows)
    b = _record(tmp_path / "uniform", "sasrec_s0", rows)
    c = _record(tmp_path / "uniform", "mamba_s0", rows)
    assert distinct_names([a, b, c]) == ["paper/sasrec_s0", "uniform/sasrec_s0", "uniform/mamba_s0"]
    assert distinct_names([b, c]) == ["sasrec_s0", "mamba_s0"]  # one folder's runs: their names suffice
    assert distinct_names([a, c]) == ["paper/sasrec_s0", "uniform/mamba_s0"]  # runs from two folders say which
    assert distinct_names([a, a]) == [str(a.resolve())] * 2  # the same run twice: no loop, its full path
    out = tmp_path / "side.md"
    assert main([str(a), str(b), "--compare", "val/ndcg@10", "--out", str(out)]) == 0
    assert "| epoch | `paper/sasrec_s0` | `uniform/sasrec_s0` |" in out.read_text()
    assert main([str(a), str(b), "--out", str(out)]) == 0
    assert "paper/sasrec_s0" in out.read_text() and "uniform/sasrec_s0" in out.read_text()


def test_compare_cli_and_its_bad_options(tmp_path, capsys):
    run = _record(tmp_path, "done", ROWS)
    out = tmp_path / "side.md"
    assert main([str(run), "--compare", "val/hr@10", "--epochs", "1:3", "--out", str(out), "--title", "T"]) == 0
    assert out.read_text() == "# T\n\n| epoch | `done` |\n|---:|---:|\n| 1 | 0.2500 |\n| 2 | 0.3000 |\n"
    expect_clean_error(exit_of(main, [str(run), "--compare", "val/rmse"], capsys), "done: no epoch with val/rmse")
    expect_clean_error(exit_of(main, [str(run), "--epochs", "1:3"], capsys), "give --compare METRIC too")
    for bad in ("a:b", "1:2:3:4", "0:10:0", "-2:"):
        expect_clean_error(exit_of(main, [str(run), "--compare", "val/hr@10", f"--epochs={bad}"], capsys), "--epochs")
    (run / "metrics.json").write_text("{}")
    expect_clean_error(exit_of(main, [str(run)], capsys), "not a run record with a history")
