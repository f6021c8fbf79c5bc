"""The report built from ``metrics.json`` files that ``train()`` wrote (not hand-written fixtures): every run
is found, means and stds are over the seeds the files hold, and a repeated seed counts once."""

from __future__ import annotations

import json
import statistics
import warnings

import pytest

from composing import compose_train
from ss4rec.report import build_report
from ss4rec.training import train

TINY = ["debug=fdr", "data.max_len=20", "data.batch_size=64", "data.eval_batch_size=256", "logger=none",
        "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """SASRec seeds 0 and 1, SASRec seed 0 again (written last), popularity seed 0: {name: metrics.json}."""
    root = tmp_path_factory.mktemp("runs")
    written = {}
    for name, overrides in (("sasrec_s0", ["model=sasrec", "seed=0"]), ("sasrec_s1", ["model=sasrec", "seed=1"]),
                            ("pop_s0", ["model=pop", "seed=0"]), ("sasrec_s0_again", ["model=sasrec", "seed=0"])):
        train(compose_train([*overrides, *TINY], root / name))
        written[name] = json.loads((root / name / "metrics.json").read_text())
    return root, written


def test_report_of_trained_runs_counts_each_seed_once(runs, tmp_path):
    root, written = runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = build_report(root, tmp_path / "report")
    summary = json.loads(paths["summary"].read_text())
    groups = {g["model"]: g for g in summary["groups"]}
    assert groups.keys() == {"sasrec", "pop"}
    assert groups["sasrec"]["seeds"] == [0, 1] and groups["pop"]["seeds"] == [0]
    # the repeated seed 0 is listed as skipped, and the run written last is the one counted
    assert [s["path"] for s in summary["skipped"]] == [str(root / "sasrec_s0" / "metrics.json")]
    counted = [written["sasrec_s0_again"], written["sasrec_s1"]]
    for key in ("test/hr@10", "test/ndcg@10", "test/mrr@20"):
        values = [run["test"][key] for run in counted]
        stats = groups["sasrec"]["metrics"][key]
        assert stats["n"] == 2
        assert stats["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert stats["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert groups["pop"]["metrics"]["test/hr@10"]["mean"] == written["pop_s0"]["test"]["test/hr@10"]
    row = next(line for line in paths["markdown"].read_text().splitlines() if line.startswith("| sasrec |"))
    assert row.split(" | ")[2] == "2"  # the seeds column
    assert "1 run(s) skipped" in paths["markdown"].read_text()
    assert any("with seed 0: only the last written counts" in str(w.message) for w in caught)


def test_different_seeds_are_not_deduplicated(runs, tmp_path):
    root, written = runs
    paths = build_report([root / "sasrec_s0", root / "sasrec_s1"], tmp_path / "report")
    (group,) = json.loads(paths["summary"].read_text())["groups"]
    assert group["seeds"] == [0, 1]
    assert group["metrics"]["test/hr@10"]["n"] == 2
