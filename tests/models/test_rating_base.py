"""``model.rating_base``: SS4Rec's rating head as a correction of a frozen, trained biased MF."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from batches import N_ITEMS, sequence_batch
from rating_fixtures import save_run, svdpp_reference, varied_store
from ss4rec.data import collate
from ss4rec.errors import UserError
from ss4rec.models.mf import MF
from ss4rec.models.rating_base import FrozenMF, RatingBaseError, mf_checkpoint, svdpp_user_factors
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.svdpp import SVDpp

N_USERS = 4


def mf_run(tmp_path, n_users=N_USERS, n_items=N_ITEMS, seed=3):
    """A trained-looking MF (random tables) saved as a run folder's best checkpoint; returns (run, MF)."""
    torch.manual_seed(seed)
    mf = MF(n_items, n_users, dim=5)
    with torch.no_grad():
        for table in (mf.user_embedding, mf.item_embedding, mf.user_bias, mf.item_bias):
            table.weight.normal_()
        mf.rating_head.rating_mean.fill_(3.4)
    save_run(tmp_path, mf, "best-epoch004.ckpt")
    return tmp_path, mf


def ss4rec(base=None):
    torch.manual_seed(0)
    return SS4Rec(N_ITEMS, N_USERS, hidden=16, d_state=8, mamba_d_state=8, use_ratings=True,
                  rating_base=None if base is None else str(base)).eval()  # fmt: skip


def mf_reference(mf: MF, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``mean + b_u + b_i + p_u . q_i`` in float64 from MF's own tables."""
    p = mf.user_embedding.weight.double()[users]
    q = mf.item_embedding.weight.double()[items]
    bu, bi = mf.user_bias.weight.double()[users, 0], mf.item_bias.weight.double()[items, 0]
    return float(mf.rating_head.rating_mean) + bu + bi + (p * q).sum(-1)


def test_an_untrained_correction_predicts_the_mf_runs_ratings_and_ranks_as_without_a_base(tmp_path):
    run, mf = mf_run(tmp_path)
    model = ss4rec(run)
    model.rating_base.fill()
    batch = sequence_batch([7, 3, 1, 5], seed=2)
    batch["users"] = torch.tensor([3, 0, 2, 1])  # not the row order: each row reads its own user's factors
    with torch.no_grad():
        query, items, _ = model.train_queries(batch)
        users = batch["users"][:, None].expand_as(batch["target_items"])[batch["target_items"] > 0]
        torch.testing.assert_close(model.predict_rating(query, items).double(), mf_reference(mf, users, items),
                                   rtol=1e-6, atol=1e-6)  # float32 against float64
        eval_query = model.eval_queries(batch)
        assert eval_query.shape == (4, 16 + 5 + 2)  # [h, p_u, b_u, fold weight 1]
        plain = ss4rec()  # the same seed: the same encoder and item table
        torch.testing.assert_close(model.score(eval_query), plain.score(plain.eval_queries(batch)), rtol=0, atol=0)
        torch.testing.assert_close(model.predict_rating(eval_query, torch.tensor([1, 5, 9, N_ITEMS])).double(),
                                   mf_reference(mf, batch["users"], torch.tensor([1, 5, 9, N_ITEMS])),
                                   rtol=1e-6, atol=1e-6)  # fmt: skip


def test_only_the_correction_learns_and_a_checkpoint_restores_without_the_mf_run(tmp_path):
    run, mf = mf_run(tmp_path)
    model = ss4rec(run).train()
    model.rating_base.fill()
    assert not list(model.rating_base.parameters())  # buffers: no optimizer sees them
    batch = sequence_batch([6, 4, 2, 1], seed=5)
    query, items, ratings = model.train_queries(batch)
    ((model.predict_rating(query, items) - ratings) ** 2).mean().backward()
    assert model.rating_head.mlp[-1].weight.grad.abs().sum() > 0  # the zero-started correction gets a gradient
    with torch.no_grad():
        model.rating_head.mlp[-1].weight.normal_()  # a trained correction: ratings now differ from MF's
    model.eval()
    with torch.no_grad():
        expected = model.predict_rating(model.eval_queries(batch), torch.tensor([2, 3, 4, 5]))
    state = model.state_dict()
    for file in (run / "checkpoints").iterdir():
        file.unlink()  # the MF run is gone
    restored = ss4rec(run)
    assert not restored.rating_base.filled
    restored.load_state_dict(state)
    assert restored.rating_base.filled
    with torch.no_grad():
        got = restored.predict_rating(restored.eval_queries(batch), torch.tensor([2, 3, 4, 5]))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got.double(), mf_reference(mf, batch["users"], torch.tensor([2, 3, 4, 5])))


