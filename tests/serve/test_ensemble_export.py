"""``python -m ss4rec.recommend RUN_A RUN_B``: rating runs of one split averaged (``ss4rec.serve.ensemble``)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from benchmark_scripts import load_benchmark
from clean_errors import expect_clean_error
from composing import compose_train
from ss4rec import recommend
from ss4rec.batch import eval_targets
from ss4rec.evaluate_checkpoint import load_run
from ss4rec.recommend import LatestWindows, collate
from ss4rec.serve.ensemble import RatingEnsemble, last_events, load_members
from ss4rec.serve.loading import load_model, resolve
from ss4rec.training import build_datamodule, train

AT = 10**9


def _train(overrides: list[str], run) -> None:
    threads = torch.get_num_threads()
    summary = train(compose_train([*overrides, "debug=limit", "logger=none", "threads=1",
                                   "trainer.enable_progress_bar=false"], run))  # fmt: skip
    torch.set_num_threads(threads)
    assert summary["status"] == "finished"


@pytest.fixture(scope="module")
def svdpp_run(tmp_path_factory):
    """SVD++ on the serving run's split; it reads windows of the default 200 events, the SS4Rec run 20."""
    run = tmp_path_factory.mktemp("svdpp-run")
    _train(["model=svdpp", "task=rating"], run)
    return run


def _expected(runs, store, user: int) -> torch.Tensor:
    """Each run's clamped rating of every item for ``user``, from its own window and a batch of one, averaged."""
    total = 0
    for run in runs:
        model = load_model(resolve(run)[1])[0]
        max_len = json.loads((run / "metrics.json").read_text())["config"]["data"]["max_len"]
        batch = collate([LatestWindows(store, max_len, by_length=False)[user]], AT)
        with torch.no_grad():
            query = model.eval_queries(batch)
            ids = torch.arange(model.n_items + 1)
            total = total + model.predict_rating(query.expand(len(ids), -1), ids).clamp(1, 5)
    return total / len(runs)


def test_an_ensemble_exports_the_mean_of_its_members_ratings(trained_run, svdpp_run, tmp_path):
    """The command line's top k by the mean of the members' clamped ratings, each member reading its own last
    max_len events (SS4Rec 20 of the batch's 200), the mean as score and rating; checked for the users with the
    longest histories and the shortest."""
    out = tmp_path / "mean.parquet"
    recommend.main([str(trained_run), str(svdpp_run), "--k", "6", "--at", str(AT), "--batch-size", "100", "--out", str(out)])
    recs = pl.read_parquet(out)
    store = build_datamodule(compose_train(["model=svdpp", "task=rating"]))._ready()  # the runs' data, whole
    lengths = np.diff(np.asarray(store.offsets))
    assert recs["user_id"].n_unique() == store.n_users and recs.height == 6 * store.n_users
    item_index = {int(item): i for i, item in enumerate(store.item_map)}
    users = [int(u) for u in np.argsort(-lengths)[:3]] + [int(np.argmin(lengths))]
    assert lengths[users[0]] > 200  # the batch holds 200 events, SS4Rec reads the last 20
    for user in users:
        expected = _expected([trained_run, svdpp_run], store, user)
        expected[0] = float("-inf")
        expected[np.asarray(store.items[store.offsets[user] : store.offsets[user + 1]], dtype=np.int64)] = float("-inf")
        top = torch.topk(expected, 6)
        rows = recs.filter(pl.col("user_id") == int(store.user_map[user])).sort("rank")
        assert [item_index[i] for i in rows["item_id"].to_list()] == top.indices.tolist()
        assert rows["rating"].to_list() == pytest.approx(top.values.tolist(), abs=1e-5)
        assert rows["score"].to_list() == rows["rating"].to_list()


def test_the_exported_ensemble_is_the_one_rating_blend_measures(trained_run, svdpp_run):
    """On the held-out validation and test ratings the export's ensemble predicts, for every user, the mean that
    ``benchmarks/rating_blend.py`` (``--record-mean``) scores: the members' predictions, each clamped, averaged."""
    blend = load_benchmark("rating_blend")
    runs = [trained_run, svdpp_run]
    members = load_members(runs)
    ensemble = RatingEnsemble([m.model for m in members], [m.max_len for m in members], (1.0, 5.0)).eval()
    measured = [blend.predictions(run)[0] for run in runs]  # {stage: (U, 4) user, item, rating, prediction}
    _, datamodule, _ = load_run(svdpp_run)  # the longer windows: each member cuts its own
    for stage in ("val", "test"):
        datamodule.setup("validate" if stage == "val" else "test")
        loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
        rows = []
        with torch.no_grad():
            for batch in loader:
                targets, _, _ = eval_targets(batch)
                rows.append(torch.stack([batch["users"].double(), ensemble(batch).gather(1, targets[:, None])[:, 0].double()], 1))
        ours = torch.cat(rows).numpy()
        ours = ours[np.argsort(ours[:, 0], kind="stable")]
        for table in measured:
            np.testing.assert_array_equal(table[stage][:, 0], ours[:, 0])
        mean = np.mean([table[stage][:, 3] for table in measured], axis=0)
        np.testing.assert_allclose(ours[:, 1], mean, rtol=0, atol=1e-5)
        assert np.abs(measured[0][stage][:, 3] - measured[1][stage][:, 3]).max() > 0.01  # the members differ


