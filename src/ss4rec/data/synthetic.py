"""A seeded generator of MovieLens-like ratings at any size (tested up to 25M+ rows), vectorised numpy.

What makes it MovieLens-like:
- item popularity is a power law ``p(rank) ~ (rank + offset) ** -item_exponent`` (item ids are shuffled, so
  popularity is not sorted by id, and ids have gaps like MovieLens movie ids);
- user activity is skewed: every user has at least ``min_per_user`` ratings (as in MovieLens, 20), the rest
  is spread with log-normal weights (a few users rate thousands of items);
- a user never rates the same item twice (MovieLens has no duplicate pairs);
- time gaps inside a history are 0 seconds with probability ``zero_gap_share`` (people rate in bursts),
  otherwise minutes-to-hours or days-to-months;
- ratings follow MovieLens marginals exactly (quantile-mapped from user bias + item bias + noise, so they
  carry signal a rating model can learn).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ss4rec.data.store import ranges

#: rating marginals of ML-1M (1..5 stars) and ML-25M (0.5..5 in half stars), rounded
STAR_MARGINALS = {1.0: 0.056, 2.0: 0.108, 3.0: 0.261, 4.0: 0.349, 5.0: 0.226}
HALF_STAR_MARGINALS = {
    0.5: 0.016, 1.0: 0.031, 1.5: 0.016, 2.0: 0.066, 2.5: 0.050,
    3.0: 0.196, 3.5: 0.126, 4.0: 0.266, 4.5: 0.088, 5.0: 0.145,
}  # fmt: skip
_T_START = 946_684_800  # 2000-01-01
_T_SPAN = 20 * 365 * 86_400


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generator; the same spec and seed always give the same rows."""

    n_rows: int = 100_000
    n_users: int | None = None  # default: n_rows // 150 (about MovieLens' ratings per user)
    n_items: int | None = None  # default: 12 * sqrt(n_rows)
    min_per_user: int = 20
    user_sigma: float = 1.0  # log-normal spread of user activity
    item_exponent: float = 1.0  # power-law slope of item popularity
    item_offset: float | None = None  # flattens the head; default n_items / 100
    zero_gap_share: float = 0.5
    half_stars: bool = False  # 0.5..5 scale (ML-10M+) instead of 1..5 stars
    order: str = "random"  # row order of the output: random | user_time
    seed: int = 0

    def sizes(self) -> tuple[int, int]:
        """(n_users, n_items) after defaults."""
        n_users = self.n_users or max(1, self.n_rows // 150)
        n_items = self.n_items or max(10, int(12 * self.n_rows**0.5))
        return n_users, n_items

    def as_dict(self) -> dict:
        return asdict(self)


def _user_counts(rng: np.random.Generator, spec: SyntheticSpec, n_users: int, n_items: int) -> np.ndarray:
    """Ratings per user: (n_users,) summing to n_rows, each at least min_per_user and at most n_items // 2."""
    cap = max(1, n_items // 2)
    floor = min(spec.min_per_user, spec.n_rows // n_users, cap)
    if n_users * cap < spec.n_rows:
        raise ValueError(f"{spec.n_rows} rows do not fit {n_users} users x {cap} items each; raise n_items")
    weights = rng.lognormal(0.0, spec.user_sigma, n_users)
    counts = floor + rng.multinomial(spec.n_rows - floor * n_users, weights / weights.sum())
    while (over := counts - cap).max() > 0:  # move the excess of saturated users to the others
        excess = np.clip(over, 0, None)
        counts -= excess
        room = np.where(counts < cap, weights, 0.0)
        counts += rng.multinomial(int(excess.sum()), room / room.sum())
    return counts.astype(np.int64)


def _draw_items(
    rng: np.random.Generator, spec: SyntheticSpec, counts: np.ndarray, n_items: int
) -> np.ndarray:
    """One item per row of users grouped by ``counts`` (n_users,), no user drawing the same item twice."""
    offset = spec.item_offset if spec.item_offset is not None else n_items / 100
    popularity = (np.arange(n_items) + 1 + offset) ** -spec.item_exponent
    cdf = np.cumsum(rng.permutation(popularity))
    cdf /= cdf[-1]
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1).astype(np.int64)
    rows = np.arange(len(users))
    for _ in range(200):  # redraw repeated pairs, looking only at users who had one in the last round
        keys = pl.Series(users[rows] * n_items + items[rows])
        redraw = rows[~keys.is_first_distinct().to_numpy()]
        if len(redraw) == 0:
            return items
        items[redraw] = np.minimum(np.searchsorted(cdf, rng.random(len(redraw))), n_items - 1)
        rows = _rows_of(np.unique(users[redraw]), counts)
    raise RuntimeError("could not draw unique user-item pairs; raise n_items or lower the item exponent")


def _rows_of(which: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row indices of the users ``which`` when rows are grouped by user with ``counts``: concatenated ranges."""
    return ranges((np.cumsum(counts) - counts)[which], counts[which])


def _times(rng: np.random.Generator, spec: SyntheticSpec, counts: np.ndarray) -> np.ndarray:
    """Unix seconds per row, non-decreasing within each user (rows grouped by user): (n_rows,) int64."""
    n = int(counts.sum())
    kind = rng.random(n)
    short = np.exp(rng.normal(5.0, 1.5, n))  # minutes to hours
    long = np.exp(rng.normal(13.0, 1.5, n))  # days to months
    gaps = np.where(
        kind < spec.zero_gap_share, 0.0, np.where(kind < 0.5 + spec.zero_gap_share / 2, short, long)
    )
    gaps = gaps.astype(np.int64)
    starts = np.cumsum(counts) - counts  # first row of each user
    gaps[starts] = 0
    within = np.cumsum(gaps)
    within -= np.repeat(within[starts], counts)
    begin = _T_START + rng.integers(0, _T_SPAN // 2, len(counts))
    return np.repeat(begin, counts) + within


def _ratings(rng, spec: SyntheticSpec, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    """Ratings with MovieLens marginals: quantiles of user bias + item bias + noise, (n_rows,) float32."""
    marginals = HALF_STAR_MARGINALS if spec.half_stars else STAR_MARGINALS
    latent = (
        rng.normal(0, 0.5, n_users)[users]
        + rng.normal(0, 0.6, n_items)[items]
        + rng.normal(0, 0.8, len(users))
    )
    probs = np.array(list(marginals.values()))
    cuts = np.quantile(latent, np.cumsum(probs / probs.sum())[:-1])
    values = np.array(list(marginals), dtype=np.float32)
    return values[np.searchsorted(cuts, latent)]


def generate(spec: SyntheticSpec | None = None, **overrides) -> pl.DataFrame:
    """Ratings as a frame with MovieLens-like ids: columns user, item (int64), rating (float32), timestamp (int64)."""
    spec = SyntheticSpec(**{**(spec.as_dict() if spec else {}), **overrides})
    rng = np.random.default_rng(spec.seed)
    n_users, n_items = spec.sizes()
    counts = _user_counts(rng, spec, n_users, n_items)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    items = _draw_items(rng, spec, counts, n_items)
    times = _times(rng, spec, counts)
    ratings = _ratings(rng, spec, users, items, n_users, n_items)
    user_ids = rng.permutation(n_users) + 1  # original ids: a permutation of 1..n_users
    item_ids = np.sort(rng.choice(3 * n_items, n_items, replace=False)) + 1  # sparse ids with gaps
    order = rng.permutation(len(users)) if spec.order == "random" else np.arange(len(users))
    if spec.order not in ("random", "user_time"):
        raise ValueError(f"unknown order {spec.order!r}; known: random, user_time")
    return pl.DataFrame(
        {
            "user": user_ids[users[order]],
            "item": item_ids[items[order]],
            "rating": ratings[order],
            "timestamp": times[order],
        }
    )


def write(frame: pl.DataFrame, path: str | Path, fmt: str = "csv") -> Path:
    """Write ratings in a MovieLens layout: ``csv`` (ratings.csv, header), ``tsv`` (u.data), ``dat`` (::), ``parquet``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "csv":
        frame.rename({"user": "userId", "item": "movieId"}).write_csv(path)
    elif fmt in ("tsv", "dat"):
        if (frame["rating"] % 1 == 0).all():  # integer stars are written as integers, as MovieLens does
            frame = frame.with_columns(pl.col("rating").cast(pl.Int64))
        data = frame.write_csv(separator="\t", include_header=False).encode()
        path.write_bytes(data.replace(b"\t", b"::") if fmt == "dat" else data)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: csv, tsv, dat, parquet")
    return path
