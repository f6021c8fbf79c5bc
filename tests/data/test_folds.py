"""Cross-fitting folds: one hash in numpy and torch, and a held-out fold left out of pairs, history and columns
training; columns batches hold whole item columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules import ml100k_module as module
from ss4rec.batch import COLUMNS, HISTORY, PAIRS, SEQUENCE
from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.data.errors import DataError
from ss4rec.data.folds import rating_fold
from ss4rec.models.svdpp import SVDpp


def test_the_fold_is_the_same_in_numpy_and_torch_and_the_folds_are_even():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 200_000, 100_000), rng.integers(1, 70_000, 100_000)
    folds = rating_fold(users, items, 5)
    np.testing.assert_array_equal(rating_fold(torch.from_numpy(users), torch.from_numpy(items), 5).numpy(), folds)
    assert np.abs(np.bincount(folds, minlength=5) / len(folds) - 0.2).max() < 0.01
    one_user = rating_fold(np.zeros(5000, dtype=np.int64), np.arange(1, 5001), 5)  # consecutive items of one user
    assert np.abs(np.bincount(one_user, minlength=5) / 5000 - 0.2).max() < 0.03
    with pytest.raises(ValueError, match="folds must be >= 1"):
        rating_fold(users, items, 0)


def every_pair(dm) -> set[tuple[int, int]]:
    batch = next(iter(module_loader(dm, 10**7)))
    return set(zip(batch["users"].tolist(), batch["items"].tolist()))


def module_loader(dm, batch_size):
    dm.batch_size = batch_size
    return dm.train_dataloader()


@pytest.mark.parametrize("fold", [0, 2])
def test_pairs_training_leaves_out_exactly_the_held_out_fold(data_dir, fold):
    everything = every_pair(module(data_dir, PAIRS))
    kept = every_pair(module(data_dir, PAIRS, holdout_folds=3, holdout_fold=fold))
    users, items = (np.array(list(column)) for column in zip(*everything))
    in_fold = rating_fold(users, items, 3) == fold
    assert kept == {pair for pair, held in zip(everything, in_fold) if not held}
    assert 0.3 < in_fold.mean() < 0.37


def test_history_training_keeps_n_u_and_marks_the_held_out_ratings_as_no_target(data_dir):
    plain = next(iter(module_loader(module(data_dir, HISTORY), 100)))
    held = next(iter(module_loader(module(data_dir, HISTORY, holdout_folds=4, holdout_fold=1), 100)))
    assert "history_targets" not in plain
    for key in ("users", "history", "history_ratings"):
        torch.testing.assert_close(held[key], plain[key])  # the same rows: N(u) is the whole training part
    history, targets = held["history"], held["history_targets"]
    expected = (history > 0) & (rating_fold(held["users"][:, None], history, 4) != 1)
    torch.testing.assert_close(targets, expected)
    assert (history > 0).sum() > targets.sum() > 0
    # SVD++ fits the targets only, with the same user queries
    model = SVDpp(int(history.max()), int(held["users"].max()) + 1, dim=4)
    query, items, ratings = model.train_queries(held)
    all_query, all_items, _ = model.train_queries(plain)
    torch.testing.assert_close(items, history[expected])
    torch.testing.assert_close(ratings, held["history_ratings"][expected])
    assert len(all_items) == int((history > 0).sum())
    torch.testing.assert_close(query, all_query[expected[history > 0]])  # each target's own user query


@pytest.mark.parametrize("fold", [0, 2])
def test_the_training_ratings_an_autorec_reads_are_the_pairs_training_fits(data_dir, fold):
    """``training_ratings`` (I-AutoRec's input columns) holds exactly the ratings pairs training fits: every training
    rating, or those outside the held-out fold, with their values."""
    for options in ({}, {"holdout_folds": 3, "holdout_fold": fold}):
        dm = module(data_dir, PAIRS, **options)
        users, items, ratings = dm.training_ratings()
        batch = next(iter(module_loader(dm, 10**7)))
        fitted = dict(zip(zip(batch["users"].tolist(), batch["items"].tolist()), batch["ratings"].tolist()))
        assert dict(zip(zip(users.tolist(), items.tolist()), ratings.tolist())) == fitted
        assert len(users) == len(fitted)  # no pair twice


@pytest.mark.parametrize("options", [{}, {"holdout_folds": 3, "holdout_fold": 1}])
def test_columns_batches_hold_whole_item_columns_of_what_pairs_training_fits(data_dir, options):
    """An epoch of ``columns`` batches (60 items each) holds every rating pairs training fits exactly once, each
    batch all the fitted ratings of its items and of no other, grouped item by item."""
    fitted = every_pair(module(data_dir, PAIRS, **options))
    dm = module(data_dir, COLUMNS, **options)
    assert dm.train_batch_size == 256  # the layout's default, in items
    seen, items_seen, n_batches = [], set(), 0
    for batch in module_loader(dm, 60):
        n_batches += 1
        items = batch["items"].numpy()
        starts = np.flatnonzero(np.diff(items, prepend=-1))
        assert len(set(items[starts])) == len(starts) <= 60  # each item in one run of the batch
        assert items_seen.isdisjoint(items[starts])
        items_seen.update(items[starts].tolist())
        seen += list(zip(batch["users"].tolist(), items.tolist()))
        assert set(batch) == {"users", "items", "ratings", "times"}
    assert len(seen) == len(set(seen)) and set(seen) == fitted
    assert items_seen == {item for _, item in fitted}
    assert n_batches == -(-len(items_seen) // 60)
    values = dict(zip(zip(*dm.training_ratings()[:2]), dm.training_ratings()[2]))
    assert all(values[(int(u), int(i))] == r for batch in module_loader(dm, 500)
               for u, i, r in zip(batch["users"], batch["items"], batch["ratings"]))  # fmt: skip


def test_a_held_out_fold_is_refused_for_sequence_windows_and_out_of_range(data_dir):
    with pytest.raises(DataError, match="a held-out fold is for pairs, history and columns training"):
        module(data_dir, SEQUENCE, holdout_folds=5, holdout_fold=0).train_dataloader()
    with pytest.raises(DataError, match="holdout_fold in \\[0, holdout_folds\\)"):
        SequenceDataModule(name="ml100k", holdout_folds=3, holdout_fold=3)
