"""benchmarks/pooled_splits.py: the pooled RMSE over leave-last-out splits, against a float64 reference computed
from the ratings' squared errors; a ranking metric pooled as a mean, higher being better; and the refusals of
records that are not the split they are read as."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark_scripts import load_benchmark

splits = load_benchmark("pooled_splits")


def write_record(folder, k, test_rmse, val_rmse, status="finished", metric="rmse"):
    folder.mkdir(parents=True)
    record = {
        "status": status,
        "config": {"data": {"holdout_last": k}},
        "test": {f"test/{metric}": test_rmse, "test/mae": 0.0},
        "best_val": {f"val/{metric}": val_rmse, "val/mae": 0.0},
    }
    (folder / "metrics.json").write_text(json.dumps(record))


def fake_runs(root, values, val_scale=0.9, metric="rmse"):
    """values[name]: (seeds, splits) test values of the metric, recorded at ROOT[/holdout_last<k>]/<name>/s<seed>;
    validation is the test value x ``val_scale``."""
    for name, v in values.items():
        for s in range(v.shape[0]):
            for k in range(v.shape[1]):
                base = root if k == 0 else root / f"holdout_last{k}"
                write_record(base / name / f"s{s}", k, float(v[s, k]), val_scale * float(v[s, k]), metric=metric)


def test_pooled_rmse_is_the_rmse_of_every_split_rating_together(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 4, 101))
    other = 0.8 * ref + 0.1 * rng.normal(size=ref.shape)
    other[:, 2] *= 2.0  # worse than the reference on one split
    other[2, 3] *= 2.0  # and on another in one seed only
    errors = {"ref": ref, "other": other}
    fake_runs(tmp_path, {name: np.sqrt((e**2).mean(-1)) for name, e in errors.items()})
    models = {name: name + "/s{s}" for name in errors}
    scores = splits.collect(tmp_path, models, [0, 1, 2, 3], [0, 1, 2])
    for name, e in errors.items():
        want = np.sqrt((e**2).reshape(3, -1).mean(axis=1))  # per seed, all 4 x 101 ratings at once
        np.testing.assert_allclose(splits.pooled(scores[name][0]), want, rtol=1e-12)
        np.testing.assert_allclose(splits.pooled(scores[name][1]), 0.9 * want, rtol=1e-12)
    text = splits.table(scores, [0, 1, 2, 3])
    row = next(line for line in text.splitlines() if line.startswith("| other |"))
    change = np.sqrt((other**2).reshape(3, -1).mean(axis=1)) / np.sqrt((ref**2).reshape(3, -1).mean(axis=1)) - 1
    pooled_other = np.sqrt((other**2).reshape(3, -1).mean(axis=1))
    assert f"| {pooled_other.mean():.4f} ± {pooled_other.std(ddof=1):.4f} |" in row
    assert f"{100 * change.mean():+.1f}% (" + ", ".join(f"{100 * c:+.1f}%" for c in change) + ")" in row
    below = int((np.sqrt((other**2).mean(-1)) < np.sqrt((ref**2).mean(-1))).all(0).sum())
    assert below == 2
    assert row.endswith(f"| {below} of 4 |")
    # --compare val: the same columns from the validation RMSE (here 0.9 x the test RMSE, so the same changes)
    val_row = next(line for line in splits.table(scores, [0, 1, 2, 3], "val").splitlines() if line.startswith("| other |"))
    per_split = np.sqrt((other**2).mean(-1)).mean(0)
    assert val_row.startswith("| other | " + " | ".join(f"{0.9 * v:.4f}" for v in per_split) + " |")
    assert val_row.split("|")[-3:] == row.split("|")[-3:]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"k": 2}, "trained with data.holdout_last=2, expected 1"),
        ({"status": "failed"}, "has status 'failed'"),
        (None, "no run record"),
    ],
)
def test_refuses_a_record_that_is_not_its_split(tmp_path, record, message):
    write_record(tmp_path / "m" / "s0", 0, 1.0, 1.0)
    folder = tmp_path / "holdout_last1" / "m" / "s0"
    if record is not None:
        write_record(folder, record.get("k", 1), 1.0, 1.0, record.get("status", "finished"))
    with pytest.raises(SystemExit, match=message):
        splits.collect(tmp_path, {"m": "m/s{s}"}, [0, 1], [0])


def test_command_line_needs_name_equals_pattern(tmp_path, capsys):
    with pytest.raises(SystemExit):
        splits.main(["svdpp_best", "--root", str(tmp_path)])
    assert "expected NAME=PATTERN" in capsys.readouterr().err


def test_a_json_pattern_reads_that_record_file(tmp_path):
    """``rating_blend.py --record`` files: a pattern ending in .json is the record itself, not a folder."""
    for k, rmse in ((0, 0.6), (1, 0.8)):
        folder = tmp_path if k == 0 else tmp_path / f"holdout_last{k}"
        write_record(folder / "stage_s0", k, rmse, rmse)
        (folder / "stage_s0" / "metrics.json").rename(folder / "stage_s0.json")
    scores = splits.collect(tmp_path, {"stage": "stage_s{s}.json"}, [0, 1], [0])
    np.testing.assert_allclose(scores["stage"][0], [[0.6, 0.8]])


def test_a_ranking_metric_is_pooled_as_a_mean_and_higher_is_better(tmp_path):
    rng = np.random.default_rng(3)
    hits = {"ref": rng.uniform(0, 0.2, size=(2, 3, 50)), "other": rng.uniform(0, 0.2, size=(2, 3, 50))}
    hits["other"][:, :2] += 0.05  # better on splits 0 and 1 in both seeds
    fake_runs(tmp_path, {name: h.mean(-1) for name, h in hits.items()}, val_scale=1.0, metric="ndcg@10")
    models = {name: name + "/s{s}" for name in hits}
    scores = splits.collect(tmp_path, models, [0, 1, 2], [0, 1], "ndcg@10")
    want = {name: h.reshape(2, -1).mean(axis=1) for name, h in hits.items()}  # every user-target of a seed at once
    np.testing.assert_allclose(splits.pooled(scores["other"][0], "ndcg@10"), want["other"], rtol=1e-12)
    row = next(line for line in splits.table(scores, [0, 1, 2], metric="ndcg@10").splitlines() if line.startswith("| other |"))
    change = want["other"] / want["ref"] - 1
    assert f"{100 * change.mean():+.1f}% (" + ", ".join(f"{100 * c:+.1f}%" for c in change) + ")" in row
    assert row.endswith("| 2 of 3 |")
    with pytest.raises(SystemExit, match="has no test/rmse and val/rmse"):
        splits.collect(tmp_path, models, [0], [0])
