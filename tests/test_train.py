"""The training application end to end on bundled ML-100K (short sequences to stay fast)."""

from __future__ import annotations

import json

import hydra
import numpy as np
import pytest
import torch

from composing import compose_train, config_names
from popularity import popularity_metrics
from ss4rec.lightning_module import RecModule
from ss4rec.models.rating_base import FrozenMF
from ss4rec.serve import load_core
from ss4rec.serve.offline import main as offline_check
from ss4rec.serve.offline import served_metrics
from ss4rec.training import build_datamodule, train

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none"]
# Bounds no honest model crosses on MovieLens, trained or not: published full-ranking HR@10 stays far below
# 0.5 (SASRec ~0.1-0.2 on ML-100K), published ML-100K RMSE above 0.85 (the mean rating's is ~1.1). A model
# reading the held-out item gets HR@10 1, one reading the held-out rating RMSE 0 (tests/cheats.py).
HR10_CEILING = 0.5
RMSE_FLOOR = 0.5


def assert_believable(tested: dict[str, float], task: str) -> None:
    if task != "rating":
        assert 0.0 <= tested["test/ndcg@10"] <= tested["test/hr@10"], tested
        assert tested["test/hr@10"] < HR10_CEILING, f"HR@10 {tested['test/hr@10']}: no honest model, a leak?"
    if task != "ranking":
        assert tested["test/mae"] <= tested["test/rmse"], tested
        assert tested["test/rmse"] > RMSE_FLOOR, f"RMSE {tested['test/rmse']}: no honest model, a leak?"


def _model_class(name: str):
    cfg = compose_train([f"model={name}"])
    return hydra.utils.get_class(cfg.model._target_)


def _cases() -> list[tuple[str, list[str]]]:
    cases = []
    for name in config_names("model"):
        cls = _model_class(name)
        if cls.supports_ranking:
            cases.append((name, ["task=ranking"]))
        if cls.supports_rating:
            cases.append((name, ["task=rating"]))
        if cls.supports_rating and cls.supports_ranking and cls.learns_by_gradient:
            cases.append((name, ["task=joint"]))
    cases += [("sasrec", ["task/ranking_loss=bpr"]), ("sasrec", ["task/ranking_loss=sampled_softmax"])]
    return cases


