"""torchmetrics objects for ranking and rating quality.

States are sums with ``dist_reduce_fx="sum"``, so an evaluation split across processes gives exactly the
numbers of a single process.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from ss4rec.evaluation import ranking_metrics_from_ranks

DEFAULT_KS = (1, 5, 10, 20)


class RankingMetrics(Metric):
    """HR@K, NDCG@K and MRR@K averaged over users, from pessimistic 0-based ranks (see ss4rec.evaluation)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, ks: tuple[int, ...] | list[int] = DEFAULT_KS, **kwargs):
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.names = [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]
        for name in self.names:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ranks: torch.Tensor) -> None:
        """ranks (B,) long, 0 = the target scored highest."""
        for k in self.ks:
            for name, values in ranking_metrics_from_ranks(ranks, k).items():
                setattr(self, name, getattr(self, name) + values.sum())
        self.count += ranks.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1).double()
        return {name: getattr(self, name) / n for name in self.names}


class RatingMetrics(Metric):
    """RMSE and MAE of predicted against true ratings."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("squared", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("absolute", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """predicted, target: (B,)"""
        error = predicted.double() - target.double()
        self.squared += (error**2).sum()
        self.absolute += error.abs().sum()
        self.count += error.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1).double()
        return {"rmse": torch.sqrt(self.squared / n), "mae": self.absolute / n}
