"""Statistics of a prepared store, as a dict (for JSON) and as a rich table."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from ss4rec.data.store import SequenceStore


def compute(store: SequenceStore, name: str = "", max_len: int | None = None) -> dict:
    """Counts, density, sequence lengths, zero-gap share, ratings; plain Python types only."""
    lengths = store.lengths
    gaps = np.diff(store.times)
    within = np.ones(len(gaps), dtype=bool)
    within[store.offsets[1:-1] - 1] = False  # a gap across two users is not a gap
    values, counts = np.unique(store.ratings, return_counts=True)
    train = store.train_rows()
    stats = {
        "name": name,
        "users": store.n_users,
        "items": store.n_items,
        "interactions": store.n_interactions,
        "density": store.n_interactions / max(store.n_users * store.n_items, 1),
        "seq_len_mean": float(lengths.mean()),
        "seq_len_median": float(np.median(lengths)),
        "seq_len_min": int(lengths.min()),
        "seq_len_max": int(lengths.max()),
        "zero_gap_share": float((gaps[within] == 0).mean()) if within.any() else 0.0,
        "rating_mean_train": float(np.asarray(store.ratings)[train].mean(dtype=np.float64)),
        "rating_histogram": {_key(v): int(c) for v, c in zip(values, counts)},
        "train_interactions": len(train),
        "val_interactions": store.n_users,
        "test_interactions": store.n_users,
        **training_days(store),
        "first_time": _date(store.times.min()),
        "last_time": _date(store.times.max()),
        "genres": len(store.info.get("genres") or []),
    }
    if max_len is not None:
        stats["max_len"] = max_len
        stats["users_longer_than_max_len"] = int((lengths - 2 > max_len).sum())
    for key in ("raw_interactions", "raw_users", "raw_items", "duplicate_pairs", "duplicates", "k_core",
                "k_core_iterations", "rating_scale"):  # fmt: skip
        if key in store.info:
            stats[key] = store.info[key]
    return stats


def training_days(store: SequenceStore) -> dict[str, float]:
    """How users' ratings fall on UTC days: training days per user (mean), the share of users whose training ratings
    all fall on one day, and the shares of validation and of test ratings made on a day on which the user also has a
    training rating (the recency a per-day bias, timeSVD++'s ``b_{u,day}``, can use)."""
    users = store.users_of_rows()
    keys = users * (1 << 32) + np.floor_divide(np.asarray(store.times, dtype=np.int64), 86_400)  # (user, day)
    train_keys = np.unique(keys[store.train_rows()])
    days_per_user = np.bincount(train_keys >> 32, minlength=store.n_users)
    return {
        "train_days_per_user_mean": float(days_per_user.mean()),
        "one_train_day_users_share": float((days_per_user == 1).mean()),
        **{f"{stage}_same_day_share": float(np.isin(keys[store.offsets[1:] - back], train_keys).mean())
           for stage, back in (("val", 2), ("test", 1))},
    }  # fmt: skip


def _key(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def _date(seconds) -> str:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc).strftime("%Y-%m-%d")


def table(stats: dict, title: str = "dataset"):
    """A rich Table of ``stats`` (numbers with thousands separators, the histogram as bars)."""
    from rich.table import Table

    out = Table(title=title, show_header=True, header_style="bold")
    out.add_column("statistic")
    out.add_column("value", justify="right")
    out.add_column("", no_wrap=True)
    for key, value in stats.items():
        if key == "rating_histogram":
            continue
        if isinstance(value, float):
            text = f"{value:.4%}" if key in ("density", "zero_gap_share", "one_train_day_users_share", "val_same_day_share", "test_same_day_share") else f"{value:,.3f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        else:
            text = str(value)
        out.add_row(key, text, "")
    histogram = stats.get("rating_histogram", {})
    total, top = max(sum(histogram.values()), 1), max(histogram.values(), default=1)
    for value, count in histogram.items():
        out.add_row(f"rating {value}", f"{count:,} ({count / total:5.1%})", "#" * round(30 * count / top))
    return out
