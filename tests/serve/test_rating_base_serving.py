"""Serving a run trained with ``model.rating_base``: the served query of a training user is the evaluation query
(the hidden state from steps whose inputs read each rating's error under the user's base factors, then the user's
part under the base and SS4Rec's drift columns), float64, for each kind of base; a new user is served as the base's
average training user, or refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rating_fixtures import timed_store, varied_store
from serving_fixtures import DRIFT, based_model, core_of
from ss4rec.serve import ServeOptions, ServingCore
from ss4rec.serve.errors import UntrainedUser
from ss4rec.serve.interactions import InteractionLog


def evaluation_batch(store, user: int) -> dict[str, torch.Tensor]:
    """The user's evaluation batch: every event but the last as input, the last as the target."""
    rows = slice(int(store.offsets[user]), int(store.offsets[user + 1]))
    items, times, ratings = (np.asarray(column[rows]) for column in (store.items, store.times, store.ratings))
    n = len(items) - 1
    return {"users": torch.tensor([user]), "items": torch.from_numpy(items[:n].astype(np.int64))[None],
            "times": torch.from_numpy(times[:n].astype(np.int64))[None],
            "ratings": torch.from_numpy(ratings[:n].astype(np.float64))[None], "lengths": torch.tensor([n]),
            "target_times": torch.from_numpy(times[1:].astype(np.int64))[None]}  # fmt: skip


@pytest.mark.parametrize(("kind", "options"), [("svdpp", DRIFT), ("heldout", DRIFT), ("timesvdpp", DRIFT),
                                               ("heldout", {}), ("timesvdpp", {"ffn": True})])  # fmt: skip
@pytest.mark.parametrize("history", ["full", "window"])
def test_a_training_user_is_served_the_evaluation_query_and_ratings(tmp_path, kind, options, history):
    """With residual inputs the plain step, without them the fused one (``FrozenStep``)."""
    store = timed_store() if kind == "timesvdpp" else varied_store()
    model = based_model(kind, tmp_path, store, **options)
    core = core_of(model, store, history=history)
    for user, user_id in enumerate(store.user_map):
        batch = evaluation_batch(store, user)
        at = int(store.times[store.offsets[user + 1] - 1])  # the held-out rating's time
        with torch.no_grad():
            expected = model.eval_queries(batch)
        torch.testing.assert_close(core.query(user_id, at), expected, rtol=0, atol=1e-10)
        items = torch.arange(1, store.n_items + 1)
        with torch.no_grad():
            ratings = model.predict_rating(expected.expand(len(items), -1), items).clamp(1, 5)
        torch.testing.assert_close(core.predicted_ratings(user_id, items, at=at), ratings, rtol=0, atol=1e-10)
        # a joint run ranks by the hidden state alone; a rating run by predicted rating, every item's at once
        with torch.no_grad():
            torch.testing.assert_close(core.scores(user_id, at=at), model.score(expected)[0, 1:].float(), rtol=0, atol=1e-6)
        ranking = ServingCore(model, core.catalogue, core.log, ServeOptions(max_len=50, has_rating=True, ranks=False))
        torch.testing.assert_close(ranking.scores(user_id, at=at), ratings.float(), rtol=0, atol=1e-6)


def test_an_ingested_rating_is_read_as_evaluation_reads_it(tmp_path):
    """A training user's held-out event ingested (in order, one committed step): the next query equals the evaluation
    query over the whole history, the new rating's error included."""
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store)
    user = 1
    user_id = int(store.user_map[user])
    core.query(user_id, 10**9)  # the state exists before the ingest: the ingest steps it
    last = int(store.offsets[user + 1]) - 1
    core.ingest(user_id, int(store.item_map[store.items[last]]), int(store.times[last]), float(store.ratings[last]))
    whole = core_of(model, store, drop_last=0)
    torch.testing.assert_close(core.query(user_id, 2 * 10**9), whole.query(user_id, 2 * 10**9), rtol=0, atol=1e-10)
    changed = core_of(model, store)
    changed.ingest(user_id, int(store.item_map[store.items[last]]), int(store.times[last]), 5.0 if store.ratings[last] < 3 else 1.0)
    assert not torch.allclose(changed.query(user_id, 2 * 10**9), core.query(user_id, 2 * 10**9))  # its rating is read


