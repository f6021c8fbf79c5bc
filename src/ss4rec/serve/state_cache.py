"""A bounded LRU cache of per-user inference states, with its size reported.

An entry is a ``UserState``: the model state after every served event but the last, and that last event
itself (the *pending* event, stepped at query time with the request's time as its next-interaction time).
The cache is only a cache: the interaction log can rebuild any entry, so evicting one loses nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ss4rec.models.base import State
from ss4rec.serve.interactions import Event


@dataclass
class UserState:
    """``state`` after the served events but the last (``pending``); ``n_events``: events of the log it covers
    (a snapshot entry whose count disagrees with the log is stale)."""

    state: State
    pending: Event
    n_events: int

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state.values()) + 64


class StateCache:
    """Least-recently-used user states, at most ``max_bytes`` of tensors (oldest entries evicted first)."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"state cache size must be > 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[int, UserState] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id) -> bool:
        return user_id in self._entries

    def get(self, user_id) -> UserState | None:
        entry = self._entries.get(user_id)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(user_id)
        return entry

    def put(self, user_id, entry: UserState) -> None:
        self.drop(user_id)
        self._entries[user_id] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
            self.evictions += 1

    def drop(self, user_id) -> None:
        entry = self._entries.pop(user_id, None)
        if entry is not None:
            self.nbytes -= entry.nbytes

    def items(self):
        return list(self._entries.items())

    def info(self) -> dict:
        return {"users": len(self._entries), "bytes": self.nbytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions}  # fmt: skip

    # ---- snapshots ------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Plain data for ``torch.save``: every entry's tensors, pending event and event count."""
        return {
            user: {"state": entry.state, "pending": (entry.pending.item, entry.pending.time, entry.pending.rating),
                   "n_events": entry.n_events}
            for user, entry in self._entries.items()
        }  # fmt: skip

    def restore(self, entries: dict) -> int:
        """Put the entries of a ``snapshot`` back (least recently used first); returns how many."""
        for user, raw in entries.items():
            self.put(user, UserState({k: torch.as_tensor(v) for k, v in raw["state"].items()},
                                     Event(*raw["pending"]), int(raw["n_events"])))  # fmt: skip
        return len(entries)
