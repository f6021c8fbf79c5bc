"""The position-wise feed-forward block of Transformer-style recommenders (RecBole's, as Mamba4Rec uses it)."""

from __future__ import annotations

import torch
from torch import nn

#: RecBole's LayerNorm epsilon, used by the official Mamba4Rec and SS4Rec code
NORM_EPS = 1e-12


class FeedForward(nn.Module):
    """``LayerNorm(x + dropout(W2 dropout(gelu(W1 x))))`` with ``W1``: D -> inner, ``W2``: inner -> D.

    Per position: (..., D) -> (..., D), so the same module serves a whole sequence and a recurrent step.
    """

    def __init__(self, hidden: int, inner: int, dropout: float):
        super().__init__()
        self.w1 = nn.Linear(hidden, inner)
        self.w2 = nn.Linear(inner, hidden)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.w2(self.dropout(self.activation(self.w1(x)))))
        return self.norm(h + x)
