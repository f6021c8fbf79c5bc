"""Full-ranking evaluation, exactly as ../shared/PROTOCOL.md fixes it.

Every item (padding excluded) is scored for each held-out target. The target's rank is the number of
items scoring strictly higher plus the number of *other* items tying with it (pessimistic: a model that
scores everything equal gets rank N - 1). Seen items may be masked (off by default, RecBole's behaviour
for sequential models); the target itself is never masked. Items are scored in chunks so a 60k-item
catalogue fits in memory; the target's score is read from the same chunked computation that is compared
against, so ties are decided on bit-identical numbers. Every call scores the same number of ids (the last
chunk is padded with the padding id 0, whose scores are dropped), so a score whose rounding depends on how
many items are scored at once (a kernel chosen by shape) rounds every item alike, and ties across chunks
stay ties.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # item ids (K,) -> scores (B, K)


def _chunks(n_items: int, chunk_size: int) -> list[tuple[int, int]]:
    """Item-id ranges [start, end) covering 1..n_items (0 is padding)."""
    return [(s, min(s + chunk_size, n_items + 1)) for s in range(1, n_items + 1, chunk_size)]


def _seen_mask(seen: torch.Tensor, targets: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(B, end - start) True where the item was seen before the target (never the target itself)."""
    mask = torch.zeros(seen.shape[0], end - start, dtype=torch.bool, device=seen.device)
    inside = (seen >= start) & (seen < end) & (seen != targets[:, None])  # (B, S)
    rows = torch.arange(seen.shape[0], device=seen.device)[:, None].expand_as(seen)
    mask[rows[inside], seen[inside] - start] = True
    return mask


def _clean(scores: torch.Tensor) -> torch.Tensor:
    # NaN never wins: a NaN score is treated as the worst possible score
    return torch.nan_to_num(scores.float(), nan=float("-inf"))


def rank_targets(
    score_fn: ScoreFn,
    targets: torch.Tensor,
    n_items: int,
    seen: torch.Tensor | None = None,
    chunk_size: int = 8192,
) -> torch.Tensor:
    """Pessimistic 0-based rank of each target among all items, (B,) long.

    ``score_fn(ids)`` returns the batch's scores for item ids ``ids`` (K,) as (B, K). ``targets`` (B,) in
    1..n_items. ``seen`` (B, S) item ids to mask (0 = padding), or None for no masking.
    """
    chunks = _chunks(n_items, chunk_size)
    device = targets.device
    width = chunks[0][1] - chunks[0][0]  # ids per score_fn call, the last chunk padded up to it
    cached: dict[int, torch.Tensor] = {}

    def chunk_scores(i: int) -> torch.Tensor:
        if i in cached:
            return cached[i]
        start, end = chunks[i]
        ids = torch.zeros(width, dtype=torch.long, device=device)  # (width,), 0 = padding after the chunk
        ids[: end - start] = torch.arange(start, end, device=device)
        scores = _clean(score_fn(ids)[:, : end - start])
        if seen is not None:
            scores = scores.masked_fill(_seen_mask(seen, targets, start, end), float("-inf"))
        if len(chunks) == 1:
            cached[i] = scores  # one chunk: score once, use twice
        return scores

    # pass 1: the target's own score, read from its chunk
    target_score = torch.empty(targets.shape[0], device=device)
    for i, (start, end) in enumerate(chunks):
        inside = (targets >= start) & (targets < end)
        if inside.any():
            target_score[inside] = chunk_scores(i)[inside, targets[inside] - start]
    # pass 2: count items above and tying with it
    rank = torch.zeros(targets.shape[0], dtype=torch.long, device=device)
    for i in range(len(chunks)):
        scores = chunk_scores(i)
        higher = scores > target_score[:, None]
        tied = scores == target_score[:, None]
        rank += higher.sum(1) + tied.sum(1)
    return rank - 1  # the target ties with itself once


def ranking_metrics_from_ranks(ranks: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-user HR@k, NDCG@k and MRR@k from 0-based ranks, each (B,) float64."""
    hit = (ranks < k).double()
    r = ranks.double()
    return {
        f"hr@{k}": hit,
        f"ndcg@{k}": hit / torch.log2(r + 2.0),
        f"mrr@{k}": hit / (r + 1.0),
    }
