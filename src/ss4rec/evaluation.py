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

Cost and memory per batch of B users (ML-25M: 59,047 items, 162,541 users, so about 1e10 scores per pass):
pass 1 finds each target's score, pass 2 counts the items scoring at least as high (one ``>=``, the same
count as "higher + other ties + itself"). When the batch's scores fit ``cache_bytes`` (B x N x 4 bytes,
256 MiB by default: 1,136 users at 59k items) pass 1 keeps them and pass 2 reads them back, so every item is
scored once; otherwise pass 2 scores every chunk again (twice the matmuls, memory bounded by one chunk).
Peak memory: min(B x N x 4, cache_bytes) + B x chunk_size x 5 bytes (a chunk's scores and its mask).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # item ids (K,) -> scores (B, K)


def _chunks(n_items: int, chunk_size: int) -> list[tuple[int, int]]:
    """Item-id ranges [start, end) covering 1..n_items (0 is padding)."""
    return [(s, min(s + chunk_size, n_items + 1)) for s in range(1, n_items + 1, chunk_size)]


def _mask_seen_(scores: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor, start: int) -> torch.Tensor:
    """Set to -inf, in place, the scores (B, end - start) of items seen before the target (never the target)."""
    inside = (seen >= start) & (seen < start + scores.shape[1]) & (seen != targets[:, None])  # (B, S)
    rows = torch.arange(seen.shape[0], device=seen.device)[:, None].expand_as(seen)
    scores[rows[inside], seen[inside] - start] = float("-inf")
    return scores


def _clean(scores: torch.Tensor) -> torch.Tensor:
    # NaN never wins: a NaN score is treated as the worst possible score (a new tensor: masked in place later)
    return torch.nan_to_num(scores.float(), nan=float("-inf"))


def rank_targets(
    score_fn: ScoreFn,
    targets: torch.Tensor,
    n_items: int,
    seen: torch.Tensor | None = None,
    chunk_size: int = 8192,
    cache_bytes: int = 2**28,
) -> torch.Tensor:
    """Pessimistic 0-based rank of each target among all items, (B,) long.

    ``score_fn(ids)`` returns the batch's scores for item ids ``ids`` (K,) as (B, K). ``targets`` (B,) in
    1..n_items. ``seen`` (B, S) item ids to mask (0 = padding), or None for no masking. Scores are kept
    between the two passes when B x n_items float32 fit ``cache_bytes`` (see the module docstring).
    """
    chunks = _chunks(n_items, chunk_size)
    device = targets.device
    keep = len(chunks) == 1 or targets.shape[0] * n_items * 4 <= cache_bytes  # score once, read twice
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
            _mask_seen_(scores, seen, targets, start)  # scores is _clean's own copy
        if keep:
            cached[i] = scores
        return scores

    # pass 1: the target's own score, read from its chunk
    target_score = torch.empty(targets.shape[0], device=device)
    for i, (start, end) in enumerate(chunks):
        inside = (targets >= start) & (targets < end)
        if inside.any():
            target_score[inside] = chunk_scores(i)[inside, targets[inside] - start]
    # pass 2: count the items scoring at least as high (higher + tying, the target itself included)
    rank = torch.zeros(targets.shape[0], dtype=torch.long, device=device)
    for i in range(len(chunks)):
        at_least = torch.ge(chunk_scores(i), target_score[:, None])  # (B, chunk)
        # summed as bytes into int32: about twice as fast as a bool sum into int64 on the CPU
        rank += at_least.view(torch.uint8).sum(1, dtype=torch.int32)
        cached.pop(i, None)
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
