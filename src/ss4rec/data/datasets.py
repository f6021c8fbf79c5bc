"""Map-style datasets whose items are whole batches, and the seeded sampler that feeds them index arrays.

``DataLoader(dataset, batch_size=None, sampler=BatchSampler(...))``: the sampler yields one index array
per batch, the dataset gathers the whole batch at once (``ss4rec.data.collate``). Shuffling depends only
on ``(seed, epoch)``; Lightning calls ``set_epoch`` before every epoch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ss4rec.data import collate
from ss4rec.data.folds import rating_fold
from ss4rec.data.store import SequenceStore

TRAIN_WINDOWS = ("all", "recent")


def training_windows(
    store: SequenceStore, max_len: int, stride: int | None = None, which: str = "all"
) -> dict[str, np.ndarray]:
    """Cut every user's training part into windows so each training target occurs exactly once.

    A user with training part ``x_0..x_{T-1}`` has targets ``x_1..x_{T-1}`` (input positions ``0..T-2``).
    Windows end at input position ``T-1 - k * stride`` (k = 0 is the most recent, so recent targets get
    the longest context) and reach back ``max_len`` inputs. A window owns the targets of its last
    ``stride`` positions (the earliest window owns all its positions); the other positions are input
    context only, their targets masked because a later window owns them. ``stride = max_len`` (default)
    gives non-overlapping windows. ``which="recent"`` keeps only the most recent window of each user (its
    last ``max_len`` targets, all owned; ``stride`` is then unused): one example per user, as SASRec's own
    training does, so users with long histories no longer dominate the loss. Returns arrays (W,): user,
    start (first row), length, own_from (first position, within the window, whose target counts).
    """
    if which not in TRAIN_WINDOWS:
        raise ValueError(f"train_windows must be one of {', '.join(TRAIN_WINDOWS)}, got {which!r}")
    stride = max_len if stride is None or which == "recent" else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"train_stride must be in [1, max_len={max_len}], got {stride}")
    n_targets = np.maximum(store.lengths - 3, 0)  # training part length - 1
    counts = np.where(n_targets > 0, 1 + np.maximum(0, -(-(n_targets - max_len) // stride)), 0)
    if which == "recent":
        counts = np.minimum(counts, 1)
    user = np.repeat(np.arange(store.n_users, dtype=np.int64), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # window index within user
    end = n_targets[user] - k * stride
    begin = np.maximum(0, end - max_len)
    earliest = k == counts[user] - 1
    own_from = np.where(earliest, begin, end - stride) - begin
    return {"user": user, "start": store.offsets[user] + begin, "length": end - begin, "own_from": own_from}


class BatchSampler(Sampler):
    """Yields index arrays of ``batch_size`` (the last one shorter); shuffled by ``(seed, epoch)``.

    Distributed (``world`` > 1): process ``rank`` takes batches ``rank, rank + world, ...`` of the same
    order, so no example is repeated (evaluation stays exact); when shuffling (training) every process gets
    the same number of batches, the few left over are skipped that epoch (the order changes each epoch).

    Length pools (``lengths`` given and ``pool`` > 0, shuffling only): the shuffled order is cut into pools
    of ``pool`` batches, each pool is sorted by length and cut into batches, and the batches are shuffled.
    A batch then holds examples of similar length, so it pads less (sequence batches are as wide as their
    longest row), while every example still appears once per epoch in a random batch order.
    """

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
        rank: int = 0, world: int = 1, lengths: np.ndarray | None = None, pool: int = 0,
    ):  # fmt: skip
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.rank, self.world = rank, world
        if pool < 0:
            raise ValueError(f"pool must be >= 0 (0: no length pools), got {pool}")
        if pool and (lengths is None or len(lengths) != n):
            raise ValueError(f"length pools need one length per example ({n}), got {lengths is not None}")
        self.lengths, self.pool = lengths, int(pool)
        self.epoch = 0
        if not shuffle and world > 1 and self._n_batches() < world:
            # evaluation with fewer batches than processes: Lightning refuses a process with no batch, so the
            # examples are split into one smaller batch per process (each still read exactly once)
            self.batch_size = max(1, math.ceil(n / world))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _n_batches(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def _mine(self) -> range:
        total = self._n_batches()
        if self.shuffle:
            total -= total % self.world  # equal step counts on every process
        return range(self.rank, total, self.world)

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1  # advances by itself when nobody calls set_epoch
        order, batch_ids = np.arange(self.n), np.arange(self._n_batches())
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.n)
            if self.pool:  # sort each pool of `pool` batches by length (stable), then shuffle the batches
                pool_of = np.arange(self.n) // (self.pool * self.batch_size)
                order = order[np.lexsort((self.lengths[order], pool_of))]
                batch_ids = rng.permutation(batch_ids)  # a shorter last batch keeps its id: kept or dropped
        for batch in self._mine():
            b = batch_ids[batch]
            yield order[b * self.batch_size : (b + 1) * self.batch_size]


class WindowDataset(Dataset):
    """Training ``sequence`` batches: one example per window (see :func:`training_windows`)."""

    def __init__(
        self, store: SequenceStore, max_len: int, stride: int | None = None, fixed_length: bool = False,
        which: str = "all",
    ):  # fmt: skip
        self.store, self.max_len, self.fixed_length = store, max_len, fixed_length
        self.windows = training_windows(store, max_len, stride, which)

    def __len__(self) -> int:
        return len(self.windows["user"])

    @property
    def n_targets(self) -> int:
        """Training targets of an epoch: the owned positions of every window."""
        return int((self.windows["length"] - self.windows["own_from"]).sum())

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = np.asarray(index)
        w = {key: values[index] for key, values in self.windows.items()}
        width = self.max_len if self.fixed_length else max(int(w["length"].max(initial=0)), 1)
        owned = np.arange(width)[None, :] >= w["own_from"][:, None]
        batch = collate.sequence_batch(self.store, w["user"], w["start"], w["length"], owned, width)
        batch["target_from_end"] = collate.target_from_end(self.store, w["user"], w["start"], batch)
        return batch


class EvalDataset(Dataset):
    """Validation or test ``sequence`` batches with ``seen``: one example per user."""

    def __init__(self, store: SequenceStore, stage: str, max_len: int, fixed_length: bool = False):
        assert stage in ("val", "test")
        self.store, self.stage, self.max_len, self.fixed_length = store, stage, max_len, fixed_length

    def __len__(self) -> int:
        return self.store.n_users

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        width = self.max_len if self.fixed_length else None
        return collate.eval_batch(
            self.store, np.asarray(index, dtype=np.int64), self.stage, self.max_len, width
        )


class PairDataset(Dataset):
    """Training ``pairs`` batches: one example per training interaction.

    ``holdout=(K, k)``: only the training interactions outside cross-fitting fold k of K (``ss4rec.data.folds``).
    """

    def __init__(self, store: SequenceStore, holdout: tuple[int, int] | None = None):
        self.store = store
        self.rows = store.train_rows()
        self.row_users = store.users_of_rows()
        if holdout is not None:
            folds, fold = holdout
            keep = rating_fold(self.row_users[self.rows], store.items[self.rows].astype(np.int64), folds) != fold
            self.rows = self.rows[keep]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        return collate.pairs_batch(self.store, self.rows[np.asarray(index)], self.row_users)


class ColumnDataset(PairDataset):
    """Training ``columns`` batches: one example per item, every fitted training rating of it (its column).

    The items are those with at least one such rating; ``holdout=(K, k)`` as for ``PairDataset``. A batch holds
    the ratings of its items item by item, each item's in the store's order.
    """

    def __init__(self, store: SequenceStore, holdout: tuple[int, int] | None = None):
        super().__init__(store, holdout)
        items = store.items[self.rows]
        order = np.argsort(items, kind="stable")
        self.rows = self.rows[order]
        self.items, first = np.unique(items[order], return_index=True)
        self.starts = np.append(first, len(self.rows))  # item j's rows: rows[starts[j]:starts[j + 1]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        index = np.asarray(index, dtype=np.int64)
        starts, counts = self.starts[index], self.starts[index + 1] - self.starts[index]
        shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)  # each entry's start minus its offset
        return collate.pairs_batch(self.store, self.rows[shift + np.arange(counts.sum())], self.row_users)


class HistoryDataset(Dataset):
    """Training ``history`` batches: one example per user (the whole training part).

    ``holdout=(K, k)``: the batch also holds ``history_targets`` (B, S), False on the ratings of cross-fitting
    fold k of K (``ss4rec.data.folds``): still in the history (an SVD++ user's N(u)), no longer a target.
    """

    def __init__(self, store: SequenceStore, holdout: tuple[int, int] | None = None):
        self.store = store
        self.holdout = holdout

    def __len__(self) -> int:
        return self.store.n_users

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        batch = collate.history_batch(self.store, np.asarray(index, dtype=np.int64))
        if self.holdout is not None:
            folds, fold = self.holdout
            history = batch["history"]
            batch["history_targets"] = (history > 0) & (rating_fold(batch["users"][:, None], history, folds) != fold)
        return batch
