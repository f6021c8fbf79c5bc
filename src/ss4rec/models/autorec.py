"""I-AutoRec (Sedhain et al. 2015): each item's column of training ratings, coded and decoded by one hidden layer.

    r_hat(u, i) = W_u . sigmoid(V r_i + b) + c_u

``r_i`` (U,) holds item i's training ratings, 0 where a user did not rate it. The paper trains the network to
reconstruct the observed entries of every column, ``sum (r_ui - r_hat(u, i))^2 + l2 / 2 (|W|^2 + |V|^2)``; here
the same objective is divided by the number R of training ratings: the trainer's mean squared error over a batch's
ratings plus ``l2 / 2 (|W|^2 + |V|^2) / R`` (``extra_loss``).

The model keeps the training rating matrix (item rows, compressed) as buffers the trainer fills from the training
part (``set_rating_matrix``), so a checkpoint predicts without the data. Each training rating is one example and
each item of a batch is coded once from its whole column (a sparse product, O(its ratings x hidden)). ``batches``
picks what a batch holds: ``users`` (``history`` rows like ``svdpp``: every training rating of a set of users,
which touches most items, so each step codes most columns and fits only the batch users' decoder rows) or
``items`` (``columns``: every training rating of a set of items, the paper's batches of item columns; each step
codes only its own items and fits every decoder row that rates them). With a held-out cross-fitting fold
(``data.holdout_folds``) the fold's ratings are neither fitted nor in any column. A held-out rating (validation,
test) is read off its item's code, whose input holds training ratings only; an item with no training rating gets
the training mean (``rating_head.rating_mean``, set by the trainer), as in the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ss4rec.batch import COLUMNS, HISTORY, Batch
from ss4rec.models.base import Recommender
from ss4rec.models.svdpp import fitted_ratings

#: ``batches`` -> the training layout (``ss4rec.batch``)
BATCHES = {"users": HISTORY, "items": COLUMNS}
#: the rating matrix's buffers (compressed item rows), resized to a checkpoint's own when it is loaded
MATRIX_BUFFERS = ("row_starts", "row_users", "row_ratings")


class RatingMean(nn.Module):
    """The training mean (``rating_mean``, set by the trainer), the prediction for an item no one rated in training."""

    def __init__(self, rating_mean: float = 3.5):
        super().__init__()
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))


class IAutoRec(Recommender):
    """Item-based AutoRec over ``history`` (``batches: users``) or ``columns`` (``batches: items``) batches; rating only.

    The query of a user is ``[W_u, c_u]`` (B, hidden + 1), the user's row of the decoder; ``predict_rating``
    codes the items (``codes``) and takes the dot product. Ranking is not offered: as for ``svdpp``, every
    training target is itself in the input it is predicted from.

    Args:
        hidden: hidden units (500 in the paper).
        l2: the paper's L2 coefficient on both weight matrices (biases are not penalised); 0 disables it.
        rating_mean: the prediction for unrated items (the trainer overwrites it with the training mean).
        batches: ``users`` or ``items`` (see the module docstring); ``data.batch_size`` counts users or items.
    """

    train_format: ClassVar[str] = HISTORY
    supports_ranking: ClassVar[bool] = False
    #: users (or items) per training batch when ``data.batch_size`` is null: on ML-100K 64 users gave a noisy
    #: validation curve that stopped early at 0.980, 256 a smooth one that kept falling (a seed-0 probe)
    default_batch_size: ClassVar[int | None] = 256
    #: the trainer calls ``set_rating_matrix`` with the training ratings before the first step
    uses_rating_matrix: ClassVar[bool] = True

    def __init__(self, n_items: int, n_users: int, hidden: int = 500, l2: float = 100.0, rating_mean: float = 3.5,
                 batches: str = "users"):  # fmt: skip
        super().__init__(n_items, n_users)
        if hidden < 1 or l2 < 0:
            raise ValueError(f"autorec: expected hidden >= 1 and l2 >= 0, got hidden={hidden}, l2={l2}")
        self.train_format = self.layout({"batches": batches})
        self.hidden, self.l2 = int(hidden), float(l2)
        self.encoder = nn.Linear(n_users, hidden)  # V, b
        self.decoder = nn.Linear(hidden, n_users)  # W (U, hidden), c (U,)
        self.rating_head = RatingMean(rating_mean)
        self.register_buffer("row_starts", torch.zeros(n_items + 2, dtype=torch.long))  # item i: [starts[i], starts[i+1])
        self.register_buffer("row_users", torch.zeros(0, dtype=torch.long))
        self.register_buffer("row_ratings", torch.zeros(0))

    @classmethod
    def layout(cls, config: Mapping[str, Any]) -> str:
        batches = config.get("batches", "users")
        if batches not in BATCHES:
            raise ValueError(f"autorec: batches must be one of {', '.join(BATCHES)}, got {batches!r}")
        return BATCHES[batches]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in MATRIX_BUFFERS:  # a checkpoint's matrix has its own number of ratings
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_ratings(self) -> int:
        """R, the training ratings in the matrix."""
        return int(self.row_users.numel())

    def set_rating_matrix(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> None:
        """Fill the matrix from the training ratings ``users``, ``items`` (ids 1..N), ``ratings`` (R,) each; a
        (user, item) pair given twice keeps its later rating (the last in the arrays)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        if not users.shape == items.shape == ratings.shape or users.ndim != 1 or len(users) == 0:
            raise ValueError(f"autorec: set_rating_matrix needs three equal 1-d arrays of training ratings, got shapes "
                             f"{users.shape}, {items.shape}, {ratings.shape}")  # fmt: skip
        if users.min() < 0 or users.max() >= self.n_users or items.min() < 1 or items.max() > self.n_items:
            raise ValueError(f"autorec: users must lie in [0, {self.n_users}) and items in [1, {self.n_items}], got "
                             f"users {users.min()}..{users.max()}, items {items.min()}..{items.max()}")  # fmt: skip
        keys = items * self.n_users + users
        last = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]  # each pair's last occurrence, sorted by key
        items, users, ratings = items[last], users[last], ratings[last]
        device = self.row_starts.device
        starts = np.zeros(self.n_items + 2, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=self.n_items + 1), out=starts[1:])
        self.row_starts = torch.from_numpy(starts).to(device)
        self.row_users = torch.from_numpy(users).to(device)
        self.row_ratings = torch.from_numpy(ratings).to(device=device, dtype=self.encoder.weight.dtype)

    def columns(self, items: torch.Tensor) -> torch.Tensor:
        """The training rating columns of ``items`` (K,), as a sparse (K, U) matrix."""
        starts, ends = self.row_starts[items], self.row_starts[items + 1]
        counts = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(items), device=items.device), counts)
        first = torch.cumsum(counts, 0) - counts  # where each item's entries begin among the gathered ones
        positions = starts[rows] + torch.arange(len(rows), device=items.device) - first[rows]
        return torch.sparse_coo_tensor(
            torch.stack([rows, self.row_users[positions]]), self.row_ratings[positions], (len(items), self.n_users),
            is_coalesced=True, check_invariants=False,
        )

    def codes(self, items: torch.Tensor) -> torch.Tensor:
        """``sigmoid(V r_i + b)`` of ``items`` (K,): (K, hidden)."""
        return torch.sigmoid(torch.sparse.mm(self.columns(items), self.encoder.weight.T) + self.encoder.bias)

    def rated(self, items: torch.Tensor) -> torch.Tensor:
        """Whether each item has a training rating, like ``items``."""
        return self.row_starts[items + 1] > self.row_starts[items]

    def user_query(self, users: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.decoder.weight[users], self.decoder.bias[users, None]], dim=-1)  # (B, hidden + 1)

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.n_ratings == 0:
            raise RuntimeError("autorec: the rating matrix is empty; call set_rating_matrix with the training ratings "
                               "first (the trainer does)")  # fmt: skip
        if "history" not in batch:  # columns: one example per rating already
            return self.user_query(batch["users"]), batch["items"], batch["ratings"]
        users, history = batch["users"], batch["history"]
        targets = fitted_ratings(batch)
        rows = torch.arange(history.shape[0], device=history.device)[:, None].expand_as(history)[targets]  # (M,)
        return self.user_query(users)[rows], history[targets], batch["history_ratings"][targets]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self.user_query(batch["users"])

    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError("autorec predicts ratings only (task=rating); it has no ranking score")

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        unique, where = torch.unique(items, return_inverse=True)  # each item coded once
        codes = torch.cat([self.codes(unique), torch.ones_like(unique[:, None], dtype=query.dtype)], dim=-1)
        predicted = (query * codes[where]).sum(-1)
        return torch.where(self.rated(items), predicted, self.rating_head.rating_mean.to(predicted.dtype))

    def extra_loss(self, batch: Batch) -> torch.Tensor | None:
        if not self.training or self.l2 == 0:
            return None
        penalty = self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()
        return self.l2 / 2 * penalty / max(self.n_ratings, 1)

    @torch.no_grad()
    def mf_tables(self) -> dict[str, torch.Tensor]:
        """The model as biased-MF tables ``mean + b_u + b_i + p_u . q_i`` (``ss4rec.models.rating_base``): p_u = [W_u,
        c_u], q_i = [code_i, 1] and b_i = 0 for an item with a training rating; q_i = 0 and b_i = the training mean
        for one without; b_u = 0, mean = 0. The same predictions as the model."""
        items = torch.arange(self.n_items + 1, device=self.row_starts.device)
        rated = self.rated(items)
        codes = torch.cat([self.codes(items), torch.ones_like(items[:, None], dtype=self.decoder.weight.dtype)], dim=-1)
        zero = torch.zeros((), dtype=codes.dtype, device=codes.device)
        return {
            "user_factors": self.user_query(torch.arange(self.n_users, device=items.device)),
            "user_bias": torch.zeros(self.n_users, dtype=codes.dtype, device=codes.device),
            "item_factors": torch.where(rated[:, None], codes, zero),
            "item_bias": torch.where(rated, zero, self.rating_head.rating_mean.to(codes.dtype)),
            "mean": zero,
        }