@pytest.mark.parametrize(("model", "task"), _cases(), ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_fast_dev_run(model, task, tmp_path):
    cfg = compose_train([f"model={model}", *task, "debug=fdr", *SMALL], tmp_path)
    summary = train(cfg)
    assert summary["status"] == "finished"
    assert_believable(summary["test"], cfg.task.name)


@pytest.mark.parametrize(("cheat", "task"), [("ReadsTheItem", "ranking"), ("ReadsTheRating", "rating")])
def test_a_model_that_reads_the_answer_fails_the_end_to_end_bounds(cheat, task, tmp_path):
    cfg = compose_train(["model=sasrec", f"model._target_=cheats.{cheat}", f"task={task}", "debug=fdr", *SMALL],
                        tmp_path)
    tested = train(cfg)["test"]
    assert tested["test/hr@1" if task == "ranking" else "test/rmse"] == (1.0 if task == "ranking" else 0.0)
    with pytest.raises(AssertionError, match="a leak"):
        assert_believable(tested, task)


def test_metrics_json_checkpoint_reload_and_resume(tmp_path):
    run = tmp_path / "run"
    cfg = compose_train(["model=sasrec", "debug=limit", *SMALL], run)
    summary = train(cfg)
    written = json.loads((run / "metrics.json").read_text())
    for key in ("test", "best_val", "best_epoch", "epochs", "wall_time_s", "parameters", "peak_memory_mb",
                "history", "config", "checkpoint", "model", "data", "seed", "mask_seen", "status"):
        assert key in written, key
    assert written["model"] == "sasrec" and written["data"] == "ml100k" and written["status"] == "finished"
    assert {f"test/{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (1, 5, 10, 20)} <= written["test"].keys()
    assert [row["epoch"] for row in written["history"]] == [0, 1]
    assert all("val/ndcg@10" in row and "train/loss" in row for row in written["history"])
    # the history is aligned with the checkpoint callback's own choice of the best epoch
    assert written["checkpoint"].endswith(f"best-epoch{written['best_epoch']:03d}.ckpt")
    assert written["best_val"]["val/ndcg@10"] == max(r["val/ndcg@10"] for r in written["history"])

    # the best checkpoint reloads on CPU with no arguments and reproduces the test metrics
    module = RecModule.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    datamodule = build_datamodule(cfg)
    import lightning as L

    again = L.Trainer(logger=False, enable_progress_bar=False, limit_test_batches=2, enable_model_summary=False)
    result = again.test(module, datamodule=datamodule, verbose=False)[0]
    assert result["test/ndcg@10"] == pytest.approx(written["test"]["test/ndcg@10"], abs=1e-6)

    # resuming from last.ckpt continues at epoch 2 from the checkpoint's weights and keeps the history;
    # a fresh run with max_epochs=3 would also end with epochs [0, 1, 2], so what runs is watched too
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2 * 3  # debug=limit: 3 training batches an epoch
    steps = []
    real_step = RecModule.training_step

    def watched_step(self, batch, batch_idx):
        if not steps:  # the weights the first resumed step starts from
            steps.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        steps.append((self.current_epoch, self.global_step))
        return real_step(self, batch, batch_idx)

    resumed_dir = tmp_path / "resumed"
    cfg2 = compose_train(
        ["model=sasrec", "debug=limit", "trainer.max_epochs=3", f"ckpt_path={run}/checkpoints/last.ckpt", *SMALL],
        resumed_dir,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RecModule, "training_step", watched_step)
        resumed = train(cfg2)
    start, trained = steps[0], steps[1:]
    assert trained == [(2, 6), (2, 7), (2, 8)]  # only epoch 2 trains, its step count continuing from 6
    for name, value in last["state_dict"].items():
        assert torch.equal(start[name], value), name
    assert resumed["epochs"] == 3
    assert [row["epoch"] for row in resumed["history"]] == [0, 1, 2]
    assert resumed["history"][:2] == written["history"]  # epochs 0 and 1 come from the checkpoint
    assert resumed["resumed_from"] == {"checkpoint": str((run / "checkpoints" / "last.ckpt").resolve()), "epoch": 2}
    assert "resumed_from" not in written


def test_history_survives_testing_an_earlier_checkpoint(tmp_path):
    """Testing the best checkpoint restores callback states; the summary must keep every epoch."""
    # mode=min on NDCG makes the (untrained) first epoch the "best" one
    cfg = compose_train(["model=sasrec", "debug=limit", "trainer.max_epochs=3", "task.mode=min", *SMALL], tmp_path)
    summary = train(cfg)
    assert summary["best_epoch"] < 2
    assert [row["epoch"] for row in summary["history"]] == [0, 1, 2]
    assert summary["checkpoint"].endswith(f"best-epoch{summary['best_epoch']:03d}.ckpt")


def test_weights_really_train(tmp_path):
    """A few epochs of SASRec on ML-100K beat popularity on the same split (counted directly from the store,
    tests/popularity.py), and stay below what no honest model reaches."""
    cfg = compose_train(["model=sasrec", "trainer.max_epochs=3", "data.max_len=50", "logger=none",
                         "callbacks=none"], tmp_path)
    tested = train(cfg)["test"]
    popularity = popularity_metrics(build_datamodule(cfg).store, "test")
    assert tested["test/hr@10"] > popularity["hr@10"], (tested, popularity)
    assert tested["test/ndcg@10"] > popularity["ndcg@10"], (tested, popularity)
    assert_believable(tested, "ranking")


@pytest.mark.parametrize("group", ["model", "data", "task", "trainer", "logger", "callbacks", "debug", "experiment"])
def test_every_config_composes_and_instantiates(group, tmp_path):
    for name in config_names(group):
        extra = ["data.source.path=ratings.csv"] if (group, name) == ("data", "path") else []
        cfg = compose_train([f"{group}={name}", *extra], tmp_path)
        objective = hydra.utils.instantiate(cfg.task.objective)
        assert objective.uses_ranking or objective.uses_rating
        model = hydra.utils.instantiate(cfg.model, n_items=50, n_users=7)
        assert isinstance(model, torch.nn.Module)
        if cfg.get("scheduler"):  # e.g. the ML-1M protocol's ReduceLROnPlateau
            optimizer = hydra.utils.instantiate(cfg.optimizer)(model.parameters())
            assert hasattr(hydra.utils.instantiate(cfg.scheduler)(optimizer), "step")
        datamodule = hydra.utils.instantiate(cfg.data)  # no download or parsing happens here
        assert datamodule.train_format == "sequence"
        for spec in (cfg.get("logger") or {}).values():
            if spec and group == "logger":
                assert hydra.utils.instantiate(spec) is not None
        runnable = cfg.trainer.accelerator != "gpu" or torch.cuda.is_available()
        if group in ("trainer", "callbacks") and runnable:
            for spec in (cfg.get("callbacks") or {}).values():
                if spec:
                    hydra.utils.instantiate(spec)
            hydra.utils.instantiate(cfg.trainer, logger=False)


def test_override_typo_is_a_clear_error():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="hiden"):
        compose_train(["model=sasrec", "model.hiden=3"])


def test_wandb_logger_runs_offline_and_finishes(tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_train(["model=pop", "logger=wandb", "trainer.enable_progress_bar=false", "threads=1",
                         "data.max_len=20"], tmp_path)
    summary = train(cfg)
    assert summary["status"] == "finished"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # an offline run was written into the run folder
    assert wandb.run is None  # and finished, so the next multirun job starts its own


@pytest.mark.parametrize("base", ["mf", "svdpp", "timesvdpp", "autorec"])
def test_a_rating_base_run_starts_from_the_base_runs_predictions(tmp_path, base):
    """SS4Rec on a frozen MF, SVD++ or timeSVD++ (model.rating_base) with a learning rate too small to move its
    zero-started correction scores the base run's validation and test RMSE: the base run's tables (SVD++'s
    user factor over the training part; timeSVD++'s time terms at the held-out rating's time), read by user and
    item index on the same split, and nothing else; the checkpoint, not the base run, then serves the test."""
    fast = ["optimizer.lr=0.05"] if base == "timesvdpp" else []  # time terms far from their zero start
    mf_cfg = compose_train([f"model={base}", "task=rating", "debug=limit", *fast, *SMALL], tmp_path / "mf")
    mf = train(mf_cfg)
    cfg = compose_train(["model=ss4rec", "task=rating", "model.use_ratings=true", f"model.rating_base={tmp_path / 'mf'}",
                         "optimizer.lr=1e-12", "debug=limit", *SMALL], tmp_path / "ss4rec")  # fmt: skip
    summary = train(cfg)
    assert summary["status"] == "finished"
    for row in summary["history"]:
        assert row["val/rmse"] == pytest.approx(mf["best_val"]["val/rmse"], abs=1e-5)
    assert summary["test"]["test/rmse"] == pytest.approx(mf["test"]["test/rmse"], abs=1e-5)
    served = load_core(tmp_path / "ss4rec", state_dir=tmp_path / "state", restore=False)  # its training users
    assert served_metrics(served, ranks=False)["rmse"] == pytest.approx(summary["test"]["test/rmse"], abs=1e-5)
    assert summary["test"]["test/rmse"] != pytest.approx(train(compose_train(
        ["model=ss4rec", "task=rating", "model.use_ratings=true", "debug=limit", *SMALL], tmp_path / "plain"
    ))["test"]["test/rmse"], abs=1e-3)  # fmt: skip - without the base the same run predicts otherwise


def test_recent_targets_reach_the_rating_loss_of_a_training_run(tmp_path):
    """task.rating_recent_targets end to end: the training batches' places reach the objective (a run that weighs
    its users' last targets ten times trains to another loss from the same start), and the run finishes."""
    losses = []
    for weight in (1.0, 10.0):
        summary = train(compose_train(["model=ss4rec", "task=rating", "task.rating_recent_targets=3",
                                       f"task.rating_recent_weight={weight}", "debug=limit", *SMALL], tmp_path / str(weight)))  # fmt: skip
        assert summary["status"] == "finished"
        losses.append(summary["history"][0]["train/rating_loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_a_recent_drift_weight_trains_from_the_training_batches_places(tmp_path):
    """model.rating_base_drift_recent (and _calibrate) end to end: the training batches' places from the end reach
    the model, the recent weight moves off its zero start, and holding the recent targets out of the network
    (calibrate) trains another network from the same start."""
    train(compose_train(["model=mf", "task=rating", "debug=limit", *SMALL], tmp_path / "mf"))
    runs = {}
    for calibrate in ("false", "true"):
        folder = tmp_path / f"calibrate_{calibrate}"
        summary = train(compose_train(["model=ss4rec", "task=rating", "model.use_ratings=true", f"model.rating_base={tmp_path / 'mf'}",
                                       "model.rating_base_residuals=true", "model.rating_base_drift=3", "model.rating_base_drift_recent=2",
                                       "model.rating_base_drift_lr_scale=30", f"model.rating_base_drift_calibrate={calibrate}",
                                       "debug=limit", *SMALL], folder))  # fmt: skip
        assert summary["status"] == "finished"
        state = torch.load(summary["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
        assert float(state["model.drift_weight_recent"]) != 0.0
        runs[calibrate] = state
        # served (the residual inputs, the drift columns and the stage): the run's test RMSE
        served = served_metrics(load_core(folder, state_dir=folder / "state", restore=False), ranks=False)
        assert served["rmse"] == pytest.approx(summary["test"]["test/rmse"], abs=1e-5)
        assert offline_check([str(folder), "--as-new-users"]) == 0  # every user served as a new one
        assert offline_check([str(folder), "--as-new-users", "--new-users=average_user", "--split=valid", "--last-events=2"]) == 0
    assert not torch.equal(runs["false"]["model.rating_head.mlp.0.weight"], runs["true"]["model.rating_head.mlp.0.weight"])


@pytest.mark.parametrize(("base", "options"), [("svdpp", []), ("timesvdpp", []), ("autorec", []),
                                               ("autorec", ["model.batches=items"])])  # fmt: skip
def test_a_cross_fitted_rating_base_scores_held_out_ratings_on_the_mean_of_its_runs(tmp_path, base, options):
    """The K runs of a cross-fitting (data.holdout_folds) given as a glob: each is trained without its fold, and
    an SS4Rec on them whose correction cannot move (lr 1e-12) scores validation and test on the runs' mean
    (timeSVD++'s at the held-out rating's time). I-AutoRec trains on batches of users or of item columns."""
    folds = [train(compose_train([f"model={base}", "task=rating", "debug=limit", "optimizer.lr=0.05", "data.holdout_folds=2",
                                  f"data.holdout_fold={k}", *options, *SMALL], tmp_path / "folds" / f"run{k}")) for k in (0, 1)]  # fmt: skip
    assert folds[0]["best_val"]["val/rmse"] != pytest.approx(folds[1]["best_val"]["val/rmse"], abs=1e-3)
    pattern = str(tmp_path / "folds" / "run*")
    cfg = compose_train(["model=ss4rec", "task=rating", "model.use_ratings=true", f"model.rating_base='{pattern}'",
                         "model.rating_base_residuals=true", "optimizer.lr=1e-12", "debug=limit", *SMALL], tmp_path / "ss4rec")  # fmt: skip
    summary = train(cfg)
    assert summary["status"] == "finished"
    datamodule = build_datamodule(cfg)
    store = datamodule._ready()
    base = FrozenMF(store.n_users, store.n_items, pattern).double()
    base.fill(store)
    users = torch.arange(store.n_users)
    for stage, offset in (("val", 2), ("test", 1)):
        rows = store.offsets[1:] - offset  # each user's held-out rating
        items = torch.from_numpy(store.items[rows].astype(np.int64))
        times = torch.from_numpy(store.times[rows].astype(np.int64))
        with torch.no_grad():
            predicted = base(base.user_part(users, times=times), items).clamp(*datamodule.rating_range)  # as scored
            error = torch.from_numpy(store.ratings[rows].astype(np.float64)) - predicted
        expected = float(error.pow(2).mean().sqrt())
        got = summary["history"][0]["val/rmse"] if stage == "val" else summary["test"]["test/rmse"]
        assert got == pytest.approx(expected, abs=1e-5)
        fold_record = folds[0]["best_val" if stage == "val" else "test"]
        assert expected != pytest.approx(fold_record[f"{stage}/rmse"], abs=1e-3)


def test_a_models_default_batch_size_applies_only_when_data_batch_size_is_null():
    """I-AutoRec trains on 256 users (or item columns, model.batches=items) a batch unless data.batch_size says
    otherwise; other history models keep 64."""
    modules = {(model, tuple(extra)): build_datamodule(compose_train([f"model={model}", "task=rating", *extra]))
               for model, extra in (("autorec", []), ("autorec", ["data.batch_size=32"]), ("svdpp", []),
                                    ("autorec", ["model.batches=items"]))}  # fmt: skip
    sizes = {key: (dm.train_format, dm.train_batch_size) for key, dm in modules.items()}
    assert sizes == {("autorec", ()): ("history", 256), ("autorec", ("data.batch_size=32",)): ("history", 32),
                     ("svdpp", ()): ("history", 64), ("autorec", ("model.batches=items",)): ("columns", 256)}  # fmt: skip
    assert len(next(iter(modules["autorec", ("model.batches=items",)].train_dataloader()))["items"].unique()) == 256


def test_the_onednn_primitive_cache_is_off_unless_the_user_set_it():
    """oneDNN's per-shape primitive cache grew a rating run's memory every epoch (the OOM killer after 35 epochs on
    ML-100K); importing the trainer turns it off before the first primitive, and keeps a value the user gave."""
    import os
    import subprocess
    import sys

    code = "import ss4rec.training, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    for given, expected in ((None, "0"), ("64", "64")):
        extra = {} if given is None else {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": given}
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True, timeout=120)
        assert out.stdout.strip() == expected
