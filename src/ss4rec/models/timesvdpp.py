"""timeSVD++ (Koren 2009, "Collaborative filtering with temporal dynamics"): SVD++ whose biases move in time.

    r_ui(t) = mu + b_i + b_{i,Bin(t)} + b_u + alpha_u dev_u(t) + b_{u,day(t)} + q_i . (p_u + |N(u)|^(-1/2) sum y_j)
    dev_u(t) = sign(day(t) - t_u) |day(t) - t_u|^beta   (t_u the mean day of the user's training ratings)

``Bin(t)``: the training period cut into ``n_bins`` equal bins (times outside it fall in the first or last);
``day(t)``: the UTC calendar day, so, as in Koren's model, ratings of one day share ``dev_u`` (a user whose training
ratings all fall on one day has ``dev_u = 0`` on that day, and a user without training ratings everywhere).
``b_{u,day}`` exists for every day on which the user has a training rating, so a held-out rating made on such a
day gets that day's bias and one on a new day gets none. That is the
recency a leave-last-out split rewards: many MovieLens users rate in sessions, and the held-out ratings often
share a day with the last training ones. Koren's time-dependent user factors (``p_u(t)``) are left out: in
his Netflix results they add far less than the biases, and they would double the user tables.

The time index (training period, each user's mean day, the user-days) comes from the training part of the
data (``set_time_index``, called by the trainer) and lives in buffers, so checkpoints carry it; the number of
user-days sizes a table, so it is a constructor argument the trainer fills in (``count_user_days``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ss4rec.batch import Batch, gather_last
from ss4rec.models.svdpp import SVDpp, fitted_ratings
from ss4rec.models.time_bias import SECONDS_PER_DAY, drift_deviation, find_keys, time_bins, user_day_keys


class TimeSVDpp(SVDpp):
    """timeSVD++ over ``history`` batches (which carry ``history_times``); rating only.

    Query of a rating to predict: ``[z_u, b_u(t), Bin(t)]`` (…, D + 2) with ``z_u`` SVD++'s user factor,
    ``b_u(t) = b_u + alpha_u dev_u(t) + b_{u,day(t)}`` and the time bin as a float (exact below 2^24);
    ``predict_rating`` adds ``mean + b_i + b_{i,Bin(t)} + q_i . z_u``. In evaluation t is the held-out
    rating's time (``target_times``, known by design as for SS4Rec's ``target_time=known``).

    Args (beyond ``SVDpp``'s):
        n_bins: time bins of the item bias.
        beta: exponent of ``dev_u`` (Koren: 0.4).
        time_l2: per-example L2 on the time terms of the batch's ratings (alpha_u, b_{u,day}, b_{i,bin}),
            the mean of their squares; 0 disables it.
        drift_l2: the coefficient for alpha_u alone (None: ``time_l2``). Koren regularises each term apart, and
            alpha_u wants far more: a held-out rating sits at the end of its user's time line, where |dev_u| is
            largest, so an alpha_u fitted on the earlier ratings is extrapolated there.
        n_user_days: rows of the user-day bias table; the trainer sets it from the data (``count_user_days``).
    """

    #: the trainer builds the model with ``n_user_days`` and calls ``set_time_index`` on the training part
    uses_time_index: ClassVar[bool] = True

    def __init__(
        self,
        n_items: int,
        n_users: int,
        dim: int = 64,
        init_std: float = 0.01,
        l2: float = 0.0,
        rating_mean: float = 3.5,
        n_bins: int = 30,
        beta: float = 0.4,
        time_l2: float = 0.0,
        drift_l2: float | None = None,
        n_user_days: int = 0,
    ):
        super().__init__(n_items, n_users, dim=dim, init_std=init_std, l2=l2, rating_mean=rating_mean)
        if n_bins < 1 or n_user_days < 0 or beta <= 0 or time_l2 < 0 or (drift_l2 is not None and drift_l2 < 0):
            raise ValueError(f"timesvdpp: expected n_bins >= 1, beta > 0, n_user_days >= 0, time_l2 and drift_l2 >= 0; "
                             f"got {n_bins}, {beta}, {n_user_days}, {time_l2}, {drift_l2}")  # fmt: skip
        self.drift_l2 = float(time_l2 if drift_l2 is None else drift_l2)
        self.n_bins, self.beta, self.time_l2, self.n_user_days = int(n_bins), float(beta), float(time_l2), int(n_user_days)
        self.user_drift = nn.Embedding(n_users, 1)  # alpha_u
        self.day_bias = nn.Embedding(n_user_days + 1, 1, padding_idx=n_user_days)  # b_{u,day}; last row: no day
        self.item_bin_bias = nn.Embedding(n_items + 1, n_bins, padding_idx=0)  # b_{i,bin}
        for table in (self.user_drift, self.day_bias, self.item_bin_bias):
            nn.init.zeros_(table.weight)  # the model starts as SVD++
        self.register_buffer("time_origin", torch.tensor(0, dtype=torch.long))  # first training second
        self.register_buffer("bin_seconds", torch.tensor(1, dtype=torch.long))
        self.register_buffer("first_day", torch.tensor(0, dtype=torch.long))  # UTC day of time_origin
        # t_u = day_sum / day_count over the user's training ratings (days after first_day), kept as two int64
        # counts so that no cast of the model's dtype blurs dev_u near t_u
        self.register_buffer("user_day_sum", torch.zeros(n_users, dtype=torch.long))
        self.register_buffer("user_day_count", torch.zeros(n_users, dtype=torch.long))
        self.register_buffer("day_keys", torch.zeros(n_user_days, dtype=torch.long))  # sorted user-day keys

    # ---- the time index ---------------------------------------------------------------------------------
    @staticmethod
    def _distinct_user_days(users: np.ndarray, times: np.ndarray) -> torch.Tensor:
        """Sorted keys of the distinct (user, UTC day) pairs among interactions ``users``, ``times`` (R,), days counted
        from the first one's."""
        times = torch.as_tensor(np.asarray(times, dtype=np.int64))
        if not len(times):
            return torch.zeros(0, dtype=torch.long)
        keys, _ = user_day_keys(torch.as_tensor(np.asarray(users, dtype=np.int64)), times, times.min() // SECONDS_PER_DAY)
        return torch.unique(keys)

    @staticmethod
    def count_user_days(users: np.ndarray, times: np.ndarray) -> int:
        """Distinct (user, UTC day) pairs among training interactions ``users``, ``times`` (R,)."""
        return len(TimeSVDpp._distinct_user_days(users, times))

    def set_time_index(self, users: np.ndarray, times: np.ndarray) -> None:
        """Fill the buffers from the training interactions: user index ``users`` and unix seconds ``times`` (R,)."""
        users, times = np.asarray(users, dtype=np.int64), np.asarray(times, dtype=np.int64)
        if users.shape != times.shape or users.ndim != 1 or len(users) == 0:
            raise ValueError(f"timesvdpp: set_time_index needs two equal 1-d arrays of training interactions, got "
                             f"shapes {users.shape} and {times.shape}")  # fmt: skip
        if users.min() < 0 or users.max() >= self.n_users:
            raise ValueError(f"timesvdpp: user indices must lie in [0, {self.n_users}), got {users.min()}..{users.max()}")
        keys = self._distinct_user_days(users, times)  # the first day is the first training day, as stored below
        if len(keys) != self.n_user_days:
            raise ValueError(f"timesvdpp: the training part has {len(keys)} user-days but the model was built with "
                             f"n_user_days={self.n_user_days}; build it with count_user_days(users, times)")  # fmt: skip
        origin = int(times.min())
        device = self.time_origin.device
        self.time_origin.fill_(origin)
        self.bin_seconds.fill_(max(1, -(-(int(times.max()) - origin + 1) // self.n_bins)))  # ceil(span / n_bins)
        self.first_day.fill_(origin // SECONDS_PER_DAY)
        days = np.floor_divide(times, SECONDS_PER_DAY) - origin // SECONDS_PER_DAY  # (R,) >= 0
        sums = np.zeros(self.n_users, dtype=np.int64)
        np.add.at(sums, users, days)
        self.user_day_sum.copy_(torch.from_numpy(sums).to(device))
        self.user_day_count.copy_(torch.from_numpy(np.bincount(users, minlength=self.n_users).astype(np.int64)).to(device))
        self.day_keys.copy_(keys.to(device))  # sorted

    # ---- the time terms -----------------------------------------------------------------------------------
    def _time_terms(self, users: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """users, times (M,) -> alpha_u dev_u(t), b_{u,day(t)}, Bin(t) (M,) each (the bin as long)."""
        times = times.to(self.time_origin.device)
        bins = time_bins(times, self.time_origin, self.bin_seconds, self.n_bins)
        dev = drift_deviation(times, self.first_day, self.user_day_sum[users], self.user_day_count[users], self.beta)
        dev = dev.to(self.user_drift.weight.dtype)
        slot, found = find_keys(self.day_keys, *user_day_keys(users, times, self.first_day))
        slot = torch.where(found, slot, torch.full_like(slot, self.n_user_days))  # the zero, frozen row
        return self.user_drift(users)[:, 0] * dev, self.day_bias(slot)[:, 0], bins

    @staticmethod
    def _timed_query(query: torch.Tensor, drift: torch.Tensor, day: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """SVD++'s ``[z_u, b_u]`` (M, D + 1) and the time terms (M,) -> ``[z_u, b_u(t), Bin(t)]`` (M, D + 2)."""
        bias = query[:, -1] + drift + day
        return torch.cat([query[:, :-1], bias[:, None], bins[:, None].to(query.dtype)], dim=-1)

    # ---- the Recommender interface ------------------------------------------------------------------------
    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if "history_times" not in batch:
            raise KeyError(f"timesvdpp: the history batch has no 'history_times' (B, S); got keys {sorted(batch)}. "
                           "Batches from ss4rec.data.collate.history_batch carry it.")  # fmt: skip
        query, items, ratings = super().train_queries(batch)  # [z_u, b_u] per rating, row-major
        targets = fitted_ratings(batch)
        users = batch["users"][:, None].expand_as(batch["history"])[targets]  # (M,)
        drift, day, bins = self._time_terms(users, batch["history_times"][targets])
        if self.training and (self.time_l2 > 0 or self.drift_l2 > 0):
            alpha = self.user_drift(users)[:, 0]
            item_bins = self.item_bin_bias(items).gather(-1, bins[:, None])[:, 0]
            penalty = (self.time_l2 * (day.pow(2) + item_bins.pow(2)) + self.drift_l2 * alpha.pow(2)).mean()
            self._penalty = penalty if self._penalty is None else self._penalty + penalty
        return self._timed_query(query, drift, day, bins), items, ratings

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        when = gather_last(batch["target_times"], batch["lengths"])  # the held-out rating's time, (B,)
        return self._timed_query(super().eval_queries(batch), *self._time_terms(batch["users"], when))

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        z, user_bias, bins = query[..., : self.dim], query[..., self.dim], query[..., self.dim + 1].long()
        item_bias = self.item_bias(items)[..., 0] + self.item_bin_bias(items).gather(-1, bins[..., None])[..., 0]
        dot = (z * self.item_embedding(items)).sum(-1)
        return self.rating_head.rating_mean + user_bias + item_bias + dot
