"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence."""

from __future__ import annotations

import torch
from torch import nn

from ss4rec.batch import Batch, padding_mask
from ss4rec.models.base import SequentialRecommender


class SASRec(SequentialRecommender):
    """Item + learned position embeddings, ``n_layers`` causal Transformer blocks, tied output scoring.

    Post-norm blocks (attention -> dropout -> add & norm -> feed-forward -> dropout -> add & norm) with a
    GELU feed-forward of width ``inner``, as in RecBole's SASRec. Right padding; padding keys are masked.
    """

    #: one learned embedding per position: inputs (training windows included) must fit in ``max_len``
    learned_positions = True

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        inner: int = 256,
        dropout: float = 0.2,
        attention_dropout: float = 0.2,
        max_len: int = 200,
    ):
        super().__init__(n_items, n_users, hidden)
        self.max_len = max_len
        self.position_embedding = nn.Embedding(max_len, hidden)
        self.input_norm = nn.LayerNorm(hidden)
        self.input_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=n_heads,
            dim_feedforward=inner,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        layer.self_attn.dropout = attention_dropout  # set before the encoder copies the layer
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def encode_sequence(self, batch: Batch) -> torch.Tensor:
        items = batch["items"]  # (B, L)
        length = items.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds SASRec max_len {self.max_len}")
        positions = torch.arange(length, device=items.device)
        x = self.item_embedding(items) + self.position_embedding(positions)[None]  # (B, L, D)
        x = self.input_dropout(self.input_norm(x))
        causal = torch.triu(torch.full((length, length), float("-inf"), device=items.device), diagonal=1)
        padding = torch.zeros(items.shape, device=items.device).masked_fill(
            ~padding_mask(batch["lengths"], length), float("-inf")
        )  # (B, L) additive key mask
        return self.blocks(x, mask=causal, src_key_padding_mask=padding)  # (B, L, D)
