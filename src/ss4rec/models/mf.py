"""Biased matrix factorisation (Koren, Bell & Volinsky 2009): the classic rating-prediction baseline."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ss4rec.batch import PAIRS, Batch
from ss4rec.models.base import Recommender, score_by_dot


class BiasedRating(nn.Module):
    """``rating = mean + b_u + b_i + p_u . q_i``; ``mean`` is a buffer the trainer sets to the training mean.

    Named ``rating_head`` on the model so the trainer finds ``rating_head.rating_mean`` as for every model.
    """

    def __init__(self, rating_mean: float = 3.5):
        super().__init__()
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    def forward(self, query: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """query (..., D + 1) = [p_u, b_u], item_vectors (..., D + 1) = [q_i, b_i] -> (...,)"""
        dot = (query[..., :-1] * item_vectors[..., :-1]).sum(-1)
        return self.rating_mean + query[..., -1] + item_vectors[..., -1] + dot


class MF(Recommender):
    """Biased MF over ``pairs`` batches.

    The query of a user is ``[p_u, b_u]`` (B, D + 1). Ranking scores drop the terms that are the same for
    every item (global mean and user bias): ``score(u, i) = p_u . q_i + b_i``, computed as one dot product
    of ``[p_u, 1]`` with the item table ``[q_i, b_i]``, so any ranking objective (BPR, sampled or full
    softmax) trains the same parameters the rating prediction uses.

    Args:
        dim: latent factors D.
        init_std: standard deviation of the factor initialisation (biases start at 0).
        l2: coefficient of the classic per-example L2 penalty on the factors and biases of the batch's
            users and items, returned by ``extra_loss`` (0 disables it; the optimizer's weight decay is the
            dense alternative).
        rating_mean: initial global mean (the trainer overwrites it with the training mean).
    """

    train_format: ClassVar[str] = PAIRS

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
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.rating_head = BiasedRating(rating_mean)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self._penalty: torch.Tensor | None = None

    def _user_query(self, users: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.user_embedding(users), self.user_bias(users)], dim=-1)  # (B, D + 1)

    def _item_table(self) -> torch.Tensor:
        return torch.cat([self.item_embedding.weight, self.item_bias.weight], dim=-1)  # (N + 1, D + 1)

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        users, items = batch["users"], batch["items"]
        query = self._user_query(users)  # (B, D + 1)
        if self.training and self.l2 > 0:
            item_rows = torch.cat([self.item_embedding(items), self.item_bias(items)], dim=-1)
            self._penalty = self.l2 * (query.pow(2).sum(-1) + item_rows.pow(2).sum(-1)).mean()
        return query, items, batch["ratings"]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self._user_query(batch["users"])

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        ranking_query = torch.cat([query[:, :-1], torch.ones_like(query[:, -1:])], dim=-1)  # [p_u, 1]
        return score_by_dot(ranking_query, self._item_table(), items)

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        item_rows = torch.cat([self.item_embedding(items), self.item_bias(items)], dim=-1)  # (M, D + 1)
        return self.rating_head(query, item_rows)

    def extra_loss(self, batch: Batch) -> torch.Tensor | None:
        penalty, self._penalty = self._penalty, None
        return penalty
