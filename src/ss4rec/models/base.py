"""The small interface through which the training application drives every model.

A model turns a batch into *queries* (one vector per prediction to make), scores items for a query, and
predicts the rating a query's user gives an item. Objectives (``ss4rec.objectives``) and the evaluator
(``ss4rec.evaluation``) only use these methods, so any model runs under any objective it supports.

Shapes: ``M`` = number of training examples in a batch, ``B`` = batch size, ``N`` = number of items,
item ids are ``1..N`` and ``0`` is padding; ``Q`` is a model's query width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ss4rec.batch import SEQUENCE, Batch, gather_last
from ss4rec.models.rating_base import FrozenMF

#: a recurrent model's inference state: named tensors, batch first (see ``SequentialRecommender.step``)
State = dict[str, torch.Tensor]

#: (query, item) pairs rated at once by ``rate_every_item`` (bounds the memory of a rating head's pairs)
PAIRS_PER_CHUNK = 1 << 18


def by_item_chunks(rate, n: int, rows: int, pairs: int = PAIRS_PER_CHUNK, device=None) -> torch.Tensor:
    """``rate(ids)`` -> (rows, len(ids)) over the ids ``0..n - 1`` (on ``device``) a chunk at a time (about ``pairs``
    (row, id) pairs each), joined: (rows, n)."""
    step = max(1, pairs // max(rows, 1))
    chunks = (torch.arange(start, min(n, start + step), device=device) for start in range(0, n, step))
    return torch.cat([rate(ids) for ids in chunks], dim=1)


class Recommender(nn.Module):
    """Base of every model. Subclasses set ``train_format`` and implement the four methods below."""

    #: which training batches the model consumes: ``sequence``, ``pairs``, ``history`` or ``columns`` (see
    #: ss4rec.batch); ``layout`` gives it for a model config (an option may pick another)
    train_format: ClassVar[str] = SEQUENCE
    #: whether ``predict_rating`` is meaningful (rating and joint objectives need it)
    supports_rating: ClassVar[bool] = True
    #: whether ``score`` is meaningful (ranking objectives need it)
    supports_ranking: ClassVar[bool] = True
    #: False for models fitted by counting (popularity): the trainer then skips the optimizer
    learns_by_gradient: ClassVar[bool] = True
    #: training examples per batch when ``data.batch_size`` is null (None: the layout's, ``DEFAULT_BATCH_SIZE``)
    default_batch_size: ClassVar[int | None] = None
    #: state-dict prefixes only the rating loss trains: a ranking run's are never trained, so ``init_from`` does not copy them
    rating_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n_items: int, n_users: int):
        super().__init__()
        self.n_items = n_items
        self.n_users = n_users

    @classmethod
    def layout(cls, config: Mapping[str, Any]) -> str:
        """The training batches a model built from ``config`` (its model config) consumes: ``train_format``."""
        return cls.train_format

    def frozen_step(self):
        """``step`` for serving: a callable ``(state, event) -> (hidden, new state)`` that may derive constants
        from the parameters once, so it is only valid while they do not change (eval mode, no gradients)."""
        return self.step

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training examples of a batch: queries (M, Q), target items (M,), target ratings (M,)."""
        raise NotImplementedError

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        """One query per user of an evaluation ``sequence`` batch: (B, Q)."""
        raise NotImplementedError

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of items for queries (M, Q).

        ``items`` None: every id, (M, N + 1) with column 0 the padding id (callers mask it).
        ``items`` (K,): the same K ids for every query, (M, K).  ``items`` (M, K): per-query ids, (M, K).
        """
        raise NotImplementedError

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted rating of item ``items`` (M,) for queries (M, Q): (M,)."""
        raise NotImplementedError

    def rate_every_item(self, query: torch.Tensor, pairs: int = PAIRS_PER_CHUNK) -> torch.Tensor:
        """``predict_rating`` of every item id (column 0, padding, included) for evaluation queries (B, Q): (B,
        N + 1), a chunk of items at a time (about ``pairs`` pairs each). A model with a faster way overrides it."""

        def rate(ids: torch.Tensor) -> torch.Tensor:
            return self.predict_rating(query[:, None].expand(-1, len(ids), -1), ids.expand(len(query), -1))

        return by_item_chunks(rate, self.n_items + 1, len(query), pairs, query.device)

    def extra_loss(self, batch: Batch) -> torch.Tensor | None:
        """A model-specific term added to the objective (a VAE's KL, say); None when there is none.

        Called after ``train_queries`` on the same batch, so a model may cache what it needs there.
        """
        return None


