"""benchmarks/rating_blend.py: the blend's least squares and cross-validation, and that each member's
predictions are the evaluation loop's (its "alone" RMSE is its run record's)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from composing import compose_train
from ss4rec.training import train

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit"]

blend = load_benchmark("rating_blend")


def cells(row: str) -> list[str]:
    """A markdown row's cells: label, weights, validation RMSE, test RMSE."""
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_the_fit_recovers_linear_weights_and_cross_validation_scores_held_out_rows():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 5, size=(301, 3))
    y = 0.2 + x @ np.array([0.5, -0.25, 0.75])
    np.testing.assert_allclose(blend.fit(x, y), [0.2, 0.5, -0.25, 0.75], atol=1e-10)
    assert blend.cross_validated(x, y, -100, 100) < 1e-10  # a noise-free line: every fold predicts its rows exactly
    noisy = y + rng.normal(0, 0.5, size=len(y))
    in_sample = blend.rmse(noisy, blend.apply(blend.fit(x, noisy), x, -100, 100))
    assert blend.cross_validated(x, noisy, -100, 100) > in_sample  # scored on rows its weights never saw
    assert blend.apply(np.array([10.0, 0, 0, 0]), x, 1, 5).max() == 5  # clamped to the rating range


def test_blend_rows_show_every_member_alone_and_the_blend_never_worse_on_validation():
    rng = np.random.default_rng(1)
    y = rng.integers(1, 6, size=200).astype(float)
    stage = lambda p: np.column_stack([np.arange(200), np.ones(200), y, p])  # noqa: E731
    data = {name: {s: stage(np.clip(y + rng.normal(0, sd, 200), 1, 5)) for s in blend.STAGES}
            for name, sd in (("a", 0.6), ("b", 0.9), ("c", 1.2))}  # fmt: skip
    rows = blend.blend_rows(["a", "b", "c"], data, 1.0, 5.0)
    assert [cells(row)[0] for row in rows] == ["a alone", "b alone", "c alone", "mean of the members", "blend of all",
                                               "blend without a", "blend without b", "blend without c"]  # fmt: skip
    alone = float(cells(rows[0])[2])
    assert alone == pytest.approx(blend.rmse(y, data["a"]["val"][:, 3]), abs=1e-4)
    for column, stage in ((2, "val"), (3, "test")):  # the plain average, no weights fitted
        mean = np.mean([data[n][stage][:, 3] for n in "abc"], axis=0)
        assert float(cells(rows[3])[column]) == pytest.approx(blend.rmse(y, mean), abs=1e-4)
    x = np.column_stack([data[n]["val"][:, 3] for n in "abc"])
    assert blend.rmse(y, blend.apply(blend.fit(x, y), x, 1, 5)) < alone  # least squares includes "a alone"


def test_weights_fitted_on_other_runs_score_both_held_out_stages():
    """``fit_on``: the weights come from its validation ratings alone; the members' validation is then scored
    as a second held-out set, not cross-validated."""
    rng = np.random.default_rng(2)

    def runs(shift):
        y = rng.integers(1, 6, size=300).astype(float)
        stage = lambda p: np.column_stack([np.arange(300), np.ones(300), y, p])  # noqa: E731
        return {"a": {s: stage(np.clip(y + shift + rng.normal(0, 0.5, 300), 1, 5)) for s in blend.STAGES},
                "b": {s: stage(np.clip(3 + rng.normal(0, 1, 300), 1, 5)) for s in blend.STAGES}}  # fmt: skip

    members, twins = runs(0.0), runs(0.4)  # the twins' "a" is biased: their weights carry a different intercept
    rows = blend.blend_rows(["a", "b"], members, 1.0, 5.0, fit_on=twins)
    y_fit, x_fit = blend.columns(["a", "b"], twins)
    weights = blend.fit(x_fit["val"], y_fit["val"])
    assert cells(rows[3])[1] == f"a {weights[1]:+.3f}, b {weights[2]:+.3f}, intercept {weights[0]:+.3f}"
    y, x = blend.columns(["a", "b"], members)
    for column, stage in ((2, "val"), (3, "test")):
        assert float(cells(rows[3])[column]) == pytest.approx(blend.rmse(y[stage], blend.apply(weights, x[stage], 1, 5)), abs=1e-4)
    assert float(cells(rows[3])[2]) > blend.cross_validated(x["val"], y["val"], 1, 5)  # the twins' bias costs the members


