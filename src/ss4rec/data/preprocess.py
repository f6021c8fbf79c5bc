"""From parsed ratings to a :class:`SequenceStore`: ids, chronological order, duplicates, k-core, split.

Every step is vectorised (polars and numpy; no Python loop over rows):
1. ids are encoded to dense codes ordered by original id (users 0..U-1, items 1..N after filtering);
2. rows are stably sorted by (user, timestamp) with int64 timestamps, so ties keep the file's row order
   (``tie_order="file"``, the protocol); ``tie_order="shuffle"`` first permutes the rows with
   ``tie_seed``, so ratings made in the same second by the same user come in a random, seeded order, and
   distinct timestamps are never reordered; ``timestamp_dtype="float32"`` first rounds every timestamp
   as RecBole's float32 time field does (to a multiple of 64 s for 1987-2004, 128 s for 2004-2038), so
   ratings within a rounding step become ties and the file's order decides among them;
3. the duplicate policy is applied (``keep_all``, the default: MovieLens has no duplicate user-item pairs;
   ``keep_first`` / ``keep_last``: the earliest / latest rating of a pair, by time then row order;
   ``error``: stop and name the lines);
4. the iterative k-core filter keeps users and items with at least ``k_core`` interactions until stable;
   users also need 3 interactions for leave-one-out (training part, validation, test), so the user
   threshold is ``max(k_core, 3)``;
5. the store keeps each user's whole chronological sequence; leave-one-out is positional (last = test,
   second to last = validation) and truncation to ``max_len`` happens when batches are built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from ss4rec.data import metadata
from ss4rec.data.errors import DataError
from ss4rec.data.sources import Raw
from ss4rec.data.store import SequenceStore

log = logging.getLogger(__name__)
DUPLICATE_POLICIES = ("keep_all", "keep_first", "keep_last", "error")
TIE_ORDERS = ("file", "shuffle")
TIMESTAMP_DTYPES = ("int64", "float32")


@dataclass(frozen=True)
class Options:
    """Every preprocessing option; all of them are part of the cache key."""

    k_core: int = 5
    duplicates: str = "keep_all"
    tie_order: str = "file"  # file: ties in time keep the source's row order | shuffle: seeded random order
    tie_seed: int = 0  # the shuffle's seed (unused by tie_order=file)
    timestamp_dtype: str = "int64"  # int64: exact seconds | float32: rounded as RecBole stores them

    def __post_init__(self):
        if self.duplicates not in DUPLICATE_POLICIES:
            raise DataError(
                f"unknown duplicate policy {self.duplicates!r}; known: {', '.join(DUPLICATE_POLICIES)}"
            )
        if self.k_core < 0:
            raise DataError(f"k_core must be >= 0, got {self.k_core}")
        if self.tie_order not in TIE_ORDERS:
            raise DataError(f"unknown data.tie_order {self.tie_order!r}; known: {', '.join(TIE_ORDERS)}")
        if self.timestamp_dtype not in TIMESTAMP_DTYPES:
            raise DataError(
                f"unknown data.timestamp_dtype {self.timestamp_dtype!r}; known: {', '.join(TIMESTAMP_DTYPES)}"
            )

    @classmethod
    def of_run(cls, data: Mapping[str, Any]) -> Options:
        """The options a run's ``data`` config prepared its store with (serving and the batch export rebuild the same
        store); a key the config lacks (a run from before the option) takes its default."""
        return cls(k_core=int(data.get("k_core", 5)), duplicates=data.get("duplicates", "keep_all"),
                   tie_order=data.get("tie_order", "file"), tie_seed=int(data.get("tie_seed") or 0),
                   timestamp_dtype=data.get("timestamp_dtype", "int64"))  # fmt: skip

    def as_dict(self) -> dict:
        """The options that change the result (the cache key): ``tie_seed`` only when ties are shuffled,
        ``timestamp_dtype`` only when not the default (so caches prepared before it existed stay valid)."""
        options = asdict(self)
        if self.tie_order == "file":
            del options["tie_seed"]
        if self.timestamp_dtype == "int64":
            del options["timestamp_dtype"]
        return options


def encode(values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes (n,) int32 in the order of the sorted unique values, and those values (U,)."""
    if values.dtype.is_integer():
        array = values.to_numpy()
        low, high = int(array.min()), int(array.max())
        if high - low < max(4 * len(array), 1 << 20):  # small id range: a lookup table, O(n)
            shifted = array - low if low else array
            present = np.zeros(high - low + 1, dtype=bool)
            present[shifted] = True
            code_of = np.cumsum(present, dtype=np.int32) - 1
            return code_of[shifted], np.flatnonzero(present) + low
    uniques = values.unique().sort()
    return uniques.search_sorted(values).cast(pl.Int32).to_numpy(), uniques.to_numpy()


