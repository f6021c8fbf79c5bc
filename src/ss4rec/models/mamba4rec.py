"""Mamba4Rec (Liu et al. 2024): Mamba blocks with position-wise feed-forward layers, no time input."""

from __future__ import annotations

import torch
from torch import nn

from ss4rec.batch import Batch
from ss4rec.models.base import SequentialRecommender, State
from ss4rec.models.feed_forward import NORM_EPS, FeedForward
from ss4rec.models.mamba import Mamba


class MambaLayer(nn.Module):
    """``h = LayerNorm(dropout(Mamba(x)) + x)``, then the feed-forward block: (B, L, D) -> (B, L, D).

    With ``residual=False`` the first add is dropped (``LayerNorm(dropout(Mamba(x)))``): the official code
    does this when the model has a single layer.
    """

    def __init__(self, hidden: int, d_state: int, d_conv: int, expand: int, dropout: float, residual: bool):
        super().__init__()
        self.mamba = Mamba(hidden, d_state=d_state, d_conv=d_conv, expand=expand)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=NORM_EPS)
        self.feed_forward = FeedForward(hidden, 4 * hidden, dropout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.mamba(x))  # (B, L, D)
        h = self.norm(h + x if self.residual else h)
        return self.feed_forward(h)

    def step(self, x: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor):
        """One position: x (B, D) -> (B, D), new conv and SSM states (the feed-forward is per position)."""
        h, conv, ssm = self.mamba.step(x, conv, ssm)
        h = self.dropout(h)
        h = self.norm(h + x if self.residual else h)
        return self.feed_forward(h), conv, ssm


class Mamba4Rec(SequentialRecommender):
    """Item embedding -> dropout -> LayerNorm -> ``n_layers`` x MambaLayer; tied dot-product scoring.

    No positional embedding and no time input: order reaches the model only through Mamba's causal
    convolution and scan, so the state at position t depends on items <= t, and right padding never
    reaches a real position.

    Args:
        hidden: embedding and model width D.
        n_layers: Mamba layers (1 in the paper's MovieLens setting).
        d_state, d_conv, expand: Mamba block sizes (32, 4, 2 in the paper).
        dropout: after the embedding, after each Mamba block and inside the feed-forward blocks.
        single_layer_residual: with one layer the official code has no residual around Mamba; True adds it.
        init: ``official``: every Linear and Embedding N(0, 0.02) with zero biases (RecBole's init, which the
            official code applies to the Mamba block too); ``mamba``: keep mamba_ssm's own block init.
    """

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int = 64,
        n_layers: int = 1,
        d_state: int = 32,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.2,
        single_layer_residual: bool = False,
        init: str = "official",
        rating_dropout: float = 0.0,
    ):
        super().__init__(n_items, n_users, hidden, rating_dropout=rating_dropout)
        if init not in ("official", "mamba"):
            raise ValueError(f"init must be 'official' or 'mamba', got {init!r}")
        self.embedding_dropout = nn.Dropout(dropout)
        self.embedding_norm = nn.LayerNorm(hidden, eps=NORM_EPS)
        residual = n_layers > 1 or single_layer_residual
        self.layers = nn.ModuleList(
            MambaLayer(hidden, d_state, d_conv, expand, dropout, residual) for _ in range(n_layers)
        )
        if init == "official":
            self.layers.apply(_recbole_init)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode_sequence(self, batch: Batch) -> torch.Tensor:
        x = self.embedding_norm(self.embedding_dropout(self.item_embedding(batch["items"])))  # (B, L, D)
        for layer in self.layers:
            x = layer(x)
        return x  # (B, L, D)

    # ---- recurrent inference ------------------------------------------------------------------------
    supports_step = True

    def allocate_state(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> State:
        """Each layer's Mamba conv and SSM states: ``layers.<i>.conv``, ``layers.<i>.ssm``."""
        state: State = {}
        for i, layer in enumerate(self.layers):
            state[f"layers.{i}.conv"], state[f"layers.{i}.ssm"] = layer.mamba.allocate_state(batch, dtype, device)
        return state

    def step(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        x = self.embedding_norm(self.embedding_dropout(self.item_embedding(event["items"])))  # (B, D)
        new: State = {}
        for i, layer in enumerate(self.layers):
            x, new[f"layers.{i}.conv"], new[f"layers.{i}.ssm"] = layer.step(
                x, state[f"layers.{i}.conv"], state[f"layers.{i}.ssm"]
            )
        return x, new


def _recbole_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