@pytest.mark.parametrize(("kind", "options"), [("heldout", DRIFT), ("timesvdpp", DRIFT), ("svdpp", {})])
def test_a_new_user_is_served_as_the_base_average_training_user(tmp_path, kind, options):
    """A new user's query is the evaluation query of the base's average training user over the new user's events: the
    base rates an item as it does on average over the training users, and the residual inputs and drift read errors
    against that."""
    store = timed_store() if kind == "timesvdpp" else varied_store()
    model = based_model(kind, tmp_path, store, **options)
    core = core_of(model, store)
    cold = model.rating_base.n_users  # the index add_cold_user gave
    rows = slice(int(store.offsets[1]), int(store.offsets[2]))  # user 1's events, ingested as a new user
    items, times, ratings = (np.asarray(column[rows]) for column in (store.items, store.times, store.ratings))
    for item, when, rating in zip(items, times, ratings):
        core.ingest(777, int(store.item_map[item]), int(when), float(rating))
    at = int(times[-1]) + 3_600
    batch = {"users": torch.tensor([cold]), "items": torch.from_numpy(items.astype(np.int64))[None],
             "times": torch.from_numpy(times.astype(np.int64))[None], "ratings": torch.from_numpy(ratings.astype(np.float64))[None],
             "lengths": torch.tensor([len(items)]),
             "target_times": torch.from_numpy(np.append(times[1:], at).astype(np.int64))[None]}  # fmt: skip
    with torch.no_grad():
        expected = model.eval_queries(batch)
    torch.testing.assert_close(core.query(777, at), expected, rtol=0, atol=1e-10)
    base = model.rating_base
    for name in base.USER_TABLES:  # the average user: the mean factor and bias, no drift, no training days
        table = getattr(base, name)
        if table.numel():
            averaged = name in ("user_factors", "user_bias")
            expected_row = table[:, :cold].double().mean(1) if averaged else torch.zeros_like(table[:, cold])
            torch.testing.assert_close(table[:, cold], expected_row.to(table.dtype), rtol=0, atol=1e-12)
    ids = torch.arange(1, store.n_items + 1)
    with torch.no_grad():  # linear in the user's factor and bias: the training users' mean rating of each item
        if not base.timed:  # (timeSVD++'s drift and day terms are not averaged: a new user has no days)
            rated = base(base.user_part(torch.full((len(ids),), cold)), ids)
            users, items = torch.arange(cold).repeat_interleave(len(ids)), ids.repeat(cold)
            mean = base(base.user_part(users), items).view(cold, -1).mean(0)
            torch.testing.assert_close(rated, mean, rtol=0, atol=1e-10)
    assert core.info()["new_users"] == "average_user"


def test_every_user_served_as_new_reads_the_average_user(tmp_path):
    """``--as-new-users``' log (no user counts as a user of the data): each user's query is the evaluation query of the
    base's average training user over the user's events."""
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store, log=InteractionLog.from_store(store, drop_last=1, known_users=0))
    cold = model.rating_base.n_users
    for user, user_id in enumerate(store.user_map):
        batch = evaluation_batch(store, user) | {"users": torch.tensor([cold])}
        with torch.no_grad():
            expected = model.eval_queries(batch)
        at = int(store.times[store.offsets[user + 1] - 1])
        torch.testing.assert_close(core.query(int(user_id), at), expected, rtol=0, atol=1e-10)


def test_a_new_user_is_recorded_and_refused_by_name_when_asked(tmp_path):
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store, new_users="refuse")
    item = int(store.item_map[1])
    core.ingest(777, item, 10**9, 4.0)
    assert core.ingest(777, int(store.item_map[2]), 10**9 + 5, 3.0)["n_events"] == 2  # recorded, no state stepped
    for call in (lambda: core.recommend(777), lambda: core.rate(777, [item])):
        with pytest.raises(UntrainedUser, match="user_id 777 is not a user of the training data: .*model.rating_base="):
            call()
    assert core.warm() == store.n_users  # the training users only
    assert core.info()["rating_base"] is True and core.info()["new_users"] == "refuse"


@pytest.mark.parametrize("new_users", ["average_user", "refuse"])
def test_over_http_a_training_user_is_rated_and_a_new_user_served_or_refused_with_400(tmp_path, new_users):
    from fastapi.testclient import TestClient

    from ss4rec.serve.app import create_app

    store = varied_store()
    core = core_of(based_model("heldout", tmp_path, store, **DRIFT).float(), store, new_users=new_users)
    user_id, item = int(store.user_map[2]), int(store.item_map[3])
    with TestClient(create_app(core, close_on_shutdown=False)) as client:
        rated = client.post("/ratings", json={"user_id": user_id, "item_ids": [item], "at": 10**9})
        assert rated.status_code == 200
        assert rated.json()["ratings"][0]["rating"] == pytest.approx(core.rate(user_id, [item], at=10**9)[0]["rating"])
        assert client.post("/events", json={"user_id": 555, "item_id": item, "timestamp": 10**9, "rating": 4}).status_code == 201
        answer = client.post("/recommend", json={"user_id": 555, "k": 3})
        if new_users == "refuse":
            assert answer.status_code == 400 and "not a user of the training data" in answer.json()["detail"]
        else:
            assert answer.status_code == 200 and len(answer.json()["items"]) == 3
