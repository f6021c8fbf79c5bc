"""The serving core against the model's own full forward and against the run's offline metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ss4rec.serve import ServeOptions, ServingCore, load_core
from ss4rec.serve.catalogue import Catalogue
from ss4rec.serve.errors import BadRequest, UnknownItem, UnknownUser
from ss4rec.serve.interactions import InteractionLog
from ss4rec.serve.offline import served_metrics


@pytest.fixture(scope="module")
def core(trained_run, tmp_path_factory):
    return load_core(trained_run, state_dir=tmp_path_factory.mktemp("state"), restore=False)


def full_forward(model, items, times, ratings, at) -> torch.Tensor:
    """The reference: ``encode_sequence`` over the whole given history with ``at`` as the target time (1, D)."""
    n = len(items)
    batch = {
        "items": torch.as_tensor(items)[None], "times": torch.as_tensor(times)[None],
        "ratings": torch.as_tensor(ratings)[None], "lengths": torch.tensor([n]),
        "target_times": torch.as_tensor(np.append(times[1:], at))[None],
    }  # fmt: skip
    with torch.no_grad():
        return model.encode_sequence(batch)[:, -1]


def test_offline_evaluation_through_the_core_reproduces_metrics_json(trained_run, core, tmp_path):
    """Serve each user everything before their test target (window = max_len, as evaluation does), ask at the
    target's time, rank the target among all items: the test metrics of metrics.json to 4 decimals."""
    written = json.loads((trained_run / "metrics.json").read_text())
    assert written["mask_seen"] is False  # the reproduction below ranks without masking
    for name, value in served_metrics(core).items():
        assert value == pytest.approx(written["test"][f"test/{name}"], abs=1e-4), name
    # the validation targets (each user's second-to-last event): best_val, which the run measured on its first
    # validation batch only (trainer.limit_val_batches=1)
    first = core.store.user_map[: written["config"]["data"]["eval_batch_size"]]
    for name, value in served_metrics(core, split="valid", users=first).items():
        assert value == pytest.approx(written["best_val"][f"val/{name}"], abs=1e-4), name


def test_float32_top10_incremental_equals_full_recompute(core):
    """States built step by step (full history) give the same top-10 as one full forward, for >= 99.9% of
    ML-100K users, in float32."""
    core.warm()
    users = core.log.user_ids()
    same, worst = 0, 0.0
    for user in users:
        items, times, ratings = core.log.events(user)
        at = int(times[-1]) + 3_600
        served = [r["item_id"] for r in core.recommend(user, k=10, exclude_seen=False, at=at)]
        query = full_forward(core.model, items, times, ratings, at)
        scores = core.model.score(query)[0, 1:]
        reference = core.catalogue.item_ids[1 + torch.sort(scores, descending=True, stable=True).indices[:10]]
        same += served == reference.tolist()
        worst = max(worst, float((core.query(user, at) - query).abs().max()))
    assert same / len(users) >= 0.999
    assert worst < 1e-4  # float32 rounding only (query vectors are LayerNorm outputs, entries of order 1)


def float64_core(core, history: str, max_len: int = 20) -> ServingCore:
    model = core.model.double()
    return ServingCore(model, core.catalogue, InteractionLog.from_store(core.store),
                       ServeOptions(max_len=max_len, history=history, has_rating=True))  # fmt: skip


@pytest.mark.parametrize("history", ["full", "window"])
def test_ingest_one_event_at_a_time_equals_full_recompute(core, history):
    """A new user's events ingested one by one, past the window (max_len 20), some out of order: the query
    equals the full forward over the served history (all of it, or its last max_len events), float64."""
    served = float64_core(core, history)
    try:
        items, times, ratings = core.log.events(core.log.user_ids()[0])
        user, n = 10**6, 45
        order = list(range(n))
        order[30], order[31] = order[31], order[30]  # one event arrives late
        for i in order:
            served.ingest(user, int(core.catalogue.item_ids[items[i]]), int(times[i]), float(ratings[i]))
            got = served.query(user, at=int(times[i]) + 60)
            keep = sorted(order[: order.index(i) + 1], key=lambda j: (times[j], order.index(j)))
            if history == "window":
                keep = keep[-20:]
            expected = full_forward(served.model, items[keep], times[keep], ratings[keep], int(times[i]) + 60)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    finally:
        core.model.float()


