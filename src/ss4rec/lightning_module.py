"""The one LightningModule that trains and evaluates any ``Recommender``.

It is built from plain (resolved) config dicts and saves them as hyperparameters, so
``RecModule.load_from_checkpoint(path)`` rebuilds the model on CPU with no extra arguments.
"""

from __future__ import annotations

import warnings
from typing import Any

import hydra
import lightning as L
import torch

from ss4rec.batch import Batch, eval_targets
from ss4rec.evaluation import rank_targets
from ss4rec.metrics import DEFAULT_KS, RankingMetrics, RatingMetrics
from ss4rec.models.base import Recommender
from ss4rec.optim import parameter_groups

# metric states are summed across processes by torchmetrics before logging, so sync_dist is not needed
warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level.*")


class RecModule(L.LightningModule):
    """Drives a model through ``train_queries`` / ``eval_queries`` / ``score`` / ``predict_rating``.

    Args:
        model: config of the model (``_target_`` + hyperparameters), ``n_items``/``n_users`` added here.
        objective: config of an ``ss4rec.objectives.Objective``.
        optimizer: partial optimizer config (``_partial_: true``), called with parameter groups.
        scheduler: partial LR-scheduler config or None, stepped once per epoch. A ``ReduceLROnPlateau``
            watches ``monitor`` (the task's selection metric) in the direction of ``mode``.
        monitor, mode: the metric that selects checkpoints and its direction (``task.monitor``, ``task.mode``).
        n_items, n_users: catalogue and user counts from the data module.
        rating_mean: mean training rating (the rating head's offset).
        rating_range: (min, max) of the rating scale; predictions are clamped to it for RMSE/MAE.
        ks: cut-offs for HR/NDCG/MRR.
        mask_seen: mask items seen before the target when ranking.
        eval_chunk_size: items scored at once in evaluation.
        weight_decay: applied to weights only (never to norms, biases, embeddings' padding or SSM params).
        item_features_shape: shape (n_items + 1, G) of side information for models that accept it
            (``set_item_features``); zeros here, the real values are set by the trainer and then live in
            the model's state dict, so checkpoints carry them.
    """

    def __init__(
        self,
        model: dict[str, Any],
        objective: dict[str, Any],
        optimizer: dict[str, Any],
        n_items: int,
        n_users: int,
        scheduler: dict[str, Any] | None = None,
        rating_mean: float = 3.5,
        rating_range: tuple[float, float] = (1.0, 5.0),
        ks: tuple[int, ...] = DEFAULT_KS,
        mask_seen: bool = False,
        eval_chunk_size: int = 8192,
        weight_decay: float = 0.0,
        item_features_shape: tuple[int, int] | None = None,
        monitor: str = "val/ndcg@10",
        mode: str = "max",
        target_weighting: str = "batch",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model: Recommender = hydra.utils.instantiate(model, n_items=n_items, n_users=n_users)
        if item_features_shape is not None and hasattr(self.model, "set_item_features"):
            self.model.set_item_features(torch.zeros(tuple(item_features_shape)))
        rating_head = getattr(self.model, "rating_head", None)
        if rating_head is not None and hasattr(rating_head, "rating_mean"):
            rating_head.rating_mean.fill_(rating_mean)
        self.objective = hydra.utils.instantiate(objective)
        self._targets_per_batch: float | None = None  # uniform weighting's divisor, read in on_train_start
        self._check_support()
        self.rate = self.objective.uses_rating
        self.rank = self.objective.uses_ranking
        self.ranking_metrics = torch.nn.ModuleDict(
            {stage: RankingMetrics(ks) for stage in ("val", "test")} if self.rank else {}
        )
        self.rating_metrics = torch.nn.ModuleDict(
            {stage: RatingMetrics() for stage in ("val", "test")} if self.rate else {}
        )

    def _check_support(self) -> None:
        name = type(self.model).__name__
        if self.objective.uses_ranking and not self.model.supports_ranking:
            raise ValueError(f"{name} cannot rank items; use task=rating")
        if self.objective.uses_rating and not self.model.supports_rating:
            raise ValueError(f"{name} does not predict ratings; use task=ranking")

    # ----------------------------------------------------------------------------- training
    def on_train_start(self) -> None:
        """``target_weighting=uniform``: read the epoch's mean targets per batch from the data module."""
        self._targets_per_batch = None
        if self.hparams.target_weighting == "uniform":
            datamodule = getattr(self.trainer, "datamodule", None)
            per_batch = getattr(datamodule, "train_targets_per_batch", lambda: None)()
            self._targets_per_batch = per_batch or None  # None: one target per example, batch means are uniform

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        query, items, ratings = self.model.train_queries(batch)
        if not self.model.learns_by_gradient:  # e.g. popularity: counting, no loss to minimise
            return None
        from_end = None  # each target's place from its user's end, in the sequence models' target order
        if self.objective.weighs_recent and "target_from_end" in batch:
            from_end = batch["target_from_end"][batch["target_items"] > 0]
        parts = self.objective(self.model, query, items, ratings, from_end)
        batch_size = int(items.shape[0])
        # the objective is a mean over the batch's targets; uniform weighting makes it their sum over the epoch's
        # mean count, so every target weighs the same whatever its batch holds (logged: the plain mean)
        per_batch = self._targets_per_batch
        loss = parts["loss"] * (batch_size / per_batch) if per_batch else parts["loss"]
        extra = self.model.extra_loss(batch)
        if extra is not None:
            parts["extra_loss"] = extra
            parts["loss"] = parts["loss"] + extra
            loss = loss + extra
        for name, value in parts.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=batch_size, on_epoch=True, on_step=False)
        return loss

    # ----------------------------------------------------------------------------- evaluation
    def target_ranks(self, batch: Batch, query: torch.Tensor | None = None) -> torch.Tensor:
        """0-based rank of each held-out target of an evaluation batch among all items (B,), as evaluation
        counts it (seen items masked when the run masks them); ``query``: the batch's ``eval_queries``."""
        query = self.model.eval_queries(batch) if query is None else query
        return rank_targets(
            lambda ids: self.model.score(query, ids),
            eval_targets(batch)[0],
            self.model.n_items,
            seen=batch["seen"] if self.hparams.mask_seen else None,
            chunk_size=self.hparams.eval_chunk_size,
        )

    def _evaluate(self, batch: Batch, stage: str) -> None:
        query = self.model.eval_queries(batch)  # (B, Q)
        targets, _, target_ratings = eval_targets(batch)
        if self.rank:
            self.ranking_metrics[stage].update(self.target_ranks(batch, query))
        if self.rate:
            low, high = self.hparams.rating_range
            predicted = self.model.predict_rating(query, targets).clamp(low, high)
            self.rating_metrics[stage].update(predicted, target_ratings)

    def _log_stage(self, stage: str) -> None:
        values: dict[str, torch.Tensor] = {}
        for metrics in (self.ranking_metrics, self.rating_metrics):
            if stage in metrics:
                values.update({f"{stage}/{k}": v.float() for k, v in metrics[stage].compute().items()})
                metrics[stage].reset()
        self.log_dict(values, prog_bar=False, sync_dist=False)  # states are already synced sums

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    # ----------------------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        groups = parameter_groups(self.model, self.hparams.weight_decay)
        if not groups:
            return None  # nothing to optimise (popularity)
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(groups)
        if not self.hparams.scheduler:
            return optimizer
        if self.hparams.scheduler.get("_target_", "").endswith("ReduceLROnPlateau"):
            scheduler = hydra.utils.instantiate(self.hparams.scheduler, mode=self.hparams.mode)(optimizer)
            plan = {"scheduler": scheduler, "interval": "epoch", "monitor": self.hparams.monitor, "strict": True}
        else:
            plan = {"scheduler": hydra.utils.instantiate(self.hparams.scheduler)(optimizer), "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": plan}
