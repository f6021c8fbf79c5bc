"""Files a run writes and reads back: atomic checkpoint and JSON writes, and checkpoint checks.

A kill at any moment (SIGKILL during a save included) leaves either the previous file or the new one,
never a half-written one: every file is written to a temporary name in the same folder, flushed to disk,
then renamed over the target (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ss4rec.errors import CheckpointError

#: keys every Lightning training checkpoint has
CHECKPOINT_KEYS = ("state_dict", "epoch", "global_step")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed save left in ``folder`` (never a complete file); return them."""
    stale = sorted(Path(folder).glob(".*.tmp-*")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=2, default=str).encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with local files written atomically (temp file + ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: Lightning's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path, what: str = "ckpt_path") -> dict[str, Any]:
    """Load a Lightning checkpoint on CPU, or raise CheckpointError saying what is wrong with the file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{what}={str(path)!r}: no such file; expected a checkpoint such as "
                              "<run>/checkpoints/last.ckpt")  # fmt: skip
    if path.is_dir():
        raise CheckpointError(f"{what}={str(path)!r} is a directory; expected a checkpoint file such as "
                              f"{path / 'last.ckpt'}")  # fmt: skip
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what}={str(path)!r} is an empty file; expected a Lightning checkpoint")
    try:  # torch.save writes a CRC-32 per member, which torch.load never checks: a flipped byte would load
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile as err:
        raise CheckpointError(
            f"{what}={str(path)!r} is not a checkpoint (not a torch.save zip archive: {err}; truncated, damaged, "
            "or another kind of file); use <run>/checkpoints/last.ckpt or a best-epochNNN.ckpt"
        ) from err
    except Exception as err:  # noqa: BLE001 - zipfile raises many kinds on a damaged directory
        raise CheckpointError(f"{what}={str(path)!r} is a damaged archive ({type(err).__name__}: {err}); the "
                              "file is truncated or altered") from err  # fmt: skip
    if damaged is not None:
        raise CheckpointError(f"{what}={str(path)!r} is damaged: {damaged} does not match its CRC-32 (the file "
                              "was altered after it was written)")  # fmt: skip
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means a damaged file
        raise CheckpointError(f"{what}={str(path)!r} could not be read ({type(err).__name__}: {err}); "
                              "the file is damaged or truncated") from err  # fmt: skip
    if not isinstance(checkpoint, dict) or not all(k in checkpoint for k in CHECKPOINT_KEYS):
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{what}={str(path)!r} is not a Lightning training checkpoint (has {keys}; expected "
            f"{', '.join(CHECKPOINT_KEYS)})"
        )
    return checkpoint


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's tensors in a Lightning checkpoint of this project (``state_dict`` keys ``model.<name>``)."""
    state = checkpoint.get("state_dict") or {}
    return {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
