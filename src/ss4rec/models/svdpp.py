"""SVD++ (Koren 2008): biased MF whose user factor is corrected by the items the user rated.

    r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^(-1/2) sum_{j in N(u)} y_j)

``N(u)`` is the set of items the user rated in the training part, never a held-out item: in training it is
the ``history`` row of the batch (the whole training part), in evaluation the first ``train_lengths``
entries of ``seen`` (the training part, without the validation item when the test target is scored).
So validation and test use the same ``N(u)`` as training, as MF uses the same ``p_u``.

Trained on ``history`` batches: the implicit sum is computed once per user and each of the user's
training ratings is one example (a query row), so an epoch costs O(training ratings) instead of the
O(sum over users of |N(u)|^2) of running the sum again for every rating.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ss4rec.batch import HISTORY, Batch
from ss4rec.models.base import Recommender
from ss4rec.models.mf import BiasedRating


def implicit_feedback(history: torch.Tensor, implicit: nn.Embedding) -> torch.Tensor:
    """``|N(u)|^(-1/2) sum_{j in N(u)} y_j`` for item rows right-padded with 0: (B, S) -> (B, D).

    ``implicit`` has a zero, frozen padding row 0; a user with no item gets the zero vector.
    """
    counts = (history > 0).sum(-1, keepdim=True)  # (B, 1)
    total = implicit(history).sum(1)  # (B, D); padding rows add zero
    return total * counts.clamp_min(1).to(total.dtype).rsqrt()


def fitted_ratings(batch: Batch) -> torch.Tensor:
    """Which entries of a ``history`` batch are ratings to fit, (B, S) bool: every item of N(u), or those
    outside a held-out fold (``history_targets``, data.holdout_folds). Examples come in row-major order."""
    real = batch["history"] > 0
    return real & batch["history_targets"] if "history_targets" in batch else real


def training_part(batch: Batch) -> torch.Tensor:
    """N(u) of an evaluation batch: ``seen`` cut to its first ``train_lengths`` entries, (B, S')."""
    if "train_lengths" not in batch:
        raise KeyError(
            "svdpp: the evaluation batch has no 'train_lengths' (B,), the length of each user's training "
            f"part in 'seen'; got keys {sorted(batch)}. Evaluation batches from ss4rec.data.collate.eval_batch "
            "carry it; without it a held-out item could enter N(u)."
        )
    seen, lengths = batch["seen"], batch["train_lengths"].to(batch["seen"].device)
    if (lengths > seen.shape[1]).any() or (lengths < 0).any():
        raise ValueError(
            f"svdpp: train_lengths must lie in [0, {seen.shape[1]}] (the width of 'seen'), "
            f"got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    width = int(lengths.max()) if lengths.numel() else 0
    keep = torch.arange(width, device=seen.device)[None, :] < lengths[:, None]  # (B, S')
    return torch.where(keep, seen[:, :width], torch.zeros_like(seen[:, :width]))


class SVDpp(Recommender):
    """SVD++ over ``history`` batches; rating only.

    The query of a user is ``[p_u + |N(u)|^(-1/2) sum y_j, b_u]`` (B, D + 1); the rating is
    ``mean + b_u + b_i + q_i . z_u`` (``BiasedRating``, whose ``rating_mean`` the trainer sets).
    Ranking is not offered: on ``history`` batches every training target is itself in ``N(u)``, so a
    ranking loss would teach the model to find the items of its own input.

    Args:
        dim: latent factors D.
        init_std: standard deviation of the factor initialisation (p, q, y; biases start at 0).
        l2: coefficient of the per-example L2 penalty returned by ``extra_loss`` (0 disables it): the
            mean over the batch's ratings of ``|p_u|^2 + b_u^2 + |q_i|^2 + b_i^2``, plus the mean over its
            users of the mean ``|y_j|^2`` over ``N(u)``. The optimizer's weight decay is the dense alternative.
        rating_mean: initial global mean (the trainer overwrites it with the training mean).
    """

    train_format: ClassVar[str] = HISTORY
    supports_ranking: ClassVar[bool] = False

    def __init__(
        self,
        n_items: int,
        n_users: int,
        dim: int = 64,
        init_std: float = 0.01,
        l2: float = 0.0,
        rating_mean: float = 3.5,
    ):
        super().__init__(n_items, n_users)
        self.dim = dim
        self.l2 = l2
        self.user_embedding = nn.Embedding(n_users, dim)  # p_u
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)  # q_i
        self.implicit_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)  # y_j
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.rating_head = BiasedRating(rating_mean)
        for table in (self.user_embedding, self.item_embedding, self.implicit_embedding):
            nn.init.normal_(table.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
            self.implicit_embedding.weight[0].zero_()
        self._penalty: torch.Tensor | None = None

    def user_query(self, users: torch.Tensor, rated: torch.Tensor) -> torch.Tensor:
        """users (B,), rated items N(u) (B, S) right-padded with 0 -> [z_u, b_u] (B, D + 1)."""
        z = self.user_embedding(users) + implicit_feedback(rated, self.implicit_embedding)  # (B, D)
        return torch.cat([z, self.user_bias(users)], dim=-1)

    def _item_rows(self, items: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item_embedding(items), self.item_bias(items)], dim=-1)  # (..., D + 1)

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        users, history = batch["users"], batch["history"]  # (B,), (B, S)
        query = self.user_query(users, history)  # (B, D + 1)
        real = history > 0  # (B, S): N(u)
        targets = fitted_ratings(batch)
        rows = torch.arange(history.shape[0], device=history.device)[:, None].expand_as(history)[targets]  # (M,)
        items = history[targets]  # (M,)
        if self.training and self.l2 > 0:
            user_rows = torch.cat([self.user_embedding(users), self.user_bias(users)], dim=-1)[rows]
            y_norms = self.implicit_embedding(history).pow(2).sum(-1)  # (B, S), 0 on padding
            y_mean = y_norms.sum(-1) / real.sum(-1).clamp_min(1)  # (B,)
            per_rating = user_rows.pow(2).sum(-1) + self._item_rows(items).pow(2).sum(-1)  # (M,)
            self._penalty = self.l2 * (per_rating.mean() + y_mean.mean())
        return query[rows], items, batch["history_ratings"][targets]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self.user_query(batch["users"], training_part(batch))

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError("svdpp predicts ratings only (task=rating); it has no ranking score")

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.rating_head(query, self._item_rows(items))

    def extra_loss(self, batch: Batch) -> torch.Tensor | None:
        penalty, self._penalty = self._penalty, None
        return penalty
