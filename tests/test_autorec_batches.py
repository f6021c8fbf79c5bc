"""benchmarks/autorec_batches.py: both layouts hold every random rating exactly once, and a short run prints the ratio."""

from __future__ import annotations

import numpy as np

from benchmark_scripts import load_benchmark

bench = load_benchmark("autorec_batches")


def test_random_ratings_are_distinct_pairs_in_range():
    users, items, ratings = bench.random_ratings(50, 40, 600)
    assert len(set(zip(users.tolist(), items.tolist()))) == len(users) == 600
    assert users.min() >= 0 and users.max() < 50 and items.min() >= 1 and items.max() <= 40
    assert set(np.unique(ratings)) <= {1, 2, 3, 4, 5}


def test_both_layouts_hold_every_rating_once():
    data = bench.random_ratings(600, 700, 5000)
    rng = np.random.default_rng(0)
    expected = sorted(zip(*(a.tolist() for a in data)))
    by_user = bench.user_batches(*data, 600, rng)
    got = sorted((u, i, r) for b in by_user for u, row, values in zip(b["users"].tolist(), b["history"].tolist(),
                 b["history_ratings"].tolist()) for i, r in zip(row, values) if i > 0)  # fmt: skip
    assert got == expected and len(by_user) == 3
    by_item = bench.item_batches(*data, rng)
    got = sorted((u, i, r) for b in by_item for u, i, r in zip(b["users"].tolist(), b["items"].tolist(), b["ratings"].tolist()))
    assert got == expected
    assert all(len(set(b["items"].tolist())) <= bench.BATCH for b in by_item)


def test_a_short_run_prints_both_layouts_and_their_ratio(capsys):
    bench.main(["--repeats", "1", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "| users |" in out and "| items |" in out and "users / items:" in out
