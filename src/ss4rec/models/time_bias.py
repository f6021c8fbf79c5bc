"""timeSVD++'s time terms as functions of its time index, shared by the model (``ss4rec.models.timesvdpp``)
and a frozen timeSVD++ rating base (``ss4rec.models.rating_base``).

Every argument broadcasts: the base evaluates its K cross-fitted runs at once, with a leading run dimension on
the index (origin, bin width, first day, per-user sums) and the queries' users and times broadcast against it.
"""

from __future__ import annotations

import torch

SECONDS_PER_DAY = 86_400
DAY_BITS = 32  # a user-day key is user << 32 | (day - first training day)


def utc_day(times: torch.Tensor) -> torch.Tensor:
    """Unix seconds -> UTC calendar day (days since 1970-01-01, floor; int64)."""
    return torch.div(times, SECONDS_PER_DAY, rounding_mode="floor")


def user_day_keys(users: torch.Tensor, times: torch.Tensor, first_day: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of (user, UTC day) pairs and whether each is representable: (…,) int64 each, (…,) bool."""
    day = utc_day(times) - first_day
    valid = (day >= 0) & (day < 2**DAY_BITS)
    return users.long() * 2**DAY_BITS + day.clamp(0, 2**DAY_BITS - 1), valid


def time_bins(times: torch.Tensor, origin: torch.Tensor, bin_seconds: torch.Tensor, n_bins) -> torch.Tensor:
    """The item-bias bin of each time: the training period from ``origin`` cut in bins of ``bin_seconds``; times
    before it fall in the first bin, after it in the last (``n_bins - 1``). int64."""
    bins = torch.div(times - origin, bin_seconds, rounding_mode="floor").clamp_min(0)
    return torch.minimum(bins, torch.as_tensor(n_bins, device=bins.device) - 1)


def drift_deviation(
    times: torch.Tensor, first_day: torch.Tensor, day_sum: torch.Tensor, day_count: torch.Tensor, beta
) -> torch.Tensor:
    """``dev_u(t) = sign(day(t) - t_u) |day(t) - t_u|^beta`` in float64, ``t_u = day_sum / day_count`` the user's mean
    training day counted from ``first_day``; ``day - t_u = (day * count - sum) / count`` is exact in int64 before the
    one division. 0 for a user without training ratings (count 0)."""
    day = utc_day(times) - first_day
    delta = (day * day_count - day_sum).double() / day_count.clamp_min(1).double()
    return delta.sign() * delta.abs().pow(beta)


def find_keys(sorted_keys: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each of ``keys`` sits in ``sorted_keys`` (R,) and whether it is there (and ``valid``): (…,) int64, (…,) bool.
    The slot of a key not found is meaningless (clamped into range, 0 when ``sorted_keys`` is empty)."""
    if not len(sorted_keys):
        return torch.zeros_like(keys), torch.zeros_like(valid)
    slot = torch.searchsorted(sorted_keys, keys).clamp_max(len(sorted_keys) - 1)
    return slot, valid & (sorted_keys[slot] == keys)
