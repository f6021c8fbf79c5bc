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
    """One run of an export: what names it, its folder and checkpoint, its folder's config (``data``, ``model``), its
    model and hyperparameters."""

    path: str
    run: Path | None
    checkpoint: Path
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
    return Member(str(path), run, checkpoint, config, model, hparams)


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


class ServingEnsemble:
    """Several rating runs of one split served as one model (``python -m ss4rec.serve RUN_A RUN_B``): the plain mean
    of the members' clamped predicted ratings, as the batch export ranks by (:class:`RatingEnsemble`).

    The members are serving cores on one interaction log (each with its own states, window and history as a single
    run serves them); an ingested event goes into the log and the journal once and advances every member. Items are
    ranked by the mean rating, which is both the ``score`` and the ``rating`` of a recommendation. A user one member
    cannot serve (a new user of a ``model.rating_base`` run served with ``new_users="refuse"``) is refused as that
    member refuses them.
    """

    def __init__(self, cores: list, journal=None):
        from ss4rec.serve.core import ServeOptions

        if len(cores) < 2:
            raise ValueError(f"an ensemble needs at least two cores, got {len(cores)}")
        first = cores[0]
        if any(core.log is not first.log for core in cores):
            raise ValueError("the cores of an ensemble must share one interaction log")
        if any(not core.options.has_rating for core in cores):
            raise ValueError("every core of an ensemble must predict ratings (task=rating or joint)")
        self.cores, self.log, self.catalogue, self.journal = cores, first.log, first.catalogue, journal
        self.options = ServeOptions(max_len=max(core.options.max_len for core in cores), history=first.options.history,
                                    cache_mb=sum(core.options.cache_mb for core in cores), has_rating=True, ranks=False,
                                    rating_range=first.options.rating_range, info={"model": "ensemble"})  # fmt: skip
        self.state_dir = None

    def recommend(self, user_id, k: int = 10, exclude_seen: bool = True, at=None) -> list[dict]:
        """Top-``k`` items by the members' mean rating (``score`` and ``rating``), as ``ServingCore.recommend``."""
        from ss4rec.serve.core import item_rows, top_items
        from ss4rec.serve.validation import check_k, request_time

        k, at = check_k(k, self.catalogue.n_items), request_time(at)
        mean = self.every_rating(user_id, at)
        items, scores = top_items(mean, k, self.log.items(user_id) if exclude_seen else None)
        return item_rows(self.catalogue, items, scores, scores.tolist())

    def every_rating(self, user_id, at=None) -> torch.Tensor:
        """The members' mean clamped rating of every item (N,)."""
        return sum(core.every_rating(user_id, at) for core in self.cores) / len(self.cores)

    @property
    def store(self):
        """The prepared data the members' log started from (one split: the first member's)."""
        return self.cores[0].store

    def predicted_ratings(self, user_id, item_indices: torch.Tensor, at=None) -> torch.Tensor:
        """The members' mean clamped rating (K,) of item indices (K,)."""
        return sum(core.predicted_ratings(user_id, item_indices, at) for core in self.cores) / len(self.cores)

    def rate(self, user_id, item_ids, at=None) -> list[dict]:
        """The members' mean predicted rating of each given item, ``[{"item_id", "rating"}]``."""
        each = [core.rate(user_id, item_ids, at) for core in self.cores]
        return [{"item_id": rows[0]["item_id"], "rating": sum(row["rating"] for row in rows) / len(rows)}
                for rows in zip(*each)]  # fmt: skip

    def ingest(self, user_id, item_id, timestamp, rating=None) -> dict:
        """Record an event once (log and journal) and advance every member's state; as ``ServingCore.ingest``."""
        from ss4rec.serve.core import record_event

        return record_event(self, self.cores, user_id, item_id, timestamp, rating)

    def warm(self, user_ids=None, batch_size: int = 256) -> int:
        """Build the states of every member (``ServingCore.warm``); returns the most users one member built."""
        return max(core.warm(user_ids, batch_size) for core in self.cores)

    def close(self, save: bool = True) -> None:
        """Each member's snapshot (into the shared state folder, keyed by its checkpoint), then the journal."""
        for core in self.cores:
            core.close(save)
        if self.journal is not None:
            self.journal.close()

    def info(self) -> dict:
        return {"model": "ensemble", "members": [core.info() for core in self.cores], "has_rating": True,
                "history": self.options.history, "n_items": self.catalogue.n_items, "n_users": len(self.log)}  # fmt: skip


def load_ensemble(
    paths: list[str | Path],
    history: str = "full",
    cache_mb: float = 256.0,
    state_dir: str | Path | None = None,
    fsync: bool = False,
    restore: bool = True,
    **new_users,
) -> ServingEnsemble:
    """The runs ``paths`` names (rating runs of one split, checked by :func:`load_members`) served as one model; the
    state folder (default the first run's ``serving``) holds the shared journal and each member's snapshots; each
    member's state cache gets ``cache_mb``."""
    from ss4rec.serve.loading import assemble, default_state_dir, open_state

    members = load_members(paths)
    if len(members) < 2:
        raise ConfigError([f"path: {paths[0]!r} alone: an ensemble averages two or more runs (serve one run with load_core)"])
    cores = []
    for member in members:
        cores.append(assemble(member.run, member.checkpoint, member.config, member.model, member.hparams, history,
                              cache_mb, log=cores[0].log if cores else None, **new_users))  # fmt: skip
    ensemble = ServingEnsemble(cores)
    first = members[0]
    open_state(ensemble, cores, state_dir or default_state_dir(first.run, first.checkpoint), fsync, restore)
    return ensemble


def load_served(paths: list[str | Path], **options):
    """What ``python -m ss4rec.serve PATH [PATH ...]`` serves: one run's core (:func:`~ss4rec.serve.loading.load_core`),
    or several rating runs as one model (:func:`load_ensemble`); ``options`` are theirs."""
    if len(paths) == 1:
        from ss4rec.serve.loading import load_core

        return load_core(paths[0], **options)
    return load_ensemble(paths, **options)
