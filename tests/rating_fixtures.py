"""Small rating data and a float64 SVD++ reference shared by the rating-base tests."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import Raw
from ss4rec.models.svdpp import SVDpp


def varied_store():
    """Users with 3 to 10 ratings (training parts of 1 to 8 items), every item distinct within a user."""
    rng = np.random.default_rng(5)
    rows = [(u, int(i), float(rng.integers(1, 6)), 1000 + 10 * k)
            for u, n in enumerate([3, 10, 4, 7, 3, 9], start=1)
            for k, i in enumerate(rng.choice(np.arange(1, 16), n, replace=False))]  # fmt: skip
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0), None)


def svdpp_reference(model: SVDpp, store, user: int, item: int) -> float:
    """``mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``, N(u) the training part, float64, one by one."""
    w = {name: p.detach().double() for name, p in model.named_parameters()}
    n_u = store.items[store.offsets[user] : store.offsets[user + 1] - 2].tolist()
    z = w["user_embedding.weight"][user].clone()
    for j in n_u:
        z += w["implicit_embedding.weight"][j] / math.sqrt(len(n_u))
    bias = w["user_bias.weight"][user, 0] + w["item_bias.weight"][item, 0]
    return float(model.rating_head.rating_mean.double() + bias + w["item_embedding.weight"][item] @ z)


def timed_store():
    """Users with 3 to 10 ratings spread over days and years: zero gaps (same-second ties), minutes, hours, days,
    years; odd lengths; each user's first rating on another day."""
    rng = np.random.default_rng(7)
    rows = []
    for u, n in enumerate([3, 10, 4, 7, 5, 9], start=1):
        gaps = rng.choice([0, 0, 30, 3_600, 5 * 86_400, 800 * 86_400], size=n)
        times = 1_000_000_000 + int(rng.integers(0, 60 * 86_400)) + np.cumsum(gaps)
        items = rng.choice(np.arange(1, 16), n, replace=False)
        rows += [(u, int(i), float(rng.integers(1, 6)), int(t)) for i, t in zip(items, times)]
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0), None)
