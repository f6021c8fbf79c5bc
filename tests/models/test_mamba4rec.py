"""Mamba4Rec: shapes, causality, padding, gradients, learning a deterministic next-item rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ss4rec.batch import SEQUENCE, gather_last
from ss4rec.models.mamba4rec import Mamba4Rec

N_ITEMS = 23


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and spinning OpenMP threads crawl on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sequence_batch(lengths: list[int], max_len: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A right-padded training/evaluation ``sequence`` batch (see ss4rec.batch) with random items."""
    g = torch.Generator().manual_seed(seed)
    b, width = len(lengths), max_len or max(lengths)
    full = torch.randint(1, N_ITEMS + 1, (b, width + 1), generator=g)
    times = torch.cumsum(torch.randint(0, 3, (b, width + 1), generator=g) * 1000, dim=1)  # zero gaps included
    ratings = torch.randint(1, 6, (b, width + 1), generator=g).float()
    real = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    zero = torch.zeros((), dtype=torch.long)
    return {
        "users": torch.arange(b),
        "items": torch.where(real, full[:, :-1], zero),
        "times": torch.where(real, times[:, :-1], zero),
        "ratings": torch.where(real, ratings[:, :-1], 0.0),
        "lengths": torch.tensor(lengths),
        "target_items": torch.where(real, full[:, 1:], zero),
        "target_times": torch.where(real, times[:, 1:], zero),
        "target_ratings": torch.where(real, ratings[:, 1:], 0.0),
        "seen": torch.where(real, full[:, :-1], zero),
    }


def make(**kwargs) -> Mamba4Rec:
    torch.manual_seed(0)
    kwargs = {"d_state": 4, "init": "mamba"} | kwargs  # mamba init: livelier dt, outputs depend on the past
    return Mamba4Rec(N_ITEMS, 4, hidden=8, **kwargs).eval()


def test_format_and_shapes():
    model = make(n_layers=2)
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


def test_causal_and_padding_free():
    model = make(n_layers=2)
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


def test_gradients_reach_every_parameter():
    model = make(init="official").train()
    query, items, ratings = model.train_queries(sequence_batch([6, 2, 5]))
    logits = model.score(query)
    logits[:, 0] = float("-inf")
    loss = F.cross_entropy(logits, items) + F.mse_loss(model.predict_rating(query, items), ratings)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_no_time_input():
    model = make()
    batch = sequence_batch([6, 3])
    shifted = dict(batch, times=batch["times"] * 7 + 5, target_times=batch["target_times"] * 3)
    torch.testing.assert_close(model.encode_sequence(shifted), model.encode_sequence(batch))


def test_official_residual_and_init():
    one, two = make(n_layers=1, init="official"), make(n_layers=2, init="official")
    assert not one.layers[0].residual and all(layer.residual for layer in two.layers)
    assert make(n_layers=1, single_layer_residual=True).layers[0].residual
    # RecBole's init reaches inside the Mamba block (dt bias zeroed); the mamba init keeps its dt range
    assert torch.count_nonzero(one.layers[0].mamba.dt_proj.bias) == 0
    dt = torch.nn.functional.softplus(make(n_layers=1).layers[0].mamba.dt_proj.bias)
    assert 1e-3 <= dt.min() and dt.max() <= 0.1 + 1e-6
    batch = sequence_batch([5, 2])
    residual = make(n_layers=1, init="official", single_layer_residual=True)
    residual.load_state_dict(one.state_dict())  # same weights, only the add differs
    assert not torch.allclose(residual.encode_sequence(batch), one.encode_sequence(batch))


def test_learns_next_item_rule():
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
    model = Mamba4Rec(N_ITEMS, 1, hidden=16, d_state=8, dropout=0.0)
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
