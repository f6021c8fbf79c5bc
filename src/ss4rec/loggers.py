"""Logger factories."""

from __future__ import annotations

import netrc
import os
from typing import Any


def wandb_logger(offline: bool | None = None, save_dir: str = ".", **kwargs: Any):
    """A ``WandbLogger`` that runs offline unless the user is logged in (or ``offline`` says otherwise).

    The mode goes to ``wandb.init`` directly: an environment variable set later would be ignored once wandb
    has read its settings.
    """
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = not logged_in()
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(offline=offline, mode="offline" if offline else "online", save_dir=save_dir, **kwargs)


def logged_in() -> bool:
    """True when W&B credentials exist (``WANDB_API_KEY`` or the netrc entry ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
