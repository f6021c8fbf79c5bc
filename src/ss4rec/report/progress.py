"""``python -m ss4rec.report.progress RUN... [--out FILE]``: validation curves of runs still training.

A run that has not finished has no ``metrics.json`` yet, so the dashboard cannot show it. Its
``checkpoints/last.ckpt`` (written after every epoch) holds the per-epoch history, the best value so far
and the optimiser's current learning rate; this tool renders them as markdown, one table per run, for
``reports/<dataset>/in_progress.md``. A run forked from another's checkpoint carries its parent's epochs.
Nothing here is a result: test numbers come only from finished runs.
"""

from __future__ import annotations

import argparse
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
    lr = ", ".join(f"{v:g}" for v in progress["lr"]) or "none"
    lines = [
        f"## {progress['run']}",
        "",
        f"{len(rows)} epochs; best {progress['monitor']} ({progress['mode']}) at epoch {best} (bold); "
        f"learning rate now {lr}.",
        "",
        "| epoch | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for row in rows:
        cells = [f"{row[c]:.4f}" if c in row else "" for c in columns]
        epoch = f"**{row['epoch']}**" if row["epoch"] == best else str(row["epoch"])
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report.progress", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (each with checkpoints/last.ckpt)")
    parser.add_argument("--out", help="markdown file to write (default: print)")
    parser.add_argument("--title", default="Runs in progress (validation curves, not results)")
    args = parser.parse_args(argv)
    with reported_errors():
        sections = [render(read_progress(Path(run))) for run in args.runs]
        write_or_print(f"# {args.title}\n\n" + "\n".join(sections), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