def test_last_events_cuts_each_row_to_its_last_events():
    """Against slicing each row by hand: rows shorter, equal to and longer than the cut, right-padded."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 4, 7, 9, 3])
    width = int(lengths.max())
    valid = torch.arange(width)[None] < lengths[:, None]
    batch = {key: torch.where(valid, torch.randint(1, 100, (5, width), generator=gen), 0)
             for key in ("items", "times", "target_times")}  # fmt: skip
    batch["ratings"] = torch.where(valid, torch.rand(5, width, generator=gen) * 4 + 1, 0.0)
    batch["lengths"], batch["seen"] = lengths, torch.randint(1, 100, (5, width), generator=gen)
    cut = last_events(batch, 4)
    assert cut["lengths"].tolist() == [1, 4, 4, 4, 3] and cut["seen"] is batch["seen"]
    for key in ("items", "times", "target_times", "ratings"):
        assert cut[key].shape == (5, 4) and cut[key].dtype == batch[key].dtype
        for row, length in enumerate(lengths.tolist()):
            kept = min(length, 4)
            assert cut[key][row, :kept].tolist() == batch[key][row, length - kept : length].tolist()
            assert not cut[key][row, kept:].any()
    assert last_events(batch, 9) is batch


class WindowSum(torch.nn.Module):
    """Rates item i ``scale`` times the sum of the window's item ids, plus i / 1000: a rating that depends on
    every event the model reads."""

    n_items = 9

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def eval_queries(self, batch):
        return batch["items"].sum(1, keepdim=True).float() * self.scale

    def rate_every_item(self, query):
        return query + torch.arange(self.n_items + 1) / 1000


def test_each_member_reads_its_own_window_and_is_clamped_before_the_mean():
    """Against each row sliced by hand: member 0 reads 7 events and often rates above 5 (clamped), member 1 the
    last 2 (often rating below 1); the ensemble is the mean of the two clamped ratings for every item id."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 2, 5, 7])
    valid = torch.arange(7)[None] < lengths[:, None]
    batch = {"items": torch.where(valid, torch.randint(1, 10, (4, 7), generator=gen), 0), "lengths": lengths}
    ensemble = RatingEnsemble([WindowSum(1.0), WindowSum(0.1)], [7, 2], (1.0, 5.0))
    got = ensemble(batch)
    ids = torch.arange(10) / 1000
    for row, length in enumerate(lengths.tolist()):
        items = batch["items"][row, :length].float()
        expected = ((items.sum() + ids).clamp(1, 5) + (0.1 * items[-2:].sum() + ids).clamp(1, 5)) / 2
        torch.testing.assert_close(got[row], expected)
    unclamped = torch.stack([(batch["items"][r, :n].sum() + ids + 0.1 * batch["items"][r, n - 2 : n].sum() + ids) / 2
                             for r, n in enumerate(lengths.tolist())])  # fmt: skip
    assert not torch.allclose(got, unclamped)  # the clamps matter here


def _refused(argv, capsys, pattern):
    with pytest.raises(SystemExit) as stop:
        recommend.main([str(a) for a in argv])
    return expect_clean_error((stop.value.code, capsys.readouterr().err), pattern)


def test_runs_that_cannot_be_averaged_are_refused(trained_run, svdpp_run, tmp_path, capsys, monkeypatch):
    """Another split, a ranking-only run, one run named twice: exit 2 naming the run, before any data are read."""
    # loggers set up by an earlier in-process run may still point at that test's closed capture stream
    monkeypatch.setattr(logging, "raiseExceptions", False)
    other = tmp_path / "other_split"
    shutil.copytree(svdpp_run, other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["config"]["data"]["holdout_last"] = 1
    (other / "metrics.json").write_text(json.dumps(metrics))
    out = ["--out", tmp_path / "r.parquet"]
    _refused([trained_run, other, *out], capsys, r"path='.*other_split' was trained on another split than .*\n"
             r"\s+data\.holdout_last: 1 in .*other_split, 0 in .*serve-run")  # fmt: skip
    ranking = tmp_path / "ranking"
    _train(["model=pop", "task=ranking"], ranking)
    _refused([svdpp_run, ranking, *out], capsys, r"path='.*ranking': expected a run that predicts ratings")
    checkpoint = resolve(svdpp_run)[1]
    _refused([svdpp_run, checkpoint, *out], capsys, r"named twice; expected each run once")
    assert not (tmp_path / "r.parquet").exists()
