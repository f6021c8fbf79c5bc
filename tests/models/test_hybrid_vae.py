"""Hybrid VAE: the generic cross-entropy equals Mult-VAE's likelihood, KL annealing, side information."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ss4rec.batch import HISTORY
from ss4rec.models.hybrid_vae import HybridVAE

N_ITEMS, N_USERS = 19, 5


def history_batch() -> dict[str, torch.Tensor]:
    history = torch.tensor(
        [[3, 7, 1, 0, 0, 0], [2, 19, 5, 6, 8, 11], [4, 4, 9, 0, 0, 0], [12, 13, 14, 15, 0, 0]]
    )  # right-padded; user 2 lists item 4 twice (multi-hot counts it once in the input)
    ratings = torch.where(history > 0, (history % 5 + 1).float(), torch.zeros(()))
    return {"users": torch.tensor([0, 1, 2, 4]), "history": history, "history_ratings": ratings}


def make(**kwargs) -> HybridVAE:
    torch.manual_seed(0)
    return HybridVAE(N_ITEMS, N_USERS, hidden=16, latent=6, **kwargs)


def test_format_and_shapes():
    model = make()
    assert model.train_format == HISTORY
    batch = history_batch()
    query, items, ratings = model.train_queries(batch)
    m = int((batch["history"] > 0).sum())
    assert query.shape == (m, 6 + N_ITEMS + 1) and items.shape == (m,) and ratings.shape == (m,)
    assert torch.equal(items, batch["history"][batch["history"] > 0])
    eval_query = model.eval_queries({"users": batch["users"], "seen": batch["history"]})
    assert eval_query.shape == (4, 6 + N_ITEMS + 1)
    assert model.score(query).shape == (m, N_ITEMS + 1)
    assert model.predict_rating(query, items).shape == (m,)


def test_score_variants_agree_and_are_log_probabilities():
    model = make().eval()
    query = model.eval_queries({"seen": history_batch()["history"]})
    full = model.score(query)
    torch.testing.assert_close(full[:, 1:].exp().sum(-1), torch.ones(4))  # padding carries no mass
    ids = torch.tensor([5, 1, 19, 2])
    torch.testing.assert_close(model.score(query, ids), full[:, ids])
    per_query = torch.randint(1, N_ITEMS + 1, (4, 7))
    torch.testing.assert_close(model.score(query, per_query), full.gather(1, per_query))


def test_cross_entropy_over_queries_is_the_multinomial_likelihood():
    model = make().double().eval()  # eval: z = mu, no dropout, so the reference is deterministic
    batch = history_batch()
    query, items, _ = model.train_queries(batch)
    logits = model.score(query)
    logits[:, 0] = float("-inf")  # as the cross-entropy objective does
    total = F.cross_entropy(logits, items, reduction="sum")
    # Mult-VAE, written directly in float64: -sum_u sum_{i in history_u} log softmax(f(mu_u))_i
    reference = torch.zeros((), dtype=torch.float64)
    for row in batch["history"]:
        x = torch.zeros(N_ITEMS, dtype=torch.float64)
        x[row[row > 0] - 1] = 1.0
        mu = model.encoder(x / x.norm())[: model.latent]
        log_probs = torch.log_softmax(model.decoder(mu), dim=-1)
        reference -= log_probs[row[row > 0] - 1].sum()
    torch.testing.assert_close(total, reference)


def test_kl_annealing_schedule():
    model = make(anneal_cap=0.3, total_anneal_steps=4)
    batch = history_batch()
    betas, extras = [], []
    for _ in range(7):
        query, _, _ = model.train_queries(batch)
        betas.append(model.beta())
        extras.append(model.extra_loss(batch))
    assert betas == pytest.approx([0.0, 0.075, 0.15, 0.225, 0.3, 0.3, 0.3])
    assert int(model.anneal_step) == 7 and "anneal_step" in model.state_dict()
    assert extras[0].item() == 0.0 and all(e.item() > 0 for e in extras[1:])
    # extra = beta * sum_u KL_u / M with M = number of history entries
    model.eval()
    query, items, _ = model.train_queries(batch)
    mu, logvar = model.encode(batch["history"])
    kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum()
    torch.testing.assert_close(model.extra_loss(batch), 0.3 * kl / items.shape[0])
    assert int(model.anneal_step) == 7  # evaluation never advances the schedule
    assert model.extra_loss(batch) is None


def test_item_features_enter_ratings_and_survive_a_state_dict_round_trip():
    model = make().eval()
    batch = history_batch()
    query, items, _ = model.train_queries(batch)
    before = model.predict_rating(query, items)
    model.set_item_features(torch.zeros(N_ITEMS + 1, 3))  # the trainer sets zeros first ...
    weight = model.genre_weight
    torch.testing.assert_close(model.predict_rating(query, items), before)
    genres = (torch.rand(N_ITEMS + 1, 3) < 0.5).float()
    model.set_item_features(genres)  # ... then the real values: same width, same parameter
    assert model.genre_weight is weight and torch.equal(model.item_features, genres)
    after = model.predict_rating(query, items)
    assert not torch.allclose(after, before)
    fresh = make()
    fresh.set_item_features(torch.zeros(N_ITEMS + 1, 3))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.eval().predict_rating(query, items), after)
    with pytest.raises(ValueError, match="n_items"):
        model.set_item_features(torch.zeros(N_ITEMS, 3))


def test_gradients_reach_every_parameter():
    model = make()
    model.set_item_features((torch.rand(N_ITEMS + 1, 4) < 0.5).float())
    model.anneal_step.fill_(1000)  # beta > 0 so the KL's gradient flows too
    batch = history_batch()
    query, items, ratings = model.train_queries(batch)
    logits = model.score(query)
    logits[:, 0] = float("-inf")
    loss = F.cross_entropy(logits, items) + F.mse_loss(model.predict_rating(query, items), ratings)
    (loss + model.extra_loss(batch)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_learns_to_reconstruct_histories():
    torch.manual_seed(0)
    # two tastes: users of group 0 watch items 1..9, group 1 items 10..19
    history = torch.stack([torch.randperm(9)[:5] + 1 + 9 * (u % 2) for u in range(N_USERS * 4)])
    batch = {
        "users": torch.arange(history.shape[0]),
        "history": history,
        "history_ratings": torch.ones(history.shape),
    }
    model = HybridVAE(N_ITEMS, N_USERS * 4, hidden=32, latent=8, dropout=0.2, total_anneal_steps=50)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        query, items, _ = model.train_queries(batch)
        logits = model.score(query)
        logits[:, 0] = float("-inf")
        loss = F.cross_entropy(logits, items) + model.extra_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > math.log(N_ITEMS) - 0.5  # starts near uniform
    assert losses[-1] < losses[0] - 0.5
