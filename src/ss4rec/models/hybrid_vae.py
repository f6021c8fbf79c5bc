"""Hybrid VAE: Mult-VAE (Liang et al. 2018) for ranking plus a rating decoder with item side information.

The encoder reads a user's whole history as an L2-normalised multi-hot vector (with input dropout) and
gives ``mu, logvar`` (B, latent); ``z`` is sampled in training and ``mu`` in evaluation. The multinomial
decoder turns ``z`` into logits over all items; the rating decoder predicts the rating of an item from
``z`` and the item's embedding (plus a projection of its genres, when the data provides them).

How the generic objectives train it. The multinomial log-likelihood of a user is
``sum_{i in history} log softmax(f(z))_i``, i.e. one cross-entropy term per history item. So
``train_queries`` emits one query per history item, target = that item; the trainer's full cross-entropy
(mean over the M queries) is then Mult-VAE's likelihood divided by M. ``extra_loss`` returns
``beta * sum_users KL / M``, so the total is exactly Mult-VAE's ``-ELBO_beta`` summed over the batch's
users, divided by M.

The query of a user is ``[z, logits]`` (latent + N + 1): the decoder runs once per user and the M
queries are row copies, instead of decoding the same ``z`` once per history item (about 165 times per
user on ML-1M). ``score`` returns ``log softmax(logits)``: the multinomial log-likelihood of each item,
which ranks exactly like the logits. Memory is the (M, N + 1) the cross-entropy needs anyway: keep
history batches to a few dozen users on ML-1M (M ~ 165 x batch size).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ss4rec.batch import HISTORY, Batch
from ss4rec.models.base import RatingHead, Recommender

#: logit given to the padding id 0, so it never carries probability mass (finite: no NaN anywhere)
PADDING_LOGIT = -1e4


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: (B, D) -> (B,)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


class HybridVAE(Recommender):
    """Mult-VAE over ``history`` batches, with a rating decoder.

    Args:
        hidden: width of the encoder's and decoder's hidden layer (600 in the paper).
        latent: size of ``z`` (200 in the paper), also the item embedding size of the rating decoder.
        dropout: input dropout on the normalised multi-hot history (0.5 in the paper).
        anneal_cap: final KL weight ``beta``.
        total_anneal_steps: training steps over which ``beta`` ramps linearly from 0 to ``anneal_cap``.
        rating_dropout: dropout inside the rating decoder's MLP.
        rating_mean: initial rating offset (the trainer sets the training mean).
    """

    train_format: ClassVar[str] = HISTORY

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int = 600,
        latent: int = 200,
        dropout: float = 0.5,
        anneal_cap: float = 0.2,
        total_anneal_steps: int = 2000,
        rating_dropout: float = 0.0,
        rating_mean: float = 3.5,
    ):
        super().__init__(n_items, n_users)
        self.latent = latent
        self.anneal_cap = anneal_cap
        self.total_anneal_steps = total_anneal_steps
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.Sequential(nn.Linear(n_items, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_items))
        for module in (*self.encoder, *self.decoder):
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.normal_(module.bias, std=0.001)
        # rating decoder: z and the item's embedding (+ genres @ genre_weight)
        self.item_embedding = nn.Embedding(n_items + 1, latent, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.register_buffer("item_features", torch.zeros(n_items + 1, 0))  # (N + 1, G), G = 0: none
        self.genre_weight = nn.Parameter(torch.zeros(0, latent))  # (G, latent)
        self.rating_head = RatingHead(latent, dropout=rating_dropout, rating_mean=rating_mean)
        self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))  # kept by checkpoints
        self._kl: tuple[torch.Tensor, int] | None = None

    # ----------------------------------------------------------------------------- side information
    def set_item_features(self, features: torch.Tensor) -> None:
        """Item side information (N + 1, G), e.g. multi-hot genres; row 0 is padding.

        A new width G creates a fresh projection (call before the optimizer is built); the same width
        only replaces the values, so the trainer may set zeros first and the real features later.
        """
        if features.dim() != 2 or features.shape[0] != self.n_items + 1:
            raise ValueError(
                f"item features must be (n_items + 1, G) = ({self.n_items + 1}, G), got {tuple(features.shape)}"
            )
        like = self.item_embedding.weight
        if features.shape != self.item_features.shape:
            self.genre_weight = nn.Parameter(0.02 * torch.randn(features.shape[1], self.latent).to(like))
        self.item_features = features.to(like)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Item representation of the rating decoder: (...) -> (..., latent)."""
        return self.item_embedding(items) + self.item_features[items] @ self.genre_weight

    # ----------------------------------------------------------------------------- encoder / decoder
    def encode(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """history (B, S) item ids, 0 = padding -> mu, logvar, each (B, latent)."""
        weight = self.encoder[0].weight
        multi_hot = torch.zeros(history.shape[0], self.n_items + 1, device=weight.device, dtype=weight.dtype)
        multi_hot.scatter_(1, history, 1.0)
        x = F.normalize(multi_hot[:, 1:], dim=-1)  # (B, N), padding column dropped
        mu, logvar = self.encoder(self.input_dropout(x)).chunk(2, dim=-1)
        return mu, logvar

    def _user_queries(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """history (B, S) -> queries [z, logits] (B, latent + N + 1), mu, logvar."""
        mu, logvar = self.encode(history)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        logits = self.decoder(z)  # (B, N)
        padding = logits.new_full((logits.shape[0], 1), PADDING_LOGIT)
        return torch.cat([z, padding, logits], dim=-1), mu, logvar

    def train_queries(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        history = batch["history"]  # (B, S)
        queries, mu, logvar = self._user_queries(history)
        real = history > 0  # (B, S)
        rows = torch.arange(history.shape[0], device=history.device)[:, None].expand_as(history)[real]  # (M,)
        self._kl = (kl_divergence(mu, logvar).sum(), max(int(rows.shape[0]), 1))
        return queries[rows], history[real], batch["history_ratings"][real]

    def eval_queries(self, batch: Batch) -> torch.Tensor:
        return self._user_queries(batch["seen"])[0]  # the history before the target

    # ----------------------------------------------------------------------------- outputs
    def score(self, query: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        logits = query[:, self.latent :]  # (M, N + 1)
        log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)  # (M, 1)
        if items is None:
            return logits - log_norm
        if items.dim() == 1:
            return logits[:, items] - log_norm
        return logits.gather(1, items) - log_norm

    def predict_rating(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.rating_head(query[:, : self.latent], self.item_vectors(items))

    # ----------------------------------------------------------------------------- KL annealing
    def beta(self) -> float:
        """KL weight at the current step: ``anneal_cap * min(1, step / total_anneal_steps)``."""
        if self.total_anneal_steps <= 0:
            return self.anneal_cap
        return self.anneal_cap * min(1.0, int(self.anneal_step) / self.total_anneal_steps)

    def extra_loss(self, batch: Batch) -> torch.Tensor | None:
        """``beta * sum_users KL / M`` for the batch of the last ``train_queries``; advances the schedule."""
        if self._kl is None:
            return None
        (kl_sum, n_queries), self._kl = self._kl, None
        beta = self.beta()
        if self.training:
            self.anneal_step += 1
        return beta * kl_sum / n_queries
