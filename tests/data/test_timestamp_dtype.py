"""data.timestamp_dtype: ``float32`` rounds timestamps as RecBole's float time field does before the sort."""

import numpy as np
import pytest

from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.data.errors import DataError
from ss4rec.data.preprocess import Options, float32_seconds
from ss4rec.evaluate_checkpoint import data_overrides

from .conftest import reference_sequences, write_lines
from .test_tie_order import sequences_of, store_of


def nearest_float32(t: int) -> int:
    """Round-to-nearest-even onto the float32 grid, in plain integers: 2^24 values per power of two."""
    if t == 0:
        return 0
    step = 1 << max(t.bit_length() - 24, 0)
    down, rest = t - t % step, t % step
    if rest * 2 > step or (rest * 2 == step and (down // step) % 2 == 1):
        return down + step
    return down


def test_float32_seconds_is_the_float32_grid():
    rng = np.random.default_rng(0)
    times = np.concatenate([
        rng.integers(0, 1 << 24, 200),  # exact below 2^24
        rng.integers(874_724_710, 1_046_454_590, 2_000),  # ML-100K .. ML-1M: 64 s steps
        rng.integers(1 << 30, 1_700_000_000, 2_000),  # ML-25M's later years: 128 s steps
        (np.arange(-3, 4) * 32 + 1_000_000_000 // 64 * 64),  # exact halfway cases: ties to even
    ]).astype(np.int64)  # fmt: skip
    got = float32_seconds(times)
    assert got.dtype == np.int64
    assert got.tolist() == [nearest_float32(int(t)) for t in times]
    assert (got[200:2200] % 64 == 0).all() and (np.abs(got - times)[200:2200] <= 32).all()


def rows_in_one_minute(seed: int = 0, n_users: int = 40, per_user: int = 10):
    """Ratings a few seconds apart, in no time order within a user: exact times order them, float32 cannot."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(np.arange(1, 60), per_user, replace=False)
        stamps = 1_000_000_000 // 64 * 64 + 1 + rng.integers(0, 3, per_user) * 1_000 + rng.integers(0, 30, per_user)
        rows += [(user, int(i), float(rng.integers(1, 6)), int(t)) for i, t in zip(items, stamps)]
    return rows


def test_float32_orders_like_recbole_exact_times_stay_exact():
    rows = rows_in_one_minute()
    exact, rounded = store_of(rows), store_of(rows, timestamp_dtype="float32")
    assert exact.info["timestamp_dtype"] == "int64" and rounded.info["timestamp_dtype"] == "float32"
    as_recbole = [(u, i, r, nearest_float32(t)) for u, i, r, t in rows]  # RecBole: round, then stable sort
    for store, source in ((exact, rows), (rounded, as_recbole)):
        assert sequences_of(store) == reference_sequences(source, k=0)
    assert not np.array_equal(exact.items, rounded.items)  # the rounding reorders within the minute


def test_default_keeps_the_cache_key_of_stores_prepared_before_the_option():
    assert "timestamp_dtype" not in Options().as_dict()
    assert Options(timestamp_dtype="float32").as_dict()["timestamp_dtype"] == "float32"


def test_unknown_timestamp_dtype_is_a_clear_error():
    with pytest.raises(DataError, match=r"unknown data.timestamp_dtype 'float16'; known: int64, float32"):
        Options(timestamp_dtype="float16")


def test_datamodule_passes_it_and_caches_it_apart(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:g},{t}" for u, i, r, t in rows_in_one_minute(1)]
    source = {"kind": "path", "path": str(write_lines(tmp_path / "ratings.csv", lines))}
    common = {"name": "path", "source": source, "data_dir": str(tmp_path), "k_core": 3}
    exact, rounded = SequenceDataModule(**common), SequenceDataModule(**common, timestamp_dtype="float32")
    for dm in (exact, rounded):
        dm.setup()
    assert exact.cache_dir != rounded.cache_dir
    assert (rounded.store.times % 64 == 0).all() and not (exact.store.times % 64 == 0).all()


def test_checkpoints_of_runs_older_than_an_option_can_be_scored_with_it():
    assert data_overrides(["timestamp_dtype=float32"], {"tie_order": "file"}) == {"timestamp_dtype": "float32"}
