"""Biased MF: shapes, the rating formula against a float64 reference, gradients, learning."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import batches
from ss4rec.batch import PAIRS
from ss4rec.models.mf import MF

N_ITEMS, N_USERS = 13, 7


def pairs_batch(n: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    return batches.pairs_batch(n, N_USERS, N_ITEMS, seed)


def eval_batch(b: int = 5) -> dict[str, torch.Tensor]:
    """Only the keys a user model reads from an evaluation ``sequence`` batch."""
    return {"users": torch.arange(b) % N_USERS, "seen": torch.randint(1, N_ITEMS + 1, (b, 4))}


def make(**kwargs) -> MF:
    torch.manual_seed(0)
    model = MF(N_ITEMS, N_USERS, dim=8, init_std=0.3, **kwargs)
    with torch.no_grad():  # non-zero biases so the reference checks every term
        model.user_bias.weight.normal_()
        model.item_bias.weight[1:].normal_()
        model.rating_head.rating_mean.fill_(3.2)
    return model


def test_format_and_shapes():
    model = make()
    assert model.train_format == PAIRS
    batch = pairs_batch()
    query, items, ratings = model.train_queries(batch)
    assert query.shape == (11, 9) and items.shape == (11,) and ratings.shape == (11,)
    assert model.eval_queries(eval_batch()).shape == (5, 9)
    assert model.score(query).shape == (11, N_ITEMS + 1)
    assert model.predict_rating(query, items).shape == (11,)


def test_score_variants_agree():
    model = make()
    query = model.eval_queries(eval_batch())
    full = model.score(query)
    ids = torch.tensor([3, 1, 13, 7])
    torch.testing.assert_close(model.score(query, ids), full[:, ids])
    per_query = torch.randint(1, N_ITEMS + 1, (5, 6))
    torch.testing.assert_close(model.score(query, per_query), full.gather(1, per_query))


def test_rating_and_score_match_float64_reference():
    model = make().double()
    batch = pairs_batch()
    users, items = batch["users"], batch["items"]
    query, _, _ = model.train_queries(batch)
    p, q = model.user_embedding.weight[users], model.item_embedding.weight[items]
    bu, bi = model.user_bias.weight[users, 0], model.item_bias.weight[items, 0]
    reference = 3.2 + bu + bi + (p * q).sum(-1)
    torch.testing.assert_close(model.predict_rating(query, items), reference)
    # ranking drops only the terms shared by all items: score = rating - mean - b_u
    torch.testing.assert_close(model.score(query, items[:, None])[:, 0], reference - 3.2 - bu)


def test_gradients_reach_every_parameter():
    model = make(l2=0.1)
    batch = pairs_batch()
    query, items, ratings = model.train_queries(batch)
    logits = model.score(query)
    logits[:, 0] = float("-inf")
    loss = F.cross_entropy(logits, items) + F.mse_loss(model.predict_rating(query, items), ratings)
    extra = model.extra_loss(batch)
    assert extra is not None and extra > 0
    (loss + extra).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.extra_loss(batch) is None  # the penalty belongs to one batch only


def test_learns_ratings_of_a_tiny_low_rank_task():
    torch.manual_seed(1)
    users = torch.arange(N_USERS).repeat_interleave(N_ITEMS)
    items = torch.arange(1, N_ITEMS + 1).repeat(N_USERS)
    ratings = (
        3 + torch.sign(torch.randn(N_USERS))[users] * torch.sign(torch.randn(N_ITEMS + 1))[items]
    ).float()
    batch = {"users": users, "items": items, "ratings": ratings, "times": torch.zeros_like(users)}
    model = MF(N_ITEMS, N_USERS, dim=4, init_std=0.1, rating_mean=3.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        query, items_, ratings_ = model.train_queries(batch)
        loss = F.mse_loss(model.predict_rating(query, items_), ratings_)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
