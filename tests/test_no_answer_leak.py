"""Evaluation cannot read the answer: evaluation batches carry the held-out item and rating
(``target_items`` / ``target_ratings``), and no model's queries, scores or rating predictions may depend
on them. (``target_times`` stays: the target's time is known by design, SS4Rec's ``target_time=known``.)
A model made to cheat (reading ``target_ratings`` to get RMSE 0) is caught by the same check."""

from __future__ import annotations

import hydra
import pytest
import torch

from batches import N_ITEMS, sequence_batch
from cheats import ReadsTheItem, ReadsTheRating
from composing import compose_train, config_names
from ss4rec.batch import eval_targets

N_USERS = 4
LENGTHS = [5, 3, 1, 6]


def eval_batch() -> dict[str, torch.Tensor]:
    batch = sequence_batch(LENGTHS, max_len=6, seed=1)
    batch["train_lengths"] = batch["lengths"] - 1  # the last seen item is the validation one (test split)
    return batch


def altered(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every real target item and rating replaced by another one (the held-out ones included)."""
    out = {k: v.clone() for k, v in batch.items()}
    real = out["target_items"] > 0
    out["target_items"] = torch.where(real, out["target_items"] % N_ITEMS + 1, 0)  # a different item
    out["target_ratings"] = torch.where(real, 6.0 - out["target_ratings"] + 0.5, 0.0)  # a different rating
    assert not torch.equal(eval_targets(out)[0], eval_targets(batch)[0])
    assert not torch.equal(eval_targets(out)[2], eval_targets(batch)[2])
    return out


def assert_cannot_read_the_answer(model: torch.nn.Module) -> None:
    batch = eval_batch()
    targets = eval_targets(batch)[0]
    with torch.no_grad():
        query, query_altered = model.eval_queries(batch), model.eval_queries(altered(batch))
        assert torch.equal(query, query_altered), "eval_queries read target_items/target_ratings"
        if model.supports_ranking:
            assert torch.equal(model.score(query), model.score(query_altered)), "scores changed"
        if model.supports_rating:
            rated = model.predict_rating(query, targets), model.predict_rating(query_altered, targets)
            assert torch.equal(*rated), "predicted ratings changed"


def build(name: str) -> torch.nn.Module:
    cfg = compose_train([f"model={name}"])
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model, n_items=N_ITEMS, n_users=N_USERS)
    with torch.no_grad():  # off the initial values (zero-initialised parts, popularity's empty counts)
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.rand_like(tensor))
    return model.eval()


@pytest.mark.parametrize("name", config_names("model"))
def test_evaluation_cannot_read_the_answer(name):
    assert_cannot_read_the_answer(build(name))


@pytest.mark.parametrize("cheat", [ReadsTheRating, ReadsTheItem])
def test_a_model_that_reads_the_answer_is_caught(cheat):
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="eval_queries read"):
        assert_cannot_read_the_answer(cheat(n_items=N_ITEMS, n_users=N_USERS, hidden=8, max_len=6).eval())
