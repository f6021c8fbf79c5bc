"""A timeSVD++ run as ``model.rating_base``: the frozen base predicts what the run predicts at the time of each
rating (the training targets', the past ratings', the held-out ones'), one run or a cross-fitting, and a
sequence model's checkpoint carries it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rating_fixtures import save_run, timed_store, timesvdpp_run
from ss4rec.batch import gather_last
from ss4rec.data import collate
from ss4rec.data.folds import rating_fold
from ss4rec.models.rating_base import FrozenMF, RatingBaseError
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.svdpp import SVDpp
from ss4rec.models.timesvdpp import TimeSVDpp

DAY = 86_400


def own_predictions(model: TimeSVDpp, store, users: torch.Tensor, items: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The timeSVD++ run's own predictions (its evaluation path, float64) of ``items`` (M,) by ``users`` (M,) at
    unix-second ``times`` (M,), N(u) the user's training part."""
    batch = collate.eval_batch(store, users.numpy(), "val", max_len=2)
    batch["target_times"] = batch["target_times"].clone()
    batch["target_times"][torch.arange(len(users)), batch["lengths"] - 1] = times
    with torch.no_grad():
        return model.predict_rating(model.eval_queries(batch), items)


def queries(store):
    """Every (user, item) at times that exercise every term: before the training period, each training second
    (that day's bias), a new day inside the period, years after it; (M,) each."""
    times = np.asarray(store.times)
    train = times[store.train_rows()]
    moments = [int(train.min()) - 3 * DAY, *np.unique(train).tolist(), int(train.min()) + 17 * DAY + 5,
               int(train.max()) + 9 * 365 * DAY]  # fmt: skip
    users, items, at = torch.meshgrid(torch.arange(store.n_users), torch.arange(1, store.n_items + 1),
                                      torch.tensor(moments, dtype=torch.long), indexing="ij")  # fmt: skip
    return users.reshape(-1), items.reshape(-1), at.reshape(-1)


def test_a_timesvdpp_base_predicts_the_runs_ratings_at_any_time(tmp_path):
    store = timed_store()
    model = timesvdpp_run(tmp_path, store, beta=0.3)  # not the default beta: read from the run
    base = FrozenMF(store.n_users, store.n_items, str(tmp_path)).double()
    base.fill(store)
    assert base.timed and base.folds == 1
    users, items, times = queries(store)
    expected = own_predictions(model, store, users, items, times)
    torch.testing.assert_close(base(base.user_part(users, times=times), items), expected, rtol=0, atol=1e-12)
    # shapes beyond one dimension, as the residual inputs (B, L) use them; training ratings read the one run too
    square = base(base.user_part(users.reshape(-1, 5), items.reshape(-1, 5), times.reshape(-1, 5)), items.reshape(-1, 5))
    torch.testing.assert_close(square.reshape(-1), expected, rtol=0, atol=1e-12)
    # the time terms are in it: the same ratings a year later differ, and the day biases reach the training days
    later = base(base.user_part(users, times=times + 365 * DAY), items)
    assert (later - expected).abs().min() > 0
    with pytest.raises(ValueError, match="user_part needs times"):
        base.user_part(users)


def test_a_cross_fitted_timesvdpp_base_reads_each_run_at_its_own_index(tmp_path):
    """Three runs, each indexed on other training rows (other first days, user-days and mean days) and with its
    own bins and beta: a training rating comes from the run that left its fold out, a held-out one from the mean."""
    store = timed_store()
    train = store.train_rows()
    models = [timesvdpp_run(tmp_path / f"run{2 - k}", store, seed=k, n_bins=(1, 3, 5)[k], beta=(0.4, 0.3, 0.5)[k],
                            rows=np.delete(train, np.arange(k, len(train), 3)), fold=k) for k in range(3)]  # fmt: skip
    base = FrozenMF(store.n_users, store.n_items, str(tmp_path / "run*")).double()
    base.fill(store)
    assert base.folds == 3 and base.item_bin_bias.shape == (3, store.n_items + 1, 5)
    users, items, times = queries(store)
    per_run = torch.stack([own_predictions(model, store, users, items, times) for model in models], dim=-1)
    folds = rating_fold(users, items, 3)
    assert set(folds.tolist()) == {0, 1, 2}
    torch.testing.assert_close(base(base.user_part(users, items, times), items), per_run[torch.arange(len(users)), folds],
                               rtol=0, atol=1e-12)  # fmt: skip
    # the same from the fold's own tables alone (residual inputs and drift), in any shape; the time is needed
    torch.testing.assert_close(base.out_of_fold(users, items, times), per_run[torch.arange(len(users)), folds], rtol=0, atol=1e-12)
    square = base.out_of_fold(users.reshape(-1, 5), items.reshape(-1, 5), times.reshape(-1, 5))
    torch.testing.assert_close(square.reshape(-1), per_run[torch.arange(len(users)), folds], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="out_of_fold needs times"):
        base.out_of_fold(users, items)
    torch.testing.assert_close(base(base.user_part(users, times=times), items), per_run.mean(-1), rtol=0, atol=1e-12)


