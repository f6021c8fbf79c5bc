"""SS4Rec: continuous-time sequential recommendation with a time-aware S5 layer and a Mamba block.

Each layer, as in the official code (one LayerNorm shared by both residual adds, no positional embedding)::

    s   = LayerNorm(x + dropout(S5(x, dt)))        # irregular time: steps scaled by the gaps dt
    out = LayerNorm(s + dropout(Mamba(s)))          # content: input-dependent selection

The encoder emits a hidden state at every position, so one forward pass trains every prefix; scoring is
the dot product with the (tied) item embeddings and ratings come from the base class's ``RatingHead``.

Options beyond the official model (its defaults reproduce the official one):
``target_time`` (``known``/``unknown``), ``time_unit``/``time_transform``/``zero_gap`` (ss4rec.models.time_encoding),
``blocks`` (``both``/``s5_only``/``mamba_only``), ``use_time=False`` (constant gaps: plain S5),
``use_ratings`` (an embedding of each past rating, in half-star buckets, added to its item's embedding),
``rating_profile`` (the mean, over the ratings read so far, of a learned vector per half-star rating, added
to every output: the user's rating level and spread, which raw-second gaps erase from S5's state),
``rating_base`` (an ``mf``, ``svdpp`` or ``timesvdpp`` run: ratings are its frozen model's plus the head's
correction, ``ss4rec.models.rating_base``),
``rating_base_residuals`` (each past rating's error under that MF, times a learned vector, added to its input),
``rating_base_heldout`` (with a cross-fitted base: the run on every training rating that predicts held-out ratings),
``rating_base_drift`` (k > 0: a learned scalar times the mean error under the base of the last k ratings read, added
to every predicted rating: the user's recent drift from the base, as a skip past the network),
``rating_base_drift_recent`` (N > 0, with ``rating_base_drift``: a second weight for the targets among each user's
last N training ratings and for every held-out or served rating, which come after them: the end of a history
strays from the profile more than its middle, ``benchmarks/rating_drift.py``),
``rating_base_drift_lr_scale`` (the drift weights are this times their parameters, so Adam moves them this many
times faster than the rest: at the network's learning rate they are still near 0 when its validation error is best),
``rating_base_drift_calibrate`` (with ``rating_base_drift_recent``: those last N targets train a linear stage alone,
never the network: a gain on the network's rating, the recent drift weight and a bias, applied to them and to every
held-out rating, so it is fitted on out-of-sample errors like a held-out rating's, in one run),
``ffn`` (after each layer's blocks Mamba4Rec's position-wise feed-forward block, ``LayerNorm(x + dropout(W2
dropout(gelu(W1 x))))`` with inner width 4 x hidden and the layer's dropout: not in the paper or the official code, an
ablation of what Mamba4Rec has and SS4Rec lacks),
``s5_clip_eigs`` (S5's eigenvalues kept at a real part of at most -1e-4, as the JAX S5 does, so a long gap
cannot overflow the state; the official code leaves them free, and while they stay below the bound the two
agree exactly: ``ss4rec.models.s5``),
``init`` (``official``: every Linear N(0, 0.02) with zero bias, as RecBole's re-initialisation does to the
official model, Mamba's ``dt_proj`` bias included; ``mamba``: keep mamba_ssm's own initialisation).
"""

from __future__ import annotations

import torch
from torch import nn

from ss4rec.batch import Batch, gather_last
from ss4rec.models.base import PAIRS_PER_CHUNK, SequentialRecommender, State
from ss4rec.models.feed_forward import FeedForward
from ss4rec.models.mamba import Mamba
from ss4rec.models.s5 import S5
from ss4rec.models.time_encoding import constant_gaps, encode_gap_values, encode_gaps, time_gaps

BLOCKS = ("both", "s5_only", "mamba_only")


