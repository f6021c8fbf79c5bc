"""The LightningDataModule every training run uses: prepared store in, the four training batch layouts out.

Built from ``conf/data/<name>.yaml`` with ``hydra.utils.instantiate(cfg.data)``. The trainer sets
``train_format`` (``sequence`` | ``pairs`` | ``history`` | ``columns``, see ``ss4rec.batch``; the model's
``Recommender.layout`` of its config) before ``setup``;
validation and test loaders always yield evaluation ``sequence`` batches with ``seen``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ss4rec.batch import COLUMNS, HISTORY, PAIRS, SEQUENCE, TRAIN_FORMATS
from ss4rec.data import stats as stats_mod
from ss4rec.data.datasets import (
    TRAIN_WINDOWS,
    BatchSampler,
    ColumnDataset,
    EvalDataset,
    HistoryDataset,
    PairDataset,
    WindowDataset,
)
from ss4rec.data.errors import DataError
from ss4rec.data.folds import rating_fold
from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options
from ss4rec.data.store import SequenceStore

log = logging.getLogger(__name__)


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) outside distributed runs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


#: training examples per batch when ``batch_size`` is None: windows of up to max_len targets, single
#: interactions, whole user histories, or whole item columns
DEFAULT_BATCH_SIZE = {SEQUENCE: 32, PAIRS: 1024, HISTORY: 64, COLUMNS: 256}


class SequenceDataModule(L.LightningDataModule):
    """MovieLens (or any ratings source) as leave-one-out sequences.

    Args:
        name: dataset name (ml100k, ml1m, ml10m, ml20m, ml25m, ml_latest_small, path, synthetic).
        source: where the ratings come from: a kind (``bundled``, ``download``, ``path``, ``synthetic``) or a
            mapping with ``kind`` and its options (see ``ss4rec.data.sources``). None: the dataset's default.
        max_len: input length of sequence batches (training windows and evaluation inputs).
        batch_size / eval_batch_size: examples per training / evaluation batch. ``batch_size`` None picks
            the layout's default (``DEFAULT_BATCH_SIZE``): 32 windows, 1024 pairs or 64 history rows.
        k_core: iterative k-core threshold. duplicates: keep_all | keep_first | keep_last | error.
        tie_order: order of a user's ratings with equal timestamps: ``file`` (the source's row order, the
            protocol) or ``shuffle`` (a random order seeded by ``tie_seed``; distinct times never move).
        timestamp_dtype: ``int64`` (exact seconds) or ``float32`` (rounded as RecBole stores them, which
            makes ratings within 64 s ties: the order the paper's pipeline trains and scores on).
        train_max_len: length of training windows (None: ``max_len``). Longer than ``max_len`` (with
            ``train_stride`` left at None), windows overlap so that every target a window owns has at least
            ``min(its position, max_len)`` inputs before it, as RecBole's prefixes of up to ``max_len`` items
            have; evaluation inputs stay ``max_len``. Costs about ``train_max_len / stride`` times the plain
            windows' work per target (2x at ``2 * max_len``).
        train_stride: windows of long users end every ``train_stride`` positions. None: the window length
            (no overlap) up to ``max_len``; beyond it ``train_max_len - max_len + 1``, the longest stride
            that keeps a full ``max_len`` of context before every owned target.
        train_windows: ``all`` (every training target once, in windows) or ``recent`` (only each user's most
            recent window of ``train_max_len`` targets: one example per user, SASRec's original training).
        fixed_length: pad sequence batches to ``max_len`` (training: ``train_max_len``) instead of the longest row.
        length_pool: training windows are sorted by length within pools of this many batches, then the
            batches are shuffled (see ``BatchSampler``): less padding, faster epochs. 0: plain shuffling.
        holdout_folds / holdout_fold: with ``holdout_folds`` K > 0, ``pairs``, ``history`` and ``columns`` training (``mf``,
            ``svdpp``, ``timesvdpp``, ``autorec``) leaves out the training ratings of cross-fitting fold ``holdout_fold`` of K
            (``ss4rec.data.folds``); the split, validation and test are unchanged. 0: every training rating.
        holdout_last: leave each user's last ``holdout_last`` ratings out of everything (``SequenceStore.without_last``):
            validation and test move that many ratings back, into what is otherwise the training part. A
            pseudo-held-out split, on which a second stage (``benchmarks/rating_blend.py --fit``) can be fitted
            without the real held-out ratings. 0: off (the protocol).
        user_sample / user_sample_seed: with ``user_sample`` N > 0, only N users drawn at random (seeded by
            ``user_sample_seed``, not by ``seed``: every model seed sees the same users) with all their ratings
            (``SequenceStore.sample_users``, after k-core and before ``holdout_last``); items are unchanged. A
            smaller set of the same population, e.g. ML-1M with ML-100K's 943 users. 0: every user.
        seed: shuffling seed (the trainer sets it). data_dir: cache folder (None: ``ss4rec.paths.data_dir()``).
    """

    def __init__(
        self,
        name: str = "ml100k",
        source: str | Mapping | None = None,
        max_len: int = 200,
        batch_size: int | None = None,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        k_core: int = 5,
        duplicates: str = "keep_all",
        tie_order: str = "file",
        tie_seed: int = 0,
        timestamp_dtype: str = "int64",
        train_max_len: int | None = None,
        train_stride: int | None = None,
        train_windows: str = "all",
        fixed_length: bool = False,
        length_pool: int = 0,
        holdout_folds: int = 0,
        holdout_fold: int = 0,
        holdout_last: int = 0,
        user_sample: int = 0,
        user_sample_seed: int = 0,
        seed: int = 0,
        data_dir: str | None = None,
        train_format: str = SEQUENCE,
    ):
        super().__init__()
        source = dict(source) if isinstance(source, Mapping) else source
        self.save_hyperparameters(ignore=["train_format"])
        self.name, self.source, self.max_len = name, source, int(max_len)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers, self.pin_memory, self.persistent_workers = (
            num_workers,
            pin_memory,
            persistent_workers,
        )
        self.options = Options(
            k_core=int(k_core), duplicates=duplicates, tie_order=tie_order, tie_seed=int(tie_seed),
            timestamp_dtype=timestamp_dtype,
        )  # fmt: skip
        self.train_max_len = self.max_len if train_max_len is None else int(train_max_len)
        if self.train_max_len < 1:
            raise DataError(f"train_max_len must be >= 1 or null (max_len), got {train_max_len}")
        if train_stride is None:  # beyond max_len: the first target a window owns still has max_len inputs
            window = self.train_max_len
            train_stride = window if window <= self.max_len else window - self.max_len + 1
        self.train_stride, self.fixed_length = int(train_stride), fixed_length
        if train_windows not in TRAIN_WINDOWS:
            raise DataError(f"train_windows must be one of {', '.join(TRAIN_WINDOWS)}, got {train_windows!r}")
        self.train_windows = train_windows
        self.length_pool = int(length_pool)
        if self.length_pool < 0:
            raise DataError(f"length_pool must be >= 0 (0: off), got {length_pool}")
        self.holdout_folds, self.holdout_fold = int(holdout_folds), int(holdout_fold)
        if self.holdout_folds < 0 or (self.holdout_folds and not 0 <= self.holdout_fold < self.holdout_folds):
            raise DataError(
                f"holdout_folds must be >= 0 (0: off) and holdout_fold in [0, holdout_folds), got holdout_folds="
                f"{holdout_folds}, holdout_fold={holdout_fold}"
            )
        self.holdout_last = int(holdout_last)
        if self.holdout_last < 0:
            raise DataError(f"holdout_last must be >= 0 (0: off), got {holdout_last}")
        self.user_sample, self.user_sample_seed = int(user_sample), int(user_sample_seed)
        if self.user_sample < 0:
            raise DataError(f"user_sample must be >= 0 (0: every user), got {user_sample}")
        self.seed, self.data_dir = int(seed), data_dir
        self.train_format = train_format
        self.store: SequenceStore | None = None
        self.cache_dir: Path | None = None
        if self.max_len < 1:
            raise DataError(f"max_len must be >= 1, got {max_len}")

    # ---- preparation -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build the cache if it is missing (Lightning calls this on one process only)."""
        prepare(self.name, self.source, self.options, self.data_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            store, self.cache_dir, _ = prepare(self.name, self.source, self.options, self.data_dir)
            try:
                if self.user_sample:
                    store = store.sample_users(self.user_sample, self.user_sample_seed)
                self.store = store.without_last(self.holdout_last)
            except ValueError as error:
                raise DataError(f"data.{error}") from None
        if self.train_format not in TRAIN_FORMATS:
            raise DataError(f"unknown train_format {self.train_format!r}; known: {', '.join(TRAIN_FORMATS)}")

    def _ready(self) -> SequenceStore:
        if self.store is None:
            raise RuntimeError("call prepare_data() and setup() first")
        return self.store

    # ---- what the trainer reads ----------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self._ready().n_users

    @property
    def n_items(self) -> int:
        return self._ready().n_items

    @property
    def rating_mean(self) -> float:
        store = self._ready()
        return float(np.asarray(store.ratings)[store.train_rows()].mean(dtype=np.float64))

    def training_times(self) -> tuple[np.ndarray, np.ndarray]:
        """User index and time of every training interaction, (R,) each (timeSVD++ indexes its user-days by them)."""
        store = self._ready()
        rows = store.train_rows()
        return store.users_of_rows()[rows], np.asarray(store.times)[rows]

    def training_ratings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User index, item id and rating of every training rating a run fits, (R,) each: the training part, without
        the held-out cross-fitting fold when ``holdout_folds`` > 0 (I-AutoRec's input columns hold only these)."""
        store = self._ready()
        rows = store.train_rows()
        users, items = store.users_of_rows()[rows], np.asarray(store.items)[rows].astype(np.int64)
        ratings = np.asarray(store.ratings)[rows]
        if self.holdout_folds:
            keep = rating_fold(users, items, self.holdout_folds) != self.holdout_fold
            users, items, ratings = users[keep], items[keep], ratings[keep]
        return users, items, ratings

    @property
    def rating_range(self) -> tuple[float, float]:
        """The declared rating scale (min, max), or the observed one when the source declares none."""
        store = self._ready()
        scale = store.info.get("rating_scale")
        if scale:
            return float(scale[0]), float(scale[1])
        return float(np.min(store.ratings)), float(np.max(store.ratings))

    @property
    def item_genres(self) -> torch.Tensor | None:
        """Multi-hot genres (n_items + 1, G) bool (row 0 = padding), or None without metadata."""
        genres = self._ready().item_genres
        return None if genres is None else torch.from_numpy(np.array(genres, dtype=bool))

    @property
    def genre_names(self) -> list[str]:
        return list(self._ready().info.get("genres") or [])

    @property
    def item_map(self) -> np.ndarray:
        """Original id of each item index (n_items + 1,); [0] is a placeholder (-1) for padding."""
        return np.asarray(self._ready().item_map)

    @property
    def user_map(self) -> np.ndarray:
        """Original id of each user index (n_users,)."""
        return np.asarray(self._ready().user_map)

    def stats(self) -> dict:
        out = stats_mod.compute(self._ready(), self.name, self.max_len)
        out["train_windows"] = len(self._windows())
        return out

    # ---- loaders -------------------------------------------------------------------------------------
    def _loader(
        self, dataset, batch_size: int, shuffle: bool, lengths: np.ndarray | None = None
    ) -> DataLoader:
        # under DDP each process reads its own shard (the trainer's ddp config turns Lightning's sampler off)
        rank, world = _process_group()
        pool = self.length_pool if lengths is not None else 0
        sampler = BatchSampler(
            len(dataset), batch_size, shuffle, self.seed, rank=rank, world=world, lengths=lengths, pool=pool
        )
        return DataLoader(
            dataset, batch_size=None, sampler=sampler, num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )  # fmt: skip

    @property
    def train_batch_size(self) -> int:
        """``batch_size``, or the default of the current ``train_format`` when it is None."""
        return self.batch_size if self.batch_size is not None else DEFAULT_BATCH_SIZE[self.train_format]

    def _windows(self) -> WindowDataset:
        return WindowDataset(self._ready(), self.train_max_len, self.train_stride, self.fixed_length, self.train_windows)

    def train_dataloader(self) -> DataLoader:
        store = self._ready()
        holdout = (self.holdout_folds, self.holdout_fold) if self.holdout_folds else None
        if self.train_format == PAIRS:
            return self._loader(PairDataset(store, holdout), self.train_batch_size, shuffle=True)
        if self.train_format == HISTORY:
            return self._loader(HistoryDataset(store, holdout), self.train_batch_size, shuffle=True)
        if self.train_format == COLUMNS:
            return self._loader(ColumnDataset(store, holdout), self.train_batch_size, shuffle=True)
        if holdout is not None:
            raise DataError(
                f"holdout_folds={self.holdout_folds}: a held-out fold is for pairs, history and columns training (model=mf "
                "or svdpp, the runs a rating_base reads), not sequence windows"
            )
        dataset = self._windows()
        lengths = None if self.fixed_length else dataset.windows["length"]  # fixed width: nothing to save
        return self._loader(dataset, self.train_batch_size, shuffle=True, lengths=lengths)

    def train_targets_per_batch(self) -> float | None:
        """Mean training targets per batch over an epoch, for ``sequence`` batches (their target count varies
        with the windows' lengths); None for the other layouts (one target per example)."""
        if self.train_format != SEQUENCE:
            return None
        dataset = self._windows()
        rank, world = _process_group()
        batches = len(BatchSampler(len(dataset), self.train_batch_size, True, self.seed, rank=rank, world=world))
        return dataset.n_targets / max(batches * world, 1)

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            EvalDataset(self._ready(), "val", self.max_len, self.fixed_length), self.eval_batch_size, False
        )

    def test_dataloader(self) -> DataLoader:
        dataset = EvalDataset(self._ready(), "test", self.max_len, self.fixed_length)
        return self._loader(dataset, self.eval_batch_size, shuffle=False)
