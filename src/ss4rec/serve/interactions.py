"""The interaction log: every user's events in time order, the source of truth of the serving state.

It starts from the prepared data (a ``SequenceStore``: read-only, memory-mapped arrays) and takes new events
on top. A user's events stay ordered by time; ties keep arrival order (an event goes after every event of the
same second, as the data's stable sort puts later rows after earlier ones). An event older than the user's
last one is inserted in its place and reported as out of order, so the caller rebuilds that user's state.

``EventJournal`` makes ingested events durable: one JSON line per event, appended and flushed before
``ingest`` returns, replayed into a fresh log at start-up.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Event:
    """One interaction: item index (1..N), unix seconds, rating (0.0 = none given)."""

    item: int
    time: int
    rating: float = 0.0


class InteractionLog:
    """Events per user, users addressed by their original id.

    Args:
        items, times, ratings, offsets: the store's flat arrays (user u's rows ``offsets[u]:offsets[u+1]``).
        user_ids: original id of each store user (U,).
        drop_last: leave out each store user's last ``drop_last`` events (offline evaluation: the test
            input is everything before the test target).
        known_users: how many of the store's users count as users of the data (``store_users``; default all): with
            0 every user is a new user to a model (``python -m ss4rec.serve.offline --as-new-users``).
        keep_last: keep only each store user's last ``keep_last`` events (after ``drop_last``; default all): a short
            history (``python -m ss4rec.serve.offline --last-events``).
    """

    def __init__(self, items, times, ratings, offsets, user_ids, drop_last: int = 0, known_users: int | None = None,
                 keep_last: int | None = None):  # fmt: skip
        self._items, self._times, self._ratings = items, times, ratings
        self._ends = np.asarray(offsets[1:], dtype=np.int64) - int(drop_last)
        self._starts = np.asarray(offsets[:-1], dtype=np.int64)
        if keep_last is not None:
            self._starts = np.maximum(self._starts, self._ends - int(keep_last))
        self._index = {int(u): i for i, u in enumerate(np.asarray(user_ids))}
        self._edited: dict[int, list[list]] = {}  # user index -> [items, times, ratings] lists
        self._known = len(self._starts) if known_users is None else int(known_users)

    @classmethod
    def from_store(cls, store, drop_last: int = 0, known_users: int | None = None, keep_last: int | None = None) -> InteractionLog:
        return cls(store.items, store.times, store.ratings, store.offsets, store.user_map, drop_last, known_users, keep_last)

    # ---- users ----------------------------------------------------------------------------------------
    def __contains__(self, user_id) -> bool:
        return self._key(user_id) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def user_ids(self) -> list[int]:
        """Original ids of every user, store users first, then new users in arrival order."""
        ids = [0] * len(self._index)
        for user, i in self._index.items():
            ids[i] = user
        return ids

    @staticmethod
    def _key(user_id) -> int:
        return int(user_id)

    def _row(self, user_id) -> int | None:
        return self._index.get(self._key(user_id))

    def row(self, user_id) -> int | None:
        """The user's row: the data's user index for a user of the data (``store_users`` of them, rows 0 to
        ``store_users - 1``), a later one for a new user in arrival order; None for an unknown user."""
        return self._row(user_id)

    @property
    def store_users(self) -> int:
        """Users of the data the log started from (a new user's row is this or more; ``known_users`` when given)."""
        return self._known

    # ---- reading --------------------------------------------------------------------------------------
    def length(self, user_id) -> int:
        i = self._row(user_id)
        if i is None:
            return 0
        if i in self._edited:
            return len(self._edited[i][0])
        return int(self._ends[i] - self._starts[i])

    def events(self, user_id, last: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items int64, times int64, ratings float32) of the user in time order; ``last``: the last n only."""
        i = self._row(user_id)
        if i is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        if i in self._edited:
            items, times, ratings = self._edited[i]
            cut = 0 if last is None else max(0, len(items) - last)
            return (np.asarray(items[cut:], dtype=np.int64), np.asarray(times[cut:], dtype=np.int64),
                    np.asarray(ratings[cut:], dtype=np.float32))  # fmt: skip
        start, end = int(self._starts[i]), int(self._ends[i])
        if last is not None:
            start = max(start, end - last)
        return (np.asarray(self._items[start:end], dtype=np.int64), np.asarray(self._times[start:end], dtype=np.int64),
                np.asarray(self._ratings[start:end], dtype=np.float32))  # fmt: skip

    def items(self, user_id) -> np.ndarray:
        """Item indices (int64) of every event of the user, in time order (the seen items)."""
        i = self._row(user_id)
        if i is None:
            return np.zeros(0, dtype=np.int64)
        if i in self._edited:
            return np.asarray(self._edited[i][0], dtype=np.int64)
        return np.asarray(self._items[int(self._starts[i]) : int(self._ends[i])], dtype=np.int64)

    def last_event(self, user_id) -> Event | None:
        items, times, ratings = self.events(user_id, last=1)
        return Event(int(items[0]), int(times[0]), float(ratings[0])) if len(items) else None

    # ---- writing --------------------------------------------------------------------------------------
    def append(self, user_id, event: Event) -> bool:
        """Add an event; True when it went to the end (in order), False when it was inserted earlier."""
        i = self._row(user_id)
        if i is None:
            i = self._index[self._key(user_id)] = len(self._index)
            self._edited[i] = [[], [], []]  # a new user: no store rows
        if i not in self._edited:
            items, times, ratings = self.events(user_id)
            self._edited[i] = [items.tolist(), times.tolist(), ratings.tolist()]
        items, times, ratings = self._edited[i]
        at = bisect.bisect_right(times, event.time)  # after every event of the same second
        items.insert(at, event.item)
        times.insert(at, event.time)
        ratings.insert(at, event.rating)
        return at == len(times) - 1


class EventJournal:
    """Append-only JSON-lines file of ingested events (original ids), replayed at start-up.

    Each line is written and flushed before ``write`` returns, so a restarted process loses nothing;
    ``fsync=True`` also survives a machine crash at the cost of a disk sync per event.
    """

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        torn = self.path.is_file() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends
        if torn:  # a crash cut the last line: end it, so the next event starts a line of its own
            self._handle.write("\n")

    def read(self) -> list[dict]:
        """Every event written so far, in arrival order (a torn last line from a crash is skipped)."""
        records = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records

    def write(self, user_id: int, item_id: int, timestamp: int, rating: float | None) -> None:
        record = {"user_id": user_id, "item_id": item_id, "timestamp": timestamp, "rating": rating}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()
