"""Time gaps for the time-aware S5 layer: which gap each position gets, and how gaps are represented.

All functions are pure and work on a ``sequence`` batch's tensors (see ss4rec.batch): ``times`` and
``target_times`` (B, L) int64 unix seconds, ``lengths`` (B,). Gaps are differences of int64 seconds taken
before any conversion to float, so large timestamps never lose precision. Padding always gets gap 0,
which makes S5 ignore it (B_bar = 0) and carry its state unchanged.

Which gap (``target_time``):

* ``known`` (the official SS4Rec): position t gets the gap AFTER its item, ``t_{t+1} - t_t``; at the last
  real position the next interaction is the target, so the model is told when it happens.
* ``unknown``: position t gets the gap BEFORE its item, ``t_t - t_{t-1}`` (0 at the first position), so no
  output ever sees the time of the interaction it predicts.

Both feed S5 the same gaps between consecutive input items, shifted by one position
(``unknown[:, 1:n] == known[:, :n-1]``); ``known`` additionally gets the gap to the target at its last step.

How gaps are represented: a unit (``second`` / ``minute`` / ``hour`` / ``day``), a zero-gap policy applied on
real positions (``keep``: a zero gap stays 0, so that item is ignored by S5 as in the official code;
``floor``: gaps below ``min_gap_seconds`` are raised to it), and a transform (``raw``: the official linear
gap; ``log1p``: ``log(1 + gap)``, which keeps gaps of minutes and of years within one order of magnitude
of each other instead of the latter erasing the state completely).
"""

from __future__ import annotations

import torch

from ss4rec.batch import padding_mask

SECONDS_PER_UNIT = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
TRANSFORMS = ("raw", "log1p")
ZERO_GAP_POLICIES = ("keep", "floor")
TARGET_TIME = ("known", "unknown")


def gaps_known(times: torch.Tensor, target_times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Gap after each item (B, L) int64: ``times[t+1] - times[t]``, and ``target_times - times`` at the last
    real position (0 there when the batch has no target time). Padding 0; negative gaps clamp to 0."""
    real = padding_mask(lengths, times.shape[1])
    next_times = torch.zeros_like(times)
    next_times[:, :-1] = times[:, 1:]
    last = torch.arange(times.shape[1], device=times.device)[None, :] == (lengths - 1)[:, None]
    next_times = torch.where(last, target_times, next_times)
    has_next = real & (next_times > 0)
    return torch.where(has_next, next_times - times, 0).clamp_min(0)


def gaps_unknown(times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Gap before each item (B, L) int64: ``times[t] - times[t-1]``, 0 at position 0 and on padding."""
    real = padding_mask(lengths, times.shape[1])
    gaps = torch.zeros_like(times)
    gaps[:, 1:] = times[:, 1:] - times[:, :-1]
    return torch.where(real, gaps, 0).clamp_min(0)


def time_gaps(
    times: torch.Tensor, target_times: torch.Tensor, lengths: torch.Tensor, target_time: str = "known"
) -> torch.Tensor:
    """Gaps in seconds (B, L) int64 under the ``target_time`` policy (``known`` or ``unknown``)."""
    if target_time == "known":
        return gaps_known(times, target_times, lengths)
    if target_time == "unknown":
        return gaps_unknown(times, lengths)
    raise ValueError(f"target_time must be one of {TARGET_TIME}, got {target_time!r}")


def encode_gaps(
    gaps: torch.Tensor,
    lengths: torch.Tensor,
    unit: str = "second",
    transform: str = "raw",
    zero_gap: str = "keep",
    min_gap_seconds: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaps in seconds (B, L) int64 -> S5 step scales (B, L) float: unit, then zero-gap policy, then transform.

    Padding stays exactly 0 whatever the options.
    """
    real = padding_mask(lengths, gaps.shape[1])
    x = encode_gap_values(gaps, unit, transform, zero_gap, min_gap_seconds, torch.float64)
    return torch.where(real, x, 0.0).to(dtype)


def encode_gap_values(
    gaps: torch.Tensor,
    unit: str = "second",
    transform: str = "raw",
    zero_gap: str = "keep",
    min_gap_seconds: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaps in seconds (any shape) int64 -> step scales, with no padding: what ``encode_gaps`` does to each
    real position (a recurrent step encodes its one gap with it)."""
    if unit not in SECONDS_PER_UNIT:
        raise ValueError(f"unit must be one of {tuple(SECONDS_PER_UNIT)}, got {unit!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    if zero_gap not in ZERO_GAP_POLICIES:
        raise ValueError(f"zero_gap must be one of {ZERO_GAP_POLICIES}, got {zero_gap!r}")
    scale = SECONDS_PER_UNIT[unit]
    x = gaps.to(torch.float64) / scale
    if zero_gap == "floor":
        x = x.clamp_min(min_gap_seconds / scale)
    if transform == "log1p":
        x = torch.log1p(x)
    return x.to(dtype)


def constant_gaps(lengths: torch.Tensor, max_len: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``no_time`` ablation: step scale 1 on every real position, 0 on padding, (B, L)."""
    return padding_mask(lengths, max_len).to(dtype)
