"""Where configs and data live, and what a run folder says about its files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

#: the repository's ``conf/`` (the package is installed editable from the checkout); SS4REC_CONFIG_DIR overrides
CONFIG_DIR = Path(os.environ.get("SS4REC_CONFIG_DIR", Path(__file__).resolve().parents[2] / "conf"))


def data_dir() -> Path:
    """Default folder for downloads and prepared caches: $SS4REC_DATA_DIR, else the user's cache dir."""
    return Path(os.environ.get("SS4REC_DATA_DIR") or platformdirs.user_cache_dir("ss4rec"))


def run_metrics(run: Path) -> dict:
    """``run/metrics.json`` as a dict; {} when missing, half-written or not a JSON object."""
    try:
        value = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def checkpoint_run(checkpoint: Path) -> Path | None:
    """The run folder of a checkpoint inside its ``checkpoints/`` folder; None for a checkpoint anywhere else."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def named_checkpoint(run: Path) -> Path | None:
    """The best checkpoint ``run/metrics.json`` names: the file of that name in ``run/checkpoints/``, else the
    path it recorded (a checkpoint kept elsewhere); None when it names none or the file is gone. The run's own
    file comes first: a copied or moved folder (a clone of the repo's run records) reads its own checkpoint, not
    the one at the recorded path, which may belong to the original folder."""
    named = recorded_checkpoint(run)
    return None if named is None else _found(run, named)


def recorded_checkpoint(run: Path) -> str | None:
    """The checkpoint path ``run/metrics.json`` records; None when it records none."""
    named = run_metrics(run).get("checkpoint")
    return named if isinstance(named, str) and named else None


def _found(run: Path, named: str) -> Path | None:
    """``named`` (a recorded checkpoint path) as a file: in ``run/checkpoints/`` first, else where it was recorded."""
    for candidate in (run / "checkpoints" / Path(named).name, Path(named)):
        if candidate.is_file():
            return candidate
    return None


def lost_checkpoint(run: Path) -> str | None:
    """When ``run/metrics.json`` names a checkpoint that is gone (the repo's run records, as git holds them), what
    to say; None otherwise."""
    named = recorded_checkpoint(run)
    if named is None or _found(run, named) is not None:
        return None
    return (f"its metrics.json names {Path(named).name}, which is not in {run / 'checkpoints'} (run records in git "
            "keep no checkpoints); train the run again into this folder with the command its write-up gives (its "
            "config is in metrics.json)")  # fmt: skip


def no_checkpoint(run: Path, best: list[Path], train_hint: str = "") -> str:
    """Why ``chosen_checkpoint`` found none in ``run``, given the ``best-*.ckpt`` it saw: a run record whose
    checkpoint is gone, several best checkpoints, or none (then ``train_hint`` follows, when given)."""
    if lost := lost_checkpoint(run):
        return lost
    if best:
        return f"{len(best)} best checkpoints ({', '.join(c.name for c in best)}) and no metrics.json naming one; pass the checkpoint file"
    return "no checkpoints/best-*.ckpt in the folder and no metrics.json naming one" + (f"; {train_hint}" if train_hint else "")


def chosen_checkpoint(run: Path) -> tuple[Path | None, list[Path]]:
    """A run folder's best checkpoint: the one ``metrics.json`` names, else its only ``checkpoints/best-*.ckpt``
    (None when neither), with every ``best-*.ckpt`` found there."""
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    return named_checkpoint(run) or (best[0] if len(best) == 1 else None), best
