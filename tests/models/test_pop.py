"""Popularity counts every training interaction once and ranks by count."""

import torch

from ss4rec.models.pop import Pop


def test_counts_and_ratings():
    model = Pop(n_items=5, n_users=2).train()
    batch = {"users": torch.tensor([0, 0, 1, 1, 1]), "items": torch.tensor([2, 3, 3, 3, 5]),
             "ratings": torch.tensor([4.0, 2.0, 3.0, 5.0, 1.0]), "times": torch.zeros(5, dtype=torch.long)}
    model.train_queries(batch)
    model.eval()
    query = model.eval_queries({"users": torch.tensor([0, 1])})
    scores = model.score(query)
    assert scores.shape == (2, 6)
    assert scores[0].argsort(descending=True)[0].item() == 3  # item 3 counted three times
    assert scores[0, 1] == scores[0, 4] == 0  # never seen
    ratings = model.predict_rating(query, torch.tensor([3, 1]))
    assert abs(ratings[0].item() - (2 + 3 + 5) / 3) < 1e-6
    assert abs(ratings[1].item() - 15 / 5) < 1e-6  # unseen item: the global mean
    model.train_queries(batch)  # evaluation mode never counts
    assert model.counts[3].item() == 3
