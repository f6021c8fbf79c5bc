"""benchmarks/user_groups.py: the groups' edges, each target's metric against a float64 formula, and that the ranks,
histories and gaps it reads from a run are the run's own (its record's metric, the store's ratings and times)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmark_scripts import load_benchmark
from composing import compose_train
from ss4rec.serve.loading import run_config
from ss4rec.training import build_datamodule, train

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit"]

groups = load_benchmark("user_groups")


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_gap_groups_put_each_edge_in_the_group_it_closes():
    day = 86_400
    gaps = np.array([0, 1, 3600, 3601, day, day + 1, 30 * day, 30 * day + 1, 10**9])
    index, labels = groups.groups([{"gap": gaps[:4]}, {"gap": gaps[4:]}], "gap")  # two splits, concatenated
    assert index.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert labels[0].startswith("0 s") and labels[-1] == "over 30 days"


def test_length_groups_are_quartiles_that_cover_every_length_once():
    rng = np.random.default_rng(0)
    history = rng.integers(3, 500, size=1001)
    index, labels = groups.groups([{"history": history[:400]}, {"history": history[400:]}], "length")
    counts = np.bincount(index, minlength=4)
    assert len(labels) == 4 and counts.min() >= 240 and counts.sum() == 1001  # about a quarter each
    bounds = [tuple(int(v) for v in label.split()[0].split("-")) for label in labels]
    assert bounds[0][0] == history.min() and bounds[-1][1] == history.max()
    assert all(high + 1 == next_low for (_, high), (next_low, _) in zip(bounds, bounds[1:]))  # contiguous
    for g, (low, high) in enumerate(bounds):
        assert ((history[index == g] >= low) & (history[index == g] <= high)).all()


def test_each_targets_metric_is_the_float64_formula():
    ranks = np.array([0, 1, 4, 9, 10, 500])
    for k in (1, 5, 10):
        expected = {
            "ndcg": [1 / math.log2(r + 2) if r < k else 0.0 for r in ranks],
            "hr": [1.0 if r < k else 0.0 for r in ranks],
            "mrr": [1 / (r + 1) if r < k else 0.0 for r in ranks],
        }
        for name, values in expected.items():
            np.testing.assert_allclose(groups.per_target(ranks, f"{name}@{k}"), values, rtol=1e-12)


def test_a_runs_ranks_histories_and_gaps_are_its_own(tmp_path, capsys):
    """Two small ranking runs on ML-100K: every group row sums to the records' metric, the history and gap of each
    user are the store's, and a record that disagrees with the checkpoint is refused."""
    records = {name: train(compose_train([f"model={name}", *SMALL], tmp_path / name)) for name in ("gru4rec", "sasrec")}
    groups.main(["gru4rec=gru4rec", "sasrec=sasrec", f"--root={tmp_path}", "--by=gap"])
    table = [row for row in capsys.readouterr().out.splitlines() if row.startswith("|")][2:]  # below the head
    rows = {cells(row)[0]: cells(row) for row in table}
    assert int(rows["all"][1]) == 943
    assert float(rows["all"][2]) == pytest.approx(records["gru4rec"]["test"]["test/ndcg@10"], abs=1e-4)
    assert float(rows["all"][3]) == pytest.approx(records["sasrec"]["test"]["test/ndcg@10"], abs=1e-4)
    assert sum(int(row[1]) for label, row in rows.items() if label != "all") == 943

    datamodule = build_datamodule(OmegaConf.create(run_config(tmp_path / "gru4rec")))
    datamodule.setup("test")
    store = datamodule.store
    for stage, back in (("test", 1), ("val", 2)):
        seen = groups.held_out(tmp_path / "gru4rec", stage)
        target = store.offsets[1:] - back  # each user's held-out row
        np.testing.assert_array_equal(seen["history"], target - store.offsets[:-1])
        np.testing.assert_array_equal(seen["gap"], np.asarray(store.times, dtype=np.int64)[target]
                                      - np.asarray(store.times, dtype=np.int64)[target - 1])  # fmt: skip
        metric = groups.per_target(seen["rank"], "ndcg@10").mean()
        recorded = records["gru4rec"]["test" if stage == "test" else "best_val"][f"{stage}/ndcg@10"]
        assert metric == pytest.approx(recorded, abs=1e-4)

    record = json.loads((tmp_path / "sasrec" / "metrics.json").read_text())
    record["test"]["test/ndcg@10"] += 0.01
    (tmp_path / "sasrec" / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="not the run's split or checkpoint"):
        groups.main(["gru4rec=gru4rec", "sasrec=sasrec", f"--root={tmp_path}"])
