"""``python -m ss4rec.evaluate_checkpoint RUN_DIR_OR_CKPT``: validation and test metrics of one checkpoint.

A finished run's ``metrics.json`` already holds the test numbers of its best checkpoint. This command is for
the others: a run stopped before early stopping ended it (its best checkpoint so far), a ``last.ckpt``, or
any checkpoint of a run folder. It rebuilds the run's data split from the run's own config (``metrics.json``'s
``config``, else ``.hydra/config.yaml``), loads the module from the checkpoint and runs Lightning's
``validate`` and ``test`` on it: the same evaluation loop as training, so a finished run's best checkpoint
gives its ``metrics.json`` numbers again. The result is printed and written next to the checkpoint's run as
``evaluations/<checkpoint name>.json`` (with the checkpoint's epoch and SHA-256).

    python -m ss4rec.evaluate_checkpoint reports/ml1m/runs/paper/ss4rec_known_s0        # its best so far
    python -m ss4rec.evaluate_checkpoint RUN/checkpoints/last.ckpt --threads 2
    python -m ss4rec.evaluate_checkpoint RUN --data tie_order=shuffle --data tie_seed=1   # another split

``--data KEY=VALUE`` (repeatable) changes one of the run's data options before the split is rebuilt, e.g.
the order of ratings made in the same second (``tie_order``, ``tie_seed``): the same trained model, held-out
targets chosen under another tie order. Such a record is written as
``evaluations/<checkpoint name>+KEY=VALUE....json`` and lists the changes under ``data_overrides``.

Bad input (not a run folder or checkpoint, no run config, a damaged checkpoint, ``--threads`` < 1, a
``--data`` that is not ``KEY=VALUE`` of an existing data option) exits with status 2 and ``error: <message>``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import yaml
from omegaconf import OmegaConf

from ss4rec.checkpoints import atomic_write_json
from ss4rec.data import SequenceDataModule
from ss4rec.errors import CheckpointError, ConfigError, UserError, reported_errors
from ss4rec.lightning_module import RecModule
from ss4rec.serve.loading import read_model_checkpoint, resolve, run_config, sha256
from ss4rec.training import build_datamodule


def data_overrides(pairs: list[str], data: dict) -> dict:
    """``["tie_order=shuffle", ...]`` as a dict of data options, each checked against the run's ``data`` and
    the data module's options today (a run trained before an option existed can still be scored with it)."""
    known = set(data) | (set(inspect.signature(SequenceDataModule).parameters) - {"train_format"})
    out, errors = {}, []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            errors.append(f"--data {pair!r}: expected KEY=VALUE, e.g. --data tie_order=shuffle")
        elif key not in known:
            errors.append(f"--data {pair!r}: the run has no data option {key!r}; known: {', '.join(sorted(known))}")
        else:
            out[key] = yaml.safe_load(value) if value else value  # as Hydra reads it: "1" -> 1, "null" -> None
    if errors:
        raise ConfigError(errors)
    return out


def run_of(path: str | Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) of a run folder (its best checkpoint) or of a checkpoint inside one's
    ``checkpoints/``; a checkpoint elsewhere is refused, as its data split is unknown."""
    run, checkpoint = resolve(path)
    if run is None:
        raise UserError(f"path={str(path)!r}: the checkpoint is not inside a run's checkpoints/ folder, so its "
                        "data split is unknown; pass the run folder or a checkpoint inside it")  # fmt: skip
    return run, checkpoint


def trained_module(saved: dict) -> RecModule:
    """The RecModule of a checkpoint read by ``read_model_checkpoint``, with its weights, in eval mode."""
    module = RecModule(**saved["hyper_parameters"])
    module.load_state_dict(saved["state_dict"])
    return module.eval()


def load_run(path: str | Path) -> tuple[Path, SequenceDataModule, RecModule]:
    """A run folder (its best checkpoint) or a checkpoint inside one: the run folder, its data module (the split
    rebuilt from the run's config, not set up) and the checkpoint's module in eval mode."""
    run, checkpoint = run_of(path)
    datamodule = build_datamodule(OmegaConf.create(run_config(run)))
    return run, datamodule, trained_module(read_model_checkpoint(checkpoint))


def evaluate_checkpoint(path: str | Path, threads: int | None = None, data: Sequence[str] = ()) -> dict:
    """Validate and test one checkpoint on its run's split (``data``: ``KEY=VALUE`` changes of its data
    options); returns (and writes) the record."""
    run, checkpoint = run_of(path)
    cfg = OmegaConf.create(run_config(run))
    data = data_overrides(list(data), OmegaConf.to_container(cfg.data))
    for key, value in data.items():
        cfg.data[key] = value
    saved = read_model_checkpoint(checkpoint)
    try:  # now, not after the minutes of evaluation: a training run may replace its best checkpoint meanwhile
        digest = sha256(checkpoint)
    except OSError as err:
        raise CheckpointError(f"path={str(checkpoint)!r} disappeared while being read ({err.strerror}); a running "
                              "training replaces its best checkpoint: evaluate the run folder again") from err  # fmt: skip
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.time()
    datamodule = build_datamodule(cfg)
    module = trained_module(saved)  # the file read once, by read_model_checkpoint
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False)  # fmt: skip
    metrics = {**trainer.validate(module, datamodule=datamodule, verbose=False)[0],
               **trainer.test(module, datamodule=datamodule, verbose=False)[0]}  # fmt: skip
    record = {
        "checkpoint": str(checkpoint.resolve()),
        "sha256": digest,
        "epoch": int(saved.get("epoch", -1)),
        "global_step": int(saved.get("global_step", -1)),
        "metrics": {name: float(value) for name, value in sorted(metrics.items())},
        "wall_time_s": time.time() - started,
    }
    if data:
        record["data_overrides"] = data
    suffix = "".join(f"+{key}={value}" for key, value in data.items())
    out = run / "evaluations" / f"{checkpoint.stem}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    atomic_write_json(out, record)
    record["written"] = str(out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.evaluate_checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("path", help="a run folder (its best checkpoint so far) or a checkpoint inside one")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="change one of the run's data options, e.g. tie_order=shuffle (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    with reported_errors():
        if args.threads is not None and args.threads < 1:
            raise ConfigError([f"--threads={args.threads}: expected a positive integer"])
        record = evaluate_checkpoint(args.path, args.threads, args.data)
        rows = "\n".join(f"  {name:<16} {value:.4f}" for name, value in record["metrics"].items())
        print(f"{record['checkpoint']} (epoch {record['epoch']}):\n{rows}\nwritten: {record['written']}")
        print(json.dumps({k: record["metrics"][k] for k in record["metrics"] if k.endswith(("@10", "rmse"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
