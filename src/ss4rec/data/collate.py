"""Vectorised batch builders over a :class:`SequenceStore` (layouts: see ``ss4rec.batch``).

Every builder takes a whole batch of example indices and gathers it with one fancy-indexing operation
per field: row indices ``(B, L) = start[:, None] + arange(L)``, masked to each row's length. No Python
loop runs over positions or rows.
"""

from __future__ import annotations

import numpy as np
import torch

from ss4rec.batch import Batch
from ss4rec.data.store import SequenceStore


def segment_rows(starts: np.ndarray, lengths: np.ndarray, width: int | None = None):
    """Row indices (B, W) of the segments ``[start, start + length)``, and the mask of real positions.

    Padding positions point at row 0 (always valid) and must be masked by the caller. W defaults to the
    longest segment (at least 1).
    """
    width = max(int(lengths.max(initial=0)), 1) if width is None else width
    offsets = np.arange(width, dtype=np.int64)
    mask = offsets[None, :] < lengths[:, None]
    rows = np.where(mask, starts[:, None] + offsets[None, :], 0)
    return rows, mask


def _take(values: np.ndarray, rows: np.ndarray, mask: np.ndarray, dtype) -> torch.Tensor:
    out = np.take(values, rows).astype(dtype, copy=False)
    out[~mask] = 0
    return torch.from_numpy(out)


def sequence_batch(store: SequenceStore, users, starts, lengths, target_mask, width=None) -> Batch:
    """A ``sequence`` batch of input segments whose targets are the rows right after each position.

    users, starts (first row), lengths: (B,); ``target_mask`` (B, W) bool or None: positions that carry a
    target (None: every real position). The caller guarantees ``start + length`` stays inside the user.
    """
    rows, mask = segment_rows(starts, lengths, width)
    has_target = mask if target_mask is None else mask & target_mask
    next_rows = np.where(mask, rows + 1, 0)
    return {
        "users": torch.from_numpy(users.astype(np.int64)),
        "items": _take(store.items, rows, mask, np.int64),
        "times": _take(store.times, rows, mask, np.int64),
        "ratings": _take(store.ratings, rows, mask, np.float32),
        "lengths": torch.from_numpy(lengths.astype(np.int64)),
        "target_items": _take(store.items, next_rows, has_target, np.int64),
        "target_times": _take(store.times, next_rows, has_target, np.int64),
        "target_ratings": _take(store.ratings, next_rows, has_target, np.float32),
    }


def target_from_end(store: SequenceStore, users, starts, batch: Batch) -> torch.Tensor:
    """(B, W) long: each training target's place counted from the end of its user's training part (1 = the
    user's last training rating), 0 where a position has no target; ``batch`` from :func:`sequence_batch`."""
    width = batch["target_items"].shape[1]
    rows = np.asarray(starts)[:, None] + 1 + np.arange(width)[None, :]  # the row each position's target sits in
    place = store.train_ends[np.asarray(users)][:, None] - rows
    return torch.from_numpy(np.where(batch["target_items"].numpy() > 0, place, 0).astype(np.int64))


def eval_batch(store: SequenceStore, users: np.ndarray, stage: str, max_len: int, width=None) -> Batch:
    """Validation (``stage='val'``) or test batch for ``users`` (B,).

    Input: the most recent ``max_len`` interactions before the held-out one (validation: the training part;
    test: training part + validation interaction). The held-out target sits at ``lengths - 1``. ``seen``
    (B, S) holds the whole history before the target; its first ``train_lengths`` (B,) entries are the
    training part (validation: all of them; test: all but the validation item).
    """
    first = store.offsets[users]
    target = store.offsets[users + 1] - (2 if stage == "val" else 1)
    starts = np.maximum(first, target - max_len)
    batch = sequence_batch(store, users, starts, target - starts, None, width)
    seen_rows, seen_mask = segment_rows(first, target - first)
    batch["seen"] = _take(store.items, seen_rows, seen_mask, np.int64)
    batch["train_lengths"] = torch.from_numpy((store.train_ends[users] - first).astype(np.int64))
    return batch


def pairs_batch(store: SequenceStore, rows: np.ndarray, row_users: np.ndarray) -> Batch:
    """A ``pairs`` batch of single training interactions ``rows`` (B,); ``row_users``: user of every row."""
    return {
        "users": torch.from_numpy(row_users[rows].astype(np.int64)),
        "items": torch.from_numpy(store.items[rows].astype(np.int64)),
        "ratings": torch.from_numpy(store.ratings[rows].astype(np.float32)),
        "times": torch.from_numpy(store.times[rows].astype(np.int64)),
    }


def history_batch(store: SequenceStore, users: np.ndarray) -> Batch:
    """A ``history`` batch: each user's whole training part, right-padded, (B, S)."""
    first = store.offsets[users]
    rows, mask = segment_rows(first, store.train_ends[users] - first)
    return {
        "users": torch.from_numpy(users.astype(np.int64)),
        "history": _take(store.items, rows, mask, np.int64),
        "history_ratings": _take(store.ratings, rows, mask, np.float32),
        "history_times": _take(store.times, rows, mask, np.int64),
    }
