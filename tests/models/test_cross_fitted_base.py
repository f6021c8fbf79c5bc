"""A cross-fitted rating base (``model.rating_base='<runs>/*'``): each training rating from the run that left
its fold out, each held-out rating from the mean of the runs; against float64 references of SVD++'s formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rating_fixtures import save_run, svdpp_reference, varied_store
from ss4rec.data.folds import rating_fold
from ss4rec.models.rating_base import TABLE_RANKS, FrozenMF, RatingBaseError, cross_fitting
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.svdpp import SVDpp

K = 3


def fold_runs(root, store, folds=K, which=None):
    """SVD++ runs with random tables, one per fold of ``which`` (default all), in folders whose sorted order is
    not the fold order; returns {fold: model}."""
    models = {}
    for fold in range(folds) if which is None else which:
        torch.manual_seed(10 + fold)
        model = SVDpp(store.n_items, store.n_users, dim=4, init_std=0.5)
        with torch.no_grad():
            model.user_bias.weight.normal_()
            model.item_bias.weight[1:].normal_()
            model.rating_head.rating_mean.fill_(3.0 + 0.2 * fold)
        save_run(root / f"run{folds - 1 - fold}", model, fold=(folds, fold))  # run0 holds the last fold
        models[fold] = model
    return models


def grid(store):
    users, items = torch.meshgrid(torch.arange(store.n_users), torch.arange(1, store.n_items + 1), indexing="ij")
    return users.reshape(-1), items.reshape(-1)


def test_training_ratings_come_from_the_run_that_left_them_out_held_out_ones_from_the_mean(tmp_path):
    store = varied_store()
    models = fold_runs(tmp_path, store)
    base = FrozenMF(store.n_users, store.n_items, str(tmp_path / "run*")).double()
    base.fill(store)
    assert base.folds == K
    users, items = grid(store)
    folds = rating_fold(users, items, K)
    assert set(folds.tolist()) == set(range(K))  # every fold is exercised
    per_fold = torch.tensor([[svdpp_reference(models[f], store, int(u), int(i)) for f in range(K)]
                             for u, i in zip(users, items)], dtype=torch.float64)  # fmt: skip
    out_of_fold = per_fold[torch.arange(len(users)), folds]
    torch.testing.assert_close(base(base.user_part(users, items), items), out_of_fold, rtol=0, atol=1e-12)
    torch.testing.assert_close(base(base.user_part(users), items), per_fold.mean(1), rtol=0, atol=1e-12)
    # shapes beyond one dimension, as the residual inputs (B, L) use them
    square = base(base.user_part(users.reshape(-1, 5), items.reshape(-1, 5)), items.reshape(-1, 5))
    torch.testing.assert_close(square.reshape(-1), out_of_fold, rtol=0, atol=1e-12)
    # from the fold's own tables alone (residual inputs and drift read it): the same ratings, in any shape
    torch.testing.assert_close(base.out_of_fold(users, items), out_of_fold, rtol=0, atol=1e-12)
    torch.testing.assert_close(base.out_of_fold(users.reshape(-1, 5), items.reshape(-1, 5)).reshape(-1), out_of_fold,
                               rtol=0, atol=1e-12)  # fmt: skip


def test_a_sequence_model_reads_targets_and_past_ratings_out_of_fold_and_scores_held_out_ones_on_the_mean(tmp_path):
    store = varied_store()
    fold_runs(tmp_path, store)
    torch.manual_seed(0)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=str(tmp_path / "run*"), rating_base_residuals=True).eval()  # fmt: skip
    model.rating_base.fill(store)
    base = model.rating_base
    items = torch.tensor([[3, 5, 1, 7], [2, 9, 4, 0]])
    batch = {"users": torch.tensor([4, 1]), "items": items, "ratings": torch.tensor([[4.0, 2, 5, 3], [1, 3, 5, 0]]),
             "times": torch.tensor([[1, 2, 3, 4], [1, 1, 2, 0]]) * 1000, "target_items": torch.tensor([[5, 1, 7, 8], [9, 4, 6, 0]]),
             "target_ratings": torch.tensor([[2.0, 5, 3, 4], [3, 5, 2, 0]]), "target_times": torch.tensor([[2, 3, 4, 5], [1, 2, 3, 0]]) * 1000,
             "lengths": torch.tensor([4, 3])}  # fmt: skip
    with torch.no_grad():
        query, targets, _ = model.train_queries(batch)
        users = batch["users"][:, None].expand_as(batch["target_items"])[batch["target_items"] > 0]
        expected = base(base.user_part(users, targets), targets)  # zero correction: the out-of-fold base
        torch.testing.assert_close(model.predict_rating(query, targets), expected.float())
        assert query.shape == (len(targets), model.hidden + 1)  # [h, the target's base rating], not every run's part
        torch.testing.assert_close(query[:, -1], expected.float(), rtol=0, atol=0)
        assert not torch.allclose(expected, base(base.user_part(users), targets))  # not the mean
        eval_query = model.eval_queries(batch)
        held_out = torch.tensor([6, 8])
        torch.testing.assert_close(model.predict_rating(eval_query, held_out),
                                   base(base.user_part(batch["users"]), held_out).float())  # fmt: skip
    # the past ratings' errors, each under the run that left it out, times residual_input: d(sum embed)/d(residual_input)
    # is the sum of those errors in every coordinate
    past_users = batch["users"][:, None].expand_as(items)
    with torch.no_grad():
        error = torch.where(items > 0, batch["ratings"] - base(base.user_part(past_users, items), items), 0.0)
    grad = torch.autograd.grad(model.embed(batch).sum(), model.residual_input)[0]
    torch.testing.assert_close(grad, torch.full_like(grad, float(error.sum())), rtol=1e-5, atol=1e-4)
    mean_error = torch.where(items > 0, batch["ratings"] - base(base.user_part(past_users), items), 0.0)
    assert abs(float(mean_error.sum()) - float(error.sum())) > 1e-3  # the test tells the two apart


def test_a_cross_fitting_is_every_fold_once_and_nothing_else(tmp_path):
    store = varied_store()
    fold_runs(tmp_path / "two", store, which=[0, 2])
    with pytest.raises(RatingBaseError, match=r"a cross-fitted base is K runs .* found .*fold 2 of 3.*fold 0 of 3"):
        cross_fitting(str(tmp_path / "two" / "run*"))
    fold_runs(tmp_path / "one", store, which=[1])
    with pytest.raises(RatingBaseError, match=r"fold 1 of 3"):
        cross_fitting(str(tmp_path / "one" / "run1"))  # one fold alone
    with pytest.raises(RatingBaseError, match=r"the pattern matches no run folder"):
        cross_fitting(str(tmp_path / "none*"))
    fold_runs(tmp_path / "all", store)
    (tmp_path / "all" / "multirun.yaml").write_text("{}")  # a sweep folder's other files are not runs
    ordered = cross_fitting(str(tmp_path / "all" / "*"))
    assert [path.parent.parent.name for path in ordered] == ["run2", "run1", "run0"]  # fold order


def test_a_checkpoint_from_before_cross_fitting_restores_as_one_fold(tmp_path):
    store = varied_store()
    fold_runs(tmp_path, store, folds=1)
    filled = FrozenMF(store.n_users, store.n_items, str(tmp_path / "run0")).double()
    filled.fill(store)
    old = {name: filled.state_dict()[name][0] for name in TABLE_RANKS}  # the tables, no fold dimension, no heldout_table
    restored = FrozenMF(store.n_users, store.n_items, "unused").double()
    restored.load_state_dict(old)
    assert restored.filled and restored.folds == 1
    users, items = grid(store)
    torch.testing.assert_close(restored(restored.user_part(users, items), items), filled(filled.user_part(users), items))
    assert np.isfinite(restored.mean.numpy()).all()


def test_a_heldout_run_predicts_held_out_ratings_and_the_folds_keep_the_training_ones(tmp_path):
    store = varied_store()
    models = fold_runs(tmp_path / "folds", store)
    full = fold_runs(tmp_path / "full", store, folds=1)[0]  # a run on every training rating: holdout_folds 1 = one table
    (tmp_path / "full" / "run0" / "metrics.json").write_text(json.dumps({"config": {"data": {"holdout_folds": 0}}}))
    base = FrozenMF(store.n_users, store.n_items, str(tmp_path / "folds" / "run*"), str(tmp_path / "full" / "run0")).double()
    base.fill(store)
    assert (base.tables, base.folds, bool(base.heldout_table)) == (K + 1, K, True)
    users, items = grid(store)
    folds = rating_fold(users, items, K)
    out_of_fold = torch.tensor([svdpp_reference(models[int(f)], store, int(u), int(i)) for u, i, f in zip(users, items, folds)],
                               dtype=torch.float64)  # fmt: skip
    by_full = torch.tensor([svdpp_reference(full, store, int(u), int(i)) for u, i in zip(users, items)], dtype=torch.float64)
    torch.testing.assert_close(base(base.user_part(users, items), items), out_of_fold, rtol=0, atol=1e-12)
    torch.testing.assert_close(base(base.user_part(users), items), by_full, rtol=0, atol=1e-12)
    torch.testing.assert_close(base.out_of_fold(users, items), out_of_fold, rtol=0, atol=1e-12)  # never the full run
    restored = FrozenMF(store.n_users, store.n_items, "unused").double()
    restored.load_state_dict(base.state_dict())  # a checkpoint keeps which table serves the held-out ratings
    torch.testing.assert_close(restored(restored.user_part(users), items), by_full, rtol=0, atol=1e-12)
    single = FrozenMF(store.n_users, store.n_items, str(tmp_path / "full" / "run0"), str(tmp_path / "full" / "run0"))
    with pytest.raises(RatingBaseError, match="replaces the mean of a cross-fitted base's runs; .* is one run"):
        single.fill(store)


def test_the_runs_of_one_base_must_share_the_factor_width(tmp_path):
    """Folds of another size (an SVD++ of dim 6 among dim 4, or an I-AutoRec among SVD++ runs) are refused by name."""
    from ss4rec.models.autorec import IAutoRec

    store = varied_store()
    fold_runs(tmp_path / "svdpp", store, which=[0, 1])
    save_run(tmp_path / "svdpp" / "wide", SVDpp(store.n_items, store.n_users, dim=6), fold=(K, 2))
    network = IAutoRec(store.n_items, store.n_users, hidden=4)
    network.set_rating_matrix(np.array([0, 1]), np.array([1, 2]), np.array([4.0, 2.0]))
    fold_runs(tmp_path / "mixed", store, which=[0, 1])
    save_run(tmp_path / "mixed" / "autorec", network, fold=(K, 2))
    for folder, width in (("svdpp", r"wide/checkpoints/best-epoch001.ckpt \(6\)"), ("mixed", r"autorec/checkpoints/best-epoch001.ckpt \(5\)")):
        base = FrozenMF(store.n_users, store.n_items, str(tmp_path / folder / "*"))
        with pytest.raises(RatingBaseError, match=r"factors of one width .*run\d/checkpoints/best-epoch001.ckpt \(4\).*" + width):
            base.fill(store)
