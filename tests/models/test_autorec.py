"""I-AutoRec: predictions and every gradient against a dense float64 reference, the rating matrix, the MF tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ss4rec.batch import COLUMNS, HISTORY
from ss4rec.models.autorec import IAutoRec

N_ITEMS, N_USERS, HIDDEN = 9, 7, 4


def ratings(seed: int = 0, n: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random training ratings; items 1 and N_ITEMS are never rated, some pairs repeat."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, N_USERS, n), rng.integers(2, N_ITEMS, n), rng.integers(1, 6, n).astype(np.float64)


def make(seed: int = 0, **kwargs) -> IAutoRec:
    torch.manual_seed(seed)
    model = IAutoRec(N_ITEMS, N_USERS, hidden=HIDDEN, **kwargs).double()
    with torch.no_grad():
        model.encoder.weight.mul_(3.0)  # codes away from 0.5, so every weight matters
        model.rating_head.rating_mean.fill_(3.3)
    model.set_rating_matrix(*ratings(seed))
    return model


def dense_matrix(users, items, values) -> torch.Tensor:
    """(N + 1, U) float64, the later rating of a repeated pair."""
    matrix = torch.zeros(N_ITEMS + 1, N_USERS, dtype=torch.float64)
    for user, item, value in zip(users, items, values):
        matrix[item, user] = value
    return matrix


def reference(model: IAutoRec, matrix: torch.Tensor, weights: dict | None = None) -> torch.Tensor:
    """r_hat (U, N + 1) = W sigmoid(V r_i + b) + c, the training mean for items without a rating."""
    w = weights or {name: p.detach().double() for name, p in model.named_parameters()}
    codes = torch.sigmoid(matrix @ w["encoder.weight"].T + w["encoder.bias"])  # (N + 1, H)
    out = w["decoder.weight"] @ codes.T + w["decoder.bias"][:, None]  # (U, N + 1)
    rated = (matrix != 0).any(1)
    return torch.where(rated[None, :], out, torch.full_like(out, 3.3))


def every_pair(model: IAutoRec) -> torch.Tensor:
    users = torch.arange(N_USERS).repeat_interleave(N_ITEMS + 1)
    items = torch.arange(N_ITEMS + 1).repeat(N_USERS)
    return model.predict_rating(model.user_query(users), items).view(N_USERS, N_ITEMS + 1)


def test_format_and_flags():
    model = make()
    assert model.train_format == HISTORY and model.supports_rating and not model.supports_ranking
    assert model.n_ratings == len({(u, i) for u, i, _ in zip(*ratings())})  # a repeated pair counts once
    with pytest.raises(NotImplementedError, match="ratings only"):
        model.score(model.user_query(torch.tensor([0])))


def test_predictions_match_the_dense_reference_with_repeats_and_unrated_items():
    model = make()
    expected = reference(model, dense_matrix(*ratings()))
    assert torch.allclose(every_pair(model), expected, atol=1e-12)
    assert torch.equal(every_pair(model)[:, [0, 1, N_ITEMS]], torch.full((N_USERS, 3), 3.3, dtype=torch.float64))


def test_every_gradient_matches_the_dense_reference():
    """The batch's squared errors plus the L2 term: gradients of V, b, W and c against autograd through the
    dense float64 reference (the sparse product and the gather must route each one to the right weight)."""
    model = make(l2=50.0)
    users, items, values = ratings()
    picked = torch.tensor([0, 3, 4, 11, 17, 29])
    u, i, r = (torch.from_numpy(np.asarray(a)[picked.numpy()]) for a in (users, items, values))
    predicted = model.predict_rating(model.user_query(u), i)
    model.train()
    loss = (predicted - r).pow(2).mean() + model.extra_loss({})
    loss.backward()
    weights = {name: p.detach().double().clone().requires_grad_(True) for name, p in model.named_parameters()}
    out = reference(model, dense_matrix(users, items, values), weights)[u, i]
    penalty = weights["encoder.weight"].pow(2).sum() + weights["decoder.weight"].pow(2).sum()
    ((out - r).pow(2).mean() + 50.0 / 2 * penalty / model.n_ratings).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.allclose(p.grad, weights[name].grad, atol=1e-12), name


def test_no_penalty_in_evaluation_or_at_zero():
    model = make(l2=10.0)
    model.eval()
    assert model.extra_loss({}) is None
    assert make(l2=0.0).train().extra_loss({}) is None


def test_training_examples_are_the_batch_ratings_outside_the_held_out_fold():
    model = make()
    history = torch.tensor([[3, 5, 2], [4, 0, 0]])
    batch = {"users": torch.tensor([2, 6]), "history": history, "history_ratings": torch.tensor([[1.0, 4, 5], [2, 0, 0]]),
             "history_targets": torch.tensor([[True, False, True], [True, False, False]])}  # fmt: skip
    query, items, targets = model.train_queries(batch)
    assert items.tolist() == [3, 2, 4] and targets.tolist() == [1.0, 5.0, 2.0]
    assert torch.equal(query, model.user_query(torch.tensor([2, 2, 6])))


def test_item_batches_train_on_columns_and_fit_each_rating_with_its_users_query():
    """``batches: items`` reads ``columns`` batches (the keys of pairs batches): every rating is one example with its
    user's query, and the predictions and loss are those of the same ratings in a ``history`` batch."""
    assert IAutoRec.layout({}) == IAutoRec.layout({"batches": "users"}) == HISTORY
    assert IAutoRec.layout({"batches": "items"}) == COLUMNS
    model = make(batches="items")
    assert model.train_format == COLUMNS and make().train_format == HISTORY
    batch = {"users": torch.tensor([2, 6, 0, 2]), "items": torch.tensor([3, 3, 5, 5]),
             "ratings": torch.tensor([1.0, 2, 4, 5]), "times": torch.zeros(4, dtype=torch.long)}  # fmt: skip
    query, items, targets = model.train_queries(batch)
    assert items.tolist() == [3, 3, 5, 5] and targets.tolist() == [1.0, 2.0, 4.0, 5.0]
    assert torch.equal(query, model.user_query(torch.tensor([2, 6, 0, 2])))
    history = {"users": torch.tensor([0, 2, 6]), "history": torch.tensor([[5, 0], [3, 5], [3, 0]]),
               "history_ratings": torch.tensor([[4.0, 0], [1, 5], [2, 0]])}  # fmt: skip
    by_user = dict(zip(zip(*(t.tolist() for t in model.train_queries(history)[1:])),
                       model.predict_rating(*model.train_queries(history)[:2]).tolist()))  # fmt: skip
    by_item = dict(zip(zip(items.tolist(), targets.tolist()), model.predict_rating(query, items).tolist()))
    assert by_item == pytest.approx(by_user, abs=0) and len(by_item) == 4


