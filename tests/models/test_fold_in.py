"""Folding a new user into a frozen rating base (``ss4rec.models.fold_in``): the posterior mean against a float64
reference written from the textbook formula, the rows it fits, and which of the user's ratings each fold run sees."""

from __future__ import annotations

import pytest
import torch

from ss4rec.data.folds import rating_fold
from ss4rec.models.fold_in import FoldIn, UserPrior, posterior_row
from ss4rec.models.rating_base import FrozenMF

U, N, K = 40, 30, 5


def reference_posterior(features, targets, mean, covariance, noise):
    """``(S^-1 + A^T A / noise)^-1 (S^-1 m + A^T y / noise)``, with explicit inverses (S invertible)."""
    precision = torch.linalg.inv(covariance)
    return torch.linalg.inv(precision + features.T @ features / noise) @ (precision @ mean + features.T @ targets / noise)


@pytest.mark.parametrize("n", [0, 1, 4, 6, 7, 23])  # below, at and above K + 1 = 6: both of its systems
def test_the_posterior_mean_is_the_textbook_one(n):
    generator = torch.Generator().manual_seed(n)
    features = torch.randn(n, K + 1, generator=generator, dtype=torch.float64)
    targets = 3 * torch.randn(n, generator=generator, dtype=torch.float64)
    root = torch.randn(K + 1, K + 1, generator=generator, dtype=torch.float64)
    covariance, mean = root @ root.T + 0.1 * torch.eye(K + 1), torch.randn(K + 1, generator=generator, dtype=torch.float64)
    got = posterior_row(features, targets, mean, covariance, 0.7)
    torch.testing.assert_close(got, reference_posterior(features, targets, mean, covariance, 0.7), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", [2, 20])
def test_a_singular_prior_is_the_limit_of_invertible_ones(n):
    """I-AutoRec's ``b_u`` is always 0: its prior has no variance there, and the row keeps the prior's value."""
    generator = torch.Generator().manual_seed(n)
    features = torch.randn(n, K + 1, generator=generator, dtype=torch.float64)
    targets = torch.randn(n, generator=generator, dtype=torch.float64)
    root = torch.randn(K + 1, K, generator=generator, dtype=torch.float64)
    root[-1] = 0.0  # no variance in the last coordinate
    covariance, mean = root @ root.T, torch.randn(K + 1, generator=generator, dtype=torch.float64)
    got = posterior_row(features, targets, mean, covariance, 0.5)
    nearly = reference_posterior(features, targets, mean, covariance + 1e-9 * torch.eye(K + 1), 0.5)
    torch.testing.assert_close(got, nearly, rtol=0, atol=1e-5)
    assert got[-1] == mean[-1]


def random_base(tables: int = 4, heldout: bool = True) -> FrozenMF:
    """A base of ``tables`` random sets of tables (``tables - 1`` folds and a held-out run, or ``tables`` folds)."""
    generator = torch.Generator().manual_seed(tables)
    base = FrozenMF(U, N, "unused").double()
    base.user_factors = 0.5 * torch.randn(tables, U, K, generator=generator, dtype=torch.float64) + 0.3
    base.user_bias = 0.2 * torch.randn(tables, U, generator=generator, dtype=torch.float64)
    base.item_factors = torch.randn(tables, N + 1, K, generator=generator, dtype=torch.float64)
    base.item_bias = 0.3 * torch.randn(tables, N + 1, generator=generator, dtype=torch.float64)
    base.mean = 3.5 + 0.1 * torch.randn(tables, generator=generator, dtype=torch.float64)
    base.heldout_table = torch.tensor(heldout)
    return base


def test_the_prior_is_the_training_users_mean_and_covariance():
    base = random_base()
    FoldIn(base)  # appends the average user: the prior still reads the training users only
    prior = UserPrior(base)
    rows = torch.cat([base.user_factors[:, :U], base.user_bias[:, :U, None]], dim=-1)
    for table in range(base.tables):
        torch.testing.assert_close(prior.mean[table], rows[table].mean(0))
        torch.testing.assert_close(prior.covariance[table], torch.cov(rows[table].T))


def test_rows_follow_the_average_user_and_grow_in_steps():
    base = random_base()
    fold_in = FoldIn(base)
    assert fold_in.row(0) == U + 1 and fold_in.row(6) == U + 7
    row = fold_in.fit(6, torch.tensor([], dtype=torch.long), torch.tensor([]))
    assert base.user_factors.shape[1] >= row + 1 == U + 8
    for table in (base.user_factors, base.user_bias):  # unfitted rows, and a user with no rating: the average user
        torch.testing.assert_close(table[:, U + 1 : U + 8], table[:, U : U + 1].expand_as(table[:, U + 1 : U + 8]))
    torch.testing.assert_close(base.user_factors[:, U], base.user_factors[:, :U].mean(1))
    before = base.user_factors.clone()
    base.add_users(before.shape[1])  # rows there: nothing added
    assert base.user_factors.shape == before.shape
    base.add_users(before.shape[1] + 1)  # one more row: the tables grow by half, the rows kept
    assert base.user_factors.shape[1] == before.shape[1] + before.shape[1] // 2
    torch.testing.assert_close(base.user_factors[:, : before.shape[1]], before)


def test_a_user_is_fitted_in_each_table_to_the_ratings_outside_its_fold():
    """Fold run f: the posterior over the user's ratings outside fold f (``rating_fold`` of the user's row and the
    item); the held-out run: over all of them. Changing the ratings of fold f moves every table but f's."""
    base = random_base(tables=4)  # three folds and the held-out run
    fold_in = FoldIn(base, noise=0.6)
    items = torch.arange(1, 25)
    ratings = torch.randint(1, 6, (24,), generator=torch.Generator().manual_seed(1)).double()
    row = fold_in.fit(2, items, ratings)
    fold = rating_fold(torch.full_like(items, row), items, 3)
    assert set(fold.tolist()) == {0, 1, 2}
    prior = UserPrior(base)
    for table in range(4):
        keep = fold != table if table < 3 else torch.ones_like(fold, dtype=torch.bool)
        features = torch.cat([base.item_factors[table, items[keep]], torch.ones(int(keep.sum()), 1, dtype=torch.float64)], 1)
        targets = ratings[keep] - base.mean[table] - base.item_bias[table, items[keep]]
        expected = reference_posterior(features, targets, prior.mean[table], prior.covariance[table], 0.6)
        got = torch.cat([base.user_factors[table, row], base.user_bias[table, row, None]])
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    before = torch.cat([base.user_factors[:, row], base.user_bias[:, row, None]], dim=-1).clone()
    moved = torch.where(fold == 1, 6.0 - ratings, ratings)
    fold_in.fit(2, items, moved)
    after = torch.cat([base.user_factors[:, row], base.user_bias[:, row, None]], dim=-1)
    assert torch.equal(after[1], before[1])
    assert all(not torch.allclose(after[table], before[table]) for table in (0, 2, 3))


def test_many_ratings_recover_the_user_who_made_them():
    """Noise-free ratings of every item by a user of known factors: the fitted row is that user's."""
    base = random_base(tables=1, heldout=False)
    fold_in = FoldIn(base, noise=1e-6)
    true = torch.cat([torch.randn(K, dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)])
    items = torch.arange(1, N + 1)
    ratings = base.mean[0] + base.item_bias[0, items] + base.item_factors[0, items] @ true[:-1] + true[-1]
    row = fold_in.fit(0, items, ratings)
    torch.testing.assert_close(base.user_factors[0, row], true[:-1], rtol=0, atol=1e-4)
    torch.testing.assert_close(base.user_bias[0, row], true[-1], rtol=0, atol=1e-4)


def test_item_offsets_are_the_prediction_without_the_user():
    base = random_base()
    items = torch.tensor([1, 5, 7])
    users = torch.full_like(items, U)  # a user with zero factors and bias predicts the offsets
    base.add_cold_user()
    base.user_factors[:, U], base.user_bias[:, U] = 0.0, 0.0
    for table in range(base.tables):
        torch.testing.assert_close(base.item_offsets(items)[table], base.mean[table] + base.item_bias[table, items])
    weights = torch.nn.functional.one_hot(torch.full_like(items, 3), 4).double()  # the held-out table's prediction
    torch.testing.assert_close(base(base.user_part(users), items), (weights.T * base.item_offsets(items)).sum(0))


def test_a_fit_can_take_its_own_noise():
    """``fit(..., noise=v)``: the posterior at v (the reference), once; the next fit without one is at the FoldIn's."""
    base = random_base(tables=1, heldout=False)
    fold_in = FoldIn(base, noise=2.0)
    items, ratings = torch.tensor([2, 9, 11]), torch.tensor([5.0, 1.0, 4.0], dtype=torch.float64)
    features = torch.cat([base.item_factors[0, items], torch.ones(3, 1, dtype=torch.float64)], 1)
    targets = ratings - base.mean[0] - base.item_bias[0, items]
    prior = UserPrior(base)
    for noise, passed in ((0.1, 0.1), (2.0, None)):
        row = fold_in.fit(0, items, ratings, noise=passed)
        expected = reference_posterior(features, targets, prior.mean[0], prior.covariance[0], noise)
        torch.testing.assert_close(torch.cat([base.user_factors[0, row], base.user_bias[0, row, None]]), expected,
                                   rtol=1e-9, atol=1e-9)  # fmt: skip


def test_noise_must_be_positive():
    with pytest.raises(ValueError, match="noise must be > 0"):
        FoldIn(random_base(), noise=0.0)
    with pytest.raises(ValueError, match="noise must be > 0"):
        FoldIn(random_base()).fit(0, torch.tensor([1]), torch.tensor([4.0]), noise=-1.0)


def test_a_newer_fold_in_takes_the_base_over():
    base = random_base()
    older, newer = FoldIn(base), FoldIn(base)
    newer.fit(0, torch.tensor([1]), torch.tensor([4.0]))
    with pytest.raises(RuntimeError, match="another FoldIn"):
        older.fit(0, torch.tensor([1]), torch.tensor([4.0]))
