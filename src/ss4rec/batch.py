"""The batch layouts every data loader produces and every model consumes.

Batches are plain ``dict[str, Tensor]``. Ids: users are ``0..n_users-1``; items are ``1..n_items`` and
``0`` is padding. Timestamps are integer unix seconds (``int64``, never float32). Ratings are float32.

``sequence`` batches (sequential models, training *and* evaluation)
    users           (B,)     long   user index
    items           (B, L)   long   input items, right-padded with 0
    times           (B, L)   int64  time of each input item (0 on padding)
    ratings         (B, L)   float  rating of each input item (0 on padding)
    lengths         (B,)     long   number of real positions (>= 1)
    target_items    (B, L)   long   the item that follows each position; 0 = no target at this position
    target_times    (B, L)   int64  time of that next item (0 where no target)
    target_ratings  (B, L)   float  rating of that next item (0 where no target)

  Training batches also carry
    target_from_end (B, L)   long   each target's place from the end of the user's training part (1 = the
                                    last training rating; 0 where no target): ``task.rating_recent_*``

  In training every position with ``target_items > 0`` is a training example (one forward pass trains all
  prefixes); windows of long users mask the targets another window already covers. In evaluation the
  input is the user's most recent ``max_len`` interactions before the held-out target, so the target sits
  at ``target_items[b, lengths[b] - 1]`` and the earlier positions hold the (known) next input items.
  Evaluation batches also carry
    seen            (B, S)   long   every item of the user's history before the target (not truncated),
                                    right-padded with 0; used to mask seen items and as VAE history
    train_lengths   (B,)     long   how many leading ``seen`` entries are the user's training part
                                    (validation: all; test: all but the validation item); SVD++'s N(u)

``pairs`` batches (user-item models trained on single interactions: MF, NCF)
    users (B,) long, items (B,) long, ratings (B,) float, times (B,) int64

``history`` batches (user models trained on a whole history row: Mult-VAE)
    users (B,) long, history (B, S) long right-padded with 0, history_ratings (B, S) float,
    history_times (B, S) int64 (0 on padding)

``columns`` batches (item models trained on whole item columns: I-AutoRec with ``batches: items``)
    the keys of ``pairs`` batches, holding every fitted training rating of a set of items (grouped by item); the
    batch size counts items, so the number of ratings varies
"""

from __future__ import annotations

import torch

SEQUENCE = "sequence"
PAIRS = "pairs"
HISTORY = "history"
COLUMNS = "columns"
TRAIN_FORMATS = (SEQUENCE, PAIRS, HISTORY, COLUMNS)

Batch = dict[str, torch.Tensor]


def last_position(lengths: torch.Tensor) -> torch.Tensor:
    """Index of the last real position, (B,) -> (B,)."""
    return (lengths - 1).clamp_min(0)


def gather_last(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Pick each row's value at its last real position: (B, L, ...) -> (B, ...)."""
    index = last_position(lengths).to(values.device)
    return values[torch.arange(values.shape[0], device=values.device), index]


def eval_targets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out target item, time and rating of an evaluation ``sequence`` batch, each (B,)."""
    lengths = batch["lengths"]
    return (
        gather_last(batch["target_items"], lengths),
        gather_last(batch["target_times"], lengths),
        gather_last(batch["target_ratings"], lengths),
    )


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True on real positions: (B,) -> (B, L)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
