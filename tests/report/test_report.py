"""The dashboard built from fake runs: every model, every metric, the plots, correct mean ± std."""

from __future__ import annotations

import base64
import json
import re
import statistics
from pathlib import Path

import pytest

from ss4rec.report import build_report, load_runs
from ss4rec.report.__main__ import main

from .conftest import MODELS, RATING_MODELS, SEEDS, fake_run, write_run

SUMMARY_LABELS = (
    "HR@10",
    "NDCG@10",
    "MRR@10",
    "RMSE",
    "MAE",
    "train time (s)",
    "parameters",
    "peak memory (MB)",
)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_has_every_model_metric_and_plot(runs_dir: Path, tmp_path: Path):
    paths = build_report(runs_dir, tmp_path / "reports" / "ml100k", command="make compare DATA=ml100k")
    page = paths["html"].read_text()
    table = paths["markdown"].read_text()
    for model in MODELS:
        assert f"<td>{model}</td>" in page
        assert f"| {model} |" in table
    for label in SUMMARY_LABELS:
        assert f"<th>{label}</th>" in page
        assert f" {label} |" in table
    for k in (1, 5, 20):
        assert f"<th>ndcg@{k}</th>" in page  # the full table has every cut-off
    pngs = images(page)
    # a bar chart per summary column (8 labels + epochs) and curves of val ndcg/hr/rmse and train loss
    assert len(pngs) == len(SUMMARY_LABELS) + 1 + 4
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pngs)
    assert "http://" not in page and "https://" not in page and "<link" not in page  # self-contained
    assert "make compare DATA=ml100k" in table
    assert "99_sasrec_s3" in page and "status failed" in page  # the failed run is listed, not counted
    assert "1 run(s) skipped" in table


def test_mean_and_std_over_seeds_are_right(runs_dir: Path, tmp_path: Path):
    paths = build_report(runs_dir, tmp_path / "out")
    table = paths["markdown"].read_text()
    runs = [json.loads(p.read_text()) for p in runs_dir.rglob("metrics.json")]
    for model in ("ss4rec", "ncf"):
        ndcg = [r["test"]["test/ndcg@10"] for r in runs if r["model"] == model and r["status"] == "finished"]
        assert len(ndcg) == len(SEEDS)
        cell = f"{statistics.fmean(ndcg):.4f} ± {statistics.stdev(ndcg):.4f}"
        row = next(line for line in table.splitlines() if line.startswith(f"| {model} |"))
        assert cell in row
    summary = json.loads(paths["summary"].read_text())
    group = next(g for g in summary["groups"] if g["model"] == "mf")
    rmse = [r["test"]["test/rmse"] for r in runs if r["model"] == "mf"]
    assert group["metrics"]["test/rmse"]["mean"] == pytest.approx(statistics.fmean(rmse))
    assert group["metrics"]["test/rmse"]["std"] == pytest.approx(statistics.stdev(rmse))
    assert group["seeds"] == list(SEEDS)
    # ranking-only models have no rating error: a dash, not a number
    pop_row = next(line for line in table.splitlines() if line.startswith("| pop |"))
    assert pop_row.count("–") == 2


