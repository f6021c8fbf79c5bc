"""NeuMF: shapes, the split first layer against a per-pair float64 reference, gradients, learning."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import batches
from ss4rec.batch import PAIRS
from ss4rec.models.ncf import NCF

N_ITEMS, N_USERS = 17, 6


def pairs_batch(n: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    return batches.pairs_batch(n, N_USERS, N_ITEMS, seed)


def make(**kwargs) -> NCF:
    torch.manual_seed(0)
    model = NCF(N_ITEMS, N_USERS, dim=4, mlp_hidden=(8, 6, 3), **kwargs)
    with torch.no_grad():  # wake up the zero-initialised rating head and the small embeddings
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def reference_fused(model: NCF, user: int, item: int) -> torch.Tensor:
    """NeuMF for one (user, item) pair, written as in the paper: MLP over the concatenation [p, q]."""
    p_g, q_g = model.user_gmf.weight[user], model.item_gmf.weight[item]
    p_m, q_m = model.user_mlp.weight[user], model.item_mlp.weight[item]
    first = torch.cat([model.mlp_user.weight, model.mlp_item.weight], dim=1)  # W over [p; q]
    x = torch.relu(first @ torch.cat([p_m, q_m]) + model.mlp_user.bias)
    for layer in model.tower:
        if isinstance(layer, torch.nn.Linear):
            x = torch.relu(layer(x))
    return torch.cat([p_g * q_g, x])


def test_format_and_shapes():
    model = make()
    assert model.train_format == PAIRS
    query, items, ratings = model.train_queries(pairs_batch())
    assert query.shape == (9, 4 + 8) and items.shape == (9,) and ratings.shape == (9,)
    assert model.eval_queries({"users": torch.tensor([0, 5])}).shape == (2, 12)
    assert model.score(query).shape == (9, N_ITEMS + 1)
    assert model.predict_rating(query, items).shape == (9,)


def test_score_variants_agree():
    model = make()
    query = model.eval_queries({"users": torch.arange(N_USERS)})
    full = model.score(query)
    ids = torch.tensor([2, 17, 1, 9, 9])
    torch.testing.assert_close(model.score(query, ids), full[:, ids])
    per_query = torch.randint(1, N_ITEMS + 1, (N_USERS, 4))
    torch.testing.assert_close(model.score(query, per_query), full.gather(1, per_query))


def test_matches_per_pair_float64_reference():
    model = make().double()
    users = torch.tensor([0, 3, 5, 2])
    query = model.eval_queries({"users": users})
    full = model.score(query)  # (4, N + 1)
    ratings = model.predict_rating(query, torch.tensor([1, 4, 17, 8]))
    for row, user in enumerate(users.tolist()):
        for item in range(1, N_ITEMS + 1):
            fused = reference_fused(model, user, item)
            expected = model.predict.weight[0] @ fused + model.predict.bias[0]
            torch.testing.assert_close(full[row, item], expected)
        item = [1, 4, 17, 8][row]
        fused = reference_fused(model, user, item)
        expected = model.rating_head.rating_mean + model.rating_head.linear.weight[0] @ fused
        torch.testing.assert_close(ratings[row], expected + model.rating_head.linear.bias[0])


def test_gradients_reach_every_parameter():
    model = make().train()
    batch = pairs_batch()
    query, items, ratings = model.train_queries(batch)
    logits = model.score(query)
    logits[:, 0] = float("-inf")  # what the cross-entropy objective does in place
    loss = F.cross_entropy(logits, items) + F.mse_loss(model.predict_rating(query, items), ratings)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_learns_a_tiny_ranking_task_with_bpr():
    # two user groups, each prefers one half of the catalogue
    torch.manual_seed(0)
    users = torch.arange(N_USERS).repeat_interleave(8)
    liked = torch.where(
        users % 2 == 0, torch.randint(1, 9, users.shape), torch.randint(9, N_ITEMS + 1, users.shape)
    )
    model = NCF(N_ITEMS, N_USERS, dim=8, mlp_hidden=(16, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        batch = {
            "users": users,
            "items": liked,
            "ratings": torch.ones(users.shape),
            "times": torch.zeros_like(users),
        }
        query, positives, _ = model.train_queries(batch)
        negatives = torch.where(
            users % 2 == 0, torch.randint(9, N_ITEMS + 1, users.shape), torch.randint(1, 9, users.shape)
        )
        scores = model.score(query, torch.stack([positives, negatives], dim=1))  # (M, 2)
        loss = -F.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    full = model.score(model.eval_queries({"users": torch.tensor([0, 1])}))
    assert full[0, 1:9].mean() > full[0, 9:].mean() and full[1, 9:].mean() > full[1, 1:9].mean()
