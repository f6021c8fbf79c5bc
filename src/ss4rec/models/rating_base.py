"""A trained biased-MF or SVD++ model, frozen, as the base a sequence model's rating head corrects.

``model.rating_base=<MF or SVD++ run folder or checkpoint>``: a sequential model then predicts
``rating = base(u, i) + head(h_t, e_i)`` instead of ``mean + head(h_t, e_i)``, where base(u, i) =
``mean + b_u + b_i + p_u . q_i`` comes from an ``mf`` run trained with ``task=rating`` on the same split. An
``svdpp`` run is the same formula with ``p_u + |N(u)|^(-1/2) sum_{j in N(u)} y_j`` as the user's factor: N(u) is
the user's training part in training, validation and test alike (``ss4rec.models.svdpp``), so that factor is one
fixed vector per user, computed once from the data when the base is filled.
The head starts at zero, so training starts from the base's predictions and learns what the user's sequence (its
order, times and recent ratings) adds to them. The tables are buffers: never trained, saved in the
sequence model's checkpoints. The model is built with empty tables; a new training run fills them from the
base's checkpoint (``FrozenMF.fill``, called by ``ss4rec.training``), a checkpoint restores them with its own
state dict (the buffers take the saved shapes), so evaluating or resuming does not need the base run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ss4rec.data.collate import history_batch
from ss4rec.errors import UserError
from ss4rec.paths import named_checkpoint

if TYPE_CHECKING:
    from ss4rec.data.store import SequenceStore

#: the MF checkpoint's state-dict keys (under ``model.``) read into the base, by the base's buffer names
MF_KEYS = {
    "user_factors": "user_embedding.weight",
    "user_bias": "user_bias.weight",
    "item_factors": "item_embedding.weight",
    "item_bias": "item_bias.weight",
    "mean": "rating_head.rating_mean",
}
#: what an ``svdpp`` checkpoint has beyond MF's keys: the implicit factors y_j
IMPLICIT_KEY = "implicit_embedding.weight"
#: the models a base may come from (``model._target_`` of the run)
BASE_TARGETS = ("ss4rec.models.mf.MF", "ss4rec.models.svdpp.SVDpp")


class RatingBaseError(UserError):
    """The rating base cannot be read, or does not fit the model's users and items."""


