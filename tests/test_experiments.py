"""Every ``conf/experiment/`` file composes into a config the trainer accepts, and the ML-1M variants change
only what their header says."""

from __future__ import annotations

import pytest

from composing import compose_train, config_names
from ss4rec.config_checks import check_train_config
from ss4rec.errors import ConfigError
from ss4rec.paths import CONFIG_DIR
from ss4rec.training import resolved

NEEDS_RUNS = {"ml1m_rating", "ml1m_rating_ffn", "ml1m_rating_autorec", "ml100k_rating", "ml100k_rating_autorec"}


def _flat(cfg) -> dict:
    """The run's config as ``training.resolved`` records it, as ``{dotted.key: value}``."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(resolved(cfg), "")
    return out


@pytest.mark.parametrize("name", [n for n in config_names("experiment") if n not in NEEDS_RUNS])
def test_every_experiment_composes_and_passes_the_config_checks(name, tmp_path):
    """(The ML-25M experiments ask for a GPU, which the checks refuse where none is visible: ``trainer=cpu``
    here, as their end-to-end tests run them. The rating experiments read other runs, whose checkpoints are not in
    git: their own tests below.)"""
    cfg = compose_train([f"experiment={name}", *(["trainer=cpu"] if name.startswith("ml25m") else [])], tmp_path)
    check_train_config(cfg, check_checkpoint=False)
    assert cfg.experiment_name == name


@pytest.mark.parametrize(("name", "changes"), [("ml1m_paper_unknown", {"model.target_time": "unknown"}),
                                               ("ml1m_ffn", {"model.ffn": True})])  # fmt: skip
def test_ml1m_variants_change_only_their_option(name, changes, tmp_path):
    paper = _flat(compose_train(["experiment=ml1m_paper"], tmp_path))
    variant = _flat(compose_train([f"experiment={name}"], tmp_path))
    differs = {k for k in paper.keys() | variant.keys() if paper.get(k) != variant.get(k)}
    assert differs == {"experiment_name", *changes}
    assert {k: variant[k] for k in changes} == changes


ML1M_RATING = ("ml1m_rating", "ml1m_paper", ["task.target_weighting=batch", "scheduler=null", "task=rating",
               "callbacks.early_stopping.patience=5", "model.use_ratings=true", "model.rating_base_residuals=true",
               "model.rating_base=reports/ml1m/runs/rating/svdpp_oof_s2/*_svdpp_s2",
               "model.rating_base_heldout=reports/ml1m/runs/rating/svdpp_tuned/0_svdpp_s2",
               "init_from=reports/ml1m/runs/pretrain/ss4rec_known_s2", "init_freeze=true"])  # fmt: skip
ML100K_RATING = ("ml100k_rating", "ml100k_rmse", ["trainer.max_epochs=200", "model.use_ratings=true",
                 "model.rating_base_residuals=true", "model.rating_base=reports/ml100k/runs/rating/svdpp_oof_s2/*_svdpp_s2",
                 "model.rating_base_drift=5", "model.rating_base_drift_recent=1", "model.rating_base_drift_calibrate=true",
                 "model.rating_base_drift_lr_scale=30", "init_from=reports/ml100k/runs/default/ss4rec/2_ss4rec_s2",
                 "init_freeze=true"])  # fmt: skip
ML1M_RATING_FFN = ("ml1m_rating_ffn", "ml1m_rating", ["model.ffn=true", "init_from=reports/ml1m/runs/ffn/ss4rec_known_ffn_s2"])
ML100K_RATING_AUTOREC = ("ml100k_rating_autorec", "ml100k_rating", [
    "model.rating_base=reports/ml100k/runs/rating/autorec_oof_s2/*_autorec_s2",
    "model.rating_base_heldout=reports/ml100k/runs/rating/autorec_best/2_autorec_s2"])  # fmt: skip
ML1M_RATING_AUTOREC = ("ml1m_rating_autorec", "ml1m_rating", [
    "model.rating_base=reports/ml1m/runs/rating/autorec_items_oof_s2/*_autorec_s2",
    "model.rating_base_heldout=reports/ml1m/runs/rating/autorec_items/2_autorec_s2"])  # fmt: skip


@pytest.mark.parametrize(("name", "base", "flags"), [ML1M_RATING, ML1M_RATING_FFN, ML1M_RATING_AUTOREC,
                                                       ML100K_RATING, ML100K_RATING_AUTOREC])  # fmt: skip
def test_rating_experiments_are_the_write_ups_commands(name, base, flags, tmp_path):
    """``experiment=<name> seed=<s>`` is the frozen-encoder rating command of the dataset's rating write-up
    (``reports/<data>/rating/README.md``, its base experiment plus flags naming seed <s>'s runs), every option the
    same but the name."""
    command = _flat(compose_train([f"experiment={base}", *flags, "seed=2"], tmp_path))
    experiment = _flat(compose_train([f"experiment={name}", "seed=2"], tmp_path))
    differs = {k for k in command.keys() | experiment.keys() if command.get(k) != experiment.get(k)}
    assert differs == {"experiment_name"}


@pytest.mark.parametrize(("name", "runs"), [
    ("ml1m_rating", ["reports/ml1m/runs/pretrain/ss4rec_known_s1", "reports/ml1m/runs/rating/svdpp_oof_s1/*_svdpp_s1"]),
    ("ml1m_rating_ffn", ["reports/ml1m/runs/ffn/ss4rec_known_ffn_s1", "reports/ml1m/runs/rating/svdpp_oof_s1/*_svdpp_s1"]),
    ("ml1m_rating_autorec", ["reports/ml1m/runs/pretrain/ss4rec_known_s1", "reports/ml1m/runs/rating/autorec_items_oof_s1/*_autorec_s1"]),
    ("ml100k_rating", ["reports/ml100k/runs/default/ss4rec/1_ss4rec_s1", "reports/ml100k/runs/rating/svdpp_oof_s1/*_svdpp_s1"]),
    ("ml100k_rating_autorec", ["reports/ml100k/runs/default/ss4rec/1_ss4rec_s1", "reports/ml100k/runs/rating/autorec_oof_s1/*_autorec_s1"]),
])  # fmt: skip
def test_rating_experiments_name_the_runs_they_need(name, runs, tmp_path, monkeypatch):
    """Where the encoder and SVD++ runs are missing (a fresh clone: checkpoints are not in git), the checks say
    which, for the run's own seed, before any data is read."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_train([f"experiment={name}", "seed=1"], tmp_path)
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg, check_checkpoint=False)
    assert all(run in str(err.value) for run in runs)
    assert f"the header of {CONFIG_DIR / 'experiment' / name}.yaml has the commands" in str(err.value)


def test_an_experiment_naming_no_runs_gets_no_hint(tmp_path, monkeypatch):
    """A bad base named on the command line of an experiment that names none: no pointer to its header."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_train(["experiment=ml100k_rmse", "model.rating_base=missing", "model.use_ratings=true"], tmp_path)
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg, check_checkpoint=False)
    assert "missing" in str(err.value) and "header" not in str(err.value)
