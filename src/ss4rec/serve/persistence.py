"""Snapshots of the state cache, keyed by the checkpoint's hash so a new model never reads old states.

``save_states(core)`` writes ``<state_dir>/states-<sha256[:16]>.pt`` atomically (temporary file, then
rename); ``restore_states(core)`` reads the snapshot of the core's checkpoint, if any, and keeps only entries
whose event count still matches the interaction log (the log is the truth: a stale entry is rebuilt). A snapshot
taken with another window, history or way of serving new users (a ``model.rating_base`` run's ``new_users`` and
``fold_in_noise``: a new user's states read errors under the row that gives them) is not restored.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT = 1


def snapshot_path(core) -> Path:
    digest = core.options.info.get("checkpoint_sha256") or "unknown"
    return Path(core.state_dir) / f"states-{digest[:16]}.pt"


def served_as(core) -> dict:
    """What a state depends on besides the checkpoint and the user's events."""
    based = getattr(core, "base", None) is not None
    return {"history": core.options.history, "max_len": core.options.max_len,
            "new_users": [core.options.new_users, core.options.fold_in_noise] if based else None}  # fmt: skip


def save_states(core) -> Path:
    path = snapshot_path(core)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    payload = {"format": FORMAT, "checkpoint_sha256": core.options.info.get("checkpoint_sha256"), **served_as(core),
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
            and all(payload.get(key) == value for key, value in served_as(core).items()))  # fmt: skip
    if not same:
        return 0
    fresh = {u: e for u, e in payload["entries"].items() if core.log.length(u) == e["n_events"]}
    return core.cache.restore(fresh)
