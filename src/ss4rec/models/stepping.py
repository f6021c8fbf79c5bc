"""Drive a recurrent model's ``step`` over whole (right-padded) sequences: rebuilding states from a log.

``step_through(model, batch)`` reads a ``sequence`` batch (see ss4rec.batch) one position at a time for all
rows at once and returns the hidden state of every position, (B, L, D), and each row's state after its last
real position. On real positions the hidden states equal ``model.encode_sequence(batch)`` (tested to 1e-10
in float64); padding positions never change a row's state.
"""

from __future__ import annotations

import torch

from ss4rec.batch import Batch
from ss4rec.models.base import SequentialRecommender, State


def event_at(batch: Batch, t: int) -> Batch:
    """The step input of position ``t`` of every row: items, ratings, times and next_times, each (B,), and the
    rows' ``users`` when the batch has them (a model whose input reads a rating's error under a rating base needs them).

    ``next_times`` is the batch's ``target_times`` there: the time of the next item, or of the target at
    the last real position (0 when unknown).
    """
    event = {
        "items": batch["items"][:, t],
        "ratings": batch["ratings"][:, t],
        "times": batch["times"][:, t],
        "next_times": batch["target_times"][:, t],
    }
    if "users" in batch:
        event["users"] = batch["users"]
    return event


def keep_where(mask: torch.Tensor, new: State, old: State) -> State:
    """Rows where ``mask`` (B,) is True take ``new``, the others keep ``old``."""
    return {k: torch.where(mask.view(-1, *([1] * (v.dim() - 1))), v, old[k]) for k, v in new.items()}


@torch.no_grad()
def step_through(
    model: SequentialRecommender, batch: Batch, state: State | None = None, step=None
) -> tuple[torch.Tensor, State]:
    """Hidden states (B, L, D) of every position and the states after each row's last real position.

    ``state`` continues from earlier states (None: ``model.allocate_state``, in the embedding's dtype).
    ``step``: the step function (None: ``model.step``; the serving core passes ``model.frozen_step()``).
    """
    step = model.step if step is None else step
    items, lengths = batch["items"], batch["lengths"]
    B, L = items.shape
    weight = model.item_embedding.weight
    if state is None:
        state = model.allocate_state(B, weight.dtype, weight.device)
    hidden = weight.new_zeros(B, L, weight.shape[1])
    for t in range(L):
        out, new = step(state, event_at(batch, t))
        real = t < lengths  # (B,)
        state = keep_where(real, new, state) if not bool(real.all()) else new
        hidden[:, t] = out
    return hidden, state