@pytest.mark.parametrize("argv, message", [
    (["a=x", "b=y", "--fit=a=z"], r"--fit names a; give one --fit NAME=RUN for each member \(a, b\)"),
    (["a=x", "b=y", "--fit=a=z", "--fit=c=w"], r"--fit names a, c; give one"),
    (["a=x", "--drift=d", "--fit=a=z"], r"with --fit, give --drift and --fit-drift together"),
    (["a=x", "b=y", "--fit-drift=d"], r"--fit-drift is the drift column of the --fit runs"),
    (["a=x", "b=y", "--record-mean"], r"--record-mean records the members' plain mean: give --record"),
    (["a=x", "b=y", "--record=r.json", "--record-mean", "--drift=d"], r"and neither --drift nor --fit"),
])  # fmt: skip
def test_fit_options_that_do_not_pair_up_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        blend.main(argv)
    assert re.search(message, capsys.readouterr().err)


def test_a_missing_drift_run_is_named_by_the_option_that_gave_it(tmp_path, capsys):
    table = np.column_stack([np.arange(3), np.ones(3), np.full(3, 4.0), np.full(3, 3.5)])
    for option in ("--drift", "--fit-drift"):
        with pytest.raises(SystemExit):
            with blend.reported_errors():  # as main runs it
                blend.drift_column(str(tmp_path / "missing"), 5, {"val": table, "test": table}, option)
        assert capsys.readouterr().err.strip() == f"error: {option}={str(tmp_path / 'missing')!r}: no such file or run folder"


def test_runs_of_different_splits_are_refused():
    table = np.column_stack([np.arange(5), np.ones(5), np.full(5, 4.0), np.full(5, 3.5)])
    other = table.copy()
    other[2, 2] = 1.0  # another held-out rating for user 2
    blend.check_same_split({"a": {"val": table, "test": table}, "b": {"val": table, "test": table}})
    with pytest.raises(SystemExit, match="'b' and 'a' hold out different test ratings"):
        blend.check_same_split({"a": {"val": table, "test": table}, "b": {"val": table, "test": other}})


