"""Neural Collaborative Filtering: NeuMF (He et al. 2017), a GMF branch and an MLP branch, fused."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ss4rec.batch import PAIRS, Batch
from ss4rec.models.base import Recommender


class FusedRating(nn.Module):
    """Rating output of NeuMF: ``rating = mean + w_r . phi + b_r`` on the fused vector ``phi``.

    A second linear head beside the ranking one, on the same fused vector, so ranking and rating share
    both towers (the joint objective trains one representation). ``mean`` is set by the trainer.
    """

    def __init__(self, dim: int, rating_mean: float = 3.5):
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """fused (..., F) -> (...,)"""
        return self.rating_mean + self.linear(fused).squeeze(-1)


class NCF(Recommender):
    """NeuMF over ``pairs`` batches.

    GMF: ``p_u^G * q_i^G`` (dim). MLP: ``tower(relu(W [p_u^M, q_i^M] + b))`` with hidden sizes ``mlp_hidden``.
    Fused vector ``phi = [GMF, MLP]``; ranking logit ``h . phi + c`` (the objective applies softmax or BPR's
    sigmoid); rating from a separate linear head on ``phi`` (``FusedRating``).

    The first MLP layer is split into a user part and an item part (``W [p; q] = W_u p + W_i q``), so the
    query of a user is ``[p_u^G, W_u p_u^M + b]`` (B, dim + mlp_hidden[0]) and scoring K items is one
    broadcast ``(M, 1, H) + (1, K, H)`` through the tower, with no Python loop. Scoring every item builds
    (M, N + 1, H) activations: train with BPR or sampled softmax; full softmax is for small catalogues.
    """

    train_format: ClassVar[str] = PAIRS

    def __init__(
        self,
        n_items: int,
        n_users: int,
        dim: int = 32,
        mlp_hidden: tuple[int, ...] | list[int] = (64, 32, 16),
        dropout: float = 0.0,
        rating_mean: float = 3.5,
    ):
        super().__init__(n_items, n_users)
        mlp_hidden = tuple(mlp_hidden)
        if not mlp_hidden:
            raise ValueError("mlp_hidden needs at least one layer")
        self.dim = dim
        self.user_gmf = nn.Embedding(n_users, dim)
        self.item_gmf = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.user_mlp = nn.Embedding(n_users, dim)
        self.item_mlp = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.mlp_user = nn.Linear(dim, mlp_hidden[0])  # first MLP layer, user half (+ bias)
        self.mlp_item = nn.Linear(dim, mlp_hidden[0], bias=False)  # first MLP layer, item half
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for d_in, d_out in zip(mlp_hidden[:-1], mlp_hidden[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(dropout)]
        self.tower = nn.Sequential(*layers)
        fused = dim + mlp_hidden[-1]
        self.predict = nn.Linear(fused, 1)  # ranking logit
        self.rating_head = FusedRating(fused, rating_mean)
        for embedding in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(embedding.weight, std=0.01)
            with torch.no_grad():
                if embedding.padding_idx is not None:
                    embedding.weight[embedding.padding_idx].zero_()
        for module in (self.mlp_user, self.mlp_item, *self.tower, self.predict):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------- queries
    def _user_query(self, users: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, dim + H): the GMF user vector and the user half of the first MLP layer."""
        return torch.cat([self.user_gmf(users), self.mlp_user(self.user_mlp(users))], dim=-1)

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._user_query(batch["users"]), batch["items"], batch["ratings"]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self._user_query(batch["users"])

    # ----------------------------------------------------------------------------- fusion
    def _fused(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Fused vectors phi for queries and items that broadcast against each other.

        query (..., dim + H) and items (...) with broadcastable leading shapes -> (..., dim + H_last).
        """
        user_gmf, user_mlp = query[..., : self.dim], query[..., self.dim :]
        gmf = user_gmf * self.item_gmf(items)  # (..., dim)
        mlp = self.tower(user_mlp + self.mlp_item(self.item_mlp(items)))  # (..., H_last)
        return torch.cat([gmf, mlp], dim=-1)

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            items = torch.arange(self.n_items + 1, device=query.device)
        if items.dim() == 1:
            items = items[None, :]  # (1, K): the same ids for every query
        return self.predict(self._fused(query[:, None, :], items)).squeeze(-1)  # (M, K)

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.rating_head(self._fused(query, items))  # (M,)
