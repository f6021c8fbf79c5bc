"""``python -m ss4rec.serve RUN_A RUN_B``: rating runs of one split served as one model, the mean of their clamped
ratings (``ServingEnsemble``): against each member served alone, float64; one log and one journal; over HTTP."""

from __future__ import annotations

import logging

import pytest
import torch

from composing import TINY_JOINT_RUN, compose_train
from rating_fixtures import varied_store
from serving_fixtures import DRIFT, based_model, core_of
from ss4rec.errors import ConfigError, UserError
from ss4rec.serve.ensemble import ServingEnsemble, load_ensemble
from ss4rec.serve.errors import UntrainedUser


@pytest.fixture(autouse=True)
def quiet_loggers(monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", False)  # loggers of an earlier in-process run


def two_models(tmp_path, store):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    return based_model("heldout", tmp_path / "a", store, **DRIFT), based_model("svdpp", tmp_path / "b", store)


def ensemble_of(models, store) -> ServingEnsemble:
    first = core_of(models[0], store, drop_last=0)
    return ServingEnsemble([first, *(core_of(model, store, log=first.log) for model in models[1:])])


def test_the_ensemble_rates_and_ranks_by_its_members_mean(tmp_path):
    store = varied_store()
    models = two_models(tmp_path, store)
    ensemble = ensemble_of(models, store)
    alone = [core_of(model, store, drop_last=0) for model in models]
    for user_id in store.user_map[:4]:
        user_id = int(user_id)
        item_ids = [int(i) for i in store.item_map[1:6]]
        each = [[row["rating"] for row in core.rate(user_id, item_ids, at=10**9)] for core in alone]
        assert [row["rating"] for row in ensemble.rate(user_id, item_ids, at=10**9)] == pytest.approx(
            [(a + b) / 2 for a, b in zip(*each)], abs=1e-12)  # fmt: skip
        mean = (alone[0].every_rating(user_id, 10**9) + alone[1].every_rating(user_id, 10**9)) / 2
        mean[torch.from_numpy(alone[0].log.items(user_id) - 1)] = float("-inf")
        top = torch.topk(mean, 3)
        recs = ensemble.recommend(user_id, k=3, at=10**9)
        assert [r["item_id"] for r in recs] == [int(store.item_map[i + 1]) for i in top.indices.tolist()]
        assert [r["rating"] for r in recs] == pytest.approx(top.values.tolist()) and recs[0]["score"] == recs[0]["rating"]


def test_an_event_is_recorded_once_and_advances_every_member(tmp_path):
    store = varied_store()
    models = two_models(tmp_path, store)
    ensemble = ensemble_of(models, store)
    user_id = int(store.user_map[1])
    ensemble.rate(user_id, [int(store.item_map[1])], at=10**9)  # both states exist: the ingest steps them
    n = ensemble.log.length(user_id)
    assert ensemble.ingest(user_id, int(store.item_map[9]), 2 * 10**9, 2.0) == {"user_id": user_id, "n_events": n + 1,
                                                                             "in_order": True}  # fmt: skip
    assert all(core.log.length(user_id) == n + 1 for core in ensemble.cores)
    for core in ensemble.cores:
        fresh = core_of(core.model, store, drop_last=0)
        fresh.log.append(user_id, ensemble.log.last_event(user_id))
        torch.testing.assert_close(core.query(user_id, 3 * 10**9), fresh.query(user_id, 3 * 10**9), rtol=0, atol=1e-10)
    ensemble.ingest(4242, int(store.item_map[2]), 10**9, 3.0)  # a new user: served on each base's item terms
    assert len(ensemble.recommend(4242, k=2)) == 2
    refusing = ServingEnsemble([core_of(models[0], store, log=ensemble.log, new_users="refuse"),
                                core_of(models[1], store, log=ensemble.log)])  # fmt: skip
    with pytest.raises(UntrainedUser, match="user_id 4242 is not a user of the training data"):
        refusing.recommend(4242)


@pytest.fixture(scope="module")
def rating_run(tmp_path_factory):
    """A tiny SS4Rec rating run on the joint serving run's split, another seed."""
    from ss4rec.training import train

    run = tmp_path_factory.mktemp("rating-run")
    threads = torch.get_num_threads()
    options = [o for o in TINY_JOINT_RUN if o != "task=joint"]
    assert train(compose_train([*options, "task=rating", "seed=1"], run))["status"] == "finished"
    torch.set_num_threads(threads)
    return run


def test_two_trained_runs_are_served_over_http_with_one_journal(trained_run, rating_run, tmp_path):
    from fastapi.testclient import TestClient

    from ss4rec.serve.app import create_app
    from ss4rec.serve.loading import load_core

    ensemble = load_ensemble([trained_run, rating_run], state_dir=tmp_path / "state", restore=False)
    alone = [load_core(run, state_dir=tmp_path / f"alone{i}", restore=False) for i, run in enumerate((trained_run, rating_run))]
    user = ensemble.log.user_ids()[7]
    item = int(ensemble.catalogue.item_ids[5])
    with TestClient(create_app(ensemble, close_on_shutdown=True)) as client:
        info = client.get("/info").json()
        assert info["model"] == "ensemble" and len(info["members"]) == 2
        rated = client.post("/ratings", json={"user_id": user, "item_ids": [item], "at": 10**9}).json()["ratings"][0]
        expected = sum(core.rate(user, [item], at=10**9)[0]["rating"] for core in alone) / 2
        assert rated["rating"] == pytest.approx(expected, abs=1e-6)
        assert client.post("/recommend", json={"user_id": user, "k": 4, "at": 10**9}).status_code == 200
        body = {"user_id": user, "item_id": item, "timestamp": 2 * 10**9, "rating": 5}
        assert client.post("/events", json=body).status_code == 201
    journal = (tmp_path / "state" / "events.jsonl").read_text().splitlines()
    assert len(journal) == 1  # once, not once per member
    snapshots = sorted(p.name for p in (tmp_path / "state").glob("states-*.pt"))
    assert len(snapshots) == 2  # each member's states, keyed by its checkpoint
    again = load_ensemble([trained_run, rating_run], state_dir=tmp_path / "state")
    assert again.log.length(user) == alone[0].log.length(user) + 1  # the journal replayed into the shared log


def test_runs_that_cannot_be_served_together_are_refused(trained_run, tmp_path):
    from ss4rec.serve.loading import load_core
    from ss4rec.training import train

    ranking = tmp_path / "ranking"
    options = [o for o in TINY_JOINT_RUN if o != "task=joint"]
    threads = torch.get_num_threads()
    assert train(compose_train([*options, "task=ranking"], ranking))["status"] == "finished"
    torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="expected a run that predicts ratings"):
        load_ensemble([trained_run, ranking], state_dir=tmp_path / "state")
    svdpp = tmp_path / "svdpp"  # not a sequential model: exported, not served
    assert train(compose_train(["model=svdpp", "task=rating", "debug=limit", "logger=none", "threads=1"], svdpp))["status"] == "finished"
    torch.set_num_threads(threads)
    for load in (lambda: load_core(svdpp, state_dir=tmp_path / "s1"),
                 lambda: load_ensemble([trained_run, svdpp], state_dir=tmp_path / "s2")):  # fmt: skip
        with pytest.raises(UserError, match=r"is a SVDpp run: serving needs a sequential model .*ss4rec.recommend"):
            load()


def test_the_offline_check_scores_an_ensemble_as_the_mean_of_its_members(trained_run, rating_run, tmp_path, capsys):
    """``python -m ss4rec.serve.offline RUN_A RUN_B``: the test RMSE of the mean of each member's served rating."""
    import numpy as np

    from ss4rec.serve.loading import load_core
    from ss4rec.serve.offline import held_out_core, main

    assert main([str(trained_run), str(rating_run)]) == 0
    printed = float(capsys.readouterr().out.split("test RMSE ")[1])
    served = [load_core(run, state_dir=tmp_path / str(i), restore=False) for i, run in enumerate((trained_run, rating_run))]
    store, members = served[0].store, [held_out_core(core) for core in served]
    last = np.asarray(store.offsets[1:]) - 1
    errors = []
    for row, user in enumerate(store.user_map):
        target, when = torch.tensor([int(store.items[last[row]])]), int(store.times[last[row]])
        mean = sum(float(core.predicted_ratings(int(user), target, at=when)[0]) for core in members) / 2
        errors.append(mean - float(store.ratings[last[row]]))
    assert printed == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), abs=1e-6)
