"""Hand-made batches for model tests, following the layouts in ss4rec.batch."""

from __future__ import annotations

import torch

N_ITEMS = 23


def sequence_batch(
    lengths: list[int], max_len: int | None = None, seed: int = 0, n_items: int = N_ITEMS
) -> dict[str, torch.Tensor]:
    """A right-padded training/evaluation ``sequence`` batch (see ss4rec.batch) with random items."""
    g = torch.Generator().manual_seed(seed)
    b, width = len(lengths), max_len or max(lengths)
    full = torch.randint(1, n_items + 1, (b, width + 1), generator=g)
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


def pairs_batch(n: int, n_users: int, n_items: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``pairs`` batch (see ss4rec.batch): n random training interactions."""
    g = torch.Generator().manual_seed(seed)
    return {
        "users": torch.randint(0, n_users, (n,), generator=g),
        "items": torch.randint(1, n_items + 1, (n,), generator=g),
        "ratings": torch.randint(1, 6, (n,), generator=g).float(),
        "times": torch.randint(0, 10**9, (n,), generator=g),
    }
