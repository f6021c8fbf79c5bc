"""Callbacks: per-epoch history for metrics.json."""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger("ss4rec")


class History(L.Callback):
    """One row per epoch: the epoch's ``val/...`` metrics and its ``train/...`` means (for curves)."""

    def __init__(self):
        self.rows: dict[int, dict[str, float]] = {}

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
        return {"rows": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = {int(r["epoch"]): dict(r) for r in state_dict.get("rows", [])}
