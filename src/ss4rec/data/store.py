"""The compact sequence store: flat arrays plus per-user offsets, and its on-disk cache.

User ``u``'s chronological interactions are rows ``offsets[u]:offsets[u + 1]`` of ``items``, ``times`` and
``ratings``. Leave-one-out is positional: the last row is the test target, the one before the validation
target, the rest the training part.

On disk a store is a folder of ``.npy`` files (memory-mapped when loaded) and ``manifest.json``. It is
written into a temporary folder, the manifest last, and renamed into place, so an interrupted run never
leaves a folder a later run trusts. The manifest records each file's size, shape, dtype and CRC-32; a
folder whose manifest is missing or damaged, or whose files disagree with it (truncated, altered, not a
``.npy`` file, inconsistent offsets), is reported with a warning, ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
STORE_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = ("items", "times", "ratings", "offsets", "user_map", "item_map", "item_genres", "item_titles")


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row indices of the ranges ``[start, start + length)``, concatenated in order, (lengths.sum(),) int64."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())


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
        return ranges(self.offsets[:-1], self.lengths - 2)

    def without_last(self, k: int) -> SequenceStore:
        """The store with each user's last ``k`` interactions left out (in memory; users and items unchanged), so
        its validation and test targets are each user's (k + 2)-th and (k + 1)-th last interactions. Every user
        needs ``k + 3`` interactions (two held out and one to train on); ``info["holdout_last"]`` records ``k``."""
        if k < 0:
            raise ValueError(f"holdout_last must be >= 0 (0: off), got {k}")
        if k == 0:
            return self
        short = np.flatnonzero(self.lengths < k + 3)
        if len(short):
            raise ValueError(
                f"holdout_last={k} leaves {len(short)} users (e.g. user {self.user_map[short[0]]}, "
                f"{self.lengths[short[0]]} interactions) with fewer than 3 interactions; every user needs {k + 3}"
            )
        keep = np.ones(self.n_interactions, dtype=bool)
        keep[(self.offsets[1:, None] - np.arange(1, k + 1)).ravel()] = False
        offsets = np.concatenate([[0], np.cumsum(self.lengths - k)]).astype(self.offsets.dtype)
        columns = {name: np.asarray(getattr(self, name))[keep] for name in ("items", "times", "ratings")}
        return SequenceStore(
            **columns, offsets=offsets, user_map=self.user_map, item_map=self.item_map, item_genres=self.item_genres,
            item_titles=self.item_titles, info={**self.info, "holdout_last": k},
        )  # fmt: skip

    def sample_users(self, n: int, seed: int = 0) -> SequenceStore:
        """The store of ``n`` users drawn without replacement (seeded by ``seed``), in their original order, with all
        their rows (in memory; items and their ids unchanged, so an item no drawn user rated stays a candidate);
        ``info["user_sample"]`` records ``n`` and ``seed``."""
        if not 1 <= n <= self.n_users:
            raise ValueError(f"user_sample must be between 1 and the {self.n_users} users of the data (0: off), got {n}")
        if n == self.n_users:
            return self
        users = np.sort(np.random.default_rng(seed).choice(self.n_users, size=n, replace=False))
        lengths = self.lengths[users]
        rows = ranges(self.offsets[users], lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(self.offsets.dtype)
        columns = {name: np.asarray(getattr(self, name))[rows] for name in ("items", "times", "ratings")}
        return SequenceStore(
            **columns, offsets=offsets, user_map=np.asarray(self.user_map)[users], item_map=self.item_map,
            item_genres=self.item_genres, item_titles=self.item_titles,
            info={**self.info, "user_sample": {"users": n, "seed": seed}},
        )  # fmt: skip

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
                               "bytes": (tmp / f"{name}.npy").stat().st_size,
                               "crc32": file_crc32(tmp / f"{name}.npy")}  # fmt: skip
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


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    """CRC-32 of a file's bytes (about 1.5 GB/s: a 25M-row store is checked in a few tenths of a second)."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def load_store(folder: Path, mmap: bool = True) -> SequenceStore | None:
    """The store in ``folder``, or None when it is missing, incomplete, damaged or from another version."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("version") != STORE_VERSION:
            return None
        store, problem = _load_checked(folder, manifest, mmap)
    except Exception as err:  # noqa: BLE001 - a damaged cache is rebuilt, whatever numpy or json raised
        store, problem = None, f"{type(err).__name__}: {err}"
    if problem is not None:
        log.warning("cache %s is damaged (%s); rebuilding it", folder, problem)
    return store


def _load_checked(folder: Path, manifest: dict, mmap: bool) -> tuple[SequenceStore | None, str | None]:
    arrays = {}
    for name, meta in manifest["files"].items():
        if name not in _ARRAYS:
            return None, f"unknown file {name}.npy in the manifest"
        path = folder / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != meta["bytes"]:
            return None, f"{path.name} is missing or has the wrong size"
        if "crc32" in meta and file_crc32(path) != meta["crc32"]:
            return None, f"{path.name} does not match its checksum"
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if list(array.shape) != list(meta["shape"]) or array.dtype.str != meta["dtype"]:
            return None, f"{path.name} holds {array.dtype.str} {list(array.shape)}, not {meta['dtype']} {meta['shape']}"
        arrays[name] = array
    missing = [n for n in ("items", "times", "ratings", "offsets", "user_map", "item_map") if n not in arrays]
    if missing:
        return None, f"missing arrays {missing}"
    offsets = np.asarray(arrays["offsets"])
    n = len(arrays["items"])
    if len(arrays["times"]) != n or len(arrays["ratings"]) != n:
        return None, "items, times and ratings differ in length"
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        return None, "offsets do not match the interaction arrays"
    return SequenceStore(**arrays, info=manifest.get("info", {})), None


def cache_key(material: dict) -> str:
    """Hex digest of the source fingerprint and every preprocessing option."""
    text = json.dumps({"store_version": STORE_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
