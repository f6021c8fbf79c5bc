"""Cross-fitting folds of the training ratings: which fold each (user, item) rating falls in.

``data.holdout_folds=K data.holdout_fold=k`` trains an ``mf``, ``svdpp`` or ``timesvdpp`` run on the training ratings outside
fold k (the split, validation and test are unchanged). The K runs of one such cross-fitting, given together as a
sequence model's ``model.rating_base``, give every training rating a prediction from the run that never saw it
(``ss4rec.models.rating_base``): the errors a correcting model learns from are then out of sample, as they are
for the held-out ratings it is scored on, instead of the base's smaller errors on ratings it was fitted to.

The fold is a fixed hash of the user and item indices, the same in numpy (data) and torch (model), so a model
finds the fold of any rating from the ids in its batch. MovieLens has no repeated user-item pair; with repeats
(``data.duplicates=keep_all`` on other data) both ratings of a pair share a fold.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Ids = TypeVar("Ids", np.ndarray, torch.Tensor)

_PRIME = 2_147_483_647  # 2^31 - 1: every product below stays under 2^62
_USER_STRIDE = 1_000_003


def rating_fold(users: Ids, items: Ids, folds: int) -> Ids:
    """Fold in ``[0, folds)`` of each rating of ``users[i]`` on ``items[i]`` (int64 arrays or tensors)."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    x = (users * _USER_STRIDE + items) % _PRIME
    x = (x * 48_271) % _PRIME
    x = x ^ (x >> 15)
    x = (x * 16_807) % _PRIME
    return x % folds