def best_by_mean(runs: list[dict], key: str, higher_is_better: bool) -> set[str]:
    """The model(s) with the best mean of ``key`` over their finished runs, computed from the files."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if run["status"] == "finished" and key in run["test"]:
            values.setdefault(run["model"], []).append(run["test"][key])
    means = {model: statistics.fmean(v) for model, v in values.items()}
    best = (max if higher_is_better else min)(means.values())
    return {model for model, mean in means.items() if mean == best}


def test_best_mean_is_marked(runs_dir: Path, tmp_path: Path):
    table = build_report(runs_dir, tmp_path / "out")["markdown"].read_text()
    runs = [json.loads(p.read_text()) for p in runs_dir.rglob("metrics.json")]
    quality = {"test/hr@10": True, "test/ndcg@10": True, "test/mrr@10": True, "test/rmse": False, "test/mae": False}
    winners = {key: best_by_mean(runs, key, higher) for key, higher in quality.items()}
    for model in MODELS:  # each model's row bolds exactly the columns where its mean is the best
        row = next(line for line in table.splitlines() if line.startswith(f"| {model} |"))
        assert row.count("**") == 2 * sum(model in w for w in winners.values()), model
    assert winners["test/hr@10"] == {max(MODELS, key=MODELS.index)}  # the fake runs improve with the index


def test_curves_average_the_seeds_that_reached_each_epoch(runs_dir: Path):
    group = next(g for g in load_runs(runs_dir).groups if g.model == "gru4rec")
    epochs, mean, std = group.curve("val/ndcg@10")
    assert epochs == [0, 1, 2, 3, 4]  # seeds ran 3, 4 and 5 epochs
    last = [r["history"][-1]["val/ndcg@10"] for r in group.runs if r["epochs"] == 5]
    assert mean[-1] == pytest.approx(last[0]) and std[-1] == 0.0
    first = [r["history"][0]["val/ndcg@10"] for r in group.runs]
    assert mean[0] == pytest.approx(statistics.fmean(first))


def test_same_model_in_two_tasks_gets_two_labelled_rows(tmp_path: Path):
    root = tmp_path / "runs"
    for seed in SEEDS:
        write_run(root, f"rank_{seed}", fake_run("mf", seed, root, task="ranking"))
        write_run(root, f"rate_{seed}", fake_run("mf", seed, root, task="rating"))
        write_run(root, f"seq_{seed}", fake_run("sasrec", seed, root))
    collection = load_runs(str(root / "*"))  # a glob works as well as a folder
    assert [g.label for g in collection.groups] == ["mf [ranking]", "mf [rating]", "sasrec"]
    assert all(len(g.runs) == 3 for g in collection.groups)


def test_named_sources_keep_two_settings_of_one_model_apart(tmp_path: Path, capsys):
    for setting in ("default", "tuned"):
        root = tmp_path / setting
        for seed in SEEDS:
            write_run(root, f"{seed}_sasrec_s{seed}", fake_run("sasrec", seed, root))
        write_run(root, "gru", fake_run("gru4rec", 0, root))
    # unnamed, the same seeds of one model count once each (the later written wins)
    with pytest.warns(UserWarning, match="only the last written counts"):
        merged = load_runs([tmp_path / "default", tmp_path / "tuned"])
    assert [len(g.runs) for g in merged.groups if g.model == "sasrec"] == [len(SEEDS)]
    named = load_runs([f"defaults={tmp_path / 'default'}", f"tuned={tmp_path / 'tuned'}"])
    labels = {g.label: len(g.runs) for g in named.groups}
    assert labels == {"gru4rec [defaults]": 1, "gru4rec [tuned]": 1,
                      "sasrec [defaults]": len(SEEDS), "sasrec [tuned]": len(SEEDS)}  # fmt: skip
    assert not named.skipped
    assert main([f"tuned={tmp_path / 'tuned'}", "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| sasrec |" in table  # one setting alone needs no label
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["groups"][0]["setting"] == "tuned"
    with pytest.raises(SystemExit):
        main([f"tuned={tmp_path / 'nothing'}"])
    assert "nothing': no such file or folder" in capsys.readouterr().err


def test_cli_rebuilds_into_reports_of_the_dataset(runs_dir: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([str(runs_dir)]) == 0
    assert (tmp_path / "reports" / "ml100k" / "index.html").is_file()
    assert "reports/ml100k/results.md" in capsys.readouterr().out


def test_no_finished_run_is_a_clear_error(tmp_path: Path, capsys):
    root = tmp_path / "runs"
    write_run(root, "a", fake_run("pop", 0, root) | {"status": "interrupted"})
    with pytest.raises(ValueError, match="no finished run.*status interrupted"):
        build_report(root, tmp_path / "out")
    with pytest.raises(SystemExit) as stopped:  # bad input: status 2, as every entry point (ss4rec.errors)
        main([str(root), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "error: no finished run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no finished run"):
        build_report(tmp_path / "does-not-exist", tmp_path / "out")


def test_rating_models_have_rating_columns(runs_dir: Path):
    collection = load_runs(runs_dir)
    with_rmse = {g.model for g in collection.groups if g.values("test/rmse")}
    assert with_rmse == set(RATING_MODELS)


def test_history_cut_short_is_completed_from_the_csv_log(tmp_path: Path):
    root = tmp_path / "runs"
    run = fake_run("sasrec", 0, root)
    run["history"] = run["history"][:1]  # e.g. restored from the best checkpoint's callback state
    run_dir = write_run(root, "0_sasrec_s0", run)
    (run_dir / "csv").mkdir()
    lines = ["epoch,step,train/loss,val/ndcg@10,val/hr@10"]
    for epoch in range(6):
        lines += [
            f"{epoch},{10 * epoch},,{0.01 * (epoch + 1)},{0.02 * (epoch + 1)}",
            f"{epoch},{10 * epoch},{5 - epoch},,",
        ]
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    group = load_runs(root).groups[0]
    epochs, mean, _ = group.curve("val/ndcg@10")
    assert epochs == list(range(6)) and mean == pytest.approx([0.01 * (e + 1) for e in range(6)])
    assert group.curve("train/loss")[1] == pytest.approx([5.0 - e for e in range(6)])
    # a complete history is kept as it is
    full = fake_run("gru4rec", 1, root)
    full_dir = write_run(root, "1_gru4rec_s1", full)
    (full_dir / "metrics.csv").write_text("epoch,val/ndcg@10\n0,0.5\n")
    gru = next(g for g in load_runs(root).groups if g.model == "gru4rec")
    assert gru.curve("val/ndcg@10")[1] == pytest.approx([r["val/ndcg@10"] for r in full["history"]])


def test_masked_runs_get_their_own_table_and_best_marks(tmp_path: Path):
    root = tmp_path / "runs"
    for seed in SEEDS:
        write_run(root, f"pop_{seed}", fake_run("pop", seed, root))
        write_run(root, f"sas_{seed}", fake_run("sasrec", seed, root))
        masked = fake_run("pop", seed, root) | {"mask_seen": True}
        masked["test"] = {k: v * 3 for k, v in masked["test"].items()}  # masking flatters every model
        write_run(root, f"popm_{seed}", masked)
    paths = build_report(root, tmp_path / "out")
    table = paths["markdown"].read_text()
    unmasked, masked_part = table.split("### Seen items masked")
    assert "### Seen items not masked" in unmasked
    assert "| pop [masked] |" in masked_part and "| pop [masked] |" not in unmasked
    sasrec_row = next(line for line in unmasked.splitlines() if line.startswith("| sasrec |"))
    assert "**" in sasrec_row  # best among unmasked rows, although the masked pop scores higher
    page = paths["html"].read_text()
    assert '<table id="summary">' in page and '<table id="summary-masked">' in page


def _stopped(root: Path, name: str, record: dict | None) -> Path:
    """A run stopped by a signal (no test metrics), with ``record`` as its best checkpoint's evaluation."""
    run = fake_run("mamba4rec", 0, root)
    tested = run.pop("test")
    run |= {"status": "stopped", "checkpoint": f"/elsewhere/{name}/checkpoints/best-epoch002.ckpt"}
    run_dir = write_run(root, name, run)
    if record is not None:
        (run_dir / "evaluations").mkdir()
        record = {"checkpoint": run["checkpoint"], "metrics": {**tested, "val/ndcg@10": 0.1}} | record
        (run_dir / "evaluations" / "best-epoch002.json").write_text(json.dumps(record))
    return run_dir


