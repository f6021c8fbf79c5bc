"""SASRec: shapes, causality, padding invariance."""

import torch

from ss4rec.batch import padding_mask
from ss4rec.models.sasrec import SASRec


def make_batch(lengths, max_len=11, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = padding_mask(lengths, max_len)
    items = torch.randint(1, n_items + 1, (len(lengths), max_len), generator=g) * mask
    return {"items": items, "lengths": lengths, "target_items": items.roll(-1, 1) * mask}


def test_shapes_and_scoring():
    model = SASRec(n_items=30, n_users=5, max_len=11).eval()
    batch = make_batch([11, 3, 7])
    hidden = model.encode_sequence(batch)
    assert hidden.shape == (3, 11, 64)
    query = model.eval_queries(batch)
    assert query.shape == (3, 64)
    assert model.score(query).shape == (3, 31)
    ids = torch.tensor([4, 9])
    assert torch.allclose(model.score(query, ids), model.score(query)[:, ids], atol=1e-6)
    assert model.predict_rating(query, torch.tensor([1, 2, 3])).shape == (3,)


def test_causal_and_padding_invariant():
    model = SASRec(n_items=30, n_users=5, max_len=11).eval()
    batch = make_batch([9, 9])
    base = model.encode_sequence(batch)
    changed = {**batch, "items": batch["items"].clone()}
    changed["items"][:, 6:9] = torch.tensor([1, 2, 3])  # change positions 6..8 (and padding 9..10)
    changed["items"][:, 9:] = 5
    out = model.encode_sequence(changed)
    assert torch.allclose(out[:, :6], base[:, :6], atol=1e-5)  # earlier positions untouched
    assert not torch.allclose(out[:, 6:9], base[:, 6:9], atol=1e-5)
