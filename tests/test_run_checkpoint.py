"""Which checkpoint a run folder stands for: the one its metrics.json names (also after the folder moved),
else the latest best, else last.ckpt (serving, evaluation); an MF base takes the named or the only best."""

from __future__ import annotations

import json
import shutil

import pytest

from ss4rec.models.rating_base import RatingBaseError, mf_checkpoint
from ss4rec.paths import named_checkpoint
from ss4rec.serve.loading import resolve


def _run(root, names, named=None):
    (root / "checkpoints").mkdir(parents=True)
    for name in names:
        (root / "checkpoints" / name).write_bytes(b"x")
    if named is not None:
        (root / "metrics.json").write_text(json.dumps({"checkpoint": str(root / "checkpoints" / named)}))
    return root


def test_the_named_checkpoint_is_found_where_it_was_and_after_the_folder_moved(tmp_path):
    run = _run(tmp_path / "a", ["best-epoch004.ckpt", "best-epoch011.ckpt", "last.ckpt"], named="best-epoch004.ckpt")
    assert named_checkpoint(run) == run / "checkpoints" / "best-epoch004.ckpt"
    moved = tmp_path / "b"
    shutil.move(run, moved)  # metrics.json still records the old path
    assert named_checkpoint(moved) == moved / "checkpoints" / "best-epoch004.ckpt"
    assert resolve(moved) == (moved, moved / "checkpoints" / "best-epoch004.ckpt")  # not the later best
    assert mf_checkpoint(moved) == moved / "checkpoints" / "best-epoch004.ckpt"
    (moved / "checkpoints" / "best-epoch004.ckpt").unlink()
    assert named_checkpoint(moved) is None  # named but gone


def test_a_copied_folder_reads_its_own_checkpoint_not_the_originals(tmp_path):
    """A clone of the repo's run records names the original folder's checkpoint in metrics.json; while the
    original is still there, the copy must not read it (it may be another training of the same command)."""
    run = _run(tmp_path / "a", ["best-epoch004.ckpt"], named="best-epoch004.ckpt")
    copy = tmp_path / "b"
    shutil.copytree(run, copy)
    assert named_checkpoint(copy) == copy / "checkpoints" / "best-epoch004.ckpt"
    assert resolve(copy)[1] == mf_checkpoint(copy) == copy / "checkpoints" / "best-epoch004.ckpt"
    shutil.rmtree(copy / "checkpoints")  # the copy without checkpoints (not in git): the recorded file
    assert named_checkpoint(copy) == run / "checkpoints" / "best-epoch004.ckpt"


@pytest.mark.parametrize("metrics", [None, "{", "[]", '{"checkpoint": 3}', '{"checkpoint": ""}'])
def test_without_a_usable_name_serving_takes_the_latest_best_and_mf_refuses_to_guess(tmp_path, metrics):
    run = _run(tmp_path / "a", ["best-epoch004.ckpt", "best-epoch011.ckpt", "last.ckpt"])
    if metrics is not None:
        (run / "metrics.json").write_text(metrics)
    assert named_checkpoint(run) is None
    assert resolve(run)[1] == run / "checkpoints" / "best-epoch011.ckpt"
    with pytest.raises(RatingBaseError, match="2 best checkpoints"):
        mf_checkpoint(run)


def test_a_run_without_best_checkpoints_serves_its_last(tmp_path):
    run = _run(tmp_path / "a", ["last.ckpt"])
    assert resolve(run)[1] == run / "checkpoints" / "last.ckpt"