def test_each_members_predictions_are_its_runs_evaluation(tmp_path, capsys):
    """Two small rating runs on ML-100K: the script's "alone" rows give each run's recorded validation and test
    RMSE (so it predicts what the evaluation loop predicts, on the same users), and a ranking run is refused."""
    records = {name: train(compose_train([f"model={name}", "task=rating", *SMALL], tmp_path / name)) for name in ("mf", "svdpp")}
    blend.main([f"mf={tmp_path / 'mf'}", f"svdpp={tmp_path / 'svdpp'}"])
    rows = {cells(row)[0]: cells(row) for row in capsys.readouterr().out.splitlines()}
    for name, record in records.items():
        assert float(rows[f"{name} alone"][2]) == pytest.approx(record["best_val"]["val/rmse"], abs=1e-4)
        assert float(rows[f"{name} alone"][3]) == pytest.approx(record["test"]["test/rmse"], abs=1e-4)
    with pytest.raises(SystemExit, match="hold out the members' own validation ratings; train them with data.holdout_last=1"):
        blend.main([f"mf={tmp_path / 'mf'}", f"svdpp={tmp_path / 'svdpp'}", f"--fit=mf={tmp_path / 'mf'}",
                    f"--fit=svdpp={tmp_path / 'svdpp'}"])  # fmt: skip
    for name in ("mf", "svdpp"):
        train(compose_train([f"model={name}", "task=rating", "data.holdout_last=1", *SMALL], tmp_path / f"{name}_last1"))
    with pytest.raises(SystemExit, match="'svdpp' and 'mf' hold out different val ratings"):  # a twin of another split
        blend.main([f"mf={tmp_path / 'mf'}", f"svdpp={tmp_path / 'svdpp'}", f"--fit=mf={tmp_path / 'mf'}",
                    f"--fit=svdpp={tmp_path / 'svdpp_last1'}"])  # fmt: skip
    capsys.readouterr()
    blend.main([f"mf={tmp_path / 'mf'}", f"svdpp={tmp_path / 'svdpp'}", f"--fit=mf={tmp_path / 'mf_last1'}",
                f"--fit=svdpp={tmp_path / 'svdpp_last1'}"])  # fmt: skip
    out = capsys.readouterr().out
    twins = {name: blend.predictions(tmp_path / f"{name}_last1")[0] for name in ("mf", "svdpp")}
    y_fit, x_fit = blend.columns(["mf", "svdpp"], twins)
    weights = blend.fit(x_fit["val"], y_fit["val"])
    assert "fitted on the --fit runs' validation" in out
    assert f"| blend of all | mf {weights[1]:+.3f}, svdpp {weights[2]:+.3f}, intercept {weights[0]:+.3f} |" in out
    blend.main([f"mf={tmp_path / 'mf'}", f"--drift={tmp_path / 'svdpp'}", f"--fit=mf={tmp_path / 'mf_last1'}",
                f"--fit-drift={tmp_path / 'svdpp_last1'}"])  # the drift column of the twins comes from the twin SVD++
    twins["drift5"] = blend.drift_column(str(tmp_path / "svdpp_last1"), 5, twins["mf"])
    y_fit, x_fit = blend.columns(["mf", "drift5"], twins)
    weights = blend.fit(x_fit["val"], y_fit["val"])
    assert f"| blend of all | mf {weights[1]:+.3f}, drift5 {weights[2]:+.3f}, intercept {weights[0]:+.3f} |" in capsys.readouterr().out
    # --record: the blend of all as a run-like record, with the members' split (the twins here: holdout_last 1)
    blend.main([f"mf={tmp_path / 'mf_last1'}", f"svdpp={tmp_path / 'svdpp_last1'}", f"--record={tmp_path / 'b.json'}"])
    row = cells(next(r for r in capsys.readouterr().out.splitlines() if r.startswith("| blend of all")))
    saved = json.loads((tmp_path / "b.json").read_text())
    y, x = blend.columns(["mf", "svdpp"], twins)
    weights = blend.fit(x["val"], y["val"])
    assert saved["config"]["data"]["holdout_last"] == 1 and saved["status"] == "finished"
    assert saved["command"] == f"python benchmarks/rating_blend.py mf={tmp_path / 'mf_last1'} svdpp={tmp_path / 'svdpp_last1'} --record={tmp_path / 'b.json'}"
    assert saved["weights"] == pytest.approx({"intercept": weights[0], "mf": weights[1], "svdpp": weights[2]}, abs=1e-9)
    assert saved["test"]["test/rmse"] == pytest.approx(blend.rmse(y["test"], blend.apply(weights, x["test"], 1, 5)), abs=1e-9)
    assert saved["best_val"]["val/rmse"] == pytest.approx(blend.cross_validated(x["val"], y["val"], 1, 5), abs=1e-9)
    assert f"{saved['test']['test/rmse']:.4f}" == row[3] and row[2] == f"{saved['best_val']['val/rmse']:.4f} (10-fold)"
    # --record-mean: the members' plain mean, nothing fitted (its row of the table)
    blend.main([f"mf={tmp_path / 'mf_last1'}", f"svdpp={tmp_path / 'svdpp_last1'}", f"--record={tmp_path / 'm.json'}", "--record-mean"])
    row = cells(next(r for r in capsys.readouterr().out.splitlines() if r.startswith("| mean of the members")))
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["weights"] == {"intercept": 0.0, "mf": 0.5, "svdpp": 0.5} and saved["fitted_on"].startswith("nothing")
    assert saved["test"]["test/rmse"] == pytest.approx(blend.rmse(y["test"], (x["test"][:, 0] + x["test"][:, 1]) / 2), abs=1e-9)
    assert saved["best_val"]["val/rmse"] == pytest.approx(blend.rmse(y["val"], x["val"].mean(1)), abs=1e-9)
    assert f"{saved['test']['test/rmse']:.4f}" == row[3] and f"{saved['best_val']['val/rmse']:.4f}" == row[2]
    train(compose_train(["model=pop", *SMALL], tmp_path / "pop"))
    with pytest.raises(SystemExit, match="predicts no rating"):
        blend.main([f"mf={tmp_path / 'mf'}", f"pop={tmp_path / 'pop'}"])
