"""Early stopping replayed on recorded curves, against Lightning's own EarlyStopping rule."""

from __future__ import annotations

import json
import random

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from clean_errors import exit_of, expect_clean_error
from progress_runs import last_ckpt_run
from ss4rec.report.patience import main, replay


def _lightning(values: list[float], patience: int, mode: str) -> tuple[int, int, float]:
    """The epoch Lightning's EarlyStopping stops after, fed one value per epoch, and its best epoch and value."""
    stopper = EarlyStopping(monitor="m", mode=mode, patience=patience)
    best_epoch = 0
    for epoch, value in enumerate(values):
        before = stopper.best_score.item()
        should_stop, _ = stopper._evaluate_stopping_criteria(torch.tensor(value, dtype=torch.float64))
        if stopper.best_score.item() != before:
            best_epoch = epoch
        if should_stop:
            return epoch, best_epoch, stopper.best_score.item()
    return len(values) - 1, best_epoch, stopper.best_score.item()


@pytest.mark.parametrize("mode", ["max", "min"])
def test_replay_stops_where_lightning_stops(mode):
    rng = random.Random(0)
    for trial in range(300):
        # coarse values, so that ties (which do not count as improving) are common
        values = [round(rng.random(), 1) for _ in range(rng.randint(1, 30))]
        patience = rng.randint(1, 8)
        got = replay(list(enumerate(values)), patience, mode)
        assert got == _lightning(values, patience, mode), (trial, values, patience)


def test_replay_by_hand():
    curve = list(enumerate([0.1, 0.2, 0.15, 0.2, 0.25, 0.1, 0.1, 0.1]))
    assert replay(curve, 2, "max") == (3, 1, 0.2)  # the tie at epoch 3 does not improve
    assert replay(curve, 3, "max") == (7, 4, 0.25)  # stalls 3 epochs only at the very end
    assert replay(curve, 9, "max") == (7, 4, 0.25)  # never stalls that long: the whole curve
    assert replay(curve, 1, "min") == (1, 0, 0.1)


def test_cli_table(tmp_path, capsys):
    rows = [{"epoch": e, "val/ndcg@10": v} for e, v in enumerate([0.1, 0.2, 0.15, 0.15, 0.25, 0.2])]
    run = last_ckpt_run(tmp_path, rows)
    out = tmp_path / "patience.md"
    assert main([str(run), "--patience", "2", "3", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| run_a | all | 5 | 4 | 0.2500 | | 6 |" in text
    assert "| run_a | 2 | 3 | 1 | 0.2000 | -20.0% | 4 (67%) |" in text
    assert "| run_a | 3 | 5 | 4 | 0.2500 | +0.0% | 6 (100%) |" in text


def test_runs_of_the_same_name_from_two_folders_get_their_folder_in_the_table(tmp_path, capsys):
    rows = [{"epoch": e, "val/ndcg@10": v} for e, v in enumerate([0.1, 0.2, 0.15])]
    first, second = last_ckpt_run(tmp_path / "paper", rows), last_ckpt_run(tmp_path / "uniform", rows)
    assert main([str(first), str(second), "--patience", "2"]) == 0
    text = capsys.readouterr().out
    assert "| paper/run_a | all |" in text and "| uniform/run_a | all |" in text


def test_bad_input_is_a_clean_error(tmp_path, capsys):
    expect_clean_error(exit_of(main, [str(tmp_path / "nothing")], capsys), r"nothing: no checkpoints/last.ckpt")
    run = last_ckpt_run(tmp_path, [{"epoch": 0, "val/hr@10": 0.1}])
    expect_clean_error(exit_of(main, [str(run)], capsys), r"run_a: no epoch with val/ndcg@10")
    status, err = exit_of(main, [str(run), "--patience", "0"], capsys)  # argparse's own error line
    assert status == 2 and "'0': expected an integer >= 1" in err


def test_a_finished_run_without_checkpoints_replays_from_its_record(tmp_path, capsys):
    """A fresh clone has the runs' metrics.json but not their checkpoints: the same table from the record."""
    rows = [{"epoch": e, "val/rmse": v} for e, v in enumerate([1.0, 0.9, 0.95, 0.97, 0.96])]
    with_ckpt = last_ckpt_run(tmp_path / "a", rows, monitor="val/rmse", mode="min")
    assert main([str(with_ckpt), "--patience", "2"]) == 0
    expected = capsys.readouterr().out
    assert "| run_a | 2 | 3 | 1 | 0.9000 | +0.0% | 4 (80%) |" in expected
    record_only = tmp_path / "b" / "run_a"
    record_only.mkdir(parents=True)
    record = {"monitor": "val/rmse", "history": rows, "config": {"task": {"mode": "min"}}}
    (record_only / "metrics.json").write_text(json.dumps(record))
    assert main([str(record_only), "--patience", "2"]) == 0
    assert capsys.readouterr().out == expected
    (record_only / "metrics.json").write_text("{}")
    expect_clean_error(exit_of(main, [str(record_only)], capsys), r"not a run record with a history and a monitor")
