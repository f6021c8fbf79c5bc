"""Logger factories."""

from __future__ import annotations

import os
from typing import Any


def wandb_logger(offline: bool | None = None, save_dir: str = ".", **kwargs: Any):
    """A ``WandbLogger`` that runs offline unless the user is logged in (or ``offline`` says otherwise)."""
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = not _logged_in()
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(offline=offline, save_dir=save_dir, reinit=True, **kwargs)


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return True
    try:
        import wandb

        return bool(wandb.api.api_key)
    except Exception:
        return False
