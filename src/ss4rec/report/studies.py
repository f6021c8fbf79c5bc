"""``python -m ss4rec.report.studies DB... [--out FILE] [--best]``: what an Optuna search found.

A search started with ``hydra.sweeper.storage=sqlite:///<db>`` keeps every trial in that SQLite file. This
tool reads the studies in one or more such files and writes one markdown table per study (every trial,
its state, its value and its parameters, the best in bold), or, with ``--best``, prints the best trial's
parameters as Hydra overrides to paste after ``python train.py``::

    python -m ss4rec.report.studies reports/ml100k/runs/optuna/*.db --out reports/ml100k/optuna.md
    python train.py -m model=sasrec seed=0,1,2 $(python -m ss4rec.report.studies --best \\
        reports/ml100k/runs/optuna/sasrec.db)

A trial that was running when its process was stopped stays RUNNING in the file and has no value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ss4rec.errors import ConfigError, UserError, reported_errors
from ss4rec.report.render import write_or_print


def _optuna():
    import optuna  # the sweeper's dependency; imported here so that the report package works without it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def load_studies(db: str | Path) -> list:
    """Every study stored in the SQLite file ``db``, in name order."""
    path = Path(db)
    if not path.is_file():
        raise ConfigError([f"{db!r}: no such file (expected an Optuna SQLite database)"])
    optuna = _optuna()
    storage = f"sqlite:///{path.resolve()}"
    try:
        summaries = optuna.get_all_study_summaries(storage=storage)
    except Exception as error:  # a file that is not an Optuna database (SQLAlchemy errors vary)
        raise UserError(f"{db}: not an Optuna SQLite database ({type(error).__name__}: {error})") from error
    if not summaries:
        raise UserError(f"{db}: holds no study")
    names = sorted(s.study_name for s in summaries)
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def complete_trials(study) -> list:
    return [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]


def best_trial(study):
    """The complete trial with the best value (first of equals) in the study's direction; None if none."""
    done = complete_trials(study)
    if not done:
        return None
    sign = -1.0 if study.direction.name == "MINIMIZE" else 1.0
    return max(done, key=lambda t: (sign * t.value, -t.number))


def best_overrides(study) -> list[str]:
    """The best trial's parameters as ``key=value`` Hydra overrides, in key order."""
    trial = best_trial(study)
    if trial is None:
        raise UserError(f"study {study.study_name!r}: no complete trial, so no best parameters")
    return [f"{key}={trial.params[key]!r}" for key in sorted(trial.params)]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def study_markdown(study, metric: str = "value") -> str:
    """One study as a markdown section: a summary line and a table of every trial."""
    done = complete_trials(study)
    best = best_trial(study)
    keys = sorted({key for trial in study.trials for key in trial.params})
    lines = [f"## {study.study_name}", ""]
    if best is None:
        lines.append(f"{len(study.trials)} trials, none complete.")
    else:
        lines.append(f"{len(done)} complete trials of {len(study.trials)}; best: trial {best.number}, "
                     f"{metric} {best.value:.4f} ({study.direction.name.lower()}d).")  # fmt: skip
    lines += ["", "| trial | state | " + " | ".join([metric, *keys]) + " |",
              "|---:|---|" + "---:|" * (len(keys) + 1)]  # fmt: skip
    for trial in study.trials:
        value = "" if trial.value is None else f"{trial.value:.4f}"
        if best is not None and trial.number == best.number:
            value = f"**{value}**"
        cells = [str(trial.number), trial.state.name, value, *(_cell(trial.params.get(k)) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.report.studies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("dbs", nargs="+", help="Optuna SQLite files (hydra.sweeper.storage=sqlite:///<file>)")
    parser.add_argument("--out", help="write the markdown here instead of printing it")
    parser.add_argument("--best", action="store_true",
                        help="print the best trial's parameters as Hydra overrides (one study only)")  # fmt: skip
    parser.add_argument("--metric", default="validation NDCG@10", help="name of the optimised value")
    parser.add_argument("--title", default="Optuna searches", help="first heading of the markdown")
    args = parser.parse_args(argv)
    with reported_errors():
        studies = [study for db in args.dbs for study in load_studies(db)]
        if args.best:
            if len(studies) != 1:
                names = ", ".join(s.study_name for s in studies)
                raise ConfigError([f"--best: expected one study, found {len(studies)} ({names})"])
            print(" ".join(best_overrides(studies[0])))
            return 0
        write_or_print(f"# {args.title}\n\n" + "\n".join(study_markdown(s, args.metric) for s in studies), args.out)
        if args.out is not None:
            print(f"markdown  {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
