"""The synthetic generator: deterministic, exact size, and MovieLens-like marginals."""

import numpy as np
import polars as pl
import pytest

from ss4rec.data import synthetic
from ss4rec.data.prepare import prepare
from ss4rec.data.sources import FileSource


@pytest.fixture(scope="module")
def sample():
    return synthetic.generate(n_rows=200_000, seed=3)


def test_deterministic_per_seed():
    a, b = synthetic.generate(n_rows=20_000, seed=1), synthetic.generate(n_rows=20_000, seed=1)
    assert a.equals(b)
    assert not a.equals(synthetic.generate(n_rows=20_000, seed=2))


def test_size_ids_and_no_repeated_pairs(sample):
    assert sample.height == 200_000
    assert sample.select(pl.struct("user", "item").n_unique()).item() == 200_000
    n_users, n_items = synthetic.SyntheticSpec(n_rows=200_000).sizes()
    assert sample["user"].n_unique() == n_users and sample["item"].n_unique() <= n_items
    assert sample["timestamp"].dtype == pl.Int64 and sample["rating"].dtype == pl.Float32


def test_rating_marginals(sample):
    shares = sample["rating"].value_counts(normalize=True).sort("rating")
    expected = synthetic.STAR_MARGINALS
    assert shares["rating"].to_list() == list(expected)
    assert np.allclose(shares["proportion"].to_numpy(), list(expected.values()), atol=0.003)
    half = (
        synthetic.generate(n_rows=50_000, half_stars=True)["rating"]
        .value_counts(normalize=True)
        .sort("rating")
    )
    assert np.allclose(
        half["proportion"].to_numpy(), list(synthetic.HALF_STAR_MARGINALS.values()), atol=0.004
    )


def test_ratings_carry_user_and_item_signal(sample):
    item_means = sample.group_by("item").agg(pl.col("rating").mean(), pl.len()).filter(pl.col("len") >= 50)
    assert item_means["rating"].std() > 0.3  # a shuffled rating column would give about 0.15


def test_power_law_items_and_skewed_users(sample):
    counts = np.sort(sample["item"].value_counts()["count"].to_numpy())[::-1]
    top = counts[: len(counts) // 100].sum() / counts.sum()
    assert top > 0.05  # the top 1% of items get far more than 1% of the ratings
    ranks = np.arange(1, len(counts) + 1)
    middle = slice(len(counts) // 10, len(counts) // 2)
    slope = np.polyfit(np.log(ranks[middle]), np.log(counts[middle]), 1)[0]
    assert -1.6 < slope < -0.4
    per_user = sample["user"].value_counts()["count"].to_numpy()
    assert per_user.min() >= 20 and per_user.max() > 8 * np.median(per_user)


def test_bursts_of_equal_timestamps(sample):
    ordered = sample.sort(["user", "timestamp"])
    same_user = ordered["user"].to_numpy()[1:] == ordered["user"].to_numpy()[:-1]
    zero = np.diff(ordered["timestamp"].to_numpy())[same_user] == 0
    assert zero.mean() == pytest.approx(0.5, abs=0.02)
    zero_30 = synthetic.generate(n_rows=30_000, zero_gap_share=0.3).sort(["user", "timestamp"])
    gaps = np.diff(zero_30["timestamp"].to_numpy())[np.diff(zero_30["user"].to_numpy()) == 0]
    assert (gaps == 0).mean() == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("fmt, options", [
    ("csv", {}),
    ("tsv", {"header": False, "columns": [0, 1, 2, 3]}),
    ("dat", {"header": False, "columns": [0, 1, 2, 3]}),
    ("parquet", {}),
    ("csv", {"separator": ","}),
])  # fmt: skip
def test_written_files_read_back(tmp_path, fmt, options):
    frame = synthetic.generate(n_rows=5_000, seed=4)
    path = synthetic.write(frame, tmp_path / f"ratings.{fmt}", fmt)
    columns = options.pop("columns", ["user", "item", "rating", "timestamp"] if fmt == "parquet" else None)
    source = FileSource(
        path, columns=tuple(columns or ("userId", "movieId", "rating", "timestamp")), **options
    )
    assert source.load().ratings.equals(frame)


def test_synthetic_source_is_cached_by_its_parameters(tmp_path):
    a, _, _ = prepare("synthetic", {"kind": "synthetic", "n_rows": 8_000, "seed": 5}, data_dir=tmp_path)
    b, _, cached = prepare("synthetic", {"kind": "synthetic", "n_rows": 8_000, "seed": 5}, data_dir=tmp_path)
    c, _, cached_c = prepare(
        "synthetic", {"kind": "synthetic", "n_rows": 8_000, "seed": 6}, data_dir=tmp_path
    )
    assert cached and not cached_c
    assert np.array_equal(a.items, b.items) and not np.array_equal(a.items[:100], c.items[:100])
