"""SS4Rec with ``rating_base_residuals`` stepped one event at a time: each input adds the rating's error under the
user's base factors, so a step needs the event's user index. Against the full forward, float64, on every user of
small rating data at once (rows of different lengths, right-padded), for each kind of base."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rating_fixtures import base_runs, timed_store, varied_store
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.models.stepping import event_at, step_through


def every_user(store) -> dict[str, torch.Tensor]:
    """Each user's whole history as one right-padded evaluation batch (the last event's time is the last target time)."""
    lengths = np.diff(np.asarray(store.offsets))
    width = int(lengths.max())
    batch = {key: np.zeros((store.n_users, width), dtype=dtype)
             for key, dtype in (("items", np.int64), ("times", np.int64), ("ratings", np.float64), ("target_times", np.int64))}  # fmt: skip
    for user in range(store.n_users):
        rows = slice(int(store.offsets[user]), int(store.offsets[user + 1]))
        n = int(lengths[user])
        batch["items"][user, :n] = store.items[rows]
        batch["times"][user, :n] = store.times[rows]
        batch["ratings"][user, :n] = store.ratings[rows]
        batch["target_times"][user, : n - 1] = store.times[rows][1:]
        batch["target_times"][user, n - 1] = int(store.times[rows][-1]) + 3_600
    out = {key: torch.from_numpy(value) for key, value in batch.items()}
    return out | {"users": torch.arange(store.n_users), "lengths": torch.from_numpy(lengths.astype(np.int64))}


def residual_model(kind: str, root, **options) -> tuple[SS4Rec, dict]:
    store = timed_store() if kind == "timesvdpp" else varied_store()
    base, heldout = base_runs(kind, root, store)
    torch.manual_seed(4)
    model = SS4Rec(store.n_items, store.n_users, hidden=8, d_state=4, mamba_d_state=4, use_ratings=True,
                   rating_base=base, rating_base_heldout=heldout, rating_base_residuals=True, **options)  # fmt: skip
    model.rating_base.fill(store)
    with torch.no_grad():  # zero at the start, which a step that ignored the errors would match
        model.residual_input.normal_()
        for parameter in model.rating_head.mlp[-1].parameters():  # the head's output layer
            parameter.normal_()
        for name, parameter in model.named_parameters():
            if name.startswith("drift_weight"):
                parameter.normal_()
    return model.double().eval(), every_user(store)


@pytest.mark.parametrize("kind", ["svdpp", "heldout", "timesvdpp"])
def test_a_residual_step_equals_the_full_forward_and_its_query_the_evaluation_query(tmp_path, kind):
    model, batch = residual_model(kind, tmp_path, rating_base_drift=2, rating_base_drift_recent=1)
    assert model.frozen_step() == model.step  # the fused step does not read base errors
    full = model.encode_sequence(batch)
    stepped, _ = step_through(model, batch)
    real = torch.arange(full.shape[1])[None] < batch["lengths"][:, None]
    torch.testing.assert_close(stepped[real], full[real], rtol=0, atol=1e-10)
    last = stepped[torch.arange(len(stepped)), batch["lengths"] - 1]
    query = model.last_queries(last, batch)
    torch.testing.assert_close(query, model.eval_queries(batch), rtol=0, atol=1e-10)
    items = batch["items"][:, 0]
    torch.testing.assert_close(model.predict_rating(query, items), model.predict_rating(model.eval_queries(batch), items),
                               rtol=0, atol=1e-10)  # fmt: skip
    without = model.encode_sequence(batch | {"ratings": torch.zeros_like(batch["ratings"])})
    assert not torch.allclose(full[real], without[real])  # the ratings' errors move the states


def test_a_residual_step_without_the_user_index_says_what_it_needs(tmp_path):
    model, batch = residual_model("svdpp", tmp_path)
    event = event_at(batch, 0)
    del event["users"]
    with pytest.raises(ValueError, match=r"event\['users'\]"):
        model.step(model.allocate_state(len(batch["users"]), torch.float64), event)
