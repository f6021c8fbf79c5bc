"""Folding a new user into a frozen rating base: their ``[p_u, b_u]`` in each table fitted to their own ratings.

A ``model.rating_base`` (``ss4rec.models.rating_base.FrozenMF``) has factors for its training users only. For a user it
was not trained on, each table's user row ``x = [p_u, b_u]`` is the posterior mean of a Bayesian linear regression of
the user's ratings on the items' ``[q_i, 1]`` (the base's prediction is linear in ``x``):

    r_ui = offset_i + [q_i, 1] . x + noise,    x ~ N(m, S),    noise ~ N(0, noise)

with ``offset_i`` the rest of the prediction (``mean + b_i``, and ``b_{i,Bin(t)}`` for timeSVD++), and the prior the
training users' own rows: their mean ``m`` (the average training user, ``FrozenMF.add_cold_user``) and covariance
``S``. So the prior is in each base's own units (SVD++'s 64 factors and I-AutoRec's 501 alike), with no ridge weight to
tune per base: ``noise`` (a rating variance) is the only setting. A user with no rating is the average user; as ratings
come, the row moves towards the least-squares fit of those ratings. The posterior mean is computed in its kernel form
``m + S A^T (A S A^T + noise I)^-1 (y - A m)`` (A: the rated items' ``[q_i, 1]``), which needs no inverse of ``S``
(singular for I-AutoRec, whose ``b_u`` is always 0) and solves a system the size of the user's ratings.

A cross-fitted base's fold run ``f`` is fitted to the user's ratings outside fold ``f`` (``rating_fold`` of the row
the user is given and the item, as for the training users), so the errors a network reads of the user's past ratings
are out of fold, as in training; the held-out run (``model.rating_base_heldout``) to all of them.
"""

from __future__ import annotations

import torch

from ss4rec.models.rating_base import FrozenMF


class UserPrior:
    """Each table's training users' ``[p_u, b_u]``: mean (T, K + 1) and covariance (T, K + 1, K + 1), float64."""

    def __init__(self, base: FrozenMF):
        rows = torch.cat([base.user_factors[:, : base.n_users], base.user_bias[:, : base.n_users, None]], dim=-1).double()
        self.mean = rows.mean(1)  # (T, K + 1)
        centred = rows - self.mean[:, None]
        self.covariance = centred.transpose(1, 2) @ centred / max(base.n_users - 1, 1)  # (T, K + 1, K + 1)


def posterior_row(
    features: torch.Tensor, targets: torch.Tensor, prior_mean: torch.Tensor, prior_cov: torch.Tensor, noise: float
) -> torch.Tensor:
    """The posterior mean of ``x`` (K + 1,) given ``targets = features @ x + N(0, noise)`` ((n,), (n, K + 1)) and the
    prior ``N(prior_mean, prior_cov)``, float64; the prior mean when n = 0. It solves an n x n system while n <= K + 1
    (``m + S A^T (A S A^T + noise I)^-1 r``), else a (K + 1) x (K + 1) one (``m + (noise I + S A^T A)^-1 S A^T r``),
    r = targets - A m: the same mean, neither needing ``S`` to be invertible."""
    if len(targets) == 0:
        return prior_mean.clone()
    features, targets = features.double(), targets.double()
    residual = targets - features @ prior_mean  # (n,)
    spread = prior_cov @ features.T  # S A^T (K + 1, n)
    n, width = features.shape
    if n <= width:
        system = features @ spread + noise * torch.eye(n, dtype=torch.float64, device=features.device)
        return prior_mean + spread @ torch.linalg.solve(system, residual)
    system = spread @ features + noise * torch.eye(width, dtype=torch.float64, device=features.device)
    return prior_mean + torch.linalg.solve(system, spread @ residual)


def positive_noise(noise: float) -> float:
    """``noise`` as a float, refused (ValueError) unless > 0."""
    if not noise > 0:
        raise ValueError(f"noise must be > 0, got {noise}")
    return float(noise)


class FoldIn:
    """Rows of ``base`` for users it was not trained on, each fitted to that user's ratings (module doc).

    ``row(index)``: the tables' row of new user number ``index`` (0, 1, ... in arrival order): ``n_users + 1 + index``,
    after the average training user ``n_users`` (``FrozenMF.add_cold_user``), so a user's row, and the folds of their
    ratings with it, depend only on their arrival order. ``fit(index, items, ratings, times)`` sets that row in every
    table; rows are added as needed, each the average user until fitted. ``noise`` (> 0): the variance of a rating
    around the base's prediction; smaller trusts the user's ratings sooner.

    The rows live in the base, so one ``FoldIn`` fits users into a base at a time: a newer one takes the base over, and
    the older one's ``fit`` then raises (its users' rows would be overwritten by the newer one's).
    """

    def __init__(self, base: FrozenMF, noise: float = 1.0):
        self.base, self.noise = base, positive_noise(noise)
        self.cold = base.add_cold_user()
        self.prior = UserPrior(base)
        base.folding = self

    def row(self, index: int) -> int:
        return self.cold + 1 + int(index)

    @torch.no_grad()
    def fit(
        self, index: int, items: torch.Tensor, ratings: torch.Tensor, times: torch.Tensor | None = None,
        noise: float | None = None,
    ) -> int:  # fmt: skip
        """Fit new user ``index``'s row in every table to their ``ratings`` (n,) of ``items`` (n,) (item indices; at
        unix-second ``times`` (n,), which a timeSVD++ base needs) and return the row; ``noise``: this fit's (> 0),
        instead of the ``FoldIn``'s (a user's first ratings may be trusted more than a long history's)."""
        noise = self.noise if noise is None else positive_noise(noise)
        base, row = self.base, self.row(index)
        if getattr(base, "folding", None) is not self:
            raise RuntimeError("another FoldIn (a newer serving core of the same model) fits new users into this base "
                               "now; serve new users of one model from one core")  # fmt: skip
        base.add_users(row + 1)
        items = torch.as_tensor(items, dtype=torch.long)
        ratings = torch.as_tensor(ratings, dtype=torch.float64)
        targets = ratings - base.item_offsets(items, times).double()  # (T, n)
        features = torch.cat([base.item_factors[:, items], torch.ones_like(base.item_bias[:, items, None])], dim=-1)
        fold = base.rating_fold(torch.full_like(items, row), items)  # (n,)
        for table in range(base.tables):
            keep = fold != table if table < base.folds and base.folds > 1 else torch.ones_like(fold, dtype=torch.bool)
            x = posterior_row(features[table, keep], targets[table, keep], self.prior.mean[table],
                              self.prior.covariance[table], noise)  # fmt: skip
            base.user_factors[table, row] = x[:-1].to(base.user_factors.dtype)
            base.user_bias[table, row] = x[-1].to(base.user_bias.dtype)
        return row