def test_a_sequence_model_reads_each_rating_at_its_time_and_its_checkpoint_carries_the_base(tmp_path):
    store = timed_store()
    timesvdpp_run(tmp_path, store)
    torch.manual_seed(0)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=str(tmp_path), rating_base_residuals=True).eval()  # fmt: skip
    model.rating_base.fill(store)
    base = model.rating_base
    batch = collate.eval_batch(store, np.arange(store.n_users), "test", max_len=6)
    users = batch["users"]
    with torch.no_grad():
        # training targets at their own times (the correction starts at zero)
        query, targets, _ = model.train_queries(batch)
        mask = batch["target_items"] > 0
        at = batch["target_times"][mask]
        expected = base(base.user_part(users[:, None].expand_as(mask)[mask], targets, at), targets)
        torch.testing.assert_close(model.predict_rating(query, targets), expected, rtol=0, atol=1e-5)
        # the held-out rating at its time
        held_out = gather_last(batch["target_items"], batch["lengths"])
        when = gather_last(batch["target_times"], batch["lengths"])
        expected = base(base.user_part(users, times=when), held_out)
        torch.testing.assert_close(model.predict_rating(model.eval_queries(batch), held_out), expected,
                                   rtol=0, atol=1e-5)  # fmt: skip
        assert not torch.allclose(expected, base(base.user_part(users, times=when + 400 * DAY), held_out))
        # each past rating's error at the time it was made
        errors, rated = model.base_errors(batch)
        past = base(base.user_part(users[:, None].expand_as(batch["items"]), batch["items"], batch["times"]), batch["items"])
        torch.testing.assert_close(errors, torch.where(rated, batch["ratings"] - past, 0.0).to(errors.dtype))
    # a checkpoint restores the base without the run
    restored = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                      rating_base="unused", rating_base_residuals=True).eval()  # fmt: skip
    restored.load_state_dict(model.state_dict())
    assert restored.rating_base.timed
    with torch.no_grad():
        torch.testing.assert_close(restored.predict_rating(restored.eval_queries(batch), held_out),
                                   model.predict_rating(model.eval_queries(batch), held_out))  # fmt: skip


def test_a_base_mixing_timesvdpp_and_other_runs_is_refused(tmp_path):
    store = timed_store()
    timesvdpp_run(tmp_path / "run0", store, fold=0)
    for k in (1, 2):
        save_run(tmp_path / f"run{k}", SVDpp(store.n_items, store.n_users, dim=3), fold=(3, k))
    with pytest.raises(RatingBaseError, match=r"must all be timeSVD\+\+ runs or none; got .*run0.* \(timeSVD\+\+\), "
                       r".*run1.* \(no time terms\)"):  # fmt: skip
        FrozenMF(store.n_users, store.n_items, str(tmp_path / "run*")).fill(store)
    timesvdpp_run(tmp_path / "single", store)
    checkpoint = tmp_path / "single" / "checkpoints" / "best-epoch003.ckpt"
    saved = torch.load(checkpoint, weights_only=False)
    del saved["hyper_parameters"]
    torch.save(saved, checkpoint)
    with pytest.raises(RatingBaseError, match="is a timeSVD\\+\\+ checkpoint without model.beta in its hyper_parameters"):
        FrozenMF(store.n_users, store.n_items, str(checkpoint)).fill(store)
