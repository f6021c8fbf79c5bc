"""Callbacks: per-epoch history for metrics.json, the non-finite guard, RNG state in checkpoints, plateau steps."""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from ss4rec.errors import NonFiniteError

log = logging.getLogger("ss4rec")


class History(L.Callback):
    """One row per epoch: the epoch's ``val/...`` metrics and its ``train/...`` means (for curves), and the
    run's training seconds, carried through checkpoints so that a resumed run counts its earlier processes
    (up to the checkpoint it resumed from: work after that checkpoint was lost and done again)."""

    def __init__(self, started: float | None = None):
        self.rows: dict[int, dict[str, float]] = {}
        self.first_epoch: int | None = None  # the epoch this process started at (> 0 when resumed)
        self.started = time.time() if started is None else started  # this process's start
        self.earlier_s = 0.0  # training seconds of earlier processes, from the checkpoint resumed

    @property
    def train_seconds(self) -> float:
        """Seconds of this run: the earlier processes' (to the resumed checkpoint) plus this one's so far."""
        return self.earlier_s + time.time() - self.started

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first_epoch = int(trainer.current_epoch)

    def _record(self, trainer: L.Trainer, prefix: str) -> None:
        row = self.rows.setdefault(int(trainer.current_epoch), {"epoch": int(trainer.current_epoch)})
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix):
                row[name] = float(value)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module logs the epoch's metrics there
        if not trainer.sanity_checking:
            self._record(trainer, "val/")
            row = self.rows[int(trainer.current_epoch)]
            shown = [k for k in ("val/ndcg@10", "val/hr@10", "val/mrr@10", "val/rmse") if k in row]
            if trainer.is_global_zero and shown:
                log.info("epoch %d: %s", row["epoch"], "  ".join(f"{k}={row[k]:.4f}" for k in shown))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "train/")

    @property
    def history(self) -> list[dict[str, float]]:
        return [self.rows[e] for e in sorted(self.rows)]

    def state_dict(self) -> dict:
        return {"rows": self.history, "train_seconds": self.train_seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = {int(r["epoch"]): dict(r) for r in state_dict.get("rows", [])}
        self.earlier_s = float(state_dict.get("train_seconds", 0.0))  # 0: written before it was recorded


def _advice(trainer: L.Trainer) -> str:
    """What to do next: lower the learning rate or clip gradients, and where the last good weights are."""
    checkpoint = trainer.checkpoint_callback
    last = getattr(checkpoint, "last_model_path", "") if checkpoint is not None else ""
    text = "Lower optimizer.lr or set trainer.gradient_clip_val (e.g. 1.0)."
    if last:
        return f"{text} Last good checkpoint: {last} (resume: ckpt_path={last} trainer.gradient_clip_val=1.0)."
    return f"{text} No checkpoint was written before it diverged."


class NonFiniteGuard(L.Callback):
    """Stop the run at the first NaN or infinite training loss, gradient norm, validation metric or weight.

    The loss is checked before its backward pass and the gradient norm before the optimiser step, so
    non-finite values never reach the weights; the checkpoint being written is checked before it is
    written, so no checkpoint (best or last) ever holds non-finite weights. Raises
    :class:`~ss4rec.errors.NonFiniteError` naming the step, the epoch, the batch and the value.
    The gradient norm is not checked under ``16-mixed`` precision, whose loss scaler skips such steps.
    """

    def __init__(self, check_grad_norm: bool = True):
        self.check_grad_norm = check_grad_norm
        self.batch_idx = -1

    def _where(self, trainer: L.Trainer) -> str:
        return f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self.batch_idx})"

    def _fail(self, trainer: L.Trainer, what: str, value: float | str) -> None:
        raise NonFiniteError(f"{what} is {value} at {self._where(trainer)}; the run is stopped. {_advice(trainer)}")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        self.batch_idx = batch_idx

    @staticmethod
    def _anywhere(trainer: L.Trainer, bad: bool) -> bool:
        """True on every process when it is true on one (DDP: all stop together instead of one hanging)."""
        strategy = getattr(trainer, "strategy", None)
        return bool(strategy.reduce_boolean_decision(bad, all=False)) if strategy is not None else bad

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        if self._anywhere(trainer, not math.isfinite(value)):
            self._fail(trainer, "the training loss", value if not math.isfinite(value) else "finite here, not finite on another process")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.check_grad_norm or "16-mixed" in str(trainer.precision):
            return
        grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        # the norm of a complex gradient (S5's eigenvalues) is real: a NaN in its imaginary part still shows
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g).float() for g in grads])))
        if not math.isfinite(norm):  # gradients are already averaged across processes: every one sees it
            self._fail(trainer, "the gradient norm", norm)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/") and not math.isfinite(float(value)):
                raise NonFiniteError(
                    f"validation metric {name} is {float(value)} after epoch {trainer.current_epoch} "
                    f"(step {trainer.global_step}); the run is stopped. {_advice(trainer)}"
                )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for name, tensor in checkpoint.get("state_dict", {}).items():
            if torch.is_tensor(tensor) and (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"weight {name} is not finite at {self._where(trainer)}; the checkpoint was not written "
                    f"and the run is stopped. {_advice(trainer)}"
                )


class ModelCheckpoint(L.pytorch.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with ``last.ckpt`` written at the end of every epoch.

    Lightning 2.6 refreshes ``last.ckpt`` only when it also saves a top-k checkpoint, so after the best
    epoch ``last.ckpt`` would fall behind and a resume would repeat epochs. The end of an epoch (after its
    validation) is the point a run resumes from exactly (README, "Failures, validation and resuming").
    """

    def _refresh_last(self, trainer: L.Trainer, at_train_epoch_end: bool) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and (
            self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
        )
        if due and self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._refresh_last(trainer, at_train_epoch_end=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_last(trainer, at_train_epoch_end=False)


class RNGState(L.Callback):
    """Carry the random generators (torch CPU and CUDA, numpy, Python) in every checkpoint.

    Restored when a run resumes, so dropout masks and sampled negatives continue exactly as in an
    uninterrupted run (the data order depends only on ``(data.seed, epoch)``).
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain types and tensors only: checkpoints load with torch.load(weights_only=True)
        numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
        state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class PlateauResume(L.Callback):
    """Give a resumed ``ReduceLROnPlateau`` the epoch Lightning skips, so that resume stays exact.

    A checkpoint is written at the end of an epoch's validation, before the plateau scheduler's step for that
    epoch. On resume Lightning finishes that epoch without the step (the metric it needs is not in the
    checkpoint), so the scheduler would never see it: one fewer bad epoch counted, or a best score missed, and
    the learning rate drifts from an uninterrupted run's. Each checkpoint therefore carries the monitored value
    of its epoch, and a resumed run applies the missing step before training on; only when the restored
    scheduler has stepped exactly up to that epoch (not for a scheduler new to the run, as in a fork).
    """

    KEY = "plateau_steps"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        values = [trainer.callback_metrics.get(c.monitor) if c.reduce_on_plateau else None
                  for c in trainer.lr_scheduler_configs]  # fmt: skip
        if any(v is not None for v in values):
            checkpoint[self.KEY] = {"epoch": trainer.current_epoch, "values": [None if v is None else float(v) for v in values]}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        for config, value in zip(trainer.lr_scheduler_configs, pending["values"]):
            if value is not None and config.reduce_on_plateau and config.scheduler.last_epoch == pending["epoch"]:
                config.scheduler.step(value)
