"""``ss4rec.compare`` (the make compare command) and the Optuna ``hparams_search`` config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from composing import config_names
from ss4rec import compare
from ss4rec.paths import CONFIG_DIR

from .conftest import MODELS, SEEDS, fake_run, write_run

HAS_TRAIN_CONFIG = (CONFIG_DIR / "train.yaml").is_file() and (CONFIG_DIR / "data" / "ml100k.yaml").is_file()
needs_config = pytest.mark.skipif(
    not HAS_TRAIN_CONFIG, reason="conf/train.yaml or conf/data/ml100k.yaml not there yet"
)


def compose_train(overrides: list[str], hydra_config: bool = False):
    import ss4rec.training  # noqa: F401  (registers the ${uid:} resolver the hydra config uses)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_config)


def test_train_script_is_the_repository_one():
    assert (
        compare.TRAIN_SCRIPT.name == "train.py" and (compare.TRAIN_SCRIPT.parent / "pyproject.toml").is_file()
    )


def test_plan_trains_every_model_for_ranking_and_the_rating_models_for_ratings():
    jobs = compare.plan(list(compare.MODELS), [0, 1, 2], ["ranking", "rating"], list(compare.RATING_MODELS))
    assert {j.model for j in jobs if j.task == "ranking"} == set(compare.MODELS) - set(compare.RATING_ONLY) == set(MODELS)
    assert "svdpp-rating" in {j.name for j in jobs} and "svdpp" in compare.RATING_ONLY  # rating only
    assert {j.model for j in jobs if j.task == "rating"} == set(compare.RATING_MODELS)
    by_name = {j.name: j for j in jobs}
    assert "task/ranking_loss=bpr" in by_name["ncf-ranking"].overrides  # sampled negatives for pairs models
    assert by_name["ncf-rating"].overrides == ()
    command = by_name["sasrec-ranking"].command("ml1m", Path("/r/ml1m/runs"), ["trainer.max_epochs=3"])
    assert command[:3] == [sys.executable, str(compare.TRAIN_SCRIPT), "--multirun"]
    for part in (
        "data=ml1m",
        "model=sasrec",
        "task=ranking",
        "seed=0,1,2",
        "hydra.sweep.dir=/r/ml1m/runs/sasrec-ranking",
    ):
        assert part in command
    assert command[-1] == "trainer.max_epochs=3"  # the user's overrides come last and win


def test_dry_run_prints_the_multiruns(capsys, tmp_path: Path):
    assert compare.main(["data=ml1m", "--models", "mf,sasrec", "--dry-run", "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("--multirun") == 3  # mf ranking, mf rating, sasrec ranking
    assert "mf-rating" in out and "sasrec-rating" not in out and "data=ml1m" in out
    assert not (tmp_path / "ml1m").exists()


def test_masked_runs_get_their_own_folders(capsys, tmp_path: Path):
    assert compare.variant_of(["trainer.max_epochs=3"]) == ""
    assert compare.variant_of(["evaluation.mask_seen=true"]) == "masked"
    argv = ["data=ml100k", "--models", "mf", "--tasks", "ranking", "--dry-run", "--reports", str(tmp_path)]
    assert compare.main([*argv, "evaluation.mask_seen=true"]) == 0
    out = capsys.readouterr().out
    assert "hydra.sweep.dir=" + str(tmp_path.resolve() / "ml100k" / "runs" / "mf-ranking-masked") in out


@pytest.mark.parametrize("option", ["--model", "--bogus"])
def test_unknown_option_is_an_error(option: str, tmp_path: Path):
    with pytest.raises(SystemExit):
        compare.main(["data=ml100k", option, "mf", "--dry-run", "--reports", str(tmp_path)])


def test_report_only_rebuilds_from_existing_runs(tmp_path: Path, capsys):
    runs = tmp_path / "ml100k" / "runs"
    for model in ("pop", "mf"):
        for seed in SEEDS:
            write_run(runs / f"{model}-ranking", f"{seed}_{model}_s{seed}", fake_run(model, seed, runs))
    # runs kept beside the job folders (a search's trials, a tuned setting) are not compare's: left out
    write_run(runs / "optuna" / "mf", "0_mf_s0", fake_run("mf", 0, runs) | {"test": {"test/hr@10": 0.99}})
    write_run(runs / "tuned", "0_sasrec_s0", fake_run("sasrec", 0, runs))
    assert compare.main(["data=ml100k", "--report-only", "--reports", str(tmp_path)]) == 0
    table = (tmp_path / "ml100k" / "results.md").read_text()
    assert "| pop |" in table and "| mf |" in table
    assert "sasrec" not in table and "0.99" not in table and "skipped" not in table
    assert "python -m ss4rec.compare data=ml100k" in table and "--report-only" not in table
    assert compare.finished_seeds(runs / "mf-ranking") == set(SEEDS)
    assert compare.finished_seeds(runs / "ncf-ranking") == set()
    # --skip-finished only reruns what is missing
    assert compare.main(["data=ml100k", "--models", "mf", "--tasks", "ranking", "--skip-finished",
                         "--dry-run", "--reports", str(tmp_path)]) == 0  # fmt: skip
    assert "every seed finished, skipped" in capsys.readouterr().out


def test_report_only_without_runs_fails_clearly(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stopped:  # bad input: status 2, as every entry point (ss4rec.errors)
        compare.main(["data=ml100k", "--report-only", "--reports", str(tmp_path)])
    assert stopped.value.code == 2
    assert "error: no finished run" in capsys.readouterr().err


@needs_config
def test_every_planned_job_composes():
    jobs = compare.plan(
        list(compare.MODELS), [0], ["ranking", "rating", "joint"], list(compare.RATING_MODELS)
    )
    for job in jobs:
        if not (CONFIG_DIR / "model" / f"{job.model}.yaml").is_file():
            continue  # a model another issue has not delivered yet
        cfg = compose_train([f"model={job.model}", f"task={job.task}", "seed=0", *job.overrides])
        assert cfg.task.name == job.task
        if job.model in ("mf", "ncf") and job.task != "rating":
            assert cfg.task.ranking_loss._target_ == "ss4rec.objectives.BPR"


SEARCHES = [name for name in config_names("hparams_search") if name.endswith("_optuna")]


def test_every_model_has_its_own_search():
    assert SEARCHES == ["gru4rec_optuna", "mamba4rec_optuna", "sasrec_optuna", "ss4rec_optuna"]


@needs_config
@pytest.mark.parametrize("search", SEARCHES)
def test_optuna_search_composes_and_every_searched_key_exists(search):
    model = search.removesuffix("_optuna")
    cfg = compose_train([f"hparams_search={search}"], hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.n_trials == 20
    assert sweeper.study_name == f"{model}_ml100k"
    assert cfg.model._target_.rsplit(".", 1)[-1].lower() == model and cfg.task.monitor == "val/ndcg@10"
    assert {"optimizer.lr", "model.hidden", "model.dropout", "model.n_layers", "weight_decay"} <= set(sweeper.params)
    for key in sweeper.params:  # a misspelt key would be added to the job config silently by the sweeper
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", f"{search}: no config key {key}"


@pytest.mark.slow
@needs_config
def test_compare_end_to_end_on_two_cheap_models(tmp_path: Path):
    """Real multiruns of train.py (one batch each), then the report."""
    command = [sys.executable, "-m", "ss4rec.compare", "data=ml100k", "--models", "pop,gru4rec", "--seeds", "0,1",
               "--reports", str(tmp_path), "debug=fdr"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "ml100k" / "results.md").read_text()
    for label in ("| pop [ranking] |", "| pop [rating] |", "| gru4rec |"):
        assert label in table
    n_runs = len(list((tmp_path / "ml100k" / "runs").rglob("metrics.json")))
    assert n_runs == 6  # pop ranking, pop rating, gru4rec ranking; 2 seeds each


@pytest.mark.slow
@needs_config
def test_optuna_search_runs_two_trials(tmp_path: Path):
    """Two one-batch trials through the real sweeper; the best value is a validation NDCG@10."""
    command = [sys.executable, str(compare.TRAIN_SCRIPT), "hparams_search=ss4rec_optuna", "debug=fdr",
               "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    import yaml

    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "optimizer.lr",
        "model.hidden",
        "model.dropout",
        "model.n_layers",
        "model.d_state",
    }
    assert 0.0 <= best["best_value"] <= 1.0
