"""Batch export (Lightning predict + a parquet prediction writer) against the serving core."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from composing import compose_train
from ss4rec.recommend import export, main
from ss4rec.serve import load_core
from ss4rec.serve.loading import load_model, resolve
from ss4rec.training import build_datamodule, train

AT = 10**9


@pytest.fixture(scope="module")
def at(trained_run, tmp_path_factory):
    """Ten minutes after the data's last event: some users' last gaps are short enough to matter (a gap of
    months saturates S5's step, which then reads every long gap alike)."""
    core = load_core(trained_run, state_dir=tmp_path_factory.mktemp("at"), restore=False)
    return max(core.log.last_event(u).time for u in core.log.user_ids()) + 600


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory, at):
    out = tmp_path_factory.mktemp("export") / "recs.parquet"
    export(trained_run, out, k=7, at=at, batch_size=300, trainer_kwargs={"enable_progress_bar": False})
    return pl.read_parquet(out)


def test_every_user_gets_k_unseen_items(exported, trained_run, tmp_path):
    core = load_core(trained_run, state_dir=tmp_path, restore=False)
    assert exported.height == 7 * len(core.log) and exported["user_id"].n_unique() == len(core.log)
    assert set(exported.columns) >= {"user_id", "rank", "item_id", "score", "rating"}
    for (user,), group in exported.group_by(["user_id"]):
        seen = set(core.catalogue.item_ids[core.log.events(user)[0]].tolist())
        assert group["rank"].to_list() == list(range(1, 8)) and not seen & set(group["item_id"].to_list())


def test_export_equals_window_serving(exported, trained_run, tmp_path, at):
    """The same lists as the core serving the last max_len events (its step path), for sampled users."""
    core = load_core(trained_run, history="window", state_dir=tmp_path, restore=False)
    recent = [u for u in core.log.user_ids() if at - core.log.last_event(u).time < 2 * 86_400]
    assert recent
    for user in recent + core.log.user_ids()[::40]:
        served = core.recommend(user, k=7, at=at)
        rows = exported.filter(pl.col("user_id") == user).sort("rank")
        assert rows["item_id"].to_list() == [r["item_id"] for r in served]
        assert rows["score"].to_list() == pytest.approx([r["score"] for r in served], abs=2e-6)


def test_command_line(trained_run, tmp_path, capsys):
    out = tmp_path / "top3.parquet"
    main([str(trained_run), "--k", "3", "--out", str(out), "--at", str(AT), "--no-exclude-seen"])
    assert "wrote" in capsys.readouterr().out
    assert pl.read_parquet(out).height == 3 * pl.read_parquet(out)["user_id"].n_unique()
    with pytest.raises(SystemExit) as stopped:  # bad input: status 2 and a message (tests/serve/test_cli_errors.py)
        main([str(trained_run), "--k", "0", "--out", str(out)])
    assert stopped.value.code == 2 and "--k=0: expected a positive integer" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_export_equals_one_process(trained_run, tmp_path):
    """Two CPU processes (gloo): the same rows as one process, each user once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    outs = {}
    for name, extra in {"one": [], "two": ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]}.items():
        outs[name] = tmp_path / f"{name}.parquet"
        subprocess.run([sys.executable, "-m", "ss4rec.recommend", str(trained_run), "--k", "5", "--out",
                        str(outs[name]), "--at", str(AT), *extra], check=True, env=env, capture_output=True,
                       timeout=600, cwd=tmp_path)  # fmt: skip
    one, two = pl.read_parquet(outs["one"]), pl.read_parquet(outs["two"])
    assert two.select("user_id", "rank", "item_id").equals(one.select("user_id", "rank", "item_id"))


@pytest.mark.parametrize("name", ["svdpp", "timesvdpp", "autorec"])
def test_rating_only_models_export_by_predicted_rating_after_the_whole_history(name, tmp_path):
    """svdpp, timesvdpp and autorec rank by predicted rating: N(u) is every item the user rated and, for
    timeSVD++, the rating's time is --at (I-AutoRec reads the training ratings its checkpoint holds). Checked
    against the model's own prediction from a batch built by hand."""
    run = tmp_path / "run"
    summary = train(compose_train([f"model={name}", "task=rating", "debug=limit", "logger=none", "threads=1",
                                   "trainer.enable_progress_bar=false"], run))  # fmt: skip
    assert summary["status"] == "finished"
    at = AT + 123 * 86_400
    out = tmp_path / "recs.parquet"
    export(run, out, k=5, at=at, trainer_kwargs={"enable_progress_bar": False})
    recs = pl.read_parquet(out)
    store = build_datamodule(compose_train([f"model={name}", "task=rating"]))._ready()  # the run's data, whole
    model = load_model(resolve(run)[1])[0].eval()
    item_index = {int(item): i for i, item in enumerate(store.item_map)}
    for user in (0, 17, store.n_users - 1):
        seen = torch.from_numpy(np.asarray(store.items[store.offsets[user] : store.offsets[user + 1]], dtype=np.int64))
        rows = recs.filter(pl.col("user_id") == int(store.user_map[user])).sort("rank")
        items = torch.tensor([item_index[i] for i in rows["item_id"].to_list()])
        assert not set(items.tolist()) & set(seen.tolist())
        batch = {"users": torch.tensor([user]), "seen": seen[None], "train_lengths": torch.tensor([len(seen)]),
                 "lengths": torch.tensor([1]), "target_times": torch.tensor([[at]])}  # fmt: skip
        with torch.no_grad():
            expected = model.predict_rating(model.eval_queries(batch).expand(len(items), -1), items).clamp(1, 5)
        assert rows["rating"].to_list() == pytest.approx(expected.tolist(), abs=1e-5)
        assert rows["score"].to_list() == sorted(rows["score"].to_list(), reverse=True)


def test_a_timesvdpp_based_run_exports_ratings_at_the_request_time(tmp_path):
    """SS4Rec on a frozen timeSVD++ (model.rating_base): the exported ratings are the base's at --at (the correction
    starts at zero), so another request time gives other ratings."""
    from rating_fixtures import timed_store, timesvdpp_run
    from ss4rec.models.ss4rec import SS4Rec
    from ss4rec.recommend import LatestWindows, TopK, collate

    store = timed_store()
    timesvdpp_run(tmp_path, store)
    torch.manual_seed(0)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=str(tmp_path)).eval()  # fmt: skip
    model.rating_base.fill(store)
    base = model.rating_base
    rows = [LatestWindows(store, max_len=5, by_length=False)[u] for u in range(store.n_users)]
    top = TopK(model, k=4, exclude_seen=True, rating_range=(1.0, 5.0))
    exported = []
    for at in (AT + 40 * 86_400, AT + 4_000 * 86_400):
        with torch.no_grad():
            out = top.predict_step(collate(rows, at), 0)
            when = torch.full((store.n_users, 4), at)
            users = out["users"][:, None].expand(-1, 4)
            expected = base(base.user_part(users, times=when), out["items"]).clamp(1, 5)
        torch.testing.assert_close(out["ratings"], expected)
        exported.append(out)
    same = exported[0]["items"] == exported[1]["items"]
    assert same.any() and (exported[0]["ratings"][same] != exported[1]["ratings"][same]).any()