def test_a_base_that_does_not_fit_is_refused_with_its_reason(tmp_path):
    with pytest.raises(RatingBaseError, match="no such file or run folder"):
        mf_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RatingBaseError, match=r"no checkpoints/best-\*\.ckpt .*; train one with `python train.py model=mf"):
        mf_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "metrics.json").write_text(json.dumps({"checkpoint": "best-epoch009.ckpt"}))  # a record, as git holds it
    with pytest.raises(RatingBaseError, match=r"its metrics.json names best-epoch009.ckpt, which is not in .*\(run records in git keep no checkpoints\)") as lost:
        mf_checkpoint(tmp_path / "empty")
    assert "model=mf" not in str(lost.value)  # its own command, not a generic one
    run, _ = mf_run(tmp_path / "other", n_users=N_USERS + 1)
    with pytest.raises(RatingBaseError, match=f"has {N_USERS + 1} users and {N_ITEMS} items, this run's data has "
                       f"{N_USERS} and {N_ITEMS}"):  # fmt: skip
        FrozenMF(N_USERS, N_ITEMS, str(run)).fill()
    (tmp_path / "sasrec" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {"model.item_embedding.weight": torch.zeros(3, 2)}},
               tmp_path / "sasrec" / "checkpoints" / "best-epoch001.ckpt")  # fmt: skip
    with pytest.raises(RatingBaseError, match=r"not a biased-MF \(model=mf\), SVD\+\+ \(svdpp\), timeSVD\+\+ \(timesvdpp\) or I-AutoRec \(autorec\) checkpoint: it has no "
                       "user_embedding.weight"):
        FrozenMF(N_USERS, N_ITEMS, str(tmp_path / "sasrec")).fill()
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        FrozenMF(N_USERS, N_ITEMS, str(tmp_path / "junk.ckpt")).fill()


@pytest.mark.parametrize("message, option, want", [
    ("model.rating_base='x': no such file or run folder", "--drift", "--drift='x': no such file or run folder"),
    ("model.rating_base: x has 3 users", "model.rating_base_heldout", "model.rating_base_heldout: x has 3 users"),
    ("model.rating_base_heldout='y' replaces the mean", "--drift", "model.rating_base_heldout='y' replaces the mean"),
])  # fmt: skip
def test_an_error_met_through_another_option_names_that_option(message, option, want):
    renamed = RatingBaseError(message).naming(option)
    assert isinstance(renamed, RatingBaseError) and str(renamed) == want