def test_lru_cache_is_bounded_and_rebuilds_what_it_evicted(core):
    one_state = core._entry(core.log.user_ids()[0]).nbytes
    small = ServingCore(core.model, core.catalogue, core.log, ServeOptions(max_len=20, cache_mb=3.5 * one_state / 2**20))
    users = core.log.user_ids()[:6]
    first = [small.scores(u, at=10**9) for u in users]
    info = small.cache.info()
    assert info["users"] == 3 and info["bytes"] <= info["max_bytes"] and info["evictions"] == 3
    again = [small.scores(u, at=10**9) for u in users]  # every one evicted and rebuilt at least once
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "mamba4rec", "ss4rec-ffn"])
def test_other_sequential_models_serve_their_full_forward(core, name):
    """GRU4Rec, Mamba4Rec and SS4Rec with ``ffn`` (PyTorch step) step (full history); SASRec recomputes its
    window at every request."""
    from ss4rec.models.gru4rec import GRU4Rec
    from ss4rec.models.mamba4rec import Mamba4Rec
    from ss4rec.models.sasrec import SASRec
    from ss4rec.models.ss4rec import SS4Rec

    torch.manual_seed(0)
    n = core.catalogue.n_items
    model = {"sasrec": lambda: SASRec(n, 1, hidden=16, max_len=20),
             "gru4rec": lambda: GRU4Rec(n, 1, hidden=16, n_layers=2),
             "mamba4rec": lambda: Mamba4Rec(n, 1, hidden=16, d_state=4, init="mamba"),
             "ss4rec-ffn": lambda: SS4Rec(n, 1, hidden=16, d_state=8, mamba_d_state=4, ffn=True, init="mamba",
                                          max_len=20)}[name]().eval()  # fmt: skip
    served = ServingCore(model, core.catalogue, core.log, ServeOptions(max_len=20))
    user = core.log.user_ids()[3]
    items, times, ratings = core.log.events(user, last=20 if name == "sasrec" else None)
    expected = full_forward(model, items, times, ratings, 10**9)
    torch.testing.assert_close(served.query(user, at=10**9), expected, rtol=0, atol=1e-5)
    assert len(served.cache) == (0 if name == "sasrec" else 1)  # SASRec caches nothing: the log is read


def test_recommend_excludes_seen_items_and_names_them(core):
    user = core.log.user_ids()[5]
    seen = set(core.catalogue.item_ids[core.log.events(user)[0]].tolist())
    recs = core.recommend(user, k=20, at=10**9)
    assert len(recs) == 20 and not seen & {r["item_id"] for r in recs}
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert all(1.0 <= r["rating"] <= 5.0 for r in recs)
    with_seen = core.recommend(user, k=core.catalogue.n_items, exclude_seen=False, at=10**9)
    assert len(with_seen) == core.catalogue.n_items
    assert core.rate(user, [recs[0]["item_id"]], at=10**9)[0]["rating"] == pytest.approx(recs[0]["rating"])


def test_titles_and_genres_come_from_the_catalogue():
    catalogue = Catalogue(np.array([-1, 10, 20]), np.array(["", "Heat (1995)", ""]),
                          np.array([[0, 0], [1, 0], [1, 1]], dtype=bool), ["Action", "Crime"])  # fmt: skip
    assert catalogue.lookup(10) == 1 and catalogue.title(1) == "Heat (1995)" and catalogue.title(2) is None
    assert catalogue.genres_of(2) == ["Action", "Crime"]
    with pytest.raises(UnknownItem, match="unknown item_id 30"):
        catalogue.lookup(30)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.recommend(-5), UnknownUser, "unknown user_id -5"),
        (lambda c: c.recommend(1, k=0), BadRequest, "k must be an integer between 1 and the catalogue size"),
        (lambda c: c.recommend(1, k=10**6), BadRequest, "k must be"),
        (lambda c: c.recommend(1, at=-1), BadRequest, "at must be a finite, non-negative"),
        (lambda c: c.recommend(1, at="noon"), BadRequest, "at must be a number of unix seconds"),
        (lambda c: c.ingest(1, 10**7, 10**9), UnknownItem, "unknown item_id 10000000"),
        (lambda c: c.ingest(1, 1, float("nan")), BadRequest, "timestamp must be a finite"),
        (lambda c: c.ingest(1, 1, 10**9, rating=9), BadRequest, "rating must be a number between 1 and 5"),
        (lambda c: c.ingest("x", 1, 10**9), BadRequest, "user_id must be an integer"),
        (lambda c: c.rate(1, []), BadRequest, "at least one item id"),
    ],
)
def test_bad_input_names_the_problem(core, call, error, message):
    with pytest.raises(error, match=message):
        call(core)


def test_a_run_folder_written_by_train_py_loads(trained_run, tmp_path):
    """train.py's own folders: .hydra/config.yaml (with Hydra-only interpolations) and a checkpoint, no
    metrics.json (an interrupted run); and a checkpoint passed directly."""
    import shutil
    from pathlib import Path

    from ss4rec.serve.loading import resolve, run_config, sha256

    written = json.loads((trained_run / "metrics.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(trained_run / "checkpoints", run / "checkpoints")
    (run / ".hydra").mkdir()
    config = {"data": written["config"]["data"], "model": written["config"]["model"],
              "paths": {"output_dir": "${hydra:runtime.output_dir}"}}  # fmt: skip
    (run / ".hydra" / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    assert run_config(run)["data"] == written["config"]["data"]
    checkpoint = resolve(run)[1]
    assert checkpoint.parent == run / "checkpoints"
    assert resolve(checkpoint) == (run, checkpoint)
    served = load_core(checkpoint, state_dir=tmp_path / "state", restore=False)
    assert served.info()["checkpoint_sha256"] == sha256(Path(written["checkpoint"]))
    assert served.info()["data"] == "ml100k" and served.options.max_len == written["config"]["data"]["max_len"]


def test_a_ranking_only_model_has_no_ratings(core):
    from ss4rec.serve.core import Unsupported

    ranking_only = ServingCore(core.model, core.catalogue, core.log, ServeOptions(max_len=20, has_rating=False))
    user = core.log.user_ids()[0]
    assert all(r["rating"] is None for r in ranking_only.recommend(user, k=3, at=10**9))
    with pytest.raises(Unsupported, match="no rating head"):
        ranking_only.rate(user, [int(core.catalogue.item_ids[1])])