def float32_seconds(times: np.ndarray) -> np.ndarray:
    """Unix seconds rounded to the nearest float32, as int64: what RecBole's sequential pipeline sorts by
    and feeds its models (a ``timestamp:float`` field becomes a ``torch.FloatTensor`` before the
    (user, time) sort). Exact for every value a float32 can hold; 64 s steps for 2^29-2^30 s."""
    return np.asarray(times, dtype=np.int64).astype(np.float32).astype(np.int64)


def shuffle_rows(seed: int, *columns: np.ndarray) -> list[np.ndarray]:
    """The columns with their rows in one seeded random order (before :func:`chronological`'s stable sort,
    this randomises only the order within equal (user, time))."""
    order = np.random.default_rng(seed).permutation(len(columns[0]))
    return [column[order] for column in columns]


def chronological(users: np.ndarray, items: np.ndarray, times: np.ndarray, ratings: np.ndarray):
    """The four columns stably sorted by (user code, time): ties in time keep row order.

    When user code and time span fit one int64 key (always for MovieLens), polars sorts the key together
    with the item and rating columns in one parallel pass and user and time are decoded from the key;
    otherwise a numpy lexsort (stable) and gathers.
    """
    low = int(times.min()) if len(times) else 0
    bits = (int(times.max()) - low).bit_length() if len(times) else 0
    user_bits = max(int(users.max()), 1).bit_length() if len(users) else 1
    if bits + user_bits > 62:
        order = np.lexsort((times, users))
        return users[order], items[order], times[order], ratings[order]
    key = (users.astype(np.int64) << bits) | (times - low)
    frame = pl.DataFrame({"key": key, "item": items, "rating": ratings})
    del key
    frame = frame.sort("key", maintain_order=True)
    key = frame["key"].to_numpy()
    users = (key >> bits).astype(np.int32)
    times = (key & ((1 << bits) - 1)) + low
    return users, frame["item"].to_numpy(), times, frame["rating"].to_numpy()


def _duplicates(
    users, items, n_items: int, policy: str, raw: Raw, user_ids, item_ids
) -> tuple[np.ndarray | None, int]:
    """Rows to keep under ``policy`` (None: all) and the number of repeated user-item pairs."""
    key = pl.Series(users.astype(np.int64) * n_items + items)
    n_dup = len(key) - key.n_unique()
    if n_dup == 0 or policy == "keep_all":
        if n_dup:
            log.warning("%d repeated user-item pairs kept (data.duplicates=keep_all)", n_dup)
        return None, n_dup
    if policy == "error":
        row = int(key.is_duplicated().arg_true()[0])
        user, item = user_ids[users[row]], item_ids[items[row]]
        from ss4rec.data.diagnose import find_pair

        lines = find_pair(raw.files, user, item)
        where = "; ".join(lines) if lines else f"files {[str(f.path) for f in raw.files]}"
        raise DataError(
            f"{n_dup} repeated user-item pairs, e.g. user {user} item {item} rated twice: {where}; "
            f"expected each pair once (set data.duplicates to keep_all, keep_first or keep_last)"
        )
    keep = key.is_first_distinct() if policy == "keep_first" else key.is_last_distinct()
    return keep.to_numpy(), n_dup


