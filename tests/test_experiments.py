"""Every ``conf/experiment/`` file composes into a config the trainer accepts, and the ML-1M variants change
only what their header says."""

from __future__ import annotations

import pytest

from composing import compose_train, config_names
from ss4rec.config_checks import check_train_config
from ss4rec.training import resolved


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


@pytest.mark.parametrize("name", config_names("experiment"))
def test_every_experiment_composes_and_passes_the_config_checks(name, tmp_path):
    """(The ML-25M experiments ask for a GPU, which the checks refuse where none is visible: ``trainer=cpu``
    here, as their end-to-end tests run them.)"""
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
