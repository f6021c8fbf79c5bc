"""benchmarks/autorec_splits.py: its commands for the standard split give the configs of the k = 0 runs recorded in
git (``reports/ml100k/runs``), so the other splits run the same recipe; a later split points every reference at its
own split's runs; finished runs are skipped only with their checkpoint, interrupted ones resume."""

from __future__ import annotations

import json

import pytest

from benchmark_scripts import load_benchmark
from composing import compose_train
from ss4rec.training import resolved

splits = load_benchmark("autorec_splits")

# where the run was written (absolute paths) and whether a terminal showed its progress bar
IGNORED = ("paths.", "ckpt_path", "logger.csv.save_dir", "callbacks.model_checkpoint.dirpath", "trainer.default_root_dir",
           "trainer.enable_progress_bar")  # fmt: skip


def _flat(node, prefix=""):
    out = {}
    for key, value in node.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def assert_the_command_gives_the_record(folder, overrides, tmp_path):
    """Every option the run's record holds (options added since it ran are not in it) has the value the command gives."""
    record = _flat(json.loads((splits.REPO / folder / "metrics.json").read_text())["config"])
    argv = splits.command(tmp_path / "absent", overrides)  # a folder with nothing in it: the full command
    cfg = resolved(compose_train([a for a in argv if not a.startswith("hydra.")], tmp_path))
    composed = _flat(json.loads(json.dumps(cfg)))
    recorded = {k: v for k, v in record.items() if not k.startswith(IGNORED)}
    assert len(recorded) > 60
    assert {k: composed.get(k, "(absent)") for k in recorded} == recorded


@pytest.mark.parametrize("step", range(8))
def test_the_standard_split_commands_are_the_recorded_runs(step, tmp_path):
    assert_the_command_gives_the_record(*list(splits.plan(0, 0))[step], tmp_path)


def test_a_later_split_reads_only_its_own_runs():
    runs = list(splits.plan(3, 2))
    assert len(runs) == 8 and len({folder for folder, _ in runs}) == 8
    for folder, overrides in runs:
        assert "holdout_last3" in str(folder) and "data.holdout_last=3" in overrides and "seed=2" in overrides
        references = [o for o in overrides if o.startswith(("init_from=", "model.rating_base"))]
        assert all("holdout_last3" in o and "_s2" in o for o in references)
    last = runs[-1][1]
    assert sum(o.startswith(("init_from=", "model.rating_base=", "model.rating_base_heldout=")) for o in last) == 3
    assert runs[-1][0].name == "s2" and runs[-1][0].parent.name == splits.RESULT


def _record(folder, status, checkpoint="best-epoch003.ckpt"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"status": status, "checkpoint": f"/elsewhere/{checkpoint}"}))


def test_finished_runs_are_skipped_only_with_their_checkpoint_and_interrupted_ones_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(splits, "REPO", tmp_path)
    run = tmp_path / "run"
    overrides = ["model=autorec"]
    assert splits.command(run, overrides) == ["model=autorec", "threads=1", f"hydra.run.dir={run}"]
    _record(run, "finished")  # the record as git holds it: no checkpoint
    assert splits.command(run, overrides) is not None
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert splits.command(run, overrides)[-1] == f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    (run / "checkpoints" / "best-epoch003.ckpt").write_bytes(b"")
    assert splits.command(run, overrides) is None
    _record(run, "stopped")
    assert splits.command(run, overrides)[-1].startswith("ckpt_path=")


def test_dry_run_prints_the_commands_left_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(splits, "REPO", tmp_path)
    monkeypatch.setattr(splits.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    assert splits.main(["--splits", "2", "--seeds", "1", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and all(line.startswith("python train.py ") for line in lines)
    assert "experiment=ml100k_rating" in lines[-1]


def test_a_failed_run_stops_the_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(splits, "REPO", tmp_path)
    calls = []

    class Done:
        returncode = 3

    monkeypatch.setattr(splits.subprocess, "run", lambda argv, **k: calls.append(argv) or Done())
    assert splits.main(["--splits", "1", "--seeds", "0"]) == 3
    assert len(calls) == 1 and "exited with 3" in capsys.readouterr().err


def test_a_negative_split_is_refused(capsys):
    with pytest.raises(SystemExit):
        splits.main(["--splits", "-1", "--seeds", "0"])
    assert "expected k >= 0" in capsys.readouterr().err


def test_the_ml1m_plan_writes_the_folders_its_rating_experiment_reads(tmp_path):
    """``--data ml1m``: the encoder, the full I-AutoRec run and its five folds go where ``experiment=ml1m_rating_autorec``
    looks for them (``init_from``, ``model.rating_base_heldout``, ``model.rating_base``'s glob), item-column batches."""
    runs = list(splits.plan(0, 1, "ml1m"))
    assert len(runs) == 8 and all("seed=1" in overrides for _, overrides in runs)
    cfg = compose_train(runs[-1][1], tmp_path)
    assert str(runs[0][0]) == cfg.init_from and str(runs[1][0]) == cfg.model.rating_base_heldout
    assert sorted(str(folder) for folder, _ in runs[2:7]) == sorted(
        str(p.relative_to(tmp_path)) for p in [tmp_path / folder for folder, _ in runs[2:7]]
        if p.match(str(tmp_path / cfg.model.rating_base)))  # fmt: skip
    for _, overrides in runs[1:7]:
        assert {"data=ml1m", "model=autorec", "model.batches=items", "optimizer.lr=0.0003"} <= set(overrides)
    assert [o for _, overrides in runs[2:7] for o in overrides if o.startswith("data.holdout_fold=")] == [
        f"data.holdout_fold={f}" for f in range(5)]


def test_ml1m_plans_its_standard_split_only(capsys):
    with pytest.raises(SystemExit):
        splits.main(["--data", "ml1m", "--splits", "0", "1", "--seeds", "0"])
    assert "only the standard split" in capsys.readouterr().err


@pytest.mark.parametrize("step", range(8))
def test_the_ml1m_commands_are_the_recorded_runs(step, tmp_path):
    """``--data ml1m``, seed 0: every command (the encoder, the full I-AutoRec run, its folds, the rating run) gives its
    record's config."""
    assert_the_command_gives_the_record(*list(splits.plan(0, 0, "ml1m"))[step], tmp_path)
