"""Popularity: every user gets the items most often interacted with in training."""

from __future__ import annotations

from typing import ClassVar

import torch

from ss4rec.batch import PAIRS, Batch
from ss4rec.models.base import Recommender


class Pop(Recommender):
    """Counts training interactions; scores are ``log(1 + count)``, ratings the item's mean rating.

    Trained on ``pairs`` batches (each training interaction exactly once per epoch); the trainer runs one
    epoch and no optimizer. Items never rated in training get the global mean rating.
    """

    train_format: ClassVar[str] = PAIRS
    learns_by_gradient: ClassVar[bool] = False

    def __init__(self, n_items: int, n_users: int):
        super().__init__(n_items, n_users)
        self.register_buffer("counts", torch.zeros(n_items + 1, dtype=torch.float64))
        self.register_buffer("rating_sums", torch.zeros(n_items + 1, dtype=torch.float64))

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        items, ratings = batch["items"], batch["ratings"]
        if self.training:
            self.counts.index_add_(0, items, torch.ones_like(items, dtype=torch.float64))
            self.rating_sums.index_add_(0, items, ratings.double())
        return self._queries(items.shape[0], items.device), items, ratings

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self._queries(batch["users"].shape[0], batch["users"].device)

    @staticmethod
    def _queries(n: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(n, 1, device=device)  # popularity is the same for everyone

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        table = torch.log1p(self.counts).float()  # (N + 1,)
        if items is None:
            return table.expand(query.shape[0], -1)
        if items.dim() == 1:
            return table[items].expand(query.shape[0], -1)
        return table[items]

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        global_mean = self.rating_sums.sum() / self.counts.sum().clamp_min(1)
        counts = self.counts[items]
        item_mean = torch.where(counts > 0, self.rating_sums[items] / counts.clamp_min(1), global_mean)
        return item_mean.float()