def score_by_dot(query: torch.Tensor, table: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
    """Dot-product scores against rows of an embedding ``table`` (N + 1, D); see ``Recommender.score``."""
    if items is None:
        return query @ table.T  # (M, N + 1)
    if items.dim() == 1:
        return query @ table[items].T  # (M, K)
    return torch.einsum("md,mkd->mk", query, table[items])  # (M, K)


class RatingHead(nn.Module):
    """Predicts a rating from a query vector and the item's embedding.

    ``rating = mean + MLP([q, e, q * e])``: the product term lets a dot-product model's geometry carry
    over, the MLP learns the rest; ``mean`` is a buffer (the training ratings' mean, set by the trainer).
    """

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0, rating_mean: float = 3.5):
        super().__init__()
        hidden = hidden or dim
        self.mlp = nn.Sequential(
            nn.Linear(3 * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    def residual(self, query: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """The MLP's part alone, without ``mean``: (...,)"""
        return self.mlp(torch.cat([query, item_vectors, query * item_vectors], dim=-1)).squeeze(-1)

    def forward(self, query: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """query (..., D), item_vectors (..., D) -> (...,)"""
        return self.rating_mean + self.residual(query, item_vectors)


class SequentialRecommender(Recommender):
    """Base of models that read a ``sequence`` batch and emit one hidden state per position.

    Subclasses implement ``encode_sequence`` and own an ``item_embedding`` (N + 1, D) used both as input
    and, tied, as the output scoring table. The rating head predicts ratings from the same queries.

    With ``rating_base`` (an ``mf``, ``svdpp``, ``timesvdpp`` or ``autorec`` run, ``ss4rec.models.rating_base``) the head
    corrects a frozen MF's ratings instead of predicting from the training mean: an evaluation query is then ``[h,
    user part]`` (D + F (K + 2); F (K + 3) for timeSVD++), the hidden state and the user's MF part
    (``FrozenMF.user_part``), and a training query ``[h, r_base]`` (D + 1), the base's rating of its own target;
    ranking scores read ``h`` only.
    """

    train_format: ClassVar[str] = SEQUENCE
    rating_only: ClassVar[tuple[str, ...]] = ("rating_head.", "item_rating_bias.")

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int,
        rating_dropout: float = 0.0,
        rating_item_bias: bool = False,
        rating_base: str | None = None,
        rating_base_heldout: str | None = None,
    ):
        super().__init__(n_items, n_users)
        self.hidden = hidden
        self.item_embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.rating_head = RatingHead(hidden, dropout=rating_dropout)
        # empty tables until the trainer fills them from the MF run, or a checkpoint restores them
        if rating_base_heldout is not None and rating_base is None:
            raise ValueError("rating_base_heldout needs a cross-fitted rating_base (whose runs' mean it replaces)")
        self.rating_base = FrozenMF(n_users, n_items, rating_base, rating_base_heldout) if rating_base is not None else None
        if self.rating_base is not None:  # the correction starts at zero: the model starts as the MF run
            nn.init.zeros_(self.rating_head.mlp[-1].weight)
            nn.init.zeros_(self.rating_head.mlp[-1].bias)
        # a learned offset per item added to every predicted rating (the b_i of biased MF and SVD++),
        # zero at the start; its own table, so ranking scores never see it
        self.item_rating_bias = nn.Embedding(n_items + 1, 1, padding_idx=0) if rating_item_bias else None
        if self.item_rating_bias is not None:
            nn.init.zeros_(self.item_rating_bias.weight)

    def encode_sequence(self, batch: Batch) -> torch.Tensor:
        """Hidden state after each position, (B, L, D); position t may only depend on inputs <= t."""
        raise NotImplementedError

    # ---- recurrent inference (models whose history fits a fixed-size state) --------------------------
    #: whether ``allocate_state`` / ``step`` exist; models without them are served by recomputing a window
    supports_step: ClassVar[bool] = False

    def allocate_state(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> State:
        """The state before the first position, a flat dict of tensors whose first dim is the batch."""
        raise NotImplementedError(f"{type(self).__name__} has no recurrent step; recompute its window")

    def step(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        """Read one position per row: ``event`` holds ``items``, ``ratings``, ``times`` and ``next_times``
        (B,) (the time of the following interaction, 0 when unknown; only time-aware models read times).

        Returns the hidden state at that position (B, D), exactly ``encode_sequence``'s output there, and the
        new state. ``state`` is never modified, so a caller may peek at a position without committing it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no recurrent step; recompute its window")

    def with_user(self, query: torch.Tensor, users: torch.Tensor | None, times: torch.Tensor | None = None) -> torch.Tensor:
        """``query`` (..., D) with the users' MF part for held-out ratings appended when there is a rating base (...,
        D + F (K + 2)); ``times``: when those ratings are made (a timeSVD++ base reads them)."""
        if self.rating_base is None:
            return query
        return torch.cat([query, self.rating_base.user_part(users, times=times).to(query.dtype)], dim=-1)

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training queries; with a rating base ``[h, r_base]`` (M, D + 1): the base's rating of the query's own
        target (``FrozenMF.out_of_fold``, from the run that left it out), not the user's part of every run, which a
        wide cross-fitted base (I-AutoRec: 6 x 503 floats) makes the bulk of a batch. ``predict_rating`` reads the
        column, so such a query rates its own target only."""
        hidden = self.encode_sequence(batch)  # (B, L, D)
        mask = batch["target_items"] > 0  # (B, L)
        targets = batch["target_items"][mask]
        if self.rating_base is None:
            return hidden[mask], targets, batch["target_ratings"][mask]
        users = batch["users"][:, None].expand_as(mask)[mask]
        times = batch["target_times"][mask] if self.rating_base.timed else None
        base = self.rating_base.out_of_fold(users, targets, times).to(hidden.dtype)
        return torch.cat([hidden[mask], base[:, None]], -1), targets, batch["target_ratings"][mask]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self.last_queries(gather_last(self.encode_sequence(batch), batch["lengths"]), batch)  # (B, Q)

    def last_queries(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The evaluation queries (B, Q) from the hidden states (B, D) at each row's last position of ``batch``: the
        hidden states themselves, with a rating base the users' part for the held-out rating at its time appended.
        Serving calls it with the hidden state of a recurrent step and the user's last events."""
        if self.rating_base is None:
            return hidden
        times = gather_last(batch["target_times"], batch["lengths"]) if self.rating_base.timed else None
        return self.with_user(hidden, batch["users"], times=times)  # (B, Q)

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return score_by_dot(query[..., : self.hidden], self.item_embedding.weight, items)

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.rating_base is not None:
            hidden, user_part = query[..., : self.hidden], query[..., self.hidden :]
            # a training query carries its target's base rating (one column); a user part is at least 2 wide
            base = user_part[..., 0] if user_part.shape[-1] == 1 else self.rating_base(user_part, items)
            rating = base + self.rating_head.residual(hidden, self.item_embedding(items))
        else:
            rating = self.rating_head(query, self.item_embedding(items))
        if self.item_rating_bias is not None:
            rating = rating + self.item_rating_bias(items).squeeze(-1)
        return rating

    def base_rating(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The rating base's ratings alone, without the network's correction, for evaluation queries ``[h, user
        part]`` of a ``rating_base`` model: of ``items`` (like ``predict_rating``) or, None, of every item id (B, N +
        1, like ``rate_every_item``)."""
        if self.rating_base is None:
            raise ValueError("base_rating needs a model trained with a rating base (model.rating_base)")
        user_part = query[..., self.hidden :]
        return self.rating_base.every_item(user_part) if items is None else self.rating_base(user_part, items)

    def rate_every_item(self, query: torch.Tensor, pairs: int = PAIRS_PER_CHUNK) -> torch.Tensor:
        """With a rating base its part comes from ``FrozenMF.every_item`` (matrix products), the head's correction a
        chunk of items at a time: ``predict_rating``'s ratings without a base row per (user, item) pair."""
        if self.rating_base is None:
            return super().rate_every_item(query, pairs)
        hidden, user_part = query[:, : self.hidden], query[:, self.hidden :]

        def correction(ids: torch.Tensor) -> torch.Tensor:
            rating = self.rating_head.residual(hidden[:, None].expand(-1, len(ids), -1),
                                               self.item_embedding(ids).expand(len(hidden), -1, -1))  # fmt: skip
            if self.item_rating_bias is not None:
                rating = rating + self.item_rating_bias(ids).squeeze(-1)
            return rating

        base = self.rating_base.every_item(user_part).to(hidden.dtype)
        return base + by_item_chunks(correction, self.n_items + 1, len(hidden), pairs, query.device)
