"""Popularity's metrics straight from a prepared store, as an independent reference for end-to-end tests.

Plain numpy in float64 from the protocol's definitions (../shared/PROTOCOL.md), sharing nothing with the
model, the loaders, ``rank_targets`` or the metric objects: a user's rows are in time order, the last one is
the test target, the one before it the validation target, the rest is training. An item's score is its
number of training interactions; a target's rank counts the other items with at least its count
(pessimistic ties). Its rating is the item's mean training rating (the global mean for unseen items).
"""

from __future__ import annotations

import numpy as np


def _training_rows(offsets: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(start, end - 2) for start, end in zip(offsets[:-1], offsets[1:])])


def popularity_metrics(store, stage: str = "test", ks=(1, 5, 10, 20)) -> dict[str, float]:
    """``{"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "rmse": ..., "mae": ...}`` of popularity on ``stage``."""
    items, ratings = np.asarray(store.items, dtype=np.int64), np.asarray(store.ratings, dtype=np.float64)
    offsets = np.asarray(store.offsets, dtype=np.int64)
    n_items = int(store.n_items)
    train = _training_rows(offsets)
    counts = np.bincount(items[train], minlength=n_items + 1)
    target_rows = offsets[1:] - (2 if stage == "val" else 1)
    targets = items[target_rows]
    # items 1..N with a count >= the target's, the target itself excluded
    rank = np.array([(counts[1:] >= counts[t]).sum() - 1 for t in targets], dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = rank < k
        out |= {f"hr@{k}": hit.mean(), f"ndcg@{k}": (hit / np.log2(rank + 2)).mean(),
                f"mrr@{k}": (hit / (rank + 1)).mean()}
    sums = np.bincount(items[train], weights=ratings[train], minlength=n_items + 1)
    global_mean = ratings[train].mean()
    predicted = np.where(counts[targets] > 0, sums[targets] / np.maximum(counts[targets], 1), global_mean)
    error = predicted - ratings[target_rows]
    out |= {"rmse": float(np.sqrt((error**2).mean())), "mae": float(np.abs(error).mean())}
    return {name: float(value) for name, value in out.items()}
