"""Contract of the sequential baselines (GRU4Rec, Mamba4Rec, SASRec): shapes, causality, padding, gradients,
learning a deterministic next-item rule. Model-specific behaviour is tested in each model's own file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from batches import N_ITEMS, sequence_batch
from ss4rec.batch import SEQUENCE, gather_last
from ss4rec.models.gru4rec import GRU4Rec
from ss4rec.models.mamba4rec import Mamba4Rec
from ss4rec.models.sasrec import SASRec

#: small models; mamba init keeps a lively dt so outputs depend on the past
BUILD = {
    "gru4rec": lambda **kw: GRU4Rec(N_ITEMS, 4, hidden=8, **({"gru_hidden": 12} | kw)),
    "mamba4rec": lambda **kw: Mamba4Rec(N_ITEMS, 4, hidden=8, **({"d_state": 4, "init": "mamba"} | kw)),
    "sasrec": lambda **kw: SASRec(N_ITEMS, 4, hidden=8, n_heads=2, inner=16, max_len=16, **kw),
}
#: settings whose every parameter receives gradient (official init zeroes Mamba's dt bias on purpose)
TRAINABLE = {"gru4rec": {}, "mamba4rec": {"init": "official"}, "sasrec": {}}
LEARNER = {
    "gru4rec": lambda: GRU4Rec(N_ITEMS, 1, hidden=16, dropout=0.0),
    "mamba4rec": lambda: Mamba4Rec(N_ITEMS, 1, hidden=16, d_state=8, dropout=0.0),
    "sasrec": lambda: SASRec(N_ITEMS, 1, hidden=16, n_layers=1, inner=32, dropout=0.0, attention_dropout=0.0,
                             max_len=8),
}


@pytest.fixture(params=sorted(BUILD))
def name(request):
    return request.param


def make(name: str, **kwargs):
    torch.manual_seed(0)
    return BUILD[name](**kwargs).eval()


def test_format_and_shapes(name):
    model = make(name, n_layers=2)
    assert model.train_format == SEQUENCE
    batch = sequence_batch([5, 1, 3])
    query, items, ratings = model.train_queries(batch)
    assert query.shape == (9, 8) and items.shape == (9,) and ratings.shape == (9,)
    eval_query = model.eval_queries(batch)
    torch.testing.assert_close(eval_query, gather_last(model.encode_sequence(batch), batch["lengths"]))
    full = model.score(eval_query)
    assert full.shape == (3, N_ITEMS + 1)
    ids = torch.tensor([4, 1, 23])
    torch.testing.assert_close(model.score(eval_query, ids), full[:, ids])
    per_query = torch.randint(1, N_ITEMS + 1, (3, 5))
    torch.testing.assert_close(model.score(eval_query, per_query), full.gather(1, per_query))
    assert model.predict_rating(eval_query, ids).shape == (3,)


def test_causal_and_padding_free(name):
    model = make(name, n_layers=2)
    batch = sequence_batch([7, 4], max_len=9)
    hidden = model.encode_sequence(batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["items"][:, 4:7] = torch.tensor([1, 2, 3])  # change the future after position 3
    hidden_changed = model.encode_sequence(changed)
    torch.testing.assert_close(hidden_changed[:, :4], hidden[:, :4])
    assert not torch.allclose(hidden_changed[0, 4:7], hidden[0, 4:7])
    # more right padding changes nothing at real positions
    padded = {
        k: torch.cat([v, torch.zeros_like(v[:, :5])], 1) if v.dim() == 2 else v for k, v in batch.items()
    }
    torch.testing.assert_close(model.encode_sequence(padded)[0, :7], hidden[0, :7])
    torch.testing.assert_close(model.encode_sequence(padded)[1, :4], hidden[1, :4])


def test_gradients_reach_every_parameter(name):
    model = make(name, **TRAINABLE[name]).train()
    query, items, ratings = model.train_queries(sequence_batch([6, 2, 5]))
    logits = model.score(query)
    logits[:, 0] = float("-inf")
    loss = F.cross_entropy(logits, items) + F.mse_loss(model.predict_rating(query, items), ratings)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_learns_next_item_rule(name):
    # the next item is always (item mod N) + 1: a model with memory of one step learns it quickly
    torch.manual_seed(0)
    start = torch.randint(1, N_ITEMS + 1, (16, 1))
    chain = (start - 1 + torch.arange(9)[None, :]) % N_ITEMS + 1  # (16, 9)
    batch = {
        "items": chain[:, :-1],
        "target_items": chain[:, 1:],
        "target_ratings": torch.ones(16, 8),
        "lengths": torch.full((16,), 8),
    }
    torch.manual_seed(0)
    model = LEARNER[name]()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(50):
        query, items, _ = model.train_queries(batch)
        logits = model.score(query)
        logits[:, 0] = float("-inf")
        loss = F.cross_entropy(logits, items)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
