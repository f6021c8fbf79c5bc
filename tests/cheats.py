"""SASRec made to cheat: it carries the held-out answer of an evaluation batch in its query. Used to check
that the no-leak test (test_no_answer_leak.py) and the end-to-end bounds (test_train.py) catch it.

Training queries are SASRec's own; only ``eval_queries`` appends the answer as one extra column, which
``score``/``predict_rating`` recognise by the query's width, so a cheat also trains through ``train()``.
"""

from __future__ import annotations

import torch

from ss4rec.batch import gather_last
from ss4rec.models.sasrec import SASRec


class _Cheat(SASRec):
    answer_key = ""

    def eval_queries(self, batch):
        answer = gather_last(batch[self.answer_key], batch["lengths"]).float()
        return torch.cat([super().eval_queries(batch), answer[:, None]], 1)

    def _split(self, query):
        """(SASRec's query, the answer or None for a training query)."""
        if query.shape[-1] == self.item_embedding.weight.shape[1] + 1:
            return query[..., :-1], query[..., -1]
        return query, None


class ReadsTheRating(_Cheat):
    """Predicts the held-out rating (RMSE 0)."""

    answer_key = "target_ratings"

    def score(self, query, items=None):
        return super().score(self._split(query)[0], items)

    def predict_rating(self, query, items):
        query, answer = self._split(query)
        return super().predict_rating(query, items) if answer is None else answer


class ReadsTheItem(_Cheat):
    """Pushes the held-out item to the top of the ranking (HR@1 = 1)."""

    answer_key = "target_items"

    def score(self, query, items=None):
        query, answer = self._split(query)
        scores = super().score(query, items)
        if answer is None:
            return scores
        ids = torch.arange(self.n_items + 1, device=query.device) if items is None else items
        return scores + 100.0 * (ids == answer.long()[:, None])

    def predict_rating(self, query, items):
        return super().predict_rating(self._split(query)[0], items)
