"""Several rating runs of one split as one model: the plain mean of their predicted ratings.

``python -m ss4rec.recommend RUN_A RUN_B ...`` ranks every user's items by this mean. Each member's prediction is
clamped to the rating range before the mean is taken, as ``benchmarks/rating_blend.py --record-mean`` scores an
ensemble on validation and test: the model that record measures (nothing is fitted).

:func:`load_members` checks, before any data are read, that the runs can be averaged: each predicts ratings
(``task=rating`` or ``joint``), all were trained on one split (every data option that decides the split, as
``model.rating_base`` checks its base run) and clamp to the same range. Runs may read windows of different lengths:
the batch holds the longest, and each member reads its own ``data.max_len`` last events of it (:func:`last_events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from ss4rec.config_checks import split_differences
from ss4rec.errors import ConfigError
from ss4rec.serve.loading import load_model, resolve, run_config


@dataclass
class Member:
    """One run of an export: its folder's config (``data``, ``model``), its model and hyperparameters."""

    path: str
    config: dict
    model: nn.Module
    hparams: dict

    @property
    def objective(self):
        return hydra.utils.instantiate(self.hparams["objective"])

    @property
    def rating_range(self) -> tuple[float, float]:
        return tuple(float(x) for x in self.hparams.get("rating_range", (1.0, 5.0)))

    @property
    def max_len(self) -> int:
        return int(self.config["data"].get("max_len", 200))


def load_member(path: str | Path) -> Member:
    """The run ``path`` names (a run folder or a checkpoint inside one), loaded on CPU in eval mode."""
    run, checkpoint = resolve(path)
    config = run_config(run)
    model, hparams = load_model(checkpoint)
    return Member(str(path), config, model, hparams)


def load_members(paths: list[str | Path]) -> list[Member]:
    """The runs to average, checked against the first (ConfigError listing every problem, one per run)."""
    members = [load_member(path) for path in paths]
    if len(members) == 1:
        return members
    first = members[0]
    problems = []
    for member in members:
        if not member.objective.uses_rating:
            problems.append(f"path={member.path!r}: expected a run that predicts ratings (task=rating or task=joint) to "
                            "average with the others; it was trained for ranking only")  # fmt: skip
    for member in members[1:]:
        differ = split_differences(OmegaConf.create({"data": first.config["data"]}), member.config["data"], member.path,
                                   f"in {first.path}")  # fmt: skip
        if differ:
            problems.append(f"path={member.path!r} was trained on another split than {first.path!r}:\n  "
                            + "\n  ".join(differ))  # fmt: skip
        if member.rating_range != first.rating_range:
            problems.append(f"path={member.path!r} clamps ratings to {member.rating_range}, {first.path!r} to "
                            f"{first.rating_range}; expected runs on one rating scale")  # fmt: skip
    if problems:
        raise ConfigError(problems)
    return members


#: the (B, T) event columns of a right-padded ``sequence`` batch (``seen`` and ``train_lengths``: the whole history)
EVENT_COLUMNS = ("items", "times", "ratings", "target_times")


def last_events(batch: dict[str, torch.Tensor], max_len: int) -> dict[str, torch.Tensor]:
    """``batch`` with each row cut to its last ``max_len`` events, still right-padded (the window a run with
    ``data.max_len=max_len`` reads); ``batch`` itself when no row is longer."""
    lengths = batch["lengths"]
    if int(lengths.max()) <= max_len:
        return batch
    kept = lengths.clamp(max=max_len)
    positions = torch.arange(max_len, device=lengths.device)
    source = (lengths - kept)[:, None] + positions  # (B, max_len): where each kept event sits now
    valid = positions < kept[:, None]
    source = torch.where(valid, source, torch.zeros_like(source))
    cut = dict(batch, lengths=kept)
    for key in EVENT_COLUMNS:
        if key in batch:
            cut[key] = torch.where(valid, batch[key].gather(1, source), torch.zeros_like(source, dtype=batch[key].dtype))
    return cut


class RatingEnsemble(nn.Module):
    """The plain mean of its members' predicted ratings, each clamped to ``rating_range`` first; member i reads the
    last ``max_lens[i]`` events of each row."""

    def __init__(self, models: list[nn.Module], max_lens: list[int], rating_range: tuple[float, float]):
        super().__init__()
        self.members = nn.ModuleList(models)
        self.max_lens, self.rating_range = list(max_lens), rating_range
        self.n_items = models[0].n_items

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean rating of every item id for each user of an evaluation ``sequence`` batch: (B, N + 1)."""
        total = None
        for model, max_len in zip(self.members, self.max_lens, strict=True):
            query = model.eval_queries(last_events(batch, max_len))
            ratings = model.rate_every_item(query).float().clamp(*self.rating_range)
            total = ratings if total is None else total + ratings
        return total / len(self.members)
