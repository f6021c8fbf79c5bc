"""benchmarks/rating_drift.py against a float64 reference: each held-out rating's error under a trained MF, the
mean error of the user's last k training ratings, and the same pairs over every training rating."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark_scripts import load_benchmark
from composing import compose_train
from ss4rec.models.rating_base import RatingBaseError
from ss4rec.training import build_datamodule, train

SMALL = ["data.max_len=20", "data.batch_size=128", "data.eval_batch_size=512", "logger=none", "debug=limit"]

drift = load_benchmark("rating_drift")


def test_previous_means_average_the_k_errors_before_each_position():
    errors = np.random.default_rng(0).normal(size=9)
    for k in (1, 3, 20):
        want = [errors[max(0, t - k) : t].mean() for t in range(1, 9)]
        np.testing.assert_allclose(drift.previous_means(errors, k), want, rtol=0, atol=1e-12)


def test_residuals_are_the_mf_runs_errors_on_held_out_and_training_ratings(tmp_path):
    record = train(compose_train(["model=mf", "task=rating", "optimizer.lr=0.05", *SMALL], tmp_path / "mf"))
    ks = [1, 4]
    got = drift.residuals(tmp_path / "mf", ks)
    store = build_datamodule(compose_train(["model=mf", "task=rating", *SMALL]))._ready()
    tables = {k.removeprefix("model."): v.double() for k, v in torch.load(record["checkpoint"], weights_only=False)["state_dict"].items()}
    want = {stage: ([], []) for stage in ("val", "test", "train")}
    from_end = []
    for user in range(store.n_users):
        start, end = store.offsets[user], store.offsets[user + 1]
        items = torch.from_numpy(store.items[start:end].astype(np.int64))
        predicted = (tables["rating_head.rating_mean"] + tables["user_bias.weight"][user, 0] + tables["item_bias.weight"][items, 0]
                     + tables["item_embedding.weight"][items] @ tables["user_embedding.weight"][user]).numpy()  # fmt: skip
        errors = store.ratings[start:end].astype(np.float64) - predicted
        n = len(items)
        for stage, target in (("val", n - 2), ("test", n - 1)):
            want[stage][0].append(errors[target])
            want[stage][1].append([errors[:target][-k:].mean() for k in ks])
        for t in range(1, n - 2):  # training ratings after the first, each against the k training ratings before it
            want["train"][0].append(errors[t])
            want["train"][1].append([errors[max(0, t - k) : t].mean() for k in ks])
            from_end.append(n - 2 - t)  # the training part is errors[: n - 2]; its last rating is 1 from the end
    for stage in ("val", "test", "train"):
        np.testing.assert_allclose(got[stage][0], want[stage][0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got[stage][1], want[stage][1], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got["from_end"], from_end)


def test_a_missing_base_run_is_one_error_line_naming_the_argument(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        drift.main([str(tmp_path / "missing")])
    assert stop.value.code != 0
    assert capsys.readouterr().err.strip() == f"error: run={str(tmp_path / 'missing')!r}: no such file or run folder"
    (tmp_path / "kept").mkdir()
    torch.save({}, tmp_path / "kept" / "base.ckpt")  # a checkpoint outside a run folder: no config for the split
    with pytest.raises(RatingBaseError, match=r"^--drift='.*base.ckpt': a checkpoint outside a run folder's checkpoints/"):
        drift.residuals(tmp_path / "kept" / "base.ckpt", [1], "--drift")
