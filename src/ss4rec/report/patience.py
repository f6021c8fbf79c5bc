"""``python -m ss4rec.report.patience RUN... [--patience 3 5 7] [--out FILE]``: what a shorter early stop costs.

Early stopping never changes a run before it stops it, so replaying a run's recorded validation curve
(the per-epoch history in its ``checkpoints/last.ckpt``, or in ``metrics.json`` where no checkpoint is
kept, as in a fresh clone) with another patience is exact: the epoch it
would have stopped after, its best epoch and value by then, that value against the best of every recorded
epoch, and the share of the recorded epochs it would have trained. The rule is Lightning's
``EarlyStopping`` with ``min_delta=0``: an epoch improves when it is strictly better than the best so far,
and training stops once ``patience`` epochs in a row have not. Only the epochs the run trained can be
replayed: a patience longer than the run's own says nothing about the epochs it never ran.
"""

from __future__ import annotations

import argparse
import sys

from ss4rec.errors import UserError, reported_errors
from ss4rec.report.progress import read_curves
from ss4rec.report.render import write_or_print


def replay(curve: list[tuple[int, float]], patience: int, mode: str) -> tuple[int, int, float]:
    """(epoch it stops after, best epoch, best value) of early stopping with ``patience`` on ``curve``.

    ``curve`` holds (epoch, value) in training order; a curve that never stalls long enough ends at its last
    epoch, as the run did.
    """
    if patience < 1:
        raise ValueError(f"patience={patience}: expected an integer >= 1")
    if not curve:
        raise ValueError("an empty curve")
    sign = 1.0 if mode == "max" else -1.0
    best_epoch, best = curve[0]
    for epoch, value in curve[1:]:
        if sign * value > sign * best:
            best_epoch, best = epoch, value
        elif epoch - best_epoch >= patience:
            return epoch, best_epoch, best
    return curve[-1][0], best_epoch, best


def table(runs: list[dict], patiences: list[int]) -> str:
    """Markdown: a row per run and patience, the run's whole recorded curve first (patience "all")."""
    monitors = {p["monitor"] for p in runs}
    metric = monitors.pop() if len(monitors) == 1 else "monitored metric"
    lines = [
        f"| run | patience | stops after epoch | best epoch | best {metric} | against all epochs | epochs trained |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for progress in runs:
        curve = [(r["epoch"], float(r[progress["monitor"]])) for r in progress["rows"] if progress["monitor"] in r]
        if not curve:
            raise UserError(f"{progress['run']}: no epoch with {progress['monitor']} in its history")
        last, whole_epoch, whole = replay(curve, len(curve), progress["mode"])
        lines.append(f"| {progress['run']} | all | {last} | {whole_epoch} | {whole:.4f} | | {len(curve)} |")
        for patience in patiences:
            stop, epoch, best = replay(curve, patience, progress["mode"])
            trained = sum(1 for e, _ in curve if e <= stop)
            change = (best / whole - 1) * 100 if whole else 0.0
            lines.append(
                f"| {progress['run']} | {patience} | {stop} | {epoch} | {best:.4f} | {change:+.1f}% | "
                f"{trained} ({trained / len(curve):.0%}) |"
            )
    return "\n".join(lines) + "\n"


def _patience(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report.patience", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (each with checkpoints/last.ckpt or metrics.json)")
    parser.add_argument("--patience", nargs="+", type=_patience, default=[3, 5, 7], help="patiences to replay")
    parser.add_argument("--out", help="markdown file to write (default: print)")
    args = parser.parse_args(argv)
    with reported_errors():
        write_or_print(table(read_curves(args.runs), args.patience), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
