"""Full ranking against a plain float64 reference: ties, masking, chunking, NaN."""

import pytest
import torch

from ss4rec.evaluation import rank_targets


def reference_rank(scores: torch.Tensor, target: int, seen: list[int]) -> int:
    """Pessimistic rank among items 1..N by direct counting, in float64."""
    s = scores.double().clone()
    s[0] = float("nan")  # padding never counts
    for item in seen:
        if item != target and item != 0:
            s[item] = float("-inf")
    t = s[target]
    others = [i for i in range(1, len(s)) if i != target]
    return sum(1 for i in others if s[i] > t) + sum(1 for i in others if s[i] == t)


def random_case(batch=13, n_items=37, seed=0, levels=4):
    g = torch.Generator().manual_seed(seed)
    # few distinct values -> many ties
    scores = torch.randint(0, levels, (batch, n_items + 1), generator=g).float() / 3
    targets = torch.randint(1, n_items + 1, (batch,), generator=g)
    seen = torch.randint(0, n_items + 1, (batch, 9), generator=g)
    seen[0, 0] = targets[0]  # a target that was seen before is never masked
    return scores, targets, seen


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 37, 1000])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cache_bytes", [0, 2**28])  # scores recomputed in pass 2, or kept from pass 1
def test_ranks_match_reference(chunk_size, masked, cache_bytes):
    scores, targets, seen = random_case(seed=chunk_size)
    ranks = rank_targets(lambda ids: scores[:, ids], targets, 37, seen=seen if masked else None,
                         chunk_size=chunk_size, cache_bytes=cache_bytes)
    expected = [
        reference_rank(scores[b], int(targets[b]), seen[b].tolist() if masked else []) for b in range(len(targets))
    ]
    assert ranks.tolist() == expected


def test_all_equal_scores_get_the_worst_rank():
    n_items = 50
    scores = torch.zeros(4, n_items + 1)
    ranks = rank_targets(lambda ids: scores[:, ids], torch.tensor([1, 7, 49, 50]), n_items, chunk_size=8)
    assert ranks.tolist() == [n_items - 1] * 4


def test_padding_column_is_never_ranked():
    scores = torch.zeros(1, 6)
    scores[0, 0] = 100.0  # padding scores highest: must not count
    scores[0, 3] = 1.0
    assert rank_targets(lambda ids: scores[:, ids], torch.tensor([3]), 5).tolist() == [0]


def test_nan_scores_rank_last():
    scores = torch.randn(2, 11)
    scores[0, 4] = float("nan")
    ranks = rank_targets(lambda ids: scores[:, ids], torch.tensor([4, 2]), 10, chunk_size=3)
    assert ranks[0].item() == 9  # a NaN target gets no credit
    assert ranks[1].item() == reference_rank(scores[1], 2, [])


def test_masking_moves_the_target_up():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])
    target = torch.tensor([3])
    assert rank_targets(lambda ids: scores[:, ids], target, 4).item() == 2
    assert rank_targets(lambda ids: scores[:, ids], target, 4, seen=torch.tensor([[1, 2, 0]])).item() == 0


@pytest.mark.parametrize("cache_bytes,scored", [(2**28, 19 * 2), (0, 2 + 19 * 2)])  # 19 chunks of 2 ids (last padded)
def test_scores_are_kept_between_passes_when_they_fit(cache_bytes, scored):
    """Within the cache budget every item is scored once; beyond it pass 2 scores every chunk again."""
    scores, _, seen = random_case(seed=3)
    targets = torch.full((scores.shape[0],), 3)  # every target in one chunk (items 3..4): pass 1 scores 2 items
    calls = []

    def score(ids):
        calls.append(len(ids))
        return scores[:, ids]

    ranks = rank_targets(score, targets, 37, seen=seen, chunk_size=2, cache_bytes=cache_bytes)
    assert sum(calls) == scored
    assert ranks.tolist() == [reference_rank(scores[b], 3, seen[b].tolist()) for b in range(len(targets))]


def width_rounded(base: torch.Tensor):
    """A score function whose float32 rounding depends on how many items it scores at once (as a kernel
    chosen by shape may): ``(x + c) - c`` with ``c`` set by the width rounds x to a width-dependent grid.
    Monotone, and equal inputs stay equal within one call; base values k/3 are far apart, so only ties move."""

    def score(ids: torch.Tensor) -> torch.Tensor:
        c = torch.tensor(2.0 ** (3 + len(ids) % 5), dtype=torch.float32)
        return (base[:, ids] + c) - c

    return score


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 5, 7, 10, 36, 37, 8192])
def test_ties_are_pessimistic_and_the_same_for_any_chunk_width(chunk_size):
    """The tie rule holds when rounding depends on the chunk width (the last chunk is narrower unless padded)."""
    n_items = 37
    scores, targets, seen = random_case(n_items=n_items, seed=11)
    score = width_rounded(scores)
    assert not torch.equal(score(torch.arange(1, 37)), score(torch.arange(1, 38))[:, :36])  # width matters
    ranks = rank_targets(score, targets, n_items, chunk_size=chunk_size)
    expected = [reference_rank(scores[b], int(targets[b]), []) for b in range(len(targets))]
    assert ranks.tolist() == expected
