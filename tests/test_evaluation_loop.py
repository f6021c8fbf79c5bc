"""RecModule's evaluation loop on a model with known scores: seen masking only when asked, ratings clamped
to the scale, and each validation epoch's metrics its own (reset between epochs, not a running mix)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from ss4rec.lightning_module import RecModule
from ss4rec.models.base import Recommender

N_ITEMS = 6
# two users; user 0's held-out item is 2 (rated 5), user 1's is 5 (rated 2); seen: 0 pads
BATCH = {
    "users": torch.tensor([0, 1]),
    "items": torch.tensor([[4], [6]]),
    "times": torch.tensor([[10], [10]]),
    "ratings": torch.tensor([[4.0], [3.0]]),
    "lengths": torch.tensor([1, 1]),
    "target_items": torch.tensor([[2], [5]]),
    "target_times": torch.tensor([[20], [20]]),
    "target_ratings": torch.tensor([[5.0], [2.0]]),
    "seen": torch.tensor([[4, 1], [6, 0]]),
    "train_lengths": torch.tensor([2, 1]),
}
# user 0: items 4 and 1 (both seen) above the target -> rank 2, or 0 with seen items masked
# user 1: item 6 (seen) above the target -> rank 1, or 0 masked
SEEN_ABOVE = torch.tensor([[0, 5, 4, 3, 6, 0, 0], [0, 0, 0, 0, 0, 1, 2]], dtype=torch.float)
# no seen item above: user 0's target has item 3 (not seen) above it -> rank 1; user 1's is first -> rank 0
UNSEEN_ABOVE = torch.tensor([[0, 0, 4, 5, 0, 0, 0], [0, 0, 0, 0, 0, 9, 2]], dtype=torch.float)


class KnownScores(Recommender):
    """Scores and rating predictions read from tables indexed by user (the query is the user id)."""

    def __init__(self, scores: torch.Tensor, ratings: torch.Tensor):
        super().__init__(n_items=N_ITEMS, n_users=2)
        self.register_buffer("scores", scores.clone())
        self.register_buffer("ratings", ratings.clone())

    def eval_queries(self, batch):
        return batch["users"][:, None].float()

    def score(self, query, items=None):
        rows = self.scores[query[:, 0].long()]
        if items is None:
            return rows
        return rows[:, items] if items.dim() == 1 else rows.gather(1, items)

    def predict_rating(self, query, items):
        return self.ratings[query[:, 0].long()]


def _module(mask_seen: bool, scores: torch.Tensor, ratings: torch.Tensor) -> RecModule:
    module = RecModule(
        model={"_target_": "ss4rec.models.mf.MF", "dim": 2},
        objective={"_target_": "ss4rec.objectives.Objective",
                   "ranking": {"_target_": "ss4rec.objectives.CrossEntropy"}, "rating_weight": 0.1},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
        n_items=N_ITEMS, n_users=2, rating_range=(1.0, 5.0), ks=(1, 3), mask_seen=mask_seen,
        eval_chunk_size=4,  # two chunks of items
    )  # fmt: skip
    module.model = KnownScores(scores, ratings)
    return module


def _validate(module: RecModule) -> dict[str, float]:
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, accelerator="cpu", devices=1)  # fmt: skip
    loader = DataLoader([BATCH], batch_size=None)
    return {k: float(v) for k, v in trainer.validate(module, dataloaders=loader, verbose=False)[0].items()}


def _ranking(ranks: list[int]) -> dict[str, float]:
    """Expected HR/NDCG/MRR at 1 and 3, averaged over users, from 0-based ranks."""
    import math

    out = {}
    for k in (1, 3):
        hits = [r < k for r in ranks]
        out[f"val/hr@{k}"] = sum(hits) / len(ranks)
        out[f"val/ndcg@{k}"] = sum(h / math.log2(r + 2) for h, r in zip(hits, ranks)) / len(ranks)
        out[f"val/mrr@{k}"] = sum(h / (r + 1) for h, r in zip(hits, ranks)) / len(ranks)
    return out


@pytest.mark.parametrize(("mask_seen", "ranks"), [(False, [2, 1]), (True, [0, 0])])
def test_seen_items_are_masked_only_when_asked(mask_seen, ranks):
    got = _validate(_module(mask_seen, SEEN_ABOVE, torch.tensor([5.0, 2.0])))
    for name, value in _ranking(ranks).items():
        assert got[name] == pytest.approx(value, abs=1e-6), name


def test_predicted_ratings_are_clamped_to_the_scale():
    # 7 -> 5 against 5 (error 0); -2 -> 1 against 2 (error 1); unclamped the errors would be 2 and 4
    got = _validate(_module(False, SEEN_ABOVE, torch.tensor([7.0, -2.0])))
    assert got["val/mae"] == pytest.approx(0.5, abs=1e-6)
    assert got["val/rmse"] == pytest.approx(0.5**0.5, abs=1e-6)


def test_each_validation_epoch_reports_its_own_numbers():
    module = _module(False, SEEN_ABOVE, torch.tensor([5.0, 2.0]))
    first = _validate(module)
    module.model.scores.copy_(UNSEEN_ABOVE)
    module.model.ratings.copy_(torch.tensor([3.0, 4.0]))  # errors 2 and 2
    second = _validate(module)
    assert first["val/hr@1"] == 0.0 and first["val/rmse"] == pytest.approx(0.0, abs=1e-6)
    for name, value in _ranking([1, 0]).items():  # a running mix of both epochs would give ranks [2, 1, 1, 0]
        assert second[name] == pytest.approx(value, abs=1e-6), name
    assert second["val/rmse"] == pytest.approx(2.0, abs=1e-6) and second["val/mae"] == pytest.approx(2.0, abs=1e-6)
