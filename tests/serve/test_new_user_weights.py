"""A folded-in new user's first ratings get a share of the network's correction (``ServeOptions.new_user_weights``):
the base's rating alone (``base_rating``), the weights applied by the core, chosen on validation and written by
``python -m ss4rec.serve.new_user_weights``, and read back only for their checkpoint and noise."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from clean_errors import expect_clean_error
from composing import compose_train
from rating_fixtures import timed_store, varied_store
from serving_fixtures import DRIFT, based_model, core_of
from ss4rec.serve.core import ServeOptions
from ss4rec.serve.new_user_weights import GRID, best_noise, best_weight, main, read_weights, weighted_rmse

WIDE = (-1e9, 1e9)  # no clamping: a clamped rating would hide a wrong weight


@pytest.fixture(autouse=True)
def quiet_loggers(monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize(("kind", "options"), [("heldout", DRIFT), ("timesvdpp", DRIFT), ("svdpp", {}), ("autorec", DRIFT)])
def test_the_base_rating_is_the_rating_with_the_network_correction_removed(tmp_path, kind, options):
    """With the rating head's output layer and the drift terms zeroed the model rates as its base: ``base_rating``
    then equals ``predict_rating``; it does not change with them, and rates every item as it rates each."""
    store = timed_store() if kind == "timesvdpp" else varied_store()
    model = based_model(kind, tmp_path, store, **options)
    core = core_of(model, store)
    items = torch.arange(1, store.n_items + 1)
    query = core.query(int(store.user_map[2]), int(store.times.max()) + 600).clone().expand(len(items), -1)
    with torch.no_grad():
        base = model.base_rating(query, items)
        assert not torch.allclose(model.predict_rating(query, items), base, atol=1e-3)  # a correction to remove
        torch.testing.assert_close(model.base_rating(query[:1])[0, 1:], base, rtol=0, atol=1e-10)
        for parameter in model.rating_head.mlp[-1].parameters():
            parameter.zero_()
        for name, parameter in model.named_parameters():
            if name.startswith(("drift_weight", "calibration")):
                parameter.zero_()
        torch.testing.assert_close(model.predict_rating(query, items), base, rtol=0, atol=1e-10)
        torch.testing.assert_close(model.base_rating(query, items), base, rtol=0, atol=0)


def test_a_folded_in_user_gets_the_weighted_correction_for_their_first_ratings(tmp_path):
    """Weights (0, 0.5): with one rating the base alone, with two half the network's correction, from three on (and
    for a training user) the network's rating, in ``predicted_ratings``, ``every_rating``, ``rate`` and ``recommend``
    alike; an event without a rating does not count."""
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store, new_users="fold_in", new_user_weights=(0.0, 0.5), rating_range=WIDE)
    items = torch.arange(1, store.n_items + 1)
    ids = [int(i) for i in store.item_map[1:]]

    def check(user, weight) -> None:
        at = 2 * 10**9
        served = core.predicted_ratings(user, items, at)  # first: the weight of the ratings the call itself fits
        query = core.query(user, at).expand(len(items), -1)
        with torch.inference_mode():
            base, network = model.base_rating(query, items), model.predict_rating(query, items)
        expected = base + weight * (network - base)
        assert core.correction_weight(user) == weight
        torch.testing.assert_close(served, expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(core.every_rating(user, at).double(), expected, rtol=1e-6, atol=1e-6)
        rated = [row["rating"] for row in core.rate(user, ids, at)]
        torch.testing.assert_close(torch.tensor(rated, dtype=torch.float64), expected, rtol=0, atol=1e-10)
        top = core.recommend(user, k=3, exclude_seen=False, at=at)
        assert [row["rating"] for row in top] == pytest.approx([float(expected[row_index(row)]) for row in top], abs=1e-9)
        core.options.ranks = False  # a rating-only run ranks by the weighted rating
        top = core.recommend(user, k=3, exclude_seen=False, at=at)
        assert [row_index(row) for row in top] == expected.argsort(descending=True)[:3].tolist()
        core.options.ranks = True

    def row_index(row) -> int:
        return ids.index(row["item_id"])

    events = list(zip(*(np.asarray(column[store.offsets[1] : store.offsets[2]]) for column in (store.items, store.times, store.ratings))))
    for count, (item, when, rating) in enumerate(events[:4], start=1):
        core.ingest(777, int(store.item_map[item]), int(when), float(rating))
        check(777, {1: 0.0, 2: 0.5}.get(count, 1.0))
        if count == 1:  # an unrated event: still one rating
            core.ingest(777, int(store.item_map[events[5][0]]), int(when), None)
            check(777, 0.0)
    check(int(store.user_map[3]), 1.0)
    assert core.info()["new_user_weights"] == [0.0, 0.5]
    core.ingest(778, int(store.item_map[events[0][0]]), int(events[0][1]), float(events[0][2]))
    # a core that has not looked at the log's new users yet (a restart: the journal replayed into the log), asked first
    core = core_of(model, store, log=core.log, new_users="fold_in", new_user_weights=(0.0, 0.5), rating_range=WIDE)
    check(778, 0.0)


def test_the_weight_with_the_lowest_rmse_is_chosen():
    """``network = base + (rating - base) / 0.4`` is exact at weight 0.4; with no correction every weight ties and the
    whole correction (1) is kept; clamping to the rating range counts."""
    generator = np.random.default_rng(0)
    rating, base = generator.integers(1, 6, 500).astype(float), generator.uniform(1, 5, 500)
    predicted = {"rating": rating, "base": base, "network": base + (rating - base) / 0.4}
    assert best_weight(predicted, WIDE) == 0.4 and weighted_rmse(predicted, 0.4, WIDE) == pytest.approx(0, abs=1e-12)
    assert weighted_rmse(predicted, 0.0, WIDE) == pytest.approx(np.sqrt(np.mean((base - rating) ** 2)))
    assert best_weight({**predicted, "network": base}, WIDE) == 1.0
    high = {"rating": np.full(3, 5.0), "base": np.full(3, 4.0), "network": np.full(3, 9.0)}  # 4 + 5w clamped at 5
    assert weighted_rmse(high, 1.0, (1.0, 5.0)) == 0.0 and best_weight(high, (1.0, 5.0)) == 1.0
    assert best_weight(high, WIDE) == 0.2 and GRID[0] == 0.0 and GRID[-1] == 1.0 and len(GRID) == 21


def test_a_gain_within_the_noise_of_the_validation_targets_keeps_the_whole_correction():
    """A network that moves the base by noise unrelated to the ratings: some weight below 1 scores a little better on
    these users by chance, a gain under two standard errors, so the whole correction is kept; the same gain
    made large enough to count is kept."""
    generator = np.random.default_rng(1)
    rating, base = generator.integers(1, 6, 300).astype(float), generator.uniform(1, 5, 300)
    noisy = {"rating": rating, "base": base, "network": base + generator.normal(0, 0.05, 300)}
    chance = best_weight(noisy, WIDE, min_z=0.0)
    assert chance < 1.0 and weighted_rmse(noisy, chance, WIDE) < weighted_rmse(noisy, 1.0, WIDE)
    assert best_weight(noisy, WIDE) == 1.0
    wrong = {**noisy, "network": base + generator.normal(0, 1.0, 300)}  # the same kind, large: clearly worse than base
    assert best_weight(wrong, WIDE) < 0.5


def test_another_noise_is_chosen_only_when_it_is_clearly_better():
    """Of the noises' (weight, predictions), the lowest weighted error wins when its gain over the serving noise's passes
    the bar; a chance gain, or a tie, keeps the serving noise; each noise is scored at its own weight."""
    generator = np.random.default_rng(2)
    rating = generator.integers(1, 6, 400).astype(float)
    serving = {"rating": rating, "base": rating + 1.0, "network": rating}  # squared error 1 for every user
    better = {**serving, "base": rating + generator.normal(0, 0.5, 400)}
    gain = generator.permutation(np.repeat([0.5, -0.5], [210, 190]))  # mean 0.025, one standard error
    chance = {**serving, "base": rating + np.sqrt(1.0 - gain)}
    assert best_noise({0.5: (0.0, serving), 0.25: (0.0, better)}, 0.5, WIDE) == 0.25
    closer = {**serving, "base": rating + generator.normal(0, 0.3, 400)}  # better than ``better`` at weight 0 only
    assert best_noise({0.5: (0.0, serving), 0.25: (1.0, better), 1.0: (0.0, closer)}, 0.5, WIDE) == 0.25  # its weight
    assert best_noise({0.5: (0.0, serving), 0.25: (0.0, chance)}, 0.5, WIDE) == 0.5
    assert best_noise({0.5: (0.0, serving), 0.25: (0.0, chance)}, 0.5, WIDE, min_z=0.9) == 0.25
    assert best_noise({0.25: (0.0, serving), 0.5: (0.0, serving)}, 0.5, WIDE, min_z=0.0) == 0.5  # a tie
    assert best_noise({0.5: (0.0, better), 0.25: (0.0, serving)}, 0.5, WIDE) == 0.5


def test_weights_are_read_for_their_checkpoint_and_noise_only(tmp_path, caplog):
    checkpoint = tmp_path / "checkpoints" / "best.ckpt"
    options = ServeOptions(new_users="fold_in", fold_in_noise=1.0, info={"checkpoint_sha256": "abc"})
    with caplog.at_level(logging.INFO, logger="ss4rec.serve.new_user_weights"):
        assert read_weights(tmp_path, checkpoint, options) == ((), ())  # no file: said, with the command that fits one
    assert "new users get the network's whole correction at every rating" in caplog.text and "make new-user-weights" in caplog.text
    caplog.clear()
    fits = [{"fold_in_noise": 0.5, "weights": [0.0, 0.1]}, {"fold_in_noise": 1.0, "weights": [0.0, 0.25]}]
    record = {"checkpoint_sha256": "abc", "fits": fits}
    (tmp_path / "new_user_weights.json").write_text(json.dumps(record))
    assert read_weights(tmp_path, checkpoint, options) == ((0.0, 0.25), ())  # a file from before the noises
    fits[0]["noises"] = [0.125, 0.5]
    (tmp_path / "new_user_weights.json").write_text(json.dumps(record))
    half = ServeOptions(new_users="fold_in", fold_in_noise=0.5, info=options.info)
    assert read_weights(tmp_path, checkpoint, half) == ((0.0, 0.1), (0.125, 0.5))
    none = ((), ())
    assert read_weights(tmp_path, checkpoint, ServeOptions(new_users="average_user", info=options.info)) == none
    with caplog.at_level(logging.WARNING):
        assert read_weights(tmp_path, checkpoint, ServeOptions(new_users="fold_in", fold_in_noise=2.0, info=options.info)) == none
        for changed in ({"checkpoint_sha256": "abd"}, {"fits": [{"weights": [1.0]}]}, {"fits": "x"},
                        {"fits": [{"fold_in_noise": 1.0, "weights": [1.0], "noises": "x"}]},
                        {"fits": [{"fold_in_noise": 1.0, "weights": [1.0], "noises": [0.0]}]}):  # fmt: skip
            (tmp_path / "new_user_weights.json").write_text(json.dumps({**record, **changed}))
            assert read_weights(tmp_path, checkpoint, options) == none
    for expected in ("has no weights for this checkpoint and --fold-in-noise 2 (it has [0.5, 1.0])",
                     "was fitted for another checkpoint", "unreadable"):  # fmt: skip
        assert expected in caplog.text
    assert read_weights(None, checkpoint, options) == none  # a bare checkpoint's are beside it


@pytest.fixture(scope="module")
def based_run(tmp_path_factory, isolated_data_dir):
    """A tiny SS4Rec run on a frozen MF run, with residual inputs and the drift stage."""
    from ss4rec.training import train

    root = tmp_path_factory.mktemp("based")
    small = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit",
             "threads=1", "trainer.enable_progress_bar=false"]  # fmt: skip
    threads = torch.get_num_threads()
    assert train(compose_train(["model=mf", "task=rating", *small], root / "mf"))["status"] == "finished"
    summary = train(compose_train(["model=ss4rec", "task=rating", "model.use_ratings=true", f"model.rating_base={root / 'mf'}",
                                   "model.rating_base_residuals=true", "model.rating_base_drift=3",
                                   "model.rating_base_drift_recent=2", "model.rating_base_drift_lr_scale=30",
                                   "model.rating_base_drift_calibrate=true", *small], root / "ss4rec"))  # fmt: skip
    torch.set_num_threads(threads)
    assert summary["status"] == "finished"
    return root / "ss4rec"


def test_the_command_writes_the_weights_that_serving_then_applies(based_run, tmp_path, capsys):
    """The record's RMSE with the network's whole correction and with the chosen weights are what the offline check
    measures for new users served without and with the written file; another --fold-in-noise does not read it."""
    from ss4rec.serve.loading import load_core
    from ss4rec.serve.offline import served_metrics

    assert main([str(based_run), "--up-to", "2", "--fold-in-noise", "0.8", "--min-z", "0"]) == 0
    out = capsys.readouterr().out
    record = json.loads((based_run / "new_user_weights.json").read_text())
    (fit,) = record["fits"]
    assert len(fit["weights"]) == 2 and set(fit["weights"]) <= set(GRID) and "wrote" in out
    assert fit["noises_tried"] == [0.4, 0.8, 1.6] and "--noises 0.4 1.6 --min-z 0" in fit["command"]
    assert fit["noises"] == [row["noise"] for row in fit["rmse"]] and set(fit["noises"]) - {0.8}  # another chosen
    core = load_core(based_run, history="window", state_dir=tmp_path / "a", restore=False, fold_in_noise=0.8)
    assert core.info()["new_user_weights"] == fit["weights"] and core.info()["new_user_noises"] == fit["noises"]
    for row in fit["rmse"]:
        by_noise = dict(row["valid_weighted_by_noise"])
        assert by_noise[row["noise"]] == row["valid_weighted"] == min(by_noise.values())  # --min-z 0: the lowest
        for split in ("valid", "test"):
            got = served_metrics(core, ranks=False, as_new_users=True, split=split, last_events=row["events"])["rmse"]
            assert got == pytest.approx(row[f"{split}_weighted"], abs=1e-6)
            assert row[f"{split}_weighted"] != row[f"{split}_network"] or row["weight"] == 1.0
        assert row["valid_weighted"] <= row["valid_network"]  # chosen on validation
        assert row["weight"] == 1.0 or row["valid_weighted"] <= row["valid_base"]
    core.close(save=False)
    other = load_core(based_run, history="window", state_dir=tmp_path / "b", restore=False, fold_in_noise=0.3)
    assert other.info()["new_user_weights"] == []
    other.close(save=False)
    assert main([str(based_run), "--up-to", "1", "--fold-in-noise", "0.3"]) == 0  # a second noise joins the first
    assert "--fold-in-noise 0.3:" in capsys.readouterr().out
    both = json.loads((based_run / "new_user_weights.json").read_text())["fits"]
    assert [fit["fold_in_noise"] for fit in both] == [0.3, 0.8] and both[1] == record["fits"][0]
    other = load_core(based_run, history="window", state_dir=tmp_path / "d", restore=False, fold_in_noise=0.3)
    assert other.info()["new_user_weights"] == both[0]["weights"] and len(both[0]["weights"]) == 1
    got = served_metrics(other, ranks=False, as_new_users=True, split="test", last_events=1)["rmse"]
    assert got == pytest.approx(both[0]["rmse"][0]["test_weighted"], abs=1e-6)
    other.close(save=False)
    plain = load_core(based_run, history="window", state_dir=tmp_path / "c", restore=False, fold_in_noise=0.8)
    plain.options.new_user_weights = ()
    got = served_metrics(plain, ranks=False, as_new_users=True, split="valid", last_events=1)["rmse"]
    assert got == pytest.approx(fit["rmse"][0]["valid_network"], abs=1e-6)
    plain.close(save=False)


def test_several_runs_are_checked_as_new_users_as_one_model(based_run, tmp_path, capsys):
    """A run averaged with itself is that run: the offline check of the pair, every user a new user with their last two
    events, prints the one run's RMSE (each member folds the users into its own base and applies its own weights)."""
    from ss4rec.serve.ensemble import load_served
    from ss4rec.serve.offline import main as offline_check
    from ss4rec.serve.offline import served_metrics

    alone = load_served([based_run], history="window", state_dir=tmp_path / "a", restore=False)
    expected = served_metrics(alone, ranks=False, as_new_users=True, split="valid", last_events=2)["rmse"]
    alone.close(save=False)
    pair = load_served([based_run, based_run], history="window", state_dir=tmp_path / "b", restore=False)
    got = served_metrics(pair, ranks=False, as_new_users=True, split="valid", last_events=2)["rmse"]
    pair.close(save=False)
    assert got == pytest.approx(expected, abs=1e-9)
    assert offline_check([str(based_run), str(based_run), "--as-new-users", "--split=valid", "--last-events=2"]) == 0
    out = capsys.readouterr().out
    assert "valid RMSE of the 2 runs served as one model (the mean of their ratings), every user served as a new user with their last 2 events" in out
    assert f"{expected:.6f}" in out


@pytest.mark.parametrize(("flag", "pattern"), [("--up-to=0", r"--up-to=0: expected an integer from 1 to 20"),
                                               ("--up-to=21", r"--up-to=21: expected an integer from 1 to 20"),
                                               ("--threads=0", r"--threads=0: expected an integer >= 1"),
                                               ("--fold-in-noise=-1", r"--fold-in-noise=-1.0: expected a finite number > 0"),
                                               ("--min-z=-1", r"--min-z=-1.0: expected a finite number >= 0"),
                                               ("--noises=0", r"--noises: 0.0 is not a finite number > 0"),
                                               ("", r"expected a run trained with model.rating_base")])  # fmt: skip
def test_bad_input_exits_2_naming_it(trained_run, capsys, flag, pattern):
    try:
        code = main([str(trained_run), *([flag] if flag else [])])
    except SystemExit as stopped:
        code = stopped.code
    expect_clean_error((code, capsys.readouterr().err), pattern)
    assert not (trained_run / "new_user_weights.json").exists()
