"""python -m ss4rec.evaluate_checkpoint: a checkpoint's metrics on its run's split, equal to training's."""

from __future__ import annotations

import json

import pytest

from clean_errors import exit_of, expect_clean_error
from composing import compose_train
from ss4rec.evaluate_checkpoint import main
from ss4rec.training import train

RUN = ["model=sasrec", "data.max_len=20", "data.batch_size=128", "logger=none", "threads=1",
       "trainer.enable_progress_bar=false", "trainer.max_epochs=2", "+trainer.limit_train_batches=3"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    summary = train(compose_train(RUN, folder))
    assert summary["status"] == "finished"
    return folder, summary


def test_best_checkpoint_gives_the_numbers_training_wrote(run, capsys):
    folder, summary = run
    assert main([str(folder), "--threads", "1"]) == 0
    record = json.loads((folder / "evaluations" / f"best-epoch{summary['best_epoch']:03d}.json").read_text())
    assert record["epoch"] == summary["best_epoch"] and record["checkpoint"] == summary["checkpoint"]
    for name, value in summary["test"].items():
        assert record["metrics"][name] == pytest.approx(value, abs=1e-6), name
    for name, value in summary["best_val"].items():
        assert record["metrics"][name] == pytest.approx(value, abs=1e-6), name
    assert "test/ndcg@10" in capsys.readouterr().out


def test_last_checkpoint_is_its_own_record(run):
    folder, summary = run
    assert main([str(folder / "checkpoints" / "last.ckpt")]) == 0
    record = json.loads((folder / "evaluations" / "last.json").read_text())
    assert record["epoch"] == summary["epochs"] - 1
    last = summary["history"][-1]
    assert record["metrics"]["val/ndcg@10"] == pytest.approx(last["val/ndcg@10"], abs=1e-6)


def test_bad_paths_are_clean_errors(run, tmp_path, capsys):
    expect_clean_error(exit_of(main, [str(tmp_path / "nothing")], capsys), "no such file or folder")
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((run[0] / "checkpoints" / "last.ckpt").read_bytes())
    expect_clean_error(exit_of(main, [str(loose)], capsys), "not inside a run's checkpoints/ folder")
    expect_clean_error(exit_of(main, [str(run[0]), "--threads", "0"], capsys), "--threads=0: expected a positive integer")


def test_data_overrides_rebuild_the_split_and_get_their_own_record(run):
    folder, summary = run
    assert main([str(folder), "--data", "tie_order=shuffle", "--data", "tie_seed=3"]) == 0
    name = f"best-epoch{summary['best_epoch']:03d}+tie_order=shuffle+tie_seed=3.json"
    record = json.loads((folder / "evaluations" / name).read_text())
    assert record["data_overrides"] == {"tie_order": "shuffle", "tie_seed": 3}
    # ML-100K has ties between a user's last ratings: another tie order moves some held-out targets
    assert record["metrics"]["test/ndcg@10"] != pytest.approx(summary["test"]["test/ndcg@10"], abs=1e-9)


def test_bad_data_overrides_are_clean_errors(run, capsys):
    folder = str(run[0])
    expect_clean_error(exit_of(main, [folder, "--data", "tie_order"], capsys), "expected KEY=VALUE")
    expect_clean_error(exit_of(main, [folder, "--data", "tie_sed=1"], capsys), "no data option 'tie_sed'")


def test_a_checkpoint_replaced_while_being_read_is_a_clean_error(run, tmp_path, capsys, monkeypatch):
    """A training run deletes its old best when it saves a new one; here right after the file was read."""
    import shutil

    import ss4rec.evaluate_checkpoint as evaluate

    folder = tmp_path / "run"
    shutil.copytree(run[0], folder)
    checkpoint = folder / "checkpoints" / "last.ckpt"
    real = evaluate.read_model_checkpoint

    def read_then_replace(path):
        saved = real(path)
        checkpoint.unlink()
        return saved

    monkeypatch.setattr(evaluate, "read_model_checkpoint", read_then_replace)
    expect_clean_error(exit_of(main, [str(checkpoint)], capsys), "disappeared while being read")
