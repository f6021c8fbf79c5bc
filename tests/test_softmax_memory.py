"""Full cross-entropy over a huge catalogue is refused, or warned about, with the memory it would need."""

from __future__ import annotations

import logging

import pytest

from composing import compose_train, config_names
from ss4rec.errors import ConfigError
from ss4rec.softmax_memory import FULL_SOFTMAX, check_full_softmax, full_softmax_bytes

GiB = 2**30
ML25M = 59_047


def test_ml25m_ce_needs_about_9_gigabytes_per_step():
    assert full_softmax_bytes(64 * 200, ML25M) == 64 * 200 * ML25M * 12  # 9.07e9 bytes


def test_too_large_is_refused_with_the_number_and_the_fix():
    with pytest.raises(ConfigError, match=r"needs about 8\.4 GiB .* expected task/ranking_loss=sampled_softmax"):
        check_full_softmax(FULL_SOFTMAX, 64 * 200, ML25M, available=16 * GiB, where="RAM")


def test_large_but_fitting_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="ss4rec.softmax_memory"):
        need = check_full_softmax(FULL_SOFTMAX, 64 * 200, ML25M, available=80 * GiB, where="GPU")
    assert need == full_softmax_bytes(64 * 200, ML25M)
    assert "8.4 GiB" in caplog.text and "sampled_softmax" in caplog.text


def test_small_catalogues_and_other_losses_pass_silently(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_full_softmax(FULL_SOFTMAX, 8 * 200, 3706, available=16 * GiB) < 2**30
        assert check_full_softmax("ss4rec.objectives.SampledSoftmax", 64 * 200, ML25M, available=GiB) is None
        assert check_full_softmax(None, 64 * 200, ML25M, available=GiB) is None
    assert caplog.text == ""


@pytest.mark.parametrize("experiment", [n for n in config_names("experiment") if n.startswith("ml25m")])
def test_every_ml25m_experiment_takes_the_synthetic_ml25m_data(experiment):
    cfg = compose_train([f"experiment={experiment}", "data=synthetic_ml25m"])
    assert cfg.data.name == "synthetic_ml25m" and cfg.data.source.kind == "synthetic"
    source = cfg.data.source
    assert (source.n_rows, source.n_users, source.n_items, source.half_stars) == (25_000_095, 162_541, ML25M, True)
    loss = cfg.task.get("ranking_loss")
    if experiment != "ml25m_ce":  # sampled softmax, BPR or rating only: never the full softmax
        assert loss is None or loss["_target_"] != FULL_SOFTMAX
