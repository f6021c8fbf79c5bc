"""MovieLens from raw files to training batches: sources, preprocessing, the sequence store, loaders.

``SequenceDataModule`` is what training uses; ``prepare`` builds (or loads) the cached store;
``python -m ss4rec.data data=ml1m`` prepares a dataset and prints its statistics.
Names are imported lazily, so preparing data does not import torch or Lightning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SequenceDataModule": "ss4rec.data.datamodule",
    "DataError": "ss4rec.data.errors",
    "prepare": "ss4rec.data.prepare",
    "Options": "ss4rec.data.preprocess",
    "DATASETS": "ss4rec.data.sources",
    "build_source": "ss4rec.data.sources",
    "SequenceStore": "ss4rec.data.store",
    "load_store": "ss4rec.data.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ss4rec.data' has no attribute {name!r}")