def test_a_stopped_run_counts_once_its_best_checkpoint_is_tested(tmp_path):
    root = tmp_path / "runs"
    _stopped(root, "a_tested", {})
    _stopped(root, "b_untested", None)
    _stopped(root, "c_other_split", {"data_overrides": {"tie_order": "shuffle"}})
    _stopped(root, "d_other_checkpoint", {"checkpoint": "/elsewhere/a/checkpoints/last.ckpt"})
    older = _stopped(root, "e_older_record", {})  # written before `stopped` existed: a signal was a failure
    run = json.loads((older / "metrics.json").read_text()) | {"status": "failed", "reason": "SIGTERMException: ", "seed": 1}
    (older / "metrics.json").write_text(json.dumps(run))
    collection = load_runs(root)
    [group] = collection.groups
    assert group.stopped and group.label == "mamba4rec [stopped, best checkpoint so far]"
    assert [Path(r["run_dir"]).name for r in group.runs] == ["a_tested", "e_older_record"]
    assert group.values("test/ndcg@10") == [fake_run("mamba4rec", 0, root)["test"]["test/ndcg@10"]] * 2
    skipped = {Path(path).parent.name: reason for path, reason in collection.skipped}
    assert set(skipped) == {"b_untested", "c_other_split", "d_other_checkpoint"}
    assert all(reason.startswith("status stopped") for reason in skipped.values())
