"""``python -m ss4rec.report <runs>... [--out reports/<dataset>]``: rebuild the dashboard, no retraining.

A source given as ``NAME=PATH`` names its runs' setting (``defaults=runs/default tuned=runs/tuned``), so
that two settings of one model are two rows, labelled with the name, instead of repeated seeds.

Bad input (a path that does not exist, an output folder that is a file, runs without one finished
``metrics.json``) exits with status 2 and ``error: <message>`` (``ss4rec.errors``).
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from ss4rec.errors import ConfigError, UserError, reported_errors
from ss4rec.report import build_report, load_runs
from ss4rec.report.collect import split_source


def check_arguments(runs: list[str], out: str | None) -> None:
    paths = [str(split_source(r)[1]) for r in runs]
    problems = [f"runs {p!r}: no such file or folder, and no path matches it as a glob"
                for p in paths if not Path(p).exists() and not glob.glob(p, recursive=True)]  # fmt: skip
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        problems.append(f"--out={out!r}: expected a folder (it is a file)")
    if problems:
        raise ConfigError(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders, folders of runs, globs or metrics.json files; "
                        "NAME=PATH names a source (its runs form their own groups, labelled NAME)")  # fmt: skip
    parser.add_argument("--out", help="output folder (default: reports/<dataset> of the runs)")
    parser.add_argument("--command", help="the command that produced the runs, printed in the report")
    args = parser.parse_args(argv)
    with reported_errors():
        check_arguments(args.runs, args.out)
        out = args.out
        if out is None:
            datasets = load_runs(args.runs).datasets
            out = str(Path("reports") / (datasets[0] if len(datasets) == 1 else "combined"))
        try:
            paths = build_report(args.runs, out, command=args.command)
        except ValueError as error:
            raise UserError(str(error)) from error
        for kind, path in paths.items():
            print(f"{kind:9s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
