"""GRU4Rec (Hidasi et al. 2016; the RecBole variant): a GRU over the item sequence."""

from __future__ import annotations

import torch
from torch import nn

from ss4rec.batch import Batch
from ss4rec.models.base import SequentialRecommender, State


class GRU4Rec(SequentialRecommender):
    """Item embedding -> dropout -> GRU -> (projection) -> hidden state per position, tied scoring.

    The GRU reads left to right, so with right padding the state at a real position never sees padding or
    later items. When ``gru_hidden`` differs from the embedding size ``hidden`` a linear layer maps the GRU
    output back to ``hidden``, so scores stay dot products with the (tied) item embeddings.

    Args:
        hidden: item embedding size D (the query width).
        gru_hidden: GRU state size (``hidden`` when None).
        n_layers: stacked GRU layers.
        dropout: dropout on the item embeddings (and between GRU layers when ``n_layers > 1``).
    """

    def __init__(
        self,
        n_items: int,
        n_users: int,
        hidden: int = 64,
        gru_hidden: int | None = None,
        n_layers: int = 1,
        dropout: float = 0.3,
    ):
        super().__init__(n_items, n_users, hidden)
        gru_hidden = gru_hidden or hidden
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            hidden,
            gru_hidden,
            num_layers=n_layers,
            batch_first=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )
        self.projection = nn.Linear(gru_hidden, hidden) if gru_hidden != hidden else nn.Identity()
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        for name, parameter in self.gru.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(parameter)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(parameter)
            else:
                nn.init.zeros_(parameter)

    def encode_sequence(self, batch: Batch) -> torch.Tensor:
        x = self.embedding_dropout(self.item_embedding(batch["items"]))  # (B, L, D)
        output, _ = self.gru(x)  # (B, L, gru_hidden)
        return self.projection(output)  # (B, L, D)

    # ---- recurrent inference ------------------------------------------------------------------------
    supports_step = True

    def allocate_state(self, batch: int, dtype: torch.dtype = torch.float32, device=None) -> State:
        """The GRU's hidden state, (B, n_layers, gru_hidden) (batch first, unlike ``nn.GRU``'s own layout)."""
        return {"gru": torch.zeros(batch, self.gru.num_layers, self.gru.hidden_size, dtype=dtype, device=device)}

    def step(self, state: State, event: Batch) -> tuple[torch.Tensor, State]:
        x = self.embedding_dropout(self.item_embedding(event["items"]))[:, None]  # (B, 1, D)
        output, h = self.gru(x, state["gru"].transpose(0, 1).contiguous())  # (B, 1, gru_hidden)
        return self.projection(output[:, 0]), {"gru": h.transpose(0, 1)}
