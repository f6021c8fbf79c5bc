"""Every ``conf/experiment/`` file composes into a config the trainer accepts, and the ML-1M variants change
only what their header says."""

from __future__ import annotations

import pytest

from composing import compose_train, config_names
from ss4rec.config_checks import check_train_config
from ss4rec.errors import ConfigError
from ss4rec.training import resolved

NEEDS_RUNS = {"ml1m_rating"}


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
    here, as their end-to-end tests run them. ``ml1m_rating`` reads other runs, whose checkpoints are not in git:
    its own tests below.)"""
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


def test_ml1m_rating_is_the_write_ups_command(tmp_path):
    """``experiment=ml1m_rating seed=<s>`` is the frozen-encoder rating command of reports/ml1m/rating/README.md
    (``ml1m_paper`` plus its flags, each path of seed <s>), every option the same but the name."""
    r = "reports/ml1m/runs/rating"
    flags = ["task.target_weighting=batch", "scheduler=null", "task=rating", "model.use_ratings=true",
             "model.rating_base_residuals=true", "callbacks.early_stopping.patience=5", "seed=2",
             f"model.rating_base={r}/svdpp_oof_s2/*_svdpp_s2", f"model.rating_base_heldout={r}/svdpp_tuned/0_svdpp_s2",
             "init_from=reports/ml1m/runs/pretrain/ss4rec_known_s2", "init_freeze=true"]  # fmt: skip
    command = _flat(compose_train(["experiment=ml1m_paper", *flags], tmp_path))
    experiment = _flat(compose_train(["experiment=ml1m_rating", "seed=2"], tmp_path))
    differs = {k for k in command.keys() | experiment.keys() if command.get(k) != experiment.get(k)}
    assert differs == {"experiment_name"}


def test_ml1m_rating_names_the_runs_it_needs(tmp_path, monkeypatch):
    """Where the encoder and SVD++ runs are missing (a fresh clone: checkpoints are not in git), the checks say
    which, for the run's own seed, before any data is read."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_train(["experiment=ml1m_rating", "seed=1"], tmp_path)
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg, check_checkpoint=False)
    message = str(err.value)
    assert "reports/ml1m/runs/pretrain/ss4rec_known_s1" in message
    assert "reports/ml1m/runs/rating/svdpp_oof_s1/*_svdpp_s1" in message
