"""Snapshots of the state cache, keyed by the checkpoint's hash so a new model never reads old states.

``save_states(core)`` writes ``<state_dir>/states-<sha256[:16]>.pt`` atomically (temporary file, then
rename); ``restore_states(core)`` reads the snapshot of the core's checkpoint, if any, and keeps only entries
whose event count still matches the interaction log (the log is the truth: a stale entry is rebuilt).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = 1


def snapshot_path(core) -> Path:
    digest = core.options.info.get("checkpoint_sha256") or "unknown"
    return Path(core.state_dir) / f"states-{digest[:16]}.pt"


def save_states(core) -> Path:
    path = snapshot_path(core)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    payload = {"format": FORMAT, "checkpoint_sha256": core.options.info.get("checkpoint_sha256"),
               "history": core.options.history, "max_len": core.options.max_len,
               "entries": core.cache.snapshot()}  # fmt: skip
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def restore_states(core) -> int:
    """Restore the matching snapshot; returns the number of user states put back (0 when none)."""
    path = snapshot_path(core)
    if not path.is_file():
        return 0
    payload = torch.load(path, map_location="cpu", weights_only=True)
    same = (payload.get("format") == FORMAT
            and payload.get("checkpoint_sha256") == core.options.info.get("checkpoint_sha256")
            and payload.get("history") == core.options.history and payload.get("max_len") == core.options.max_len)  # fmt: skip
    if not same:
        return 0
    fresh = {u: e for u, e in payload["entries"].items() if core.log.length(u) == e["n_events"]}
    return core.cache.restore(fresh)
