"""Prepare a dataset or load it from the cache: source -> (parse, preprocess) -> store on disk.

The cache folder is ``<data_dir>/prepared/<name>-<key>`` where ``key`` hashes the source's fingerprint
(file path + size + mtime, or dataset name + MD5, or the generator's parameters) and every
preprocessing option. A second run with the same inputs loads the folder without parsing anything.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ss4rec import paths
from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import build_source
from ss4rec.data.store import SequenceStore, cache_key, load_store

log = logging.getLogger(__name__)


def cache_folder(
    name: str, source, options: Options, data_dir: str | Path | None = None
) -> tuple[Path, object]:
    """Where the store for these inputs lives, and the built source object."""
    folder = Path(data_dir).expanduser() if data_dir else paths.data_dir()
    src = build_source(name, source, folder)
    material = {"name": name, "source": src.fingerprint(), "options": options.as_dict(), "scale": src.scale}
    return folder / "prepared" / f"{name}-{cache_key(material)[:16]}", src


def prepare(
    name: str,
    source=None,
    options: Options | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
) -> tuple[SequenceStore, Path, bool]:
    """The store for ``name``/``source``: ``(store, cache folder, loaded from cache?)``."""
    options = options or Options()
    target, src = cache_folder(name, source, options, data_dir)
    if not force:
        store = load_store(target)
        if store is not None:
            log.info("loaded %s from cache %s", name, target)
            return store, target, True
    started = time.perf_counter()
    log.info("preparing %s (cache %s)", name, target)
    raw = src.load()
    log.info("parsed %d ratings in %.1f s", raw.ratings.height, time.perf_counter() - started)
    store = build_store(raw, options, src.scale)
    del raw
    store.info.update({"name": name, "source": src.fingerprint()})
    if target.exists():  # incomplete, stale or forced: replace it
        shutil.rmtree(target)
    store.save(target)
    log.info("prepared %s in %.1f s: %s", name, time.perf_counter() - started, target)
    return store, target, False
