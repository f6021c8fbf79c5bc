"""``python -m ss4rec.report.progress RUN... [--compare METRIC] [--epochs SPEC] [--out FILE]``: validation curves.

A run that has not finished has no ``metrics.json`` yet, so the dashboard cannot show it. Its
``checkpoints/last.ckpt`` (written after every epoch) holds the per-epoch history, the best value so far
and the optimiser's current learning rate; this tool renders them as markdown, one table per run, for
``reports/<dataset>/in_progress.md``. Where no checkpoint is kept (a finished or stopped run in a fresh
clone), the history in its ``metrics.json`` is read instead. A run forked from another's checkpoint carries
its parent's epochs. ``--compare METRIC`` puts one metric of every run side by side, a row per epoch
(``--epochs 0:20:2,20::4`` picks the rows: comma-separated ``start:stop:step`` ranges of epochs, Python's
slice rules, an empty stop meaning to the last epoch). Nothing here is a result: test numbers come only from
finished runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ss4rec.errors import CheckpointError, UserError, reported_errors
from ss4rec.report.render import write_or_print

SHOWN = ("val/ndcg@10", "val/hr@10", "val/mrr@10", "val/rmse", "val/mae", "train/loss")


def read_progress(run: Path) -> dict:
    """Per-epoch rows, the monitored metric and its direction, and the current learning rates of a run."""
    path = run / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UserError(f"{run}: no checkpoints/last.ckpt (not a run folder, or no epoch finished yet)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    history = next((v for k, v in state.get("callbacks", {}).items() if k.startswith("History")), None)
    if history is None:
        raise CheckpointError(f"{path}: no per-epoch history in this checkpoint (written by an older version?)")
    hparams = state.get("hyper_parameters", {})
    monitor = hparams.get("monitor", "val/ndcg@10")
    mode = hparams.get("mode", "max")
    lrs = sorted({group["lr"] for opt in state.get("optimizer_states", []) for group in opt["param_groups"]})
    return {"run": run.name, "rows": history["rows"], "monitor": monitor, "mode": mode, "lr": lrs}


def read_curve(run: Path) -> dict:
    """The run's per-epoch rows, monitored metric and direction: from ``last.ckpt``, else ``metrics.json``.

    A record has no learning rate (``lr`` is empty) but says how the run ended (``status``).
    """
    if (run / "checkpoints" / "last.ckpt").is_file() or not (run / "metrics.json").is_file():
        return read_progress(run)  # a clean error when neither exists
    try:
        record = json.loads((run / "metrics.json").read_text())
        task = record.get("config", {}).get("task", {})
        return {"run": run.name, "rows": record["history"], "monitor": record["monitor"],
                "mode": task.get("mode", "max"), "lr": [], "status": record.get("status")}  # fmt: skip
    except (ValueError, KeyError, AttributeError) as e:
        raise UserError(f"{run / 'metrics.json'}: not a run record with a history and a monitor ({e!r})") from e


def best_epoch(progress: dict) -> int | None:
    """Epoch of the best monitored value (first of equals), None when no row has it."""
    rows = [r for r in progress["rows"] if progress["monitor"] in r]
    if not rows:
        return None
    sign = 1.0 if progress["mode"] == "max" else -1.0
    return max(rows, key=lambda r: (sign * r[progress["monitor"]], -r["epoch"]))["epoch"]


def render(progress: dict) -> str:
    """One markdown section: the run, its best epoch, the learning rate now, and a row per epoch."""
    rows = progress["rows"]
    columns = [c for c in SHOWN if any(c in r for r in rows)]
    best = best_epoch(progress)
    if progress.get("status"):
        now = f"from its metrics.json (status {progress['status']})"
    else:
        now = "learning rate now " + (", ".join(f"{v:g}" for v in progress["lr"]) or "none")
    lines = [
        f"## {progress['run']}",
        "",
        f"{len(rows)} epochs; best {progress['monitor']} ({progress['mode']}) at epoch {best} (bold); {now}.",
        "",
        "| epoch | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for row in rows:
        cells = [f"{row[c]:.4f}" if c in row else "" for c in columns]
        epoch = f"**{row['epoch']}**" if row["epoch"] == best else str(row["epoch"])
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_epochs(spec: str) -> list[tuple[int, int | None, int]]:
    """``"0:20:2,20::4"`` -> [(0, 20, 2), (20, None, 4)]; a bare ``"7"`` is the one epoch 7."""
    ranges = []
    for part in spec.split(","):
        fields = part.strip().split(":")
        try:
            if len(fields) == 1:
                start = int(fields[0])
                ranges.append((start, start + 1, 1))
                continue
            if len(fields) > 3:
                raise ValueError(part)
            start, stop, step = (fields + [""] * 3)[:3]
            ranges.append((int(start or 0), int(stop) if stop else None, int(step or 1)))
        except ValueError:
            raise UserError(f"--epochs {spec!r}: {part!r} is not an epoch or a start:stop:step range of epochs") from None
        if ranges[-1][2] < 1 or ranges[-1][0] < 0:
            raise UserError(f"--epochs {spec!r}: {part!r} needs a start >= 0 and a step >= 1")
    return ranges


def wanted(epoch: int, ranges: list[tuple[int, int | None, int]]) -> bool:
    return any(epoch >= a and (b is None or epoch < b) and (epoch - a) % s == 0 for a, b, s in ranges)


def side_by_side(runs: list[dict], metric: str, ranges: list[tuple[int, int | None, int]] | None = None) -> str:
    """Markdown: a row per epoch (those ``ranges`` pick, every epoch without), a column of ``metric`` per run."""
    by_run = []
    for progress in runs:
        values = {r["epoch"]: r[metric] for r in progress["rows"] if metric in r}
        if not values:
            raise UserError(f"{progress['run']}: no epoch with {metric} in its history")
        by_run.append(values)
    epochs = sorted({e for values in by_run for e in values if ranges is None or wanted(e, ranges)})
    lines = [
        "| epoch | " + " | ".join(f"`{p['run']}`" for p in runs) + " |",
        "|---:|" + "---:|" * len(runs),
    ]
    for epoch in epochs:
        cells = [f"{values[epoch]:.4f}" if epoch in values else "" for values in by_run]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def distinct_names(runs: list[Path]) -> list[str]:
    """Each run's folder name, with its parent folder when the runs come from more than one (``paper/sasrec_s0``,
    ``uniform/mamba_s0``: the folder says which experiment a run belongs to), and with as many more as it takes
    to tell apart runs of the same name: a table's columns must say which run they show."""
    parts = [run.expanduser().resolve().parts for run in runs]
    first = 1 if len({p[:-1] for p in parts}) == 1 else 2
    for depth in range(first, max(len(p) for p in parts) + 1):
        names = [Path(*p[-depth:]).as_posix() for p in parts]
        if len(set(names)) == len(names):
            return names
    return names  # the same folder given twice: its full path, twice


def read_curves(runs: list[str]) -> list[dict]:
    """``read_curve`` of each run folder given on a command line, each named by ``distinct_names``."""
    paths = [Path(run) for run in runs]
    curves = [read_curve(path) for path in paths]
    for curve, name in zip(curves, distinct_names(paths), strict=True):
        curve["run"] = name
    return curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report.progress", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (each with checkpoints/last.ckpt or metrics.json)")
    parser.add_argument("--compare", metavar="METRIC", help="one table of this metric, a column per run")
    parser.add_argument("--epochs", help="with --compare: the epochs shown, e.g. 0:20:2,20::4 (default: all)")
    parser.add_argument("--out", help="markdown file to write (default: print)")
    parser.add_argument("--title", default="Runs in progress (validation curves, not results)")
    args = parser.parse_args(argv)
    with reported_errors():
        if args.epochs and not args.compare:
            raise UserError("--epochs picks the rows of --compare's table: give --compare METRIC too")
        runs = read_curves(args.runs)
        if args.compare:
            ranges = parse_epochs(args.epochs) if args.epochs else None
            body = side_by_side(runs, args.compare, ranges)
        else:
            body = "\n".join(render(progress) for progress in runs)
        write_or_print(f"# {args.title}\n\n" + body, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