def k_core(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int
) -> tuple[np.ndarray | None, int]:
    """Rows (increasing indices; None = all) of the iterative k-core; users need max(k, 3). Also the rounds."""
    rows = None
    user_min, item_min = max(k, 3), max(k, 1)
    for rounds in range(1, 10_000):
        weak_users = np.bincount(users, minlength=n_users) < user_min
        weak_items = np.bincount(items, minlength=n_items) < item_min
        if not (weak_users.any() or weak_items.any()):
            return rows, rounds
        keep = ~(weak_users[users] | weak_items[items])
        if keep.all():  # only users/items that no longer occur are weak
            return rows, rounds
        rows = np.flatnonzero(keep) if rows is None else rows[keep]
        users, items = users[keep], items[keep]
        if len(rows) == 0:
            return rows, rounds
    raise RuntimeError("k-core did not converge")


def build_store(raw: Raw, options: Options, scale: tuple[float, float] | None) -> SequenceStore:
    """Run steps 1-5 on parsed ratings; raise DataError when a filter leaves nothing."""
    started = time.perf_counter()
    frame, raw.ratings = raw.ratings, None  # consumed: let its memory go as soon as the arrays exist
    n_raw = frame.height
    if n_raw == 0:
        raise DataError("the source has no ratings")
    users, user_ids = encode(frame["user"])
    items, item_ids = encode(frame["item"])
    times, ratings = frame["timestamp"].to_numpy(), frame["rating"].to_numpy()
    del frame
    if options.timestamp_dtype == "float32":
        times = float32_seconds(times)
    if options.tie_order == "shuffle":
        users, items, times, ratings = shuffle_rows(options.tie_seed, users, items, times, ratings)
    users, items, times, ratings = chronological(users, items, times, ratings)
    log.info("sorted %d ratings by user and time in %.1f s", n_raw, time.perf_counter() - started)
    keep, n_dup = _duplicates(users, items, len(item_ids), options.duplicates, raw, user_ids, item_ids)
    if keep is not None:
        users, items, times, ratings = users[keep], items[keep], times[keep], ratings[keep]
    rows, iterations = k_core(users, items, len(user_ids), len(item_ids), options.k_core)
    if rows is not None and len(rows) == 0:
        raise DataError(
            f"the k-core filter (k_core={options.k_core}: users need >= {max(options.k_core, 3)} ratings, items "
            f">= {max(options.k_core, 1)}, repeated until stable) removed all {len(users)} ratings of "
            f"{len(user_ids)} users and {len(item_ids)} items; the most active user has "
            f"{np.bincount(users).max()} ratings. Lower data.k_core or use a larger dataset."
        )
    if rows is not None:
        users, items, times, ratings = users[rows], items[rows], times[rows], ratings[rows]
    kept_users = np.bincount(users, minlength=len(user_ids)) > 0
    kept_items = np.bincount(items, minlength=len(item_ids)) > 0
    users = (np.cumsum(kept_users, dtype=np.int32) - 1)[users]
    items = np.cumsum(kept_items, dtype=np.int32)[items]  # 1..N, 0 is padding
    pad = np.array([-1 if item_ids.dtype.kind == "i" else 0 if item_ids.dtype.kind == "u" else ""])
    item_map = np.concatenate([pad.astype(item_ids.dtype), item_ids[kept_items]])  # index 0: padding
    genres, genre_names = metadata.genre_matrix(raw.items, item_map)
    info = {
        "raw_interactions": n_raw, "raw_users": len(user_ids), "raw_items": len(item_ids),
        "duplicate_pairs": n_dup, "duplicates": options.duplicates, "k_core": options.k_core,
        "tie_order": options.tie_order, "tie_seed": options.tie_seed if options.tie_order == "shuffle" else None,
        "timestamp_dtype": options.timestamp_dtype,
        "k_core_iterations": iterations, "rating_scale": list(scale) if scale else None,
        "genres": genre_names,
    }  # fmt: skip
    log.info("preprocessed %d -> %d ratings in %.1f s", n_raw, len(items), time.perf_counter() - started)
    return SequenceStore(
        items=items.astype(np.int32),
        times=times.astype(np.int64),
        ratings=ratings.astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(np.bincount(users))]).astype(np.int64),
        user_map=user_ids[kept_users],
        item_map=item_map,
        item_genres=genres,
        item_titles=metadata.titles(raw.items, item_map),
        info=info,
    )
