"""benchmarks/autorec.py: the training matrix holds training ratings only, predictions and the loss match a float64
reference of I-AutoRec's formula, and a run against a reference rating run writes its record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark_scripts import load_benchmark
from composing import compose_train
from ss4rec.training import build_datamodule, train

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit"]

autorec = load_benchmark("autorec")


@pytest.fixture(scope="module")
def datamodule():
    return build_datamodule(compose_train(["model=mf", "task=rating", *SMALL]))


@pytest.fixture(scope="module")
def store(datamodule):
    return datamodule._ready()


def test_rating_matrix_holds_each_users_training_ratings_and_nothing_held_out(store):
    ratings, mask = autorec.rating_matrix(store)
    want = np.zeros((store.n_items + 1, store.n_users))
    seen = np.zeros_like(want)
    for user in range(store.n_users):
        start, end = store.offsets[user], store.offsets[user + 1]
        for row in range(start, end - 2):  # the last two are validation and test
            want[store.items[row], user] = store.ratings[row]
            seen[store.items[row], user] = 1
    np.testing.assert_array_equal(ratings.numpy(), want)
    np.testing.assert_array_equal(mask.numpy(), seen)
    users, items, _ = autorec.held_out(store, "test")
    only_held_out = seen[items, users] == 0  # test items the user never rated in training
    assert only_held_out.any() and (ratings.numpy()[items[only_held_out], users[only_held_out]] == 0).all()


def test_held_out_are_each_users_second_last_and_last_ratings(store):
    for stage, back in (("val", 2), ("test", 1)):
        users, items, ratings = autorec.held_out(store, stage)
        want = [(user, store.items[store.offsets[user + 1] - back], store.ratings[store.offsets[user + 1] - back])
                for user in range(store.n_users)]  # fmt: skip
        assert list(zip(users, items, ratings, strict=True)) == want


def reference_output(model, column: np.ndarray, user: int) -> float:
    v, b = model.encoder.weight.detach().double().numpy(), model.encoder.bias.detach().double().numpy()
    w, c = model.decoder.weight.detach().double().numpy(), model.decoder.bias.detach().double().numpy()
    hidden = 1.0 / (1.0 + np.exp(-(v @ column + b)))
    return float(w[user] @ hidden + c[user])


def test_predictions_match_a_float64_reference_with_clamping_and_the_mean_for_unrated_items(store):
    torch.manual_seed(0)
    ratings, mask = autorec.rating_matrix(store)
    model = autorec.IAutoRec(store.n_users, 7)
    with torch.no_grad():
        model.decoder.bias.uniform_(-1, 7)  # outputs beyond the rating range, so clamping is exercised
    users, items, _ = autorec.held_out(store, "val")
    unrated_item = int(items[0])
    mask[unrated_item] = 0
    ratings[unrated_item] = 0
    got = autorec.predict(model, ratings, mask.sum(1), users, items, 3.25, 1.0, 5.0)
    want = []
    for user, item in zip(users, items, strict=True):
        if item == unrated_item:
            want.append(3.25)
        else:
            want.append(min(5.0, max(1.0, reference_output(model, ratings[item].double().numpy(), user))))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert (np.asarray(want) == 5.0).any() and (np.asarray(want) == 1.0).any()


def test_masked_loss_counts_observed_entries_only_plus_the_scaled_penalty():
    torch.manual_seed(1)
    model = autorec.IAutoRec(11, 4)
    columns = torch.randint(1, 6, (5, 11)).float()
    mask = (torch.rand(5, 11) < 0.4).float()
    columns = columns * mask
    got = autorec.masked_loss(model, columns, mask, l2=3.0, n_ratings=17).item()
    out = np.array([[reference_output(model, columns[i].double().numpy(), u) for u in range(11)] for i in range(5)])
    m = mask.double().numpy()
    squared = ((out - columns.double().numpy()) ** 2 * m).sum() / m.sum()
    weights = sum(p.detach().double().pow(2).sum().item() for p in (model.encoder.weight, model.decoder.weight))
    assert got == pytest.approx(squared + 3.0 / 2 * weights / 17, rel=1e-5)


def test_a_run_against_a_reference_rating_run_writes_its_record(tmp_path, capsys):
    train(compose_train(["model=mf", "task=rating", "optimizer.lr=0.05", *SMALL], tmp_path / "mf"))
    record = tmp_path / "autorec.json"
    autorec.main([str(tmp_path / "mf"), "--hidden", "8", "--l2", "1", "10", "--max-epochs", "12", "--patience", "2",
                  "--lr", "0.3", "--quiet", "--record", str(record)])  # fmt: skip
    reference = json.loads((tmp_path / "mf" / "metrics.json").read_text())
    payload = json.loads(record.read_text())
    assert payload["reference_rmse"]["test"] == reference["test"]["test/rmse"]
    assert [(r["l2"], r["seed"]) for r in payload["results"]] == [(1.0, 0), (10.0, 0)]
    for result in payload["results"]:
        assert result["val_rmse"] == pytest.approx(min(result["val_curve"]), abs=1e-5)
        assert result["val_curve"].index(min(result["val_curve"])) == result["best_epoch"]
        assert result["epochs"] == len(result["val_curve"]) == min(12, result["best_epoch"] + 3)  # stopped after 2 worse epochs
    assert any(result["epochs"] < 12 for result in payload["results"])  # early stopping was exercised
    assert "status" not in payload  # two models: no single run to stand for
    out = capsys.readouterr().out
    assert "test vs reference" in out and "l2 10 seed 0 done (2 of 2)" in out and " epoch 0: loss" not in out  # --quiet


def test_a_one_model_record_is_read_by_pooled_splits_as_a_run_of_its_split(tmp_path):
    train(compose_train(["model=mf", "task=rating", "optimizer.lr=0.05", "data.holdout_last=1", *SMALL], tmp_path / "mf"))
    record = tmp_path / "autorec" / "one.json"
    autorec.main([str(tmp_path / "mf"), "--hidden", "8", "--l2", "10", "--seeds", "3", "--max-epochs", "3", "--quiet",
                  "--record", str(record)])  # fmt: skip
    result = json.loads(record.read_text())["results"][0]
    pooled = load_benchmark("pooled_splits")
    assert pooled.read_record(record, 1) == (result["test_rmse"], result["val_rmse"])
    assert pooled.read_record(record, 1, "mae") == (result["test_mae"], result["val_mae"])
    with pytest.raises(SystemExit, match="holdout_last=1, expected 0"):
        pooled.read_record(record, 0)


def test_a_ranking_run_is_refused_as_the_reference(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "ranking", "test": {"test/ndcg@10": 0.1}}))
    with pytest.raises(SystemExit, match="not a finished task=rating run"):
        autorec.main([str(tmp_path)])


def test_a_diverging_model_stops_with_a_clear_error(datamodule):
    with pytest.raises(SystemExit, match=r"diverged in epoch 0: training loss (inf|nan); lower --lr \(now 1e\+30\)"):
        autorec.fit(datamodule, hidden=4, l2=1.0, lr=1e30, max_epochs=3, patience=1, seed=0, log=lambda _line: None)


def test_a_folder_without_a_record_is_refused_by_name(tmp_path):
    with pytest.raises(SystemExit, match=f"no readable metrics.json in {tmp_path}"):
        autorec.main([str(tmp_path)])
