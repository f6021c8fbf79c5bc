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


def test_causal():
    model = SASRec(n_items=30, n_users=5, max_len=11).eval()
    batch = make_batch([9, 9])
    base = model.encode_sequence(batch)
    changed = {**batch, "items": batch["items"].clone()}
    changed["items"][:, 6:9] = torch.tensor([1, 2, 3])  # change real positions 6..8 only
    out = model.encode_sequence(changed)
    assert torch.allclose(out[:, :6], base[:, :6], atol=1e-5)  # earlier positions untouched
    assert not torch.allclose(out[:, 6:9], base[:, 6:9], atol=1e-5)


def test_padding_invariant():
    """Only the padding changes (its ids, then its width): every real position's output stays."""
    model = SASRec(n_items=30, n_users=5, max_len=16).eval()
    batch = make_batch([9, 4], max_len=11)
    real = padding_mask(batch["lengths"], 11)
    base = model.encode_sequence(batch)
    noisy = {**batch, "items": torch.where(real, batch["items"], torch.arange(11) % 30 + 1)}  # ids on padding
    assert torch.equal(noisy["items"][real], batch["items"][real]) and not torch.equal(noisy["items"], batch["items"])
    wide = {**batch, "items": torch.cat([batch["items"], torch.zeros(2, 5, dtype=torch.long)], 1)}
    for changed in (noisy, wide):
        out = model.encode_sequence(changed)
        torch.testing.assert_close(out[:, :11][real], base[real], atol=1e-5, rtol=1e-5)
