"""``rate_every_item``: every item id's predicted rating for a batch of queries at once (what the batch export
ranks rating models by), against ``predict_rating`` pair by pair, float64: the default (items a chunk at a time)
and a sequence model on each kind of rating base (``FrozenMF.every_item``: matrix products)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rating_fixtures import base_runs, random_svdpp, timed_store, varied_store
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.svdpp import SVDpp

DAY = 86_400


def pairwise(model, query: torch.Tensor) -> torch.Tensor:
    """(B, N + 1): ``predict_rating`` of every item id, one query at a time."""
    ids = torch.arange(model.n_items + 1)
    with torch.no_grad():
        return torch.stack([model.predict_rating(q.expand(len(ids), -1), ids) for q in query])


@pytest.mark.parametrize("kind", ["svdpp", "cross_fitted", "heldout", "timesvdpp"])
def test_a_sequence_model_on_a_rating_base_rates_every_item_as_pair_by_pair(tmp_path, kind):
    """The base's part by matrix products plus the head's correction and the item rating bias, each non-zero,
    chunks of 7 pairs (uneven); timeSVD++ at times before, inside and years after its training period."""
    store = timed_store() if kind == "timesvdpp" else varied_store()
    base, heldout = base_runs(kind, tmp_path, store)
    torch.manual_seed(1)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_item_bias=True, rating_base=base, rating_base_heldout=heldout)  # fmt: skip
    model.rating_base.fill(store)
    with torch.no_grad():
        for parameter in (model.rating_head.mlp[-1].weight, model.rating_head.mlp[-1].bias, model.item_rating_bias.weight):
            parameter.normal_()
    model = model.double().eval()
    users = torch.arange(store.n_users)
    times = None
    if kind == "timesvdpp":
        train = np.asarray(store.times)[store.train_rows()]
        moments = torch.tensor([int(train.min()) - 3 * DAY, int(train.min()), int(train.max()) + 9 * 365 * DAY])
        times = moments[users % 3]
    query = model.with_user(torch.randn(store.n_users, 8, dtype=torch.float64), users, times=times)
    with torch.no_grad():
        every = model.rate_every_item(query, pairs=7)
    expected = pairwise(model, query)
    assert every.shape == (store.n_users, store.n_items + 1)
    torch.testing.assert_close(every, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("drift", [{"rating_base_drift": 2},
                                   {"rating_base_drift": 2, "rating_base_drift_recent": 3},
                                   {"rating_base_drift": 2, "rating_base_drift_recent": 3, "rating_base_drift_calibrate": True}])
def test_the_drift_terms_and_the_stage_in_the_run_apply_to_every_item(tmp_path, drift):
    """SS4Rec's drift columns (drift; recent) sit between the hidden state and the base's user part: every item's
    rating carries each row's drift terms and, for recent rows, the stage, as pair by pair (weights non-zero)."""
    store = varied_store()
    base, _ = base_runs("cross_fitted", tmp_path, store)
    torch.manual_seed(3)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=base, **drift)  # fmt: skip
    model.rating_base.fill(store)
    with torch.no_grad():
        for parameter in model.rating_head.mlp[-1].parameters():  # the head's output layer (zero at the start)
            parameter.normal_()
        for name, parameter in model.named_parameters():
            if name.startswith(("drift_weight", "calibration")):
                parameter.normal_()
    model = model.double().eval()
    users = torch.arange(store.n_users)
    columns = [torch.randn(store.n_users, 1, dtype=torch.float64)]  # each user's drift
    if "rating_base_drift_recent" in drift:
        columns.append((users % 2).double()[:, None])  # recent rows and earlier ones
    user_part = model.with_user(torch.zeros(store.n_users, 8, dtype=torch.float64), users)[:, 8:]
    query = torch.cat([torch.randn(store.n_users, 8, dtype=torch.float64), *columns, user_part], dim=1)
    with torch.no_grad():
        every = model.rate_every_item(query, pairs=7)
        without = model.rate_every_item(torch.cat([query[:, :8], torch.zeros_like(query[:, 8:9]), query[:, 9:]], 1))
    torch.testing.assert_close(every, pairwise(model, query), rtol=0, atol=1e-10)
    assert not torch.allclose(every, without)  # the drift moves the ratings


@pytest.mark.parametrize("pairs", [1, 5, 10**6])
def test_the_default_rates_every_item_a_chunk_at_a_time(pairs):
    """A model without its own way (SVD++; SS4Rec without a base): chunks of any size, one pair to all."""
    store = varied_store()
    torch.manual_seed(2)
    for model in (random_svdpp(store, 3).double().eval(),
                  SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True).double().eval()):
        query = torch.randn(4, 4 if isinstance(model, SVDpp) else 8, dtype=torch.float64)
        if isinstance(model, SVDpp):  # a query is [z_u, b_u]: the user factor and bias
            query = torch.cat([query, torch.randn(4, 1, dtype=torch.float64)], dim=1)
        with torch.no_grad():
            every = model.rate_every_item(query, pairs=pairs)
        torch.testing.assert_close(every, pairwise(model, query), rtol=0, atol=1e-12)
