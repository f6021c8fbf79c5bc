"""Atomic writes: a save that dies half-way leaves the previous complete file and no temporary file."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ss4rec import checkpoints
from ss4rec.checkpoints import (
    AtomicCheckpointIO,
    atomic_write_json,
    read_checkpoint,
    remove_stale_temporaries,
)


def _checkpoint(epoch: int) -> dict:
    return {"state_dict": {"w": torch.full((1000,), float(epoch))}, "epoch": epoch, "global_step": 10 * epoch}


def test_checkpoint_io_replaces_the_file_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(1), path)
    io.save_checkpoint(_checkpoint(2), path)
    assert read_checkpoint(path)["epoch"] == 2 and os.listdir(tmp_path) == ["last.ckpt"]


def test_a_save_that_dies_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(1), path)

    def dies(fd):  # the process "dies" after part of the new file was written, before it is complete
        raise OSError("killed during the save")

    monkeypatch.setattr(checkpoints.os, "fsync", dies)
    with pytest.raises(OSError, match="killed"):
        io.save_checkpoint(_checkpoint(2), path)
    loaded = read_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["state_dict"]["w"], torch.full((1000,), 1.0))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


def test_metrics_json_is_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"status": "running"})
    monkeypatch.setattr(checkpoints.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        atomic_write_json(path, {"status": "finished", "test": {"x": 1.0}})
    assert json.loads(path.read_text()) == {"status": "running"}


def test_temporaries_of_killed_saves_are_removed(tmp_path):
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1), tmp_path / "last.ckpt")
    (tmp_path / ".last.ckpt.tmp-123-abcd1234").write_bytes(b"half a checkpoint")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.ckpt.tmp-123-abcd1234"]
    assert os.listdir(tmp_path) == ["last.ckpt"] and read_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1
