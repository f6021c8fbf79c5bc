"""The compact sequence store: flat arrays plus per-user offsets, and its on-disk cache.

User ``u``'s chronological interactions are rows ``offsets[u]:offsets[u + 1]`` of ``items``, ``times`` and
``ratings``. Leave-one-out is positional: the last row is the test target, the one before the validation
target, the rest the training part.

On disk a store is a folder of ``.npy`` files (memory-mapped when loaded) and ``manifest.json``. It is
written into a temporary folder, the manifest last, and renamed into place, so an interrupted run never
leaves a folder a later run trusts; a folder whose manifest is missing or disagrees with its files is
ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
STORE_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = ("items", "times", "ratings", "offsets", "user_map", "item_map", "item_genres", "item_titles")


@dataclass
class SequenceStore:
    """Shapes: T interactions, U users, N items (ids 1..N, 0 padding), G genres."""

    items: np.ndarray  # (T,) int32
    times: np.ndarray  # (T,) int64 unix seconds
    ratings: np.ndarray  # (T,) float32
    offsets: np.ndarray  # (U + 1,) int64
    user_map: np.ndarray  # (U,) original user ids
    item_map: np.ndarray  # (N + 1,) original item ids; [0] is a placeholder for padding
    item_genres: np.ndarray | None = None  # (N + 1, G) bool multi-hot
    item_titles: np.ndarray | None = None  # (N + 1,) str
    info: dict = field(default_factory=dict)  # raw counts, options, genre names

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_map) - 1

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Interactions per user, (U,)."""
        return np.diff(self.offsets)

    @property
    def train_ends(self) -> np.ndarray:
        """Row one past each user's training part (= the validation row), (U,)."""
        return self.offsets[1:] - 2

    def users_of_rows(self) -> np.ndarray:
        """User index of every row, (T,)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)

    def train_rows(self) -> np.ndarray:
        """Row indices of every training interaction, (T - 2U,)."""
        train_len = self.lengths - 2
        starts = self.offsets[:-1]
        return np.repeat(starts - np.cumsum(train_len) + train_len, train_len) + np.arange(train_len.sum())

    # ---- disk -------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write atomically into ``folder`` (which must not exist yet); return it."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            files = {}
            for name in _ARRAYS:
                array = getattr(self, name)
                if array is None:
                    continue
                array = np.asarray(array)
                if array.dtype == object:
                    array = array.astype(str)
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
                files[name] = {"shape": list(array.shape), "dtype": array.dtype.str,
                               "bytes": (tmp / f"{name}.npy").stat().st_size}  # fmt: skip
            manifest = {"version": STORE_VERSION, "files": files, "info": self.info}
            with open(tmp / MANIFEST, "w") as handle:  # the manifest last: its presence means complete
                json.dump(manifest, handle, indent=1, default=_jsonable)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if not folder.is_dir() or load_store(folder) is None:
                raise
        return folder


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def load_store(folder: Path, mmap: bool = True) -> SequenceStore | None:
    """The store in ``folder``, or None when it is missing, incomplete or from another version."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != STORE_VERSION:
        return None
    arrays = {}
    for name, meta in manifest["files"].items():
        path = folder / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != meta["bytes"]:
            log.warning("cache %s is incomplete (%s); rebuilding it", folder, path.name)
            return None
        arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return SequenceStore(**arrays, info=manifest.get("info", {}))


def cache_key(material: dict) -> str:
    """Hex digest of the source fingerprint and every preprocessing option."""
    text = json.dumps({"store_version": STORE_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
