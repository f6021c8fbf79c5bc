"""The real app in-process (FastAPI TestClient): every endpoint, and every bad request as a 4xx naming it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ss4rec.serve import load_core
from ss4rec.serve.app import create_app


@pytest.fixture(scope="module")
def core(trained_run, tmp_path_factory):
    return load_core(trained_run, state_dir=tmp_path_factory.mktemp("app-state"), restore=False)


@pytest.fixture(scope="module")
def client(core):
    with TestClient(create_app(core, close_on_shutdown=False)) as c:
        yield c


@pytest.fixture(scope="module")
def user(core):
    return core.log.user_ids()[0]


def test_health_and_info(client, core):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["model"] == "ss4rec" and info["data"] == "ml100k" and len(info["checkpoint_sha256"]) == 64
    assert info["n_items"] == core.catalogue.n_items and "state_cache" in info


def test_recommend(client, core, user):
    response = client.post("/recommend", json={"user_id": user, "k": 5, "at": 10**9})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user and len(body["items"]) == 5
    assert [i["item_id"] for i in body["items"]] == [r["item_id"] for r in core.recommend(user, 5, at=10**9)]
    assert set(body["items"][0]) >= {"item_id", "title", "score", "rating"}


def test_ratings(client, core, user):
    items = [int(i) for i in core.catalogue.item_ids[1:4]]
    response = client.post("/ratings", json={"user_id": user, "item_ids": items, "at": 10**9})
    assert response.status_code == 200
    assert [r["item_id"] for r in response.json()["ratings"]] == items


def test_events_create_a_user_who_then_gets_recommendations(client, core):
    item = int(core.catalogue.item_ids[7])
    assert client.post("/recommend", json={"user_id": 77_777}).status_code == 404
    response = client.post("/events", json={"user_id": 77_777, "item_id": item, "timestamp": 10**9, "rating": 4})
    assert response.status_code == 201 and response.json() == {"user_id": 77_777, "n_events": 1, "in_order": True}
    late = client.post("/events", json={"user_id": 77_777, "item_id": item, "timestamp": 10**9 - 5})
    assert late.status_code == 201 and late.json()["in_order"] is False  # stored in order, not an error
    recs = client.post("/recommend", json={"user_id": 77_777, "k": 3}).json()["items"]
    assert len(recs) == 3 and item not in {r["item_id"] for r in recs}


BAD = [
    ("/recommend", {"user_id": 123_456}, 404, "unknown user_id 123456"),
    ("/events", {"user_id": 1, "item_id": 999_999, "timestamp": 10**9}, 404, "unknown item_id 999999"),
    ("/ratings", {"user_id": 1, "item_ids": [999_999]}, 404, "unknown item_id 999999"),
    ("/recommend", {"user_id": 1, "k": 0}, 422, "k must be an integer between 1 and the catalogue size"),
    ("/recommend", {"user_id": 1, "k": 100_000}, 422, "k must be an integer between 1 and the catalogue size"),
    ("/recommend", {"user_id": 1, "at": -3}, 422, "at must be a finite, non-negative number of unix seconds"),
    ("/events", {"user_id": 1, "item_id": 1, "timestamp": -1}, 422, "timestamp must be a finite, non-negative"),
    ("/events", {"user_id": 1, "item_id": 1, "timestamp": "yesterday"}, 422, "timestamp: Input should be a valid number"),
    ("/recommend", {"user_id": 1, "at": "noon"}, 422, "at: Input should be a valid number"),
    ("/recommend", {"user_id": "1"}, 422, "user_id: Input should be a valid integer"),
    ("/recommend", {"user_id": 1, "k": 2.5}, 422, "k: Input should be a valid integer"),
    ("/recommend", {"user_id": 1, "exclude_seen": "yes"}, 422, "exclude_seen: Input should be a valid boolean"),
    ("/recommend", {"k": 3}, 422, "user_id: Field required"),
    ("/recommend", {"user_id": 1, "kk": 3}, 422, "kk: Extra inputs are not permitted"),
    ("/ratings", {"user_id": 1, "item_ids": []}, 422, "item_ids: List should have at least 1 item"),
    ("/ratings", {"user_id": 1, "item_ids": 5}, 422, "item_ids: Input should be a valid list"),
    ("/events", {"user_id": 1, "item_id": 1, "timestamp": 10**9, "rating": 7}, 422, "rating must be a number between 1 and 5"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD, ids=[m for *_, m in BAD])
def test_bad_requests_are_4xx_naming_the_problem(client, path, body, status, message):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_json_is_400(client):
    response = client.post("/recommend", content=b'{"user_id": 1,', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "malformed JSON body at character 14" in response.json()["detail"]


def test_openapi_docs_list_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/info", "/recommend", "/ratings", "/events"} <= set(paths)
