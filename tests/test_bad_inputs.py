"""Bad input at every entry point: exit status 2, ``error: <key or file>: <what is allowed>``, no traceback.

Most cases call each command's main function in-process (the same exit path as the command line: Hydra's
``main`` or ``main(argv)`` ending in ``sys.exit``); a few run the real commands in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from clean_errors import expect_clean_error
from ss4rec.data.sources import KINDS
from ss4rec.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_hydra_main(main, argv, monkeypatch, capsys) -> tuple[int, str]:
    # loggers set up by an earlier in-process run may still point at that test's closed capture stream
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:
        main()
    return stopped.value.code, capsys.readouterr().err


@pytest.fixture
def train_cli(monkeypatch, capsys, tmp_path):
    """``python train.py <overrides>`` in-process: returns (exit status, stderr)."""
    main = _train_script().main

    def call(*overrides: str) -> tuple[int, str]:
        argv = ["train.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}", "logger=none"]
        return run_hydra_main(main, argv, monkeypatch, capsys)

    return call


_expect = expect_clean_error


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# ---- train.py: one case per option ---------------------------------------------------------------------
TRAIN_CASES = [
    (["data.batch_size=-1"], r"data\.batch_size=-1: expected a positive integer or null"),
    (["data.eval_batch_size=0"], r"data\.eval_batch_size=0: expected a positive integer"),
    (["data.max_len=abc"], r"data\.max_len='abc': expected a positive integer"),
    (["data.train_stride=500", "data.max_len=50"], r"data\.train_stride=500: expected null or at most data\.max_len=50"),
    (["data.train_stride=500", "data.train_max_len=400"], r"data\.train_stride=500: expected null or at most data\.train_max_len=400"),
    (["data.train_max_len=0"], r"data\.train_max_len=0: expected a positive integer or null"),
    (["task=rating", "model.rating_base_residuals=true"], r"model\.rating_base_residuals=true: expected false without model\.rating_base"),
    (["task.rating_recent_targets=5"], r"task\.rating_recent_targets=5: expected 0 without a rating loss"),
    (["model=mf", "task=rating", "task.rating_recent_targets=5"], r"task\.rating_recent_targets=5: expected 0 with MF, which trains on pairs batches"),
    (["model=autorec", "model.batches=items", "task=rating", "task.rating_recent_targets=5"], r"expected 0 with IAutoRec, which trains on columns batches"),
    (["model=autorec", "task=rating", "task.rating_recent_targets=5"], r"expected 0 with IAutoRec, which trains on history batches"),
    (["task=rating", "task.rating_recent_weight=0"], r"task\.rating_recent_weight=0: expected a finite number > 0"),
    (["task=rating", "model.rating_base_drift=5"], r"model\.rating_base_drift=5: expected 0 without model\.rating_base"),
    (["task=rating", "model.rating_base_drift=-1"], r"model\.rating_base_drift=-1: expected an integer >= 0"),
    (["task=rating", "model.rating_base_drift_recent=5"],
     r"model\.rating_base_drift_recent=5: expected 0 without model\.rating_base_drift"),
    (["task=rating", "model.rating_base_drift_recent=-2"], r"model\.rating_base_drift_recent=-2: expected an integer >= 0"),
    (["task=rating", "model.rating_base_drift_calibrate=true"],
     r"model\.rating_base_drift_calibrate=true: expected false without model\.rating_base_drift_recent"),
    (["task=rating", "model.rating_base_drift_lr_scale=0"], r"model\.rating_base_drift_lr_scale=0: expected a finite number > 0"),
    (["task=rating", "model.rating_base_heldout=runs/full"], r"model\.rating_base_heldout='runs/full': expected null without a cross-fitted model\.rating_base"),
    (["model=sasrec", "data.train_max_len=400"], r"model\.max_len=200: expected at least data\.train_max_len=400"),
    (["data.duplicates=sometimes"], r"data\.duplicates='sometimes': expected one of keep_all, keep_first"),
    (["data.k_core=-2"], r"data\.k_core=-2: expected an integer >= 0"),
    (["data.holdout_last=-1"], r"data\.holdout_last=-1: expected an integer >= 0"),
    (["data.holdout_folds=5"], r"data\.holdout_folds=5: expected 0 with model ss4rec\.models\.ss4rec\.SS4Rec \(a held-out fold is for the mf, svdpp, timesvdpp and autorec runs"),
    (["model=mf", "task=rating", "data.holdout_folds=3", "data.holdout_fold=3"], r"data\.holdout_fold=3: expected a fold in 0\.\.2 \(data\.holdout_folds=3\)"),
    (["data.source.kind=ftp"], r"data\.source: unknown data source kind 'ftp'; known: " + ", ".join(sorted(KINDS))),
    (["data=path", "data.source.path=/no/such/ratings.csv"], r"data\.source\.path='/no/such/ratings\.csv': expected an existing ratings file"),
    (["model.hidden=0"], r"model\.hidden=0: expected a positive integer"),
    (["model.dropout=1.5"], r"model\.dropout=1\.5: expected a number in \[0, 1\)"),
    (["model.time_unit=year"], r"model\.time_unit='year': expected one of second, minute, hour, day"),
    (["model.blocks=s6_only"], r"model\.blocks='s6_only': expected one of both, s5_only, mamba_only"),
    (["model=autorec", "task=rating", "model.batches=columns"], r"model\.batches='columns': expected one of users, items"),
    (["model.ffn=maybe"], r"model\.ffn='maybe': expected true or false"),
    (["model=sasrec", "model.n_heads=3"], r"model\.n_heads=3: expected a divisor of model\.hidden=64"),
    (["+model.hiddn=32"], r"model\.hiddn: unknown option of SS4Rec; known: blocks, .*hidden"),
    (["model=ncf", "model.mlp_hidden=[]"], r"model\.mlp_hidden=\[\]: expected a non-empty list of positive integers"),
    (["task.monitor=val/auc"], r"task\.monitor='val/auc': expected one of val/hr@1, .*val/ndcg@10"),
    (["task=rating", "task.monitor=val/ndcg@10"], r"task\.monitor='val/ndcg@10': expected one of val/rmse, val/mae"),
    (["task.mode=maximise"], r"task\.mode='maximise': expected one of min, max"),
    (["task.target_weighting=even"], r"task\.target_weighting='even': expected one of batch, uniform"),
    (["task/ranking_loss=bpr", "task.ranking_loss.n_negatives=0"], r"task\.ranking_loss\.n_negatives=0: expected a positive integer"),
    (["trainer.max_epochs=0"], r"trainer\.max_epochs=0: expected a positive integer, -1 or null"),
    (["trainer.precision=8"], r"trainer\.precision=8: expected one of 64-true"),
    (["trainer.gradient_clip_val=-1"], r"trainer\.gradient_clip_val=-1: expected null or a finite number >= 0"),
    (["+trainer.limit_train_batches=1.5"], r"trainer\.limit_train_batches=1\.5: expected an integer >= 0 \(batches\) or a float"),
    (["+trainer.bogus=1"], r"trainer\.bogus: unknown option of Trainer"),
    (["callbacks.early_stopping.patience=-1"], r"callbacks\.early_stopping\.patience=-1: expected an integer >= 0"),
    (["+callbacks.model_checkpoint.every_n_train_steps=5"], r"every_n_train_steps=5: expected null or 0: checkpoints are written at epoch ends only"),
    (["optimizer.lr=-0.1"], r"optimizer\.lr=-0\.1: expected a finite number > 0"),
    (["optimizer._target_=torch.optim.Adamm"], r"optimizer\._target_='torch\.optim\.Adamm': expected an importable class"),
    (["weight_decay=-1"], r"weight_decay=-1: expected a finite number >= 0"),
    (["evaluation.ks=[]"], r"evaluation\.ks=\[\]: expected a non-empty list of positive integers"),
    (["evaluation.chunk_size=0"], r"evaluation\.chunk_size=0: expected a positive integer"),
    (["evaluation.mask_seen=maybe"], r"evaluation\.mask_seen='maybe': expected true or false"),
    (["seed=-1"], r"seed=-1: expected an integer in \[0, 2\*\*32\)"),
    (["threads=0"], r"threads=0: expected a positive integer or null"),
]


@pytest.mark.parametrize(("overrides", "pattern"), TRAIN_CASES, ids=lambda v: "+".join(v) if isinstance(v, list) else "")
def test_train_rejects_a_bad_option(train_cli, overrides, pattern):
    _expect(train_cli(*overrides), pattern)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_train_rejects_a_gpu_trainer_without_a_gpu(train_cli):
    _expect(train_cli("trainer=gpu"), r"trainer\.accelerator='gpu': expected cpu or auto: no GPU is visible")


def test_train_lists_every_problem_at_once(train_cli):
    err = _expect(train_cli("data.batch_size=0", "model.hidden=-3", "optimizer.lr=0"), r"3 invalid options:")
    for key in ("data.batch_size=0", "model.hidden=-3", "optimizer.lr=0"):
        assert f"\n  {key}: expected" in err


CHECKPOINT_CASES = {
    "text file": (lambda d: _file(d, "notes.ckpt", b"not a checkpoint\n"), r"is not a checkpoint \(not a torch\.save zip"),
    "empty file": (lambda d: _file(d, "empty.ckpt", b""), r"is an empty file"),
    "missing": (lambda d: d / "nope.ckpt", r"no such file; expected a checkpoint such as <run>/checkpoints/last\.ckpt"),
    "directory": (lambda d: d, r"is a directory; expected a checkpoint file"),
    "tensor, not a checkpoint": (lambda d: _saved(d / "t.ckpt", torch.ones(2)), r"is not a Lightning training checkpoint"),
    "truncated checkpoint": (lambda d: _truncated(d / "cut.ckpt"), r"(is not a checkpoint|could not be read|is damaged|damaged archive)"),
}


def _saved(path: Path, value) -> Path:
    torch.save(value, path)
    return path


def _truncated(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0, "global_step": 1}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_train_rejects_a_bad_checkpoint_before_building_anything(train_cli, tmp_path, case):
    make, pattern = CHECKPOINT_CASES[case]
    path = make(tmp_path)
    _expect(train_cli(f"ckpt_path={path}"), r"ckpt_path='.*'.* " + pattern)
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing ran


def test_train_failed_download_is_one_clean_error(train_cli):
    """The issue's case: under train.py a failed download printed a traceback around the DataError."""
    code, err = train_cli("data.source.kind=download", "data.source.base_url=http://127.0.0.1:9/", "data.source.md5=x")
    _expect((code, err), r"(download|fetch|could not)")