def test_unknown_batches_are_refused_by_name():
    with pytest.raises(ValueError, match="batches must be one of users, items, got 'columns'"):
        IAutoRec.layout({"batches": "columns"})
    with pytest.raises(ValueError, match="batches must be one of users, items"):
        IAutoRec(N_ITEMS, N_USERS, hidden=HIDDEN, batches="rows")


def test_an_empty_matrix_is_refused_in_training():
    model = IAutoRec(N_ITEMS, N_USERS, hidden=HIDDEN)
    with pytest.raises(RuntimeError, match="set_rating_matrix"):
        model.train_queries({"users": torch.tensor([0]), "history": torch.tensor([[1]]), "history_ratings": torch.tensor([[3.0]])})


@pytest.mark.parametrize(("args", "match"), [
    (([0, 1], [2], [3.0]), "three equal 1-d arrays"),
    (([], [], []), "three equal 1-d arrays"),
    (([N_USERS], [2], [3.0]), "users must lie in"),
    (([0], [0], [3.0]), "items in \\[1"),
    (([0], [N_ITEMS + 1], [3.0]), "items in \\[1"),
])  # fmt: skip
def test_bad_rating_matrices_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        IAutoRec(N_ITEMS, N_USERS, hidden=HIDDEN).set_rating_matrix(*(np.asarray(a) for a in args))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="hidden >= 1 and l2 >= 0"):
        IAutoRec(N_ITEMS, N_USERS, hidden=0)
    with pytest.raises(ValueError, match="hidden >= 1 and l2 >= 0"):
        IAutoRec(N_ITEMS, N_USERS, l2=-1.0)


def test_a_state_dict_restores_the_matrix_into_an_empty_model():
    model = make()
    fresh = IAutoRec(N_ITEMS, N_USERS, hidden=HIDDEN).double()
    fresh.load_state_dict(model.state_dict())
    assert fresh.n_ratings == model.n_ratings
    assert torch.equal(every_pair(fresh), every_pair(model))


def test_the_mf_tables_predict_what_the_model_predicts():
    """``mean + b_u + b_i + p_u . q_i`` from ``mf_tables`` (what a rating base reads), unrated items included."""
    model = make()
    t = model.mf_tables()
    mf = t["mean"] + t["user_bias"][:, None] + t["item_bias"][None, :] + t["user_factors"] @ t["item_factors"].T
    assert mf.shape == (N_USERS, N_ITEMS + 1)
    assert torch.allclose(mf, every_pair(model), atol=1e-12)