def test_residual_inputs_add_each_past_ratings_mf_error_times_a_learned_vector(tmp_path):
    """Against float64: the input with ``rating_base_residuals`` minus the input without it is
    ``(r - MF(u, i)) * v`` at rated positions, 0 at padding and missing ratings; ``v`` gets that gradient."""
    run, mf = mf_run(tmp_path)
    torch.manual_seed(0)
    plain = SS4Rec(N_ITEMS, N_USERS, hidden=16, d_state=8, mamba_d_state=8, use_ratings=True, rating_base=str(run))
    torch.manual_seed(0)
    model = SS4Rec(N_ITEMS, N_USERS, hidden=16, d_state=8, mamba_d_state=8, use_ratings=True, rating_base=str(run),
                   rating_base_residuals=True).double()  # fmt: skip
    plain = plain.double()
    for m in (plain, model):
        m.rating_base.fill()
    batch = sequence_batch([6, 1, 4, 3], seed=7)
    batch["users"] = torch.tensor([2, 3, 0, 1])
    batch["ratings"][2, 1] = 0.0  # a missing rating reads nothing
    with torch.no_grad():
        torch.testing.assert_close(model.embed(batch), plain.embed(batch), rtol=0, atol=0)  # zero at the start
        model.residual_input.normal_()
    vector = model.residual_input.detach().clone().requires_grad_()
    users = batch["users"][:, None].expand_as(batch["items"])
    error = torch.where((batch["ratings"] > 0) & (batch["items"] > 0),
                        batch["ratings"].double() - mf_reference(mf, users, batch["items"]), 0.0)  # fmt: skip
    expected = error[..., None] * vector
    torch.testing.assert_close(model.embed(batch) - plain.embed(batch), expected.detach(), rtol=0, atol=1e-12)
    weights = torch.randn(expected.shape, dtype=torch.float64)
    (model.embed(batch) * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(model.residual_input.grad, vector.grad, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="rating_base_residuals needs a rating_base"):
        SS4Rec(N_ITEMS, N_USERS, hidden=16, rating_base_residuals=True)


def drift_reference(errors: torch.Tensor, rated: torch.Tensor, k: int) -> torch.Tensor:
    """(B, L) float64, one position at a time: the mean error over the rated positions among t-k+1..t."""
    out = torch.zeros(errors.shape, dtype=torch.float64)
    for b in range(errors.shape[0]):
        for t in range(errors.shape[1]):
            window = [float(errors[b, j]) for j in range(max(0, t - k + 1), t + 1) if rated[b, j]]
            out[b, t] = sum(window) / len(window) if window else 0.0
    return out


HELD_OUT = torch.tensor([4, 9, 1, N_ITEMS])  # one held-out item per row of drift_batch


def drift_models(run, **options) -> SS4Rec:
    """A float64 SS4Rec on the MF ``run`` with residual inputs and ``options``; the same weights for any options."""
    torch.manual_seed(0)
    model = SS4Rec(N_ITEMS, N_USERS, hidden=16, d_state=8, mamba_d_state=8, use_ratings=True, rating_base=str(run),
                   rating_base_residuals=True, **options).double().eval()  # fmt: skip
    model.rating_base.fill()
    return model


def drift_batch() -> dict[str, torch.Tensor]:
    """Four windows of users 1, 3, 0, 2; each target's place from the end of its user's training part: row 0 ends
    its user's history, row 2 stops 2 before it."""
    batch = sequence_batch([7, 2, 5, 4], max_len=8, seed=3)
    batch["users"] = torch.tensor([1, 3, 0, 2])
    mask = batch["target_items"] > 0
    batch["target_from_end"] = torch.where(mask, torch.tensor([7, 9, 7, 3])[:, None] - torch.arange(8)[None, :], 0)
    return batch


def batch_drift(mf: MF, batch: dict[str, torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 drift of ``batch`` under ``mf``: at the training targets (M,) and at the held-out ratings (B,)."""
    users = batch["users"][:, None].expand_as(batch["items"])
    rated = (batch["ratings"] > 0) & (batch["items"] > 0)
    errors = torch.where(rated, batch["ratings"].double() - mf_reference(mf, users, batch["items"]), 0.0).detach()
    drift = drift_reference(errors, rated, k)
    return drift[batch["target_items"] > 0], drift[torch.arange(len(drift)), (batch["lengths"] - 1).clamp_min(0)]


def rating_predictions(model: SS4Rec, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted ratings of ``batch``'s training targets (M,) and of its held-out ratings ``HELD_OUT`` (B,)."""
    query, items, _ = model.train_queries(batch)
    return model.predict_rating(query, items), model.predict_rating(model.eval_queries(batch), HELD_OUT)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_drift_adds_a_learned_weight_times_the_mean_mf_error_of_the_last_k_ratings(tmp_path, k):
    """Against float64: with ``rating_base_drift=k`` every predicted rating (training targets and held-out ones)
    is the one without it plus ``w`` times the mean MF error of the rated positions among the last k read;
    ``w`` starts at 0, gets that gradient, and ranking scores never see it."""
    run, mf = mf_run(tmp_path)
    plain, model = drift_models(run), drift_models(run, rating_base_drift=k)
    batch = drift_batch()
    batch["ratings"][0, 3] = 0.0  # a missing rating: not counted
    train_drift, eval_drift = batch_drift(mf, batch, k)
    with torch.no_grad():
        for got, want in zip(rating_predictions(model, batch), rating_predictions(plain, batch), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)  # zero at the start
        torch.testing.assert_close(model.score(model.eval_queries(batch)), plain.score(plain.eval_queries(batch)))
        model.drift_weight.fill_(0.7)
    train_got, eval_got = rating_predictions(model, batch)
    with torch.no_grad():
        train_want, eval_want = rating_predictions(plain, batch)
    torch.testing.assert_close(train_got, train_want + 0.7 * train_drift, rtol=0, atol=1e-10)
    torch.testing.assert_close(eval_got, eval_want + 0.7 * eval_drift, rtol=0, atol=1e-10)
    (train_got.sum() + eval_got.sum()).backward()
    torch.testing.assert_close(model.drift_weight.grad, train_drift.sum() + eval_drift.sum())
    with pytest.raises(ValueError, match="rating_base_drift must be 0"):
        SS4Rec(N_ITEMS, N_USERS, hidden=16, rating_base_drift=3)


@pytest.mark.parametrize(("recent", "scale"), [(1, 1.0), (3, 30.0)])
def test_drift_recent_gives_each_users_last_targets_and_held_out_ratings_their_own_weight(tmp_path, recent, scale):
    """Against float64: with ``rating_base_drift_recent=N`` a training target among its user's last N training
    ratings (``target_from_end`` <= N) and every held-out rating get ``w_recent`` times the drift, the earlier
    targets ``w``; both start at 0, get their own targets' gradients, and ranking scores see neither. With
    ``rating_base_drift_lr_scale=s`` each weight is s times its parameter (whose gradient is then s times)."""
    run, mf = mf_run(tmp_path)
    options = {"rating_base_drift": 2, "rating_base_drift_lr_scale": scale}
    plain, model = drift_models(run, **options), drift_models(run, rating_base_drift_recent=recent, **options)
    batch = drift_batch()
    train_drift, eval_drift = batch_drift(mf, batch, 2)
    is_recent = batch["target_from_end"][batch["target_items"] > 0] <= recent
    assert is_recent.any() and not is_recent.all()
    with torch.no_grad():
        for got, want in zip(rating_predictions(model, batch), rating_predictions(plain, batch), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)  # zero at the start
        torch.testing.assert_close(model.score(model.eval_queries(batch)), plain.score(plain.eval_queries(batch)))
        model.drift_weight.fill_(0.7 / scale)
        model.drift_weight_recent.fill_(-0.4 / scale)
        plain.drift_weight.fill_(0.7 / scale)
        train_plain, eval_plain = rating_predictions(plain, batch)
    train_got, eval_got = rating_predictions(model, batch)
    weight = torch.where(is_recent, torch.tensor(-0.4, dtype=torch.float64), 0.7)
    torch.testing.assert_close(train_got, train_plain + (weight - 0.7) * train_drift, rtol=0, atol=1e-10)
    torch.testing.assert_close(eval_got, eval_plain + (-0.4 - 0.7) * eval_drift, rtol=0, atol=1e-10)
    (train_got.sum() + eval_got.sum()).backward()
    torch.testing.assert_close(model.drift_weight.grad, scale * train_drift[~is_recent].sum())
    torch.testing.assert_close(model.drift_weight_recent.grad, scale * (train_drift[is_recent].sum() + eval_drift.sum()))
    del batch["target_from_end"]
    with pytest.raises(ValueError, match="needs each training target's place from the end"):
        model.train_queries(batch)
    with pytest.raises(ValueError, match="rating_base_drift_recent must be 0"):
        SS4Rec(N_ITEMS, N_USERS, hidden=16, rating_base=str(run), rating_base_drift_recent=3)
    with pytest.raises(ValueError, match="rating_base_drift_lr_scale must be > 0"):
        SS4Rec(N_ITEMS, N_USERS, hidden=16, rating_base=str(run), rating_base_drift=3, rating_base_drift_lr_scale=0)


def test_drift_calibrate_fits_a_stage_on_each_users_last_targets_out_of_the_network(tmp_path):
    """Against float64: with ``rating_base_drift_calibrate`` the last N training targets of each user and every
    held-out rating are predicted as ``mean + gain * (network - mean) + w_recent * drift + bias`` (mean: the
    training ratings'; the earlier targets as without it); those targets' errors reach the gain, ``w_recent`` and the
    bias alone, never a network parameter, and the earlier targets' gradients are the ones without calibration."""
    run, mf = mf_run(tmp_path)
    scale, w_recent, gain, bias = 10.0, 0.03, 1.2, -0.1
    options = {"rating_base_drift": 2, "rating_base_drift_recent": 2, "rating_base_drift_lr_scale": scale}
    plain, model = drift_models(run, **options), drift_models(run, rating_base_drift_calibrate=True, **options)
    with torch.no_grad():
        for m in (plain, model):
            m.drift_weight.fill_(0.05 / scale)
            m.drift_weight_recent.fill_(w_recent / scale)
            m.rating_head.mlp[-1].weight.normal_(generator=torch.Generator().manual_seed(1))
            m.rating_head.rating_mean.fill_(3.25)  # as the trainer sets it
        model.calibration.copy_(torch.tensor([gain - 1.0, bias], dtype=torch.float64) / scale)
    batch = drift_batch()
    train_drift, eval_drift = batch_drift(mf, batch, 2)
    recent = batch["target_from_end"][batch["target_items"] > 0] <= 2
    assert recent.any() and not recent.all()
    with torch.no_grad():
        (plain_train, plain_eval), (got_train, got_eval) = rating_predictions(plain, batch), rating_predictions(model, batch)
    # the network's rating alone, less the mean
    network = plain_train - torch.where(recent, torch.tensor(w_recent, dtype=torch.float64), 0.05) * train_drift - 3.25
    want = torch.where(recent, 3.25 + gain * network + w_recent * train_drift + bias, plain_train)
    torch.testing.assert_close(got_train, want, rtol=0, atol=1e-10)
    eval_network = plain_eval - w_recent * eval_drift - 3.25
    torch.testing.assert_close(got_eval, 3.25 + gain * eval_network + w_recent * eval_drift + bias, rtol=0, atol=1e-10)

    def gradients(m, rows):
        m.zero_grad()
        query, items, _ = m.train_queries(batch)
        m.predict_rating(query, items)[rows].square().sum().backward()
        return {name: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for name, p in m.named_parameters()}

    on_recent = gradients(model, recent)
    stage = {"drift_weight_recent", "calibration"}
    assert all(on_recent[name].abs().max() == 0 for name in on_recent if name not in stage)
    twice = 2 * got_train[recent]
    torch.testing.assert_close(on_recent["calibration"], scale * torch.stack([(twice * network[recent]).sum(), twice.sum()]))
    torch.testing.assert_close(on_recent["drift_weight_recent"], scale * (twice * train_drift[recent]).sum())
    earlier, earlier_plain = gradients(model, ~recent), gradients(plain, ~recent)
    assert earlier["calibration"].abs().max() == 0
    for name, grad in earlier_plain.items():
        torch.testing.assert_close(earlier[name], grad, rtol=0, atol=1e-12, msg=name)
    with pytest.raises(ValueError, match="rating_base_drift_calibrate needs rating_base_drift_recent"):
        SS4Rec(N_ITEMS, N_USERS, hidden=16, rating_base=str(run), rating_base_drift=3, rating_base_drift_calibrate=True)


def test_the_base_checkpoint_is_the_one_the_mf_run_names(tmp_path):
    run, _ = mf_run(tmp_path)
    first = run / "checkpoints" / "best-epoch004.ckpt"
    assert mf_checkpoint(run) == first  # the only one
    (run / "checkpoints" / "best-epoch011.ckpt").write_bytes(first.read_bytes())
    with pytest.raises(RatingBaseError, match=r"2 best checkpoints \(best-epoch004.ckpt, best-epoch011.ckpt\) and no "
                       "metrics.json naming one; pass the checkpoint file"):  # fmt: skip
        mf_checkpoint(run)
    (run / "metrics.json").write_text(json.dumps({"checkpoint": "/elsewhere/checkpoints/best-epoch004.ckpt"}))
    assert mf_checkpoint(run) == first  # by name, not by sort order
    assert mf_checkpoint(first) == first


def svdpp_run(tmp_path, store):
    """An SVD++ with random tables (non-zero biases) saved as a run folder's best checkpoint; returns (run, model)."""
    torch.manual_seed(4)
    model = SVDpp(store.n_items, store.n_users, dim=5, init_std=0.5)
    with torch.no_grad():
        model.user_bias.weight.normal_()
        model.item_bias.weight[1:].normal_()
        model.rating_head.rating_mean.fill_(3.3)
    save_run(tmp_path, model, "best-epoch007.ckpt")
    return tmp_path, model


def test_an_svdpp_base_predicts_the_svdpp_runs_ratings(tmp_path):
    """Against float64, every user and item; and the SVD++ model's own validation and test predictions."""
    store = varied_store()
    run, model = svdpp_run(tmp_path, store)
    base = FrozenMF(store.n_users, store.n_items, str(run)).double()
    with pytest.raises(RatingBaseError, match="is an SVD\\+\\+ checkpoint; filling it needs the data"):
        base.fill()
    base.fill(store)
    users, items = torch.meshgrid(torch.arange(store.n_users), torch.arange(1, store.n_items + 1), indexing="ij")
    users, items = users.reshape(-1), items.reshape(-1)
    expected = torch.tensor([svdpp_reference(model, store, int(u), int(i)) for u, i in zip(users, items)],
                            dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(base(base.user_part(users), items), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(base.out_of_fold(users, items), expected, rtol=0, atol=1e-12)  # one run: every rating
    model.eval()
    for stage in ("val", "test"):
        batch = collate.eval_batch(store, np.arange(store.n_users), stage, max_len=4)  # inputs cut, N(u) not
        every = torch.arange(store.n_users)
        targets = batch["target_items"][every, batch["lengths"] - 1]  # the held-out item of each user
        assert (targets > 0).all()
        with torch.no_grad():
            own = model.predict_rating(model.eval_queries(batch), targets)
        torch.testing.assert_close(base(base.user_part(every), targets).float(), own)


def test_the_svdpp_user_factor_does_not_depend_on_the_chunk_size(tmp_path):
    store = varied_store()
    _, model = svdpp_run(tmp_path, store)
    p, y = model.user_embedding.weight.detach().double(), model.implicit_embedding.weight.detach().double()
    whole = svdpp_user_factors(store, p, y)
    torch.testing.assert_close(svdpp_user_factors(store, p, y, chunk=4), whole, rtol=0, atol=1e-14)
    assert not torch.allclose(whole, p)  # the implicit term is there