def mf_checkpoint(path: str | Path) -> Path:
    """The checkpoint of an MF or SVD++ run folder (its best, as ``metrics.json`` names it), or ``path`` itself."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RatingBaseError(f"model.rating_base={str(path)!r}: no such file or run folder")
    best = sorted((path / "checkpoints").glob("best-*.ckpt"))
    if not best:
        raise RatingBaseError(
            f"model.rating_base={str(path)!r}: no checkpoints/best-*.ckpt in the folder; train one with "
            f"`python train.py model=mf task=rating hydra.run.dir={path}` (or model=svdpp) on the same data"
        )
    named = named_checkpoint(path)  # the run's own choice
    if named is not None or len(best) == 1:
        return named or best[0]
    raise RatingBaseError(
        f"model.rating_base={str(path)!r}: {len(best)} best checkpoints ({', '.join(c.name for c in best)}) and "
        "no metrics.json naming one; pass the checkpoint file"
    )


def svdpp_user_factors(
    store: SequenceStore, user_factors: torch.Tensor, implicit: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """SVD++'s user factor with N(u) = the user's training part: ``p_u + |N(u)|^(-1/2) sum y_j``, (U, K).

    ``user_factors`` p (U, K), ``implicit`` y (N + 1, K) with a zero padding row 0. The implicit term is
    SVD++'s own (``implicit_feedback`` over the ``history`` rows it trains on), ``chunk`` users at a time, so
    memory stays O(U K + chunk x longest training part x K).
    """
    from ss4rec.models.svdpp import implicit_feedback  # here: svdpp -> base -> this module at import time

    table = nn.Embedding.from_pretrained(implicit, freeze=True, padding_idx=0)
    out = user_factors.clone()
    for start in range(0, store.n_users, chunk):
        users = np.arange(start, min(start + chunk, store.n_users))
        out[users] += implicit_feedback(history_batch(store, users)["history"], table)
    return out


class FrozenMF(nn.Module):
    """``mean + b_u + b_i + p_u . q_i`` from fixed tables: user (U, K), (U,), item (N + 1, K), (N + 1,).

    Filled from an ``mf`` run's tables, or from an ``svdpp`` run's with ``p_u`` replaced by SVD++'s user
    factor over the training part (``svdpp_user_factors``): the same predictions as the SVD++ run.
    """

    def __init__(self, n_users: int, n_items: int, path: str):
        super().__init__()
        self.n_users, self.n_items, self.path = n_users, n_items, path
        # empty until ``fill`` or a state dict gives them their size
        self.register_buffer("user_factors", torch.zeros(0, 0))
        self.register_buffer("user_bias", torch.zeros(0))
        self.register_buffer("item_factors", torch.zeros(0, 0))
        self.register_buffer("item_bias", torch.zeros(0))
        self.register_buffer("mean", torch.tensor(0.0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in MF_KEYS:  # take the saved shapes, so a checkpoint restores without the MF run
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def filled(self) -> bool:
        return self.user_factors.shape[0] == self.n_users and self.item_factors.shape[0] == self.n_items + 1

    @torch.no_grad()
    def fill(self, store: SequenceStore | None = None) -> None:
        """Read the tables from the ``mf`` or ``svdpp`` checkpoint at ``path``; its users and items must be the
        model's. An ``svdpp`` checkpoint needs ``store``, the data the run trains on, for each user's N(u)."""
        n_users, n_items = self.n_users, self.n_items
        checkpoint = mf_checkpoint(self.path)
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
            raise RatingBaseError(f"model.rating_base: cannot read {checkpoint}: {error}") from error
        tables = {name: state.get(f"model.{key}") for name, key in MF_KEYS.items()}
        missing = [MF_KEYS[name] for name, value in tables.items() if value is None]
        if missing:
            raise RatingBaseError(
                f"model.rating_base: {checkpoint} is not a biased-MF (model=mf) or SVD++ (model=svdpp) checkpoint: "
                f"it has no {', '.join(missing)}"
            )
        found = (tables["user_factors"].shape[0], tables["item_factors"].shape[0] - 1)
        if found != (n_users, n_items):
            raise RatingBaseError(
                f"model.rating_base: {checkpoint} has {found[0]} users and {found[1]} items, this run's data "
                f"has {n_users} and {n_items}: train the base run on the same data options"
            )
        like = {"device": self.mean.device, "dtype": self.mean.dtype}  # the module's, e.g. after .double()
        user_factors = tables["user_factors"].to(**like)
        implicit = state.get(f"model.{IMPLICIT_KEY}")
        if implicit is not None:  # SVD++: the user factor over the fixed training part
            if store is None:
                raise RatingBaseError(
                    f"model.rating_base: {checkpoint} is an SVD++ checkpoint; filling it needs the data (fill(store))"
                )
            user_factors = svdpp_user_factors(store, user_factors, implicit.to(**like))
        self.user_factors = user_factors
        self.item_factors = tables["item_factors"].to(**like)
        self.user_bias = tables["user_bias"].reshape(-1).to(**like)
        self.item_bias = tables["item_bias"].reshape(-1).to(**like)
        self.mean = tables["mean"].reshape(()).to(**like)

    def user_part(self, users: torch.Tensor) -> torch.Tensor:
        """``[p_u, b_u]`` (..., K + 1): what a query carries for the base."""
        return torch.cat([self.user_factors[users], self.user_bias[users].unsqueeze(-1)], dim=-1)

    def forward(self, user_part: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user_part (M, K + 1) from ``user_part``, items (M,) -> the base's ratings (M,)."""
        dot = (user_part[..., :-1] * self.item_factors[items]).sum(-1)
        return self.mean + user_part[..., -1] + self.item_bias[items] + dot
