"""Optuna studies read back from their SQLite file: the markdown table and the best trial's overrides."""

from __future__ import annotations

import pytest

from clean_errors import exit_of, expect_clean_error
from ss4rec.report.studies import best_overrides, load_studies, main

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _study(db, name="sasrec_ml100k", values=(0.05, 0.07, None, 0.07, 0.06), direction="maximize"):
    """A study with one trial per value (None: a trial left RUNNING, as a stopped search leaves it)."""
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", direction=direction)
    hidden = optuna.distributions.CategoricalDistribution([32, 64, 128])
    lr = optuna.distributions.LogUniformDistribution(1e-4, 1e-2)
    for n, value in enumerate(values):
        params = {"model.hidden": [32, 64, 128][n % 3], "optimizer.lr": 1e-3 * (n + 1)}
        state = optuna.trial.TrialState.RUNNING if value is None else optuna.trial.TrialState.COMPLETE
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={"model.hidden": hidden, "optimizer.lr": lr}, value=value, state=state))  # fmt: skip
    return study


def test_best_is_the_first_of_equal_values_in_the_study_direction(tmp_path):
    _study(tmp_path / "a.db")
    (study,) = load_studies(tmp_path / "a.db")
    # trials 1 and 3 both reach 0.07: the first one counts
    assert best_overrides(study) == ["model.hidden=64", "optimizer.lr=0.002"]
    _study(tmp_path / "b.db", values=(0.9, 0.8, 0.95), direction="minimize")
    (study,) = load_studies(tmp_path / "b.db")
    assert best_overrides(study) == ["model.hidden=64", "optimizer.lr=0.002"]


def test_markdown_lists_every_trial_and_bolds_the_best(tmp_path, capsys):
    _study(tmp_path / "a.db")
    out = tmp_path / "md" / "optuna.md"
    assert main([str(tmp_path / "a.db"), "--out", str(out), "--title", "T"]) == 0
    text = out.read_text()
    assert text.startswith("# T\n\n## sasrec_ml100k\n\n4 complete trials of 5; best: trial 1, validation NDCG@10 0.0700")
    assert "| trial | state | validation NDCG@10 | model.hidden | optimizer.lr |" in text
    assert "| 1 | COMPLETE | **0.0700** | 64 | 0.002 |" in text
    assert "| 2 | RUNNING |  | 128 | 0.003 |" in text
    assert "| 3 | COMPLETE | 0.0700 | 32 | 0.004 |" in text


def test_cli_best_prints_overrides_for_train_py(tmp_path, capsys):
    _study(tmp_path / "a.db")
    assert main([str(tmp_path / "a.db"), "--best"]) == 0
    assert capsys.readouterr().out == "model.hidden=64 optimizer.lr=0.002\n"


def test_bad_input_is_a_clean_error(tmp_path, capsys):
    expect_clean_error(exit_of(main, [str(tmp_path / "none.db")], capsys), r"none.db.*no such file")
    (tmp_path / "text.db").write_text("not sqlite")
    expect_clean_error(exit_of(main, [str(tmp_path / "text.db")], capsys), r"text.db: not an Optuna SQLite database")
    _study(tmp_path / "two.db", name="one")
    _study(tmp_path / "two.db", name="two")
    expect_clean_error(exit_of(main, [str(tmp_path / "two.db"), "--best"], capsys), r"--best: expected one study, found 2")
    _study(tmp_path / "running.db", values=(None,))
    expect_clean_error(exit_of(main, [str(tmp_path / "running.db"), "--best"], capsys), r"no complete trial")
