"""Objectives against direct float64 formulas, on a tiny dot-product model."""

import pytest
import torch
import torch.nn.functional as F

from ss4rec.models.base import SequentialRecommender
from ss4rec.objectives import BPR, CrossEntropy, Objective, SampledSoftmax
from ss4rec.optim import parameter_groups


class Tiny(SequentialRecommender):
    def encode_sequence(self, batch):
        return self.item_embedding(batch["items"])


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Tiny(n_items=9, n_users=3, hidden=4)
    query = torch.randn(6, 4)
    positives = torch.randint(1, 10, (6,))
    return model, query, positives


def test_cross_entropy_excludes_padding(setup):
    model, query, positives = setup
    table = model.item_embedding.weight.detach().double()
    logits = query.double() @ table[1:].T  # items 1..N only
    expected = F.cross_entropy(logits, positives - 1)
    assert CrossEntropy()(model, query, positives).item() == pytest.approx(expected.item(), rel=1e-5)


def test_bpr_matches_formula(setup):
    model, query, positives = setup
    torch.manual_seed(5)
    loss = BPR(n_negatives=3)(model, query, positives)
    torch.manual_seed(5)
    negatives = torch.randint(1, 10, (6, 3))
    table = model.item_embedding.weight.detach().double()
    q = query.double()
    pos = (q * table[positives]).sum(-1, keepdim=True)
    neg = torch.einsum("md,mkd->mk", q, table[negatives])
    expected = -F.logsigmoid(pos - neg).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_sampled_softmax_drops_accidental_hits(setup):
    model, query, positives = setup
    torch.manual_seed(11)
    loss = SampledSoftmax(n_negatives=20)(model, query, positives)  # 20 draws from 9 items: hits certain
    torch.manual_seed(11)
    negatives = torch.randint(1, 10, (6, 20))
    table = model.item_embedding.weight.detach().double()
    expected = 0.0
    for q, pos, neg in zip(query.double(), positives, negatives):
        kept = [int(n) for n in neg if int(n) != int(pos)]
        logits = torch.stack([q @ table[pos]] + [q @ table[n] for n in kept])
        expected += -torch.log_softmax(logits, 0)[0].item()
    assert (negatives == positives[:, None]).any()
    assert loss.item() == pytest.approx(expected / 6, rel=1e-5)


def test_objective_combines_parts(setup):
    model, query, positives = setup
    ratings = torch.randint(1, 6, (6,)).float()
    joint = Objective(ranking=CrossEntropy(), rating_weight=0.5)(model, query, positives, ratings)
    ce = CrossEntropy()(model, query, positives)
    mse = F.mse_loss(model.predict_rating(query, positives), ratings)
    assert joint["loss"].item() == pytest.approx((ce + 0.5 * mse).item(), rel=1e-6)
    rating_only = Objective(ranking=None, rating_weight=1.0)(model, query, positives, ratings)
    assert "ranking_loss" not in rating_only and rating_only["loss"].item() == pytest.approx(mse.item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs a ranking loss"):
        Objective(ranking=None, rating_weight=0.0)


def test_recent_targets_weigh_more_in_the_rating_loss(setup):
    """A weighted mean against float64: the targets within ``rating_recent_targets`` of their user's end weigh
    ``rating_recent_weight``; a weight of 1 is the plain mean; the places are required when they matter."""
    model, query, positives = setup
    ratings = torch.tensor([5.0, 1.0, 3.0, 4.0, 2.0, 5.0])
    from_end = torch.tensor([1, 2, 3, 7, 1, 40])
    predicted = model.predict_rating(query, positives).double()
    weights = torch.tensor([4.0, 4.0, 4.0, 1.0, 4.0, 1.0], dtype=torch.float64)  # places <= 3 weigh 4
    want = (weights * (predicted - ratings.double()) ** 2).sum() / weights.sum()
    got = Objective(rating_weight=1.0, rating_recent_targets=3, rating_recent_weight=4.0)(model, query, positives, ratings, from_end)
    assert got["rating_loss"].item() == pytest.approx(want.item(), rel=1e-6)
    plain = Objective(rating_weight=1.0)(model, query, positives, ratings)["rating_loss"]
    assert got["rating_loss"].item() != pytest.approx(plain.item(), rel=1e-3)
    unit = Objective(rating_weight=1.0, rating_recent_targets=3, rating_recent_weight=1.0)(model, query, positives, ratings)
    assert unit["rating_loss"].item() == pytest.approx(plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs each target's place from the end"):
        Objective(rating_weight=1.0, rating_recent_targets=3, rating_recent_weight=4.0)(model, query, positives, ratings)
    with pytest.raises(ValueError, match="rating_recent_weight > 0"):
        Objective(rating_weight=1.0, rating_recent_targets=3, rating_recent_weight=0.0)


def test_no_weight_decay_on_norms_biases_and_ssm_parameters():
    model = torch.nn.Module()
    model.linear = torch.nn.Linear(3, 3)
    model.norm = torch.nn.LayerNorm(3)
    model.A_log = torch.nn.Parameter(torch.zeros(3, 2))
    model.log_step = torch.nn.Parameter(torch.zeros(3))
    groups = parameter_groups(model, weight_decay=0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and decayed == {id(model.linear.weight)}
    assert len(groups[1]["params"]) == 5 and groups[1]["weight_decay"] == 0.0


def test_cross_entropy_gradient_equals_masked_full_softmax(setup):
    """Scoring ids 1..N only gives the loss and gradients of a full softmax with padding masked by -inf,
    and nothing reaches the padding row."""
    model, query, positives = setup
    model = model.double()
    query = query.detach().double().requires_grad_()
    loss = CrossEntropy()(model, query, positives)
    got = torch.autograd.grad(loss, [query, model.item_embedding.weight])
    logits = query @ model.item_embedding.weight.T
    masked = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], dim=1)
    want_loss = F.cross_entropy(masked, positives)
    want = torch.autograd.grad(want_loss, [query, model.item_embedding.weight])
    assert torch.allclose(loss, want_loss, rtol=1e-12)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(got[1][0], torch.zeros_like(got[1][0]))
