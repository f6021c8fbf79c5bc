"""data.tie_order: ``file`` keeps the source's row order within equal times, ``shuffle`` permutes only there."""

from collections import Counter, defaultdict

import numpy as np
import polars as pl
import pytest

from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.data.errors import DataError
from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import Raw

from .conftest import reference_sequences, write_lines


def bursty_rows(seed: int = 0, n_users: int = 60, per_user: int = 12) -> list[tuple[int, int, float, int]]:
    """Ratings grouped by user, in no time order, half of them in bursts that share one second."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in rng.permutation(n_users) + 1:
        items = rng.choice(np.arange(1, 80), per_user, replace=False)
        times = 1_000_000 + rng.integers(0, 5, per_user) * 60  # 5 distinct seconds: many ties
        for item, stamp in zip(items, times):
            rows.append((int(user), int(item), float(rng.integers(1, 6)), int(stamp)))
    return rows


def store_of(rows, **options):
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0, **options), None)


def sequences_of(store) -> dict[int, list[tuple[int, float, int]]]:
    """{original user: [(original item, rating, time), ...] in the store's order}, as ``reference_sequences``."""
    out = {}
    for u in range(store.n_users):
        rows = slice(store.offsets[u], store.offsets[u + 1])
        out[int(store.user_map[u])] = list(zip(store.item_map[store.items[rows]].tolist(),
                                               store.ratings[rows].tolist(), store.times[rows].tolist()))  # fmt: skip
    return out


def groups(store) -> dict[tuple[int, int], list[tuple[int, float]]]:
    """{(original user, time): [(original item, rating), ...] in the store's order}."""
    out = defaultdict(list)
    users = store.user_map[store.users_of_rows()]
    for user, item, rating, stamp in zip(
        users, store.item_map[np.asarray(store.items)], store.ratings, store.times
    ):
        out[int(user), int(stamp)].append((int(item), float(rating)))
    return dict(out)


def test_file_order_keeps_row_order_within_ties():
    rows = bursty_rows()
    store = store_of(rows)
    expected = reference_sequences(rows, k=0)  # stable sort by (user, time): ties in file order
    assert sequences_of(store) == expected
    assert store.info["tie_order"] == "file" and store.info["tie_seed"] is None


def test_shuffle_permutes_only_within_equal_user_and_time():
    rows = bursty_rows()
    file, shuffled = store_of(rows), store_of(rows, tie_order="shuffle", tie_seed=3)
    # the same users, lengths and time sequence: no rating crosses to another second or user
    assert np.array_equal(file.offsets, shuffled.offsets) and np.array_equal(file.user_map, shuffled.user_map)
    assert np.array_equal(file.times, shuffled.times)
    before, after = groups(file), groups(shuffled)
    assert before.keys() == after.keys()
    assert all(Counter(before[key]) == Counter(after[key]) for key in before)
    moved = [key for key in before if before[key] != after[key]]
    assert moved, "shuffle left every tie in file order"
    assert all(len(before[key]) > 1 for key in moved)
    # the order within a pair of ties is a coin flip, not a fixed rule
    pairs = [key for key in before if len(before[key]) == 2]
    swapped = sum(before[key] != after[key] for key in pairs) / len(pairs)
    assert len(pairs) > 50 and 0.25 < swapped < 0.75
    assert shuffled.info["tie_order"] == "shuffle" and shuffled.info["tie_seed"] == 3


def test_shuffle_is_deterministic_per_seed():
    rows = bursty_rows(seed=1)
    first, again = (
        store_of(rows, tie_order="shuffle", tie_seed=5),
        store_of(rows, tie_order="shuffle", tie_seed=5),
    )
    other = store_of(rows, tie_order="shuffle", tie_seed=6)
    for name in ("items", "ratings", "times", "offsets", "item_map"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.items, other.items)


def test_unknown_tie_order_is_a_clear_error():
    with pytest.raises(DataError, match=r"unknown data.tie_order 'random'; known: file, shuffle"):
        Options(tie_order="random")


def test_datamodule_passes_the_tie_order_and_caches_it_apart(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:g},{t}" for u, i, r, t in bursty_rows(seed=2)]
    path = write_lines(tmp_path / "ratings.csv", lines)
    source = {"kind": "path", "path": str(path)}
    common = {"name": "path", "source": source, "data_dir": str(tmp_path), "k_core": 3}
    file = SequenceDataModule(**common)
    shuffled = SequenceDataModule(**common, tie_order="shuffle", tie_seed=1)
    for dm in (file, shuffled):
        dm.setup()
    assert file.cache_dir != shuffled.cache_dir
    assert shuffled.store.info["tie_order"] == "shuffle" and shuffled.store.info["tie_seed"] == 1
    assert np.array_equal(file.store.times, shuffled.store.times)
    assert not np.array_equal(file.store.items, shuffled.store.items)