class SS4RecLayer(nn.Module):
    """One layer: (B, L, D) and step scales (B, L) -> (B, L, D). ``blocks`` drops S5 or Mamba entirely; ``ffn``
    adds a position-wise feed-forward block after them."""

    def __init__(
        self, hidden, d_state, dropout, s5_dt_min, s5_dt_max, mamba_d_state, d_conv, expand, blocks, s5_clip_eigs,
        ffn=False,
    ):
        super().__init__()
        if blocks not in BLOCKS:
            raise ValueError(f"blocks must be one of {BLOCKS}, got {blocks!r}")
        self.s5 = S5(hidden, d_state, s5_dt_min, s5_dt_max, s5_clip_eigs) if blocks != "mamba_only" else None
        self.mamba = Mamba(hidden, mamba_d_state, d_conv, expand) if blocks != "s5_only" else None
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)  # shared by both adds, as in the official code
        self.feed_forward = FeedForward(hidden, 4 * hidden, dropout) if ffn else None  # its own LayerNorm

    def forward(self, x: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        if self.s5 is not None:
            x = self.norm(x + self.dropout(self.s5(x, dt)))
        if self.mamba is not None:
            x = self.norm(x + self.dropout(self.mamba(x)))
        return x if self.feed_forward is None else self.feed_forward(x)

    def allocate_state(self, batch: int, dtype: torch.dtype, device=None) -> State:
        state: State = {}
        if self.s5 is not None:
            state["s5"] = self.s5.allocate_state(batch, dtype, device)
        if self.mamba is not None:
            state["conv"], state["ssm"] = self.mamba.allocate_state(batch, dtype, device)
        return state

    def step(self, x: torch.Tensor, dt: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One position: x (B, D), step scales dt (B,) -> (B, D) and the layer's new state."""
        new: State = {}
        if self.s5 is not None:
            s, new["s5"] = self.s5.step(x, dt, state["s5"])
            x = self.norm(x + (self.dropout(s) if self.training else s))
        if self.mamba is not None:
            m, new["conv"], new["ssm"] = self.mamba.step(x, state["conv"], state["ssm"])
            x = self.norm(x + (self.dropout(m) if self.training else m))
        if self.feed_forward is not None:
            x = self.feed_forward(x)
        return x, new


class SS4Rec(SequentialRecommender):
    """SS4Rec encoder over a ``sequence`` batch; ``encode_sequence`` returns (B, L, hidden)."""

    # the drift weights and the in-run stage act on predicted ratings only
    rating_only = (*SequentialRecommender.rating_only, "drift_weight", "calibration")

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int = 64,
        n_layers: int = 2,
        d_state: int = 32,
        dropout: float = 0.2,
        s5_dt_min: float = 0.001,
        s5_dt_max: float = 0.1,
        s5_clip_eigs: bool = True,
        mamba_d_state: int = 32,
        d_conv: int = 4,
        expand: int = 2,
        time_unit: str = "second",
        time_transform: str = "raw",
        zero_gap: str = "keep",
        min_gap_seconds: float = 1.0,
        target_time: str = "known",
        blocks: str = "both",
        ffn: bool = False,
        use_time: bool = True,
        use_ratings: bool = False,
        init: str = "official",
        max_len: int = 200,
        rating_dropout: float = 0.0,
        rating_item_bias: bool = False,
        rating_profile: bool = False,
        rating_base: str | None = None,
        rating_base_residuals: bool = False,
        rating_base_heldout: str | None = None,
        rating_base_drift: int = 0,
        rating_base_drift_recent: int = 0,
        rating_base_drift_lr_scale: float = 1.0,
        rating_base_drift_calibrate: bool = False,
    ):
        super().__init__(
            n_items, n_users, hidden, rating_dropout=rating_dropout, rating_item_bias=rating_item_bias,
            rating_base=rating_base, rating_base_heldout=rating_base_heldout,
        )
        if target_time not in ("known", "unknown"):
            raise ValueError(f"target_time must be 'known' or 'unknown', got {target_time!r}")
        if init not in ("official", "mamba"):
            raise ValueError(f"init must be 'official' or 'mamba', got {init!r}")
        self.time_unit, self.time_transform, self.zero_gap = time_unit, time_transform, zero_gap
        self.min_gap_seconds, self.target_time, self.use_time = min_gap_seconds, target_time, use_time
        self.blocks, self.max_len = blocks, max_len
        # ratings 0.5..5 in half stars -> 1..10; 0 (padding) -> the zero padding row
        self.rating_embedding = nn.Embedding(11, hidden, padding_idx=0) if use_ratings else None
        # a vector per half-star rating, averaged over the ratings read so far and added to the output; zero
        # at the start, so the model begins as the one without it
        self.rating_profile = nn.Embedding(11, hidden, padding_idx=0) if rating_profile else None
        if self.rating_profile is not None:
            nn.init.zeros_(self.rating_profile.weight)
        if rating_base_residuals and rating_base is None:
            raise ValueError("rating_base_residuals needs a rating_base (the MF whose errors it reads)")
        # times each past rating's error under the MF base (r - MF(u, i)), added to its item's input: how the
        # user has lately strayed from the MF profile; zero at the start
        self.residual_input = nn.Parameter(torch.zeros(hidden)) if rating_base_residuals else None
        if rating_base_drift < 0 or (rating_base_drift and rating_base is None):
            raise ValueError(f"rating_base_drift must be 0 (off) or, with a rating_base, k >= 1; got {rating_base_drift}")
        # times the mean base error of the last k ratings read, added to the predicted rating; zero at the start
        self.drift_k = rating_base_drift
        self.drift_weight = nn.Parameter(torch.zeros(())) if rating_base_drift else None
        if rating_base_drift_recent < 0 or (rating_base_drift_recent and not rating_base_drift):
            raise ValueError("rating_base_drift_recent must be 0 (off) or, with rating_base_drift, N >= 1; got "
                             f"{rating_base_drift_recent}")  # fmt: skip
        # the weight on the drift of the targets among each user's last N training ratings and of every held-out
        # rating (after them); drift_weight stays the one for the earlier targets
        self.drift_recent = rating_base_drift_recent
        self.drift_weight_recent = nn.Parameter(torch.zeros(())) if rating_base_drift_recent else None
        if not rating_base_drift_lr_scale > 0:
            raise ValueError(f"rating_base_drift_lr_scale must be > 0, got {rating_base_drift_lr_scale}")
        # each drift weight is this times its parameter: Adam's steps, the same size whatever the gradient's scale,
        # then move the weight this many times faster than the network (which may overfit before it settles)
        self.drift_lr_scale = float(rating_base_drift_lr_scale)
        if rating_base_drift_calibrate and not rating_base_drift_recent:
            raise ValueError("rating_base_drift_calibrate needs rating_base_drift_recent (the last N targets it holds out)")
        # the last N training targets of each user train a linear stage alone, never the network: each of them and
        # every held-out rating is predicted as mean + gain * (network's rating - mean) + recent drift weight * drift
        # + bias (mean: the training ratings'), fitted on errors as out of sample as the held-out ratings' are (gain 1
        # and bias 0 at the start)
        self.drift_calibrate = bool(rating_base_drift_calibrate)
        self.calibration = nn.Parameter(torch.zeros(2)) if rating_base_drift_calibrate else None  # gain - 1, bias
        self.layers = nn.ModuleList(
            SS4RecLayer(
                hidden, d_state, dropout, s5_dt_min, s5_dt_max, mamba_d_state, d_conv, expand, blocks, s5_clip_eigs,
                ffn,
            )
            for _ in range(n_layers)
        )
        self._init_weights(init)

    @torch.no_grad()
    def _init_weights(self, init: str) -> None:
        for emb in (self.item_embedding, self.rating_embedding):
            if emb is not None:
                emb.weight.normal_(0.0, 0.02)
                emb.weight[0].zero_()  # padding row (the official code leaves it random; it is never read)
        if init == "official":
            for module in self.layers.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, 0.02)
                    if module.bias is not None:
                        module.bias.zero_()

    def step_scales(self, batch: Batch) -> torch.Tensor:
        """The S5 step scale of every position (B, L) float: encoded time gaps, or 1 with ``use_time=False``."""
        lengths, times = batch["lengths"], batch["times"]
        if not self.use_time:
            return constant_gaps(lengths, times.shape[1])
        gaps = time_gaps(times, batch["target_times"], lengths, self.target_time)
        return encode_gaps(
            gaps, lengths, self.time_unit, self.time_transform, self.zero_gap, self.min_gap_seconds
        )

    @staticmethod
    def rating_buckets(ratings: torch.Tensor) -> torch.Tensor:
        """Ratings 0.5..5 in half stars -> 1..10; 0 (padding, or no rating) -> 0."""
        return torch.round(ratings * 2).long().clamp(0, 10)

    def profile(self, ratings: torch.Tensor) -> torch.Tensor:
        """(B, L) ratings -> (B, L, D): at each position the mean of ``rating_profile`` over the ratings at
        positions <= t (padding and missing ratings, bucket 0, are not counted; 0 before the first)."""
        buckets = self.rating_buckets(ratings)
        sums = self.rating_profile(buckets).cumsum(1)
        counts = (buckets > 0).cumsum(1).clamp_min(1).to(sums.dtype)
        return sums / counts[..., None]

    def embed(self, batch: Batch) -> torch.Tensor:
        """Input vectors (B, L, D): item embedding, plus the rating embedding with ``use_ratings``, plus
        ``residual_input`` times each rating's error under the MF base with ``rating_base_residuals``."""
        x = self.item_embedding(batch["items"])
        if self.rating_embedding is not None:
            x = x + self.rating_embedding(self.rating_buckets(batch["ratings"]))
        if self.residual_input is not None:
            x = x + self.base_errors(batch)[0].to(x.dtype)[..., None] * self.residual_input
        return x

    def base_errors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Each input rating's error under the base, ``r - base(u, i)`` (B, L) (0 where there is no rating or
        no item), and where there is one (B, L) bool. Training ratings are read out of fold (cross-fitting)."""
        items, ratings = batch["items"], batch["ratings"]
        users = batch["users"][:, None].expand_as(items)
        times = batch["times"] if self.rating_base.timed else None  # each rating's own time
        expected = self.rating_base.out_of_fold(users, items, times)
        rated = (ratings > 0) & (items > 0)
        return torch.where(rated, ratings - expected, 0.0), rated

    def drift(self, batch: Batch) -> torch.Tensor:
        """(B, L): at each position t the mean base error over the rated positions among t - drift_k + 1..t of the
        window (fewer at its start; 0 where none is rated)."""
        errors, rated = self.base_errors(batch)
        sums = nn.functional.pad(errors.double().cumsum(1), (self.drift_k, 0))
        counts = nn.functional.pad(rated.long().cumsum(1), (self.drift_k, 0))
        window = sums[:, self.drift_k :] - sums[:, : -self.drift_k]
        n = counts[:, self.drift_k :] - counts[:, : -self.drift_k]
        return (window / n.clamp_min(1)).to(errors.dtype)

    # with rating_base_drift a query is [h, drift, the base's user part]; with rating_base_drift_recent
    # [h, drift, recent, user part], recent 1 on each user's last N training targets and every held-out rating (where
    # drift_weight_recent and, with rating_base_drift_calibrate, the stage apply), else 0: predict_rating splits
    # these columns off
    @property
    def drift_columns(self) -> int:
        return 0 if self.drift_weight is None else 1 if self.drift_weight_recent is None else 2

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        query, targets, ratings = super().train_queries(batch)
        if self.drift_weight is None:
            return query, targets, ratings
        mask = batch["target_items"] > 0
        drift = self.drift(batch)[mask]
        if self.drift_weight_recent is not None:
            if "target_from_end" not in batch:
                raise ValueError("rating_base_drift_recent needs each training target's place from the end "
                                 "(target_from_end, in every training sequence batch)")  # fmt: skip
            recent = batch["target_from_end"][mask] <= self.drift_recent
            drift = torch.stack([drift, recent.to(drift.dtype)], -1)
        return self._insert_drift(query, drift), targets, ratings

    def last_queries(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """With the drift columns of each row's last position (``rating_base_drift``) between the hidden state and
        the base's user part."""
        query = super().last_queries(hidden, batch)
        if self.drift_weight is None:
            return query
        drift = gather_last(self.drift(batch), batch["lengths"])
        if self.drift_weight_recent is not None:  # a held-out rating follows every training one: recent
            drift = torch.stack([drift, torch.ones_like(drift)], -1)
        return self._insert_drift(query, drift)

    def _insert_drift(self, query: torch.Tensor, drift: torch.Tensor) -> torch.Tensor:
        """``drift`` (...,) or (..., drift_columns) between the hidden state and the base's user part of ``query``."""
        drift = drift[..., None] if drift.dim() < query.dim() else drift
        return torch.cat([query[..., : self.hidden], drift.to(query.dtype), query[..., self.hidden :]], -1)

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.drift_weight is None:
            return super().predict_rating(query, items)
        return self._drifted(super().predict_rating(self._without_drift(query), items), query)

    def rate_every_item(self, query: torch.Tensor, pairs: int = PAIRS_PER_CHUNK) -> torch.Tensor:
        """Every item rated from the query without its drift columns, then each row's drift terms and stage."""
        if self.drift_weight is None:
            return super().rate_every_item(query, pairs)
        return self._drifted(super().rate_every_item(self._without_drift(query), pairs), query[:, None])

    def base_rating(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return super().base_rating(self._without_drift(query) if self.drift_weight is not None else query, items)

    def _without_drift(self, query: torch.Tensor) -> torch.Tensor:
        """``query`` without its drift columns: the hidden state and the base's user part."""
        return torch.cat([query[..., : self.hidden], query[..., self.hidden + self.drift_columns :]], -1)

    def _drifted(self, rating: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """The network's ``rating`` (...) with the drift terms (and the in-run stage) of ``query`` (..., Q), whose
        shape broadcasts against it."""
        drift = query[..., self.hidden]
        if self.drift_weight_recent is None:
            return rating + (self.drift_lr_scale * self.drift_weight).to(query.dtype) * drift
        recent = query[..., self.hidden + 1] > 0
        if self.drift_calibrate:  # a recent target's error reaches the stage alone
            gain, bias = 1.0 + self.drift_lr_scale * self.calibration[0], self.drift_lr_scale * self.calibration[1]
            centre = self.rating_head.rating_mean.to(rating.dtype)  # the gain scales about the mean training rating
            staged = gain.to(rating.dtype) * (rating.detach() - centre) + centre + bias.to(rating.dtype)
            rating = torch.where(recent, staged, rating)
        weight = self.drift_lr_scale * torch.where(recent, self.drift_weight_recent, self.drift_weight)
        return rating + weight.to(query.dtype) * drift

    def encode_sequence(self, batch: Batch) -> torch.Tensor:
        """Hidden state after each position (B, L, D).

        Causal: position t reads items and ratings <= t and the gap of its own position (with
        ``target_time=known`` that is the time of item t+1, the target at the last position).
        """
        dt = self.step_scales(batch)  # (B, L)
        x = self.embed(batch)  # (B, L, D)
        for layer in self.layers:
            x = layer(x, dt)
        if self.rating_profile is not None:
            x = x + self.profile(batch["ratings"])
        return x

    # ---- recurrent inference ------------------------------------------------------------------------
    supports_step = True

    def allocate_state(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> State:
        """Per layer its S5 state and Mamba conv/SSM states (``layers.<i>.<name>``), plus the time of the
        last item read (``prev_time``) and how many items were read (``count``), for ``target_time=unknown``;
        with ``rating_profile`` also the sum of the profile vectors read (``profile_sum``) and how many
        ratings they were (``profile_count``)."""
        state: State = {
            "prev_time": torch.zeros(batch, dtype=torch.int64, device=device),
            "count": torch.zeros(batch, dtype=torch.int64, device=device),
        }
        for i, layer in enumerate(self.layers):
            state |= {f"layers.{i}.{k}": v for k, v in layer.allocate_state(batch, dtype, device).items()}
        if self.rating_profile is not None:
            state["profile_sum"] = torch.zeros(batch, self.hidden, dtype=dtype, device=device)
            state["profile_count"] = torch.zeros(batch, dtype=torch.int64, device=device)
        return state

    def step_scale(self, state: State, event: Batch) -> torch.Tensor:
        """The S5 step scale (B,) of one position, as ``step_scales`` gives it inside a whole sequence."""
        times = event["times"]
        if not self.use_time:
            return torch.ones(times.shape, dtype=torch.float32, device=times.device)
        if self.target_time == "known":  # the gap to the next interaction (0 when it is unknown)
            next_times = event["next_times"]
            gaps = torch.where(next_times > 0, next_times - times, 0).clamp_min(0)
        else:  # the gap since the previous item (0 at the first position)
            gaps = torch.where(state["count"] > 0, times - state["prev_time"], 0).clamp_min(0)
        return encode_gap_values(gaps, self.time_unit, self.time_transform, self.zero_gap, self.min_gap_seconds)

    def frozen_step(self):
        """The same step with constants derived once and fewer operations (ss4rec.models.ss4rec_step);
        with ``rating_profile`` or ``rating_base_residuals``, which it does not cover, the plain ``step``."""
        if self.rating_profile is not None or self.residual_input is not None:
            return self.step
        from ss4rec.models.ss4rec_step import FrozenStep

        return FrozenStep(self)

    def step(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        dt = self.step_scale(state, event)  # (B,)
        one = {"items": event["items"][:, None], "ratings": event["ratings"][:, None]}
        if self.residual_input is not None:  # each rating's error under the base: whose rating, and when
            if "users" not in event:
                raise ValueError("SS4Rec with rating_base_residuals steps an event with its user index (event['users'], "
                                 "the run's user index): the input adds the rating's error under the user's base factors")  # fmt: skip
            one |= {"users": event["users"], "times": event["times"][:, None]}
        x = self.embed(one)[:, 0]  # (B, D)
        new: State = {"prev_time": event["times"].clone(), "count": state["count"] + 1}
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            mine = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            x, updated = layer.step(x, dt, mine)
            new |= {prefix + k: v for k, v in updated.items()}
        if self.rating_profile is not None:
            buckets = self.rating_buckets(event["ratings"])
            new["profile_sum"] = state["profile_sum"] + self.rating_profile(buckets).to(state["profile_sum"].dtype)
            new["profile_count"] = state["profile_count"] + (buckets > 0).long()
            x = x + new["profile_sum"] / new["profile_count"].clamp_min(1).to(x.dtype)[:, None]
        return x, new
