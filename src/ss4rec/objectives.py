"""Training objectives, built from the ``task`` config group.

An ``Objective`` combines an optional ranking loss with a weighted rating MSE:
ranking-only (``rating_weight: 0``), rating-only (``ranking: null``) and joint are the same class with
different configuration. Ranking losses take queries (M, Q), positive items (M,) and the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ss4rec.models.base import Recommender


def sample_negatives(n_items: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Uniform item ids in 1..n_items."""
    return torch.randint(1, n_items + 1, shape, device=device)


class CrossEntropy:
    """Full softmax over every item (padding excluded): the official SS4Rec / SASRec-CE loss.

    Scores only the real ids 1..N (column j is item j + 1): the same loss as masking the padding column
    with -inf, without the in-place mask, whose backward copies and clears the whole (M, N + 1) gradient.
    """

    def __call__(self, model: Recommender, query: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        items = torch.arange(1, model.n_items + 1, device=query.device)
        logits = model.score(query, items)  # (M, N)
        return F.cross_entropy(logits, positives - 1)


class BPR:
    """Bayesian personalised ranking with ``n_negatives`` uniform negatives per positive."""

    def __init__(self, n_negatives: int = 1):
        self.n_negatives = n_negatives

    def __call__(self, model: Recommender, query: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        negatives = sample_negatives(model.n_items, (positives.shape[0], self.n_negatives), positives.device)
        scores = model.score(query, torch.cat([positives[:, None], negatives], dim=1))  # (M, 1 + n)
        return -F.logsigmoid(scores[:, :1] - scores[:, 1:]).mean()


class SampledSoftmax:
    """Softmax over the positive and ``n_negatives`` uniform negatives (for large catalogues).

    Accidental hits (a negative equal to the positive) are removed from the softmax.
    """

    def __init__(self, n_negatives: int = 100):
        self.n_negatives = n_negatives

    def __call__(self, model: Recommender, query: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        negatives = sample_negatives(model.n_items, (positives.shape[0], self.n_negatives), positives.device)
        logits = model.score(query, torch.cat([positives[:, None], negatives], dim=1))  # (M, 1 + n)
        logits[:, 1:] = logits[:, 1:].masked_fill(negatives == positives[:, None], float("-inf"))
        return F.cross_entropy(logits, torch.zeros_like(positives))


class Objective:
    """``loss = ranking(model, q, pos) + rating_weight * MSE(rating(q, pos), true rating)``.

    ``rating_recent_targets=N`` > 0 weighs the squared error of each user's last N training targets
    ``rating_recent_weight`` times the others' (a weighted mean): held-out ratings are each user's last, and a
    user's last ratings stray from the rest more than earlier ones do (README, Ratings).
    """

    def __init__(self, ranking=None, rating_weight: float = 0.0, rating_recent_targets: int = 0,
                 rating_recent_weight: float = 1.0):  # fmt: skip
        if ranking is None and rating_weight <= 0:
            raise ValueError("an objective needs a ranking loss, a positive rating_weight, or both")
        if rating_recent_targets < 0 or rating_recent_weight <= 0:
            raise ValueError("rating_recent_targets must be >= 0 and rating_recent_weight > 0, got "
                             f"{rating_recent_targets} and {rating_recent_weight}")  # fmt: skip
        self.ranking = ranking
        self.rating_weight = float(rating_weight)
        self.recent_targets, self.recent_weight = int(rating_recent_targets), float(rating_recent_weight)

    @property
    def weighs_recent(self) -> bool:
        """Whether the rating loss needs each target's place from the end (``target_from_end``)."""
        return self.rating_weight > 0 and self.recent_targets > 0 and self.recent_weight != 1.0

    @property
    def uses_rating(self) -> bool:
        return self.rating_weight > 0

    @property
    def uses_ranking(self) -> bool:
        return self.ranking is not None

    def __call__(
        self, model: Recommender, query: torch.Tensor, positives: torch.Tensor, ratings: torch.Tensor,
        from_end: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Returns ``loss`` and its parts (``ranking_loss``, ``rating_loss``) for logging; ``from_end`` (M,): each
        target's place from the end of its user's training part, read when recent targets are weighed."""  # fmt: skip
        parts: dict[str, torch.Tensor] = {}
        loss = query.new_zeros(())
        if self.ranking is not None:
            parts["ranking_loss"] = self.ranking(model, query, positives)
            loss = loss + parts["ranking_loss"]
        if self.rating_weight > 0:
            predicted = model.predict_rating(query, positives)
            if self.weighs_recent:
                if from_end is None:
                    raise ValueError("rating_recent_targets needs each target's place from the end (sequence batches)")
                weights = torch.where(from_end <= self.recent_targets, self.recent_weight, 1.0).to(predicted.dtype)
                parts["rating_loss"] = (weights * (predicted - ratings.to(predicted.dtype)) ** 2).sum() / weights.sum()
            else:
                parts["rating_loss"] = F.mse_loss(predicted, ratings.float())
            loss = loss + self.rating_weight * parts["rating_loss"]
        parts["loss"] = loss
        return parts
