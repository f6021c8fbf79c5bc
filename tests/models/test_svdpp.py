"""SVD++: the prediction formula against a float64 reference, gradients, N(u) without held-out items."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from ss4rec.batch import HISTORY
from ss4rec.data import collate
from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import Raw
from ss4rec.models.svdpp import SVDpp

N_ITEMS, N_USERS, DIM = 13, 6, 5


def make(**kwargs) -> SVDpp:
    torch.manual_seed(0)
    model = SVDpp(N_ITEMS, N_USERS, dim=DIM, init_std=0.3, **kwargs)
    with torch.no_grad():  # non-zero biases so the reference checks every term
        model.user_bias.weight.normal_()
        model.item_bias.weight[1:].normal_()
        model.rating_head.rating_mean.fill_(3.2)
    return model


def history_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``history`` batch: users with 1..7 distinct rated items, right-padded with 0; one user has none."""
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 7, 1, 0, 5]
    history = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        history[row, :n] = torch.randperm(N_ITEMS, generator=g)[:n] + 1
    ratings = torch.where(history > 0, torch.randint(1, 6, history.shape, generator=g).float(), 0.0)
    return {"users": torch.tensor([4, 0, 2, 5, 1]), "history": history, "history_ratings": ratings}


def reference_rating(model: SVDpp, user: int, rated: list[int], item: int) -> float:
    """r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j), in float64, one at a time."""
    weights = {name: p.detach().double() for name, p in model.named_parameters()}
    p_u, q_i = weights["user_embedding.weight"][user], weights["item_embedding.weight"][item]
    implicit = torch.zeros(DIM, dtype=torch.float64)
    for j in rated:
        implicit += weights["implicit_embedding.weight"][j]
    if rated:
        implicit /= math.sqrt(len(rated))
    bias = weights["user_bias.weight"][user, 0] + weights["item_bias.weight"][item, 0]
    return float(model.rating_head.rating_mean.double() + bias + q_i @ (p_u + implicit))


def test_format_and_shapes():
    model = make()
    assert model.train_format == HISTORY and model.supports_rating and not model.supports_ranking
    batch = history_batch()
    query, items, ratings = model.train_queries(batch)
    m = int((batch["history"] > 0).sum())
    assert query.shape == (m, DIM + 1) and items.shape == (m,) and ratings.shape == (m,)
    assert model.predict_rating(query, items).shape == (m,)
    with pytest.raises(NotImplementedError, match="ratings only"):
        model.score(query)


def test_training_predictions_match_float64_reference():
    model = make()
    batch = history_batch()
    query, items, ratings = model.train_queries(batch)
    predicted = model.predict_rating(query, items)
    expected, expected_ratings = [], []
    for user, row, row_ratings in zip(batch["users"], batch["history"], batch["history_ratings"]):
        rated = [int(j) for j in row if j > 0]  # N(u): the whole training part, padding excluded
        for j, r in zip(rated, row_ratings[: len(rated)]):
            expected.append(reference_rating(model, int(user), rated, j))
            expected_ratings.append(float(r))
    torch.testing.assert_close(
        predicted.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )
    assert ratings.tolist() == expected_ratings


def test_evaluation_predictions_match_float64_reference_with_padding_and_empty_histories():
    model = make().double()
    seen = torch.tensor([[3, 5, 9, 2], [7, 0, 0, 0], [4, 1, 0, 0], [6, 0, 0, 0]])
    train_lengths = torch.tensor([3, 1, 0, 0])  # the rest of a row: the validation item, or padding
    batch = {"users": torch.tensor([1, 3, 0, 5]), "seen": seen, "train_lengths": train_lengths}
    items = torch.tensor([2, 11, 8, 13])
    predicted = model.predict_rating(model.eval_queries(batch), items)
    expected = [
        reference_rating(model, int(u), [int(j) for j in row[:n]], int(i))
        for u, row, n, i in zip(batch["users"], seen, train_lengths, items)
    ]
    torch.testing.assert_close(predicted, torch.tensor(expected, dtype=torch.float64))


