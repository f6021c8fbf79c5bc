"""``python -m ss4rec.report <runs>... [--out reports/<dataset>]``: rebuild the dashboard, no retraining."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ss4rec.report import build_report, load_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders, folders of runs, globs or metrics.json files")
    parser.add_argument("--out", help="output folder (default: reports/<dataset> of the runs)")
    parser.add_argument("--command", help="the command that produced the runs, printed in the report")
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        datasets = load_runs(args.runs).datasets
        out = str(Path("reports") / (datasets[0] if len(datasets) == 1 else "combined"))
    try:
        paths = build_report(args.runs, out, command=args.command)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"{kind:9s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
