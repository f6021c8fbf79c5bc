"""benchmarks/user_groups.py: the groups' edges, each target's metric against a float64 formula, and that the ranks,
histories and gaps it reads from a run are the run's own (its record's metric, the store's ratings and times)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    (index,), labels = groups.groups([[{"gap": gaps[:4]}, {"gap": gaps[4:]}]], "gap")  # one seed, two splits
    assert index.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert labels[0].startswith("0 s") and labels[-1] == "over 30 days"


def test_length_groups_are_quartiles_that_cover_every_length_once():
    rng = np.random.default_rng(0)
    history = rng.integers(3, 500, size=1001)
    (index,), labels = groups.groups([[{"history": history[:400]}, {"history": history[400:]}]], "length")
    counts = np.bincount(index, minlength=4)
    assert len(labels) == 4 and counts.min() >= 240 and counts.sum() == 1001  # about a quarter each
    bounds = [tuple(int(v) for v in label.split()[0].split("-")) for label in labels]
    assert bounds[0][0] == history.min() and bounds[-1][1] == history.max()
    assert all(high + 1 == next_low for (_, high), (next_low, _) in zip(bounds, bounds[1:]))  # contiguous
    for g, (low, high) in enumerate(bounds):
        assert ((history[index == g] >= low) & (history[index == g] <= high)).all()


def test_length_groups_of_seeds_with_their_own_users_share_edges_cut_on_all_of_them():
    """Seeds that draw their own users (data.user_sample_seed): one set of quartiles over every seed's targets."""
    short, long = np.arange(1, 101), np.arange(101, 301)
    indexes, labels = groups.groups([[{"history": short}], [{"history": long}]], "length")
    pooled = np.concatenate([short, long])
    assert labels[0].startswith(f"{pooled.min()}-") and labels[-1].endswith(f"-{pooled.max()} ratings")
    assert (indexes[0] <= 1).all() and (indexes[1] >= 1).all()  # the short seed in the low groups, the long high
    counts = np.bincount(np.concatenate(indexes), minlength=4)
    assert counts.sum() == 300 and counts.min() >= 70


def test_paired_change_is_the_mean_difference_and_its_float64_interval():
    rng = np.random.default_rng(1)
    reference = rng.random(501).astype(np.float32)
    values = (reference + rng.normal(0.05, 0.2, 501)).astype(np.float32)
    change, half = groups.paired_change(values, reference)
    d = [float(v) - float(r) for v, r in zip(values, reference)]
    mean = sum(d) / len(d)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    base = sum(float(r) for r in reference) / len(reference)
    assert change == pytest.approx(mean / base, rel=1e-9)
    assert half == pytest.approx(1.96 * std / math.sqrt(len(d)) / base, rel=1e-9)
    assert groups.paired_change(reference, reference) == (0.0, 0.0)


def test_table_groups_each_seed_on_its_own_targets():
    """Two seeds with different users and numbers of targets: each seed's groups, means and paired changes are
    its own, and the count shows the seeds' range."""
    ref = [np.array([1.0, 0.0, 0.5, 0.5]), np.array([0.2, 0.4, 0.6])]
    other = [np.array([1.0, 0.5, 0.5, 1.0]), np.array([0.4, 0.4, 0.3])]
    indexes = [np.array([0, 1, 1, 0]), np.array([1, 1, 0])]
    out = groups.table({"a": ref, "b": other}, indexes, ["g0", "g1"], "ndcg@10")
    rows = {cells(row)[0]: cells(row) for row in out.splitlines()[2:]}
    assert rows["g0"][1] == "1-2" and rows["all"][1] == "3-4"
    assert rows["g0"][2] == splits_mod_spread([0.75, 0.6])  # seed 0: (1.0 + 0.5) / 2; seed 1: 0.6
    assert rows["g1"][3] == splits_mod_spread([0.5, 0.4])
    seed0, _ = groups.paired_change(other[0][indexes[0] == 0], ref[0][indexes[0] == 0])  # +0.5 / 0.75
    seed1, _ = groups.paired_change(other[1][indexes[1] == 0], ref[1][indexes[1] == 0])  # -0.3 / 0.6
    assert rows["g0"][4].startswith(f"{100 * (seed0 + seed1) / 2:+.1f}% ({100 * seed0:+.1f} ± ")
    assert f", {100 * seed1:+.1f} ± " in rows["g0"][4]


def splits_mod_spread(values: list[float]) -> str:
    return groups.splits_mod.spread(np.asarray(values))


def test_models_that_do_not_share_the_targets_are_refused(tmp_path, monkeypatch):
    """Runs are compared target by target, so a model whose run holds other users' targets is refused."""
    runs = {
        "a": {"rank": np.array([0, 3, 20]), "history": np.array([5, 9, 4]), "gap": np.array([0, 10, 99])},
        "b": {"rank": np.array([1, 2, 30]), "history": np.array([5, 9, 4]), "gap": np.array([0, 10, 99])},
        "c": {"rank": np.array([1, 2, 30]), "history": np.array([5, 8, 4]), "gap": np.array([0, 10, 99])},
    }
    monkeypatch.setattr(groups, "held_out", lambda folder, stage: runs[Path(folder).name])
    monkeypatch.setattr(groups.splits_mod, "read_record",
                        lambda folder, k, metric: (groups.per_target(runs[Path(folder).name]["rank"], metric).mean(),) * 2)  # fmt: skip
    scores, first = groups.collect(tmp_path, {"a": "a", "b": "b"}, [0], [0], "test", "ndcg@10")
    assert len(first) == 1 and scores["b"][0].shape == (3,)
    with pytest.raises(SystemExit, match="must share the data"):
        groups.collect(tmp_path, {"a": "a", "c": "c"}, [0], [0], "test", "ndcg@10")


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