def test_gradients_of_the_rating_loss_reach_every_parameter():
    model = make()
    batch = history_batch()
    query, items, ratings = model.train_queries(batch)
    F.mse_loss(model.predict_rating(query, items), ratings).backward()
    assert model.extra_loss(batch) is None  # l2 = 0: no penalty, so the gradients come from the formula
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        if name in ("item_embedding.weight", "implicit_embedding.weight", "item_bias.weight"):
            assert not parameter.grad[0].any(), f"{name}: the padding row must get no gradient"


def test_l2_penalty_covers_factors_biases_and_implicit_factors():
    model = make(l2=0.1)
    batch = history_batch()
    model.train_queries(batch)
    penalty = model.extra_loss(batch)
    assert penalty is not None and penalty > 0
    penalty.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.extra_loss(batch) is None  # the penalty belongs to one batch only


def small_store():
    rng = np.random.default_rng(3)
    rows = [(u, int(i), float(rng.integers(1, 6)), 1000 + 10 * k)
            for u in range(1, 9) for k, i in enumerate(rng.choice(np.arange(1, 15), 7, replace=False))]  # fmt: skip
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0), None)


def test_held_out_items_never_enter_n_u():
    store = small_store()
    users = np.arange(store.n_users)
    model = SVDpp(store.n_items, store.n_users, dim=DIM, init_std=0.3).eval()
    with torch.no_grad():  # give every item a distinct, large implicit factor: any leak moves the query
        model.implicit_embedding.weight[1:] = torch.randn(store.n_items, DIM) * 10
    val = collate.eval_batch(store, users, "val", max_len=50)
    test = collate.eval_batch(store, users, "test", max_len=50)
    train = collate.history_batch(store, users)
    with torch.no_grad():
        queries = {name: model.eval_queries(batch) for name, batch in (("val", val), ("test", test))}
        queries["train"] = model.user_query(train["users"], train["history"])
    # N(u) is the training part in every stage: the test query does not see the validation item
    torch.testing.assert_close(queries["test"], queries["val"])
    torch.testing.assert_close(queries["train"], queries["val"])
    for u in users:
        held_out = {int(store.items[store.offsets[u + 1] - 2]), int(store.items[store.offsets[u + 1] - 1])}
        n_u = test["seen"][u, : int(test["train_lengths"][u])].tolist()
        assert n_u == store.items[store.offsets[u] : store.offsets[u + 1] - 2].tolist()
        assert not held_out & set(n_u)


def test_evaluation_without_train_lengths_is_a_clear_error():
    model = make()
    with pytest.raises(KeyError, match="no 'train_lengths'.*held-out item could enter N\\(u\\)"):
        model.eval_queries({"users": torch.tensor([0]), "seen": torch.tensor([[1, 2]])})
    with pytest.raises(ValueError, match=r"train_lengths must lie in \[0, 2\].*max 3"):
        model.eval_queries(
            {"users": torch.tensor([0]), "seen": torch.tensor([[1, 2]]), "train_lengths": torch.tensor([3])}
        )


def test_learns_a_tiny_rating_task():
    """Two groups of users rate disjoint items; the rating depends on the group and the item's parity."""
    torch.manual_seed(1)
    n_users = 40
    taste = torch.randint(0, 2, (n_users,))  # a user's group decides both what they rate and how
    history = torch.stack(
        [torch.randperm(6)[:4] + 1 + 6 * int(t) for t in taste]
    )  # group 0: 1-6, group 1: 7-12
    ratings = torch.where(history % 2 == taste[:, None], 5.0, 1.0)
    batch = {"users": torch.arange(n_users), "history": history, "history_ratings": ratings}
    model = SVDpp(N_ITEMS, n_users, dim=4, init_std=0.1, rating_mean=3.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(80):
        query, items, targets = model.train_queries(batch)
        loss = F.mse_loss(model.predict_rating(query, items), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