def test_full_traceback_on_request(monkeypatch, tmp_path):
    """HYDRA_FULL_ERROR=1: the exception itself propagates (Hydra then prints the whole traceback)."""
    main = _train_script().main
    monkeypatch.setattr(sys, "argv", ["train.py", "model.hidden=0", f"hydra.run.dir={tmp_path}", "logger=none"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    GlobalHydra.instance().clear()
    with pytest.raises(ConfigError, match=r"model\.hidden=0"):
        main()


def test_check_checkpoint_accepts_a_real_checkpoint(tmp_path):
    from ss4rec.checkpoints import read_checkpoint

    path = _saved(tmp_path / "ok.ckpt", {"state_dict": {}, "epoch": 1, "global_step": 3})
    assert read_checkpoint(path)["epoch"] == 1
    with pytest.raises(CheckpointError):
        read_checkpoint(_file(tmp_path, "x.ckpt", b"PK\x03\x04 garbage"))


# ---- python -m ss4rec.data ---------------------------------------------------------------------------------
@pytest.fixture
def data_cli(monkeypatch, capsys, tmp_path):
    from ss4rec.data.__main__ import main

    monkeypatch.setenv("SS4REC_DATA_DIR", str(tmp_path / "cache"))

    def call(*overrides: str) -> tuple[int, str]:
        return run_hydra_main(main, ["ss4rec.data", *overrides], monkeypatch, capsys)

    return call


DATA_CASES = [
    (["data.eval_batch_size=0"], r"data\.eval_batch_size=0: expected a positive integer"),
    (["data.k_core=-1"], r"data\.k_core=-1: expected an integer >= 0"),
    (["force=maybe"], r"force='maybe': expected true or false"),
    (["data.source.kind=zip"], r"unknown data source kind 'zip'"),
    (["data=synthetic", "+data.source.n_row=5"], r"unknown data\.source option\(s\) \['n_row'\]"),
    (["data.length_pool=-1"], r"data\.length_pool=-1: expected an integer >= 0"),
]


@pytest.mark.parametrize(("overrides", "pattern"), DATA_CASES, ids=lambda v: "+".join(v) if isinstance(v, list) else "")
def test_data_command_rejects_a_bad_option(data_cli, overrides, pattern):
    _expect(data_cli(*overrides), pattern)


def test_data_command_names_the_bad_line_of_a_file(data_cli, tmp_path):
    ratings = _file(tmp_path, "r.csv", b"userId,movieId,rating,timestamp\n1,2,3,100\n1,x,3,101\n")
    _expect(data_cli("data=path", f"data.source.path={ratings}"), r"r\.csv:3: malformed line '1,x,3,101'")


def test_data_command_rejects_a_folder_as_ratings_file(data_cli, tmp_path):
    _expect(data_cli("data=path", f"data.source.path={tmp_path}"), r"expected an existing ratings file \(it is a directory\)")


# ---- python -m ss4rec.compare ------------------------------------------------------------------------------
def compare_cli(capsys, *argv: str) -> tuple[int, str]:
    from ss4rec import compare

    try:
        code = compare.main(list(argv))
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


COMPARE_CASES = [
    (["--models", "sasrec,bert4rec"], r"--models='sasrec,bert4rec': expected a comma-separated list of pop, mf"),
    (["--tasks", "ranking,ctr"], r"--tasks='ranking,ctr': expected a comma-separated list of ranking, rating, joint"),
    (["--seeds", "0,one"], r"--seeds='0,one': expected a comma-separated list of integers >= 0"),
    (["data=ml2m"], r"data='ml2m': expected one of ml100k, ml10m"),
    (["epochs"], r"'epochs': expected a Hydra override key=value"),
    (["--models", "sasrec", "--tasks", "ranking", "model.hidden=0"], r"sasrec-ranking: model\.hidden=0: expected a positive integer"),
    (["--models", "sasrec", "--tasks", "ranking", "model.hiden=3"], r"sasrec-ranking: .*hiden"),
    (["--models", "sasrec", "--tasks", "ranking", "data.batch_size=-4"], r"data\.batch_size=-4: expected a positive integer or null"),
]


@pytest.mark.parametrize(("argv", "pattern"), COMPARE_CASES, ids=lambda v: "+".join(v) if isinstance(v, list) else "")
def test_compare_rejects_bad_input_before_training(capsys, tmp_path, argv, pattern):
    _expect(compare_cli(capsys, *argv, "--dry-run", "--reports", str(tmp_path)), pattern)
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_compare_report_only_without_runs(capsys, tmp_path):
    _expect(compare_cli(capsys, "--report-only", "--reports", str(tmp_path)), r"no finished run with test metrics")


# ---- python -m ss4rec.report -------------------------------------------------------------------------------
def report_cli(capsys, *argv: str) -> tuple[int, str]:
    from ss4rec.report.__main__ import main

    try:
        code = main(list(argv))
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


def test_report_rejects_a_missing_runs_folder(capsys, tmp_path):
    _expect(report_cli(capsys, str(tmp_path / "nope")), r"runs '.*nope': no such file or folder")


def test_report_rejects_an_output_that_is_a_file(capsys, tmp_path):
    out = _file(tmp_path, "out.html", b"")
    _expect(report_cli(capsys, str(tmp_path), "--out", str(out)), r"--out='.*out\.html': expected a folder")


def test_report_names_a_half_written_metrics_json(capsys, tmp_path):
    whole = json.dumps({"status": "finished", "model": "pop", "test": {"test/hr@10": 0.1}})
    (tmp_path / "run").mkdir()
    _file(tmp_path / "run", "metrics.json", whole[: len(whole) // 2].encode())
    err = _expect(report_cli(capsys, str(tmp_path), "--out", str(tmp_path / "out")), r"no finished run")
    assert "not valid JSON, truncated or damaged" in err


def test_report_names_failed_runs(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    reason = "the training loss is nan at step 3 (epoch 0, batch 3)"
    _file(tmp_path / "run", "metrics.json", json.dumps({"status": "failed", "reason": reason}).encode())
    _expect(report_cli(capsys, str(tmp_path), "--out", str(tmp_path / "out")), rf"status failed: {re.escape(reason)}")


def test_report_argument_error_is_argparse_usage(capsys):
    code, err = report_cli(capsys)  # no runs at all
    assert code == 2 and "usage: python -m ss4rec.report" in err


# ---- the real commands, in a subprocess (slow to start: a few) ---------------------------------------------
def _command(*args: str, cwd: Path, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "SS4REC_DATA_DIR": str(cwd / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_train_command_bad_option_and_full_error(tmp_path):
    done = _command(str(ROOT / "train.py"), "data.batch_size=-1", cwd=tmp_path)
    _expect((done.returncode, done.stderr), r"^error: invalid option data\.batch_size=-1: expected a positive integer")
    loud = _command(str(ROOT / "train.py"), "data.batch_size=-1", cwd=tmp_path, full_error=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "ConfigError" in loud.stderr


def test_data_compare_report_commands(tmp_path):
    for args, pattern in (
        (["-m", "ss4rec.data", "data.eval_batch_size=0"], r"data\.eval_batch_size=0"),
        (["-m", "ss4rec.compare", "--models", "nope", "--dry-run", "--reports", str(tmp_path)], r"--models='nope'"),
        (["-m", "ss4rec.report", str(tmp_path / "none")], r"no such file or folder"),
    ):
        done = _command(*args, cwd=tmp_path)
        _expect((done.returncode, done.stderr), pattern)


def test_resuming_a_checkpoint_older_than_an_option_left_at_its_default():
    """A checkpoint written before a model option existed resumes when the option is at its default (the
    behaviour the checkpoint was trained with); set otherwise, it is a difference like any other."""
    from omegaconf import OmegaConf

    from composing import compose_train
    from ss4rec.config_checks import check_resume_matches
    from ss4rec.errors import CheckpointError

    cfg = compose_train(["model=ss4rec"])
    old = OmegaConf.to_container(cfg.model, resolve=True)
    del old["rating_profile"]
    checkpoint = {"hyper_parameters": {"model": old,
                                       "objective": OmegaConf.to_container(cfg.task.objective, resolve=True)}}  # fmt: skip
    check_resume_matches("old.ckpt", checkpoint, cfg)
    with pytest.raises(CheckpointError, match="model.rating_profile: null in the checkpoint, true now"):
        check_resume_matches("old.ckpt", checkpoint, compose_train(["model=ss4rec", "model.rating_profile=true"]))


def test_resuming_a_scheduled_checkpoint_with_another_scheduler_is_refused():
    """PyTorch restores a scheduler's settings with its state, so a new schedule on resume would be ignored
    silently; a checkpoint without scheduler state (a fork of a constant-rate run) takes any schedule."""
    from omegaconf import OmegaConf

    from composing import compose_train
    from ss4rec.config_checks import check_resume_matches
    from ss4rec.errors import CheckpointError

    plateau = "{_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, factor: 0.3, patience: %d}"
    cfg = compose_train(["model=sasrec", f"scheduler={plateau % 3}"])
    hparams = {group: OmegaConf.to_container(node, resolve=True)
               for group, node in (("model", cfg.model), ("objective", cfg.task.objective), ("scheduler", cfg.scheduler))}  # fmt: skip
    checkpoint = {"hyper_parameters": hparams, "lr_schedulers": [{"patience": 3, "factor": 0.3}]}
    check_resume_matches("a.ckpt", checkpoint, cfg)
    with pytest.raises(CheckpointError, match=r"scheduler: .*patience.: 3.* in the checkpoint, .*patience.: 1.* now"):
        check_resume_matches("a.ckpt", checkpoint, compose_train(["model=sasrec", f"scheduler={plateau % 1}"]))
    with pytest.raises(CheckpointError, match=r"scheduler: .* in the checkpoint, null now"):
        check_resume_matches("a.ckpt", checkpoint, compose_train(["model=sasrec"]))
    constant = {"hyper_parameters": {**hparams, "scheduler": None}, "lr_schedulers": []}
    check_resume_matches("fork.ckpt", constant, compose_train(["model=sasrec", f"scheduler={plateau % 1}"]))


def test_resuming_with_another_target_weighting_is_refused():
    """The weighting is part of the objective; a checkpoint saved before the option existed was trained with
    ``batch``."""
    from omegaconf import OmegaConf

    from composing import compose_train
    from ss4rec.config_checks import check_resume_matches
    from ss4rec.errors import CheckpointError

    cfg = compose_train(["model=sasrec"])
    old = {"model": OmegaConf.to_container(cfg.model, resolve=True),
           "objective": OmegaConf.to_container(cfg.task.objective, resolve=True)}  # fmt: skip
    check_resume_matches("old.ckpt", {"hyper_parameters": old}, cfg)
    uniform = compose_train(["model=sasrec", "task.target_weighting=uniform"])
    with pytest.raises(CheckpointError, match="task.target_weighting: batch in the checkpoint, uniform now"):
        check_resume_matches("old.ckpt", {"hyper_parameters": old}, uniform)
    check_resume_matches("new.ckpt", {"hyper_parameters": {**old, "target_weighting": "uniform"}}, uniform)
    with pytest.raises(CheckpointError, match="task.target_weighting: uniform in the checkpoint, batch now"):
        check_resume_matches("new.ckpt", {"hyper_parameters": {**old, "target_weighting": "uniform"}}, cfg)


def test_train_rejects_resuming_with_other_model_options(train_cli, tmp_path):
    from omegaconf import OmegaConf

    from composing import compose_train

    cfg = compose_train(["model=sasrec"])
    hparams = {"model": OmegaConf.to_container(cfg.model, resolve=True),
               "objective": OmegaConf.to_container(cfg.task.objective, resolve=True)}  # fmt: skip
    path = _saved(tmp_path / "last.ckpt", {"state_dict": {}, "epoch": 0, "global_step": 5, "hyper_parameters": hparams})
    err = _expect(train_cli("model=sasrec", "model.hidden=32", f"ckpt_path={path}"),
                  r"was trained with other options; resume with the overrides of that run")  # fmt: skip
    assert "model.hidden: 64 in the checkpoint, 32 now" in err
    err = _expect(train_cli("model=sasrec", "task/ranking_loss=bpr", f"ckpt_path={path}"), r"task\.objective\.ranking")


def _rating_base_run(tmp_path: Path, target: str, **data) -> Path:
    """A run folder with a best checkpoint and a metrics.json config: ML-100K defaults plus ``data``."""
    run = tmp_path / "base"
    (run / "checkpoints").mkdir(parents=True)
    _file(run / "checkpoints", "best-epoch003.ckpt", b"")  # never read: the config checks come first
    config = {"data": {"name": "ml100k", "source": {"kind": "bundled", "base_url": None, "md5": None}, "k_core": 5, "duplicates": "keep_all", "tie_order": "file",
                       "tie_seed": 0, "batch_size": 1024, **data}, "model": {"_target_": target}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps({"config": config}))
    return run


def _fold_runs(tmp_path: Path, folds: list[tuple[int, int]]) -> str:
    """Runs of a cross-fitting (``(holdout_folds, holdout_fold)`` each) under one folder; the glob naming them."""
    (tmp_path / "folds").mkdir()
    for i, (k, fold) in enumerate(folds):
        run = _rating_base_run(tmp_path / f"f{i}", "ss4rec.models.svdpp.SVDpp", holdout_folds=k, holdout_fold=fold)
        run.rename(tmp_path / "folds" / f"run{i}")
    return str(tmp_path / "folds" / "run*")


RATING_BASE_CASES = {
    "ranking task": (lambda d: _rating_base_run(d, "ss4rec.models.mf.MF"), ["task=ranking"],
                     r"model\.rating_base='.*base': expected null with task=ranking"),
    "no such folder": (lambda d: d / "nope", ["task=rating"], r"model\.rating_base='.*nope': no such file or run folder"),
    "no checkpoint": (lambda d: (d / "empty").mkdir() or d / "empty", ["task=rating"], r"no checkpoints/best-\*\.ckpt in the folder"),
    "not an MF run": (lambda d: _rating_base_run(d, "ss4rec.models.sasrec.SASRec"), ["task=rating"],
                      r"expected an mf, svdpp, timesvdpp or autorec run \(model=mf\|svdpp\|timesvdpp\|autorec task=rating\); .* trained ss4rec\.models\.sasrec\.SASRec"),
    "another split": (lambda d: _rating_base_run(d, "ss4rec.models.mf.MF", tie_order="shuffle"), ["task=joint"],
                      r"was trained on another split:\n  data\.tie_order: 'shuffle' in the base run, 'file' here"),
    "another holdout_last": (lambda d: _rating_base_run(d, "ss4rec.models.svdpp.SVDpp"), ["task=rating", "data.holdout_last=1"],
                             r"was trained on another split:\n  data\.holdout_last: .* in the base run, 1 here"),
    "a fold missing": (lambda d: _fold_runs(d, [(3, 0), (3, 2)]), ["task=rating"],
                       r"a cross-fitted base is K runs with data\.holdout_folds=K and data\.holdout_fold 0\.\.K-1 once each .*found .*run0 \(fold 0 of 3\), .*run1 \(fold 2 of 3\)"),
    "a fold alone": (lambda d: _rating_base_run(d, "ss4rec.models.svdpp.SVDpp", holdout_folds=5, holdout_fold=1), ["task=rating"],
                     r"a cross-fitted base is K runs .*found .*base \(fold 1 of 5\)"),
    "a glob of nothing": (lambda d: str(d / "nothing*"), ["task=rating"], r"nothing\*': the pattern matches no run folder or \.ckpt file"),
    "held-out run beside one run": (lambda d: _rating_base_run(d, "ss4rec.models.mf.MF"), ["task=rating", "model.rating_base_heldout=x"],
                                    r"model\.rating_base_heldout='x': expected null with a single model\.rating_base run"),
    "held-out run is a fold": (lambda d: _fold_runs(d, [(2, 0), (2, 1)]), ["task=rating", "model.rating_base_heldout=" + "{folds}/run1"],
                               r"model\.rating_base_heldout='.*run1': expected one run trained on every training rating"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RATING_BASE_CASES))
def test_train_rejects_a_rating_base_that_does_not_fit(train_cli, tmp_path, case):
    make, overrides, pattern = RATING_BASE_CASES[case]
    overrides = [each.replace("{folds}", str(tmp_path / "folds")) for each in overrides]
    _expect(train_cli(*overrides, f"model.rating_base={make(tmp_path)}"), pattern)
