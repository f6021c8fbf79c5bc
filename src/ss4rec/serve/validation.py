"""Checks of request values, shared by the core's methods; each raises ``BadRequest`` naming the value."""

from __future__ import annotations

import math
import numbers
import time

from ss4rec.serve.errors import BadRequest


def check_timestamp(value, name: str = "timestamp") -> int:
    """Unix seconds as int: a finite, non-negative number (fractions are floored)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadRequest(f"{name} must be a number of unix seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name} must be a finite, non-negative number of unix seconds, got {value!r}")
    return int(value)


def request_time(at) -> int:
    """``at`` checked as a timestamp, or now when it is None."""
    return int(time.time()) if at is None else check_timestamp(at, "at")


def check_user_id(user_id) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, numbers.Integral):
        raise BadRequest(f"user_id must be an integer (an original MovieLens user id), got {user_id!r}")
    return int(user_id)


def check_k(k, n_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n_items:
        raise BadRequest(f"k must be an integer between 1 and the catalogue size {n_items}, got {k!r}")
    return int(k)


def check_rating(rating, rating_range: tuple[float, float]) -> float:
    """A rating within the scale, or 0.0 (no rating: the padding bucket of a rating embedding) for None."""
    if rating is None:
        return 0.0
    low, high = rating_range
    if isinstance(rating, bool) or not isinstance(rating, numbers.Real) or not low <= rating <= high:
        raise BadRequest(f"rating must be a number between {low:g} and {high:g} (or null), got {rating!r}")
    return float(rating)
