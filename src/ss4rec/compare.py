"""``make compare DATA=ml100k``: train every model with 3 seeds on one dataset, then build the dashboard.

    python -m ss4rec.compare data=ml100k [options] [hydra overrides for every run]

Each (model, task) pair is one Hydra multirun of ``train.py`` over the seeds, written to
``reports/<data>/runs/<model>-<task>/<n>_<model>_s<seed>/``; then ``ss4rec.report`` turns every
``metrics.json`` in those job folders (``<model>-<task>[-masked]``, nothing else under ``runs/``: searches
and other runs kept there stay out) into ``reports/<data>/index.html`` and ``results.md``. ``--report-only`` rebuilds the
dashboard from existing runs without training. Extra ``key=value`` arguments go to every run (for example
``trainer.max_epochs=50`` or ``logger=wandb``; with W&B the runs share the group ``compare_<data>``).
With ``evaluation.mask_seen=true`` the runs go to ``<model>-<task>-masked/`` and appear in the same report
as separate rows (``mf [masked]``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ss4rec.errors import ConfigError, UserError, reported_errors
from ss4rec.paths import CONFIG_DIR
from ss4rec.report import build_report, load_runs

#: every model, in the report's order
MODELS = ("pop", "mf", "svdpp", "timesvdpp", "autorec", "ncf", "hybrid_vae", "gru4rec", "sasrec", "mamba4rec", "ss4rec")

#: how each model is trained for ranking: its natural objective (pairs models: BPR with sampled negatives;
#: the others: full cross-entropy, which for hybrid_vae is Mult-VAE's multinomial likelihood)
RANKING_OVERRIDES = {
    "mf": ["task/ranking_loss=bpr"],
    "ncf": ["task/ranking_loss=bpr"],
}

#: models that are also trained for ratings (task=rating, selected by validation RMSE) by default
RATING_MODELS = ("pop", "mf", "svdpp", "timesvdpp", "autorec", "ncf", "hybrid_vae", "ss4rec")

#: models that only predict ratings (no ranking score): never planned for ranking or joint
RATING_ONLY = ("svdpp", "timesvdpp", "autorec")

#: tasks a comparison can train
TASKS = ("ranking", "rating", "joint")

#: the repository's train.py (the package is installed editable from the checkout)
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "train.py"


@dataclass(frozen=True)
class Job:
    """One Hydra multirun: a model under one task, over the seeds."""

    model: str
    task: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]  # model/task-specific ones
    variant: str = ""  # e.g. "masked": a protocol variant that gets its own run folders

    @property
    def name(self) -> str:
        return f"{self.model}-{self.task}" + (f"-{self.variant}" if self.variant else "")

    def command(self, data: str, runs_dir: Path, extra: list[str]) -> list[str]:
        return [
            sys.executable,
            str(TRAIN_SCRIPT),
            "--multirun",
            f"data={data}",
            f"model={self.model}",
            f"task={self.task}",
            f"seed={','.join(str(s) for s in self.seeds)}",
            *self.overrides,
            f"hydra.sweep.dir={runs_dir / self.name}",
            *extra,
        ]


def plan(
    models: list[str], seeds: list[int], tasks: list[str], rating_models: list[str], variant: str = ""
) -> list[Job]:
    """The jobs to run: every model for ranking (but the rating-only ones), the rating models for ratings too."""
    jobs = []
    for model in models:
        ranking = tuple(RANKING_OVERRIDES.get(model, []))
        if "ranking" in tasks and model not in RATING_ONLY:
            jobs.append(Job(model, "ranking", tuple(seeds), ranking, variant))
        if "rating" in tasks and model in rating_models:
            jobs.append(Job(model, "rating", tuple(seeds), (), variant))
        if "joint" in tasks and model not in RATING_ONLY:
            jobs.append(Job(model, "joint", tuple(seeds), ranking, variant))
    return jobs


def variant_of(overrides: list[str]) -> str:
    """Run-folder suffix of a protocol variant, so its runs sit beside the default ones: ``masked``."""
    masked = {"evaluation.mask_seen=true", "evaluation.mask_seen=1", "evaluation.mask_seen=True"}
    return "masked" if masked.intersection(overrides) else ""


#: the folders compare writes under reports/<data>/runs (``Job.name``): <model>-<task>[-<variant>]
JOB_FOLDER = re.compile(r"^\w+-(ranking|rating|joint)(-\w+)?$")


def job_folders(runs_dir: Path) -> list[Path]:
    """compare's job folders under ``runs_dir`` (other runs kept there, e.g. a search's, are left out)."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and JOB_FOLDER.match(p.name))


def finished_seeds(job_dir: Path) -> set[int]:
    """Seeds of a job folder whose run finished (used by ``--skip-finished``)."""
    if not job_dir.is_dir():
        return set()
    return {int(r.get("seed", -1)) for g in load_runs(job_dir).groups for r in g.runs}


def parse(argv: list[str]) -> tuple[argparse.Namespace, str, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m ss4rec.compare",
        allow_abbrev=False,  # --model must not silently mean --models
        description="Train every model x seed on one dataset (Hydra multiruns of train.py), then build the report.",
        epilog="Other arguments are Hydra overrides passed to every run, e.g. trainer.max_epochs=50 logger=wandb.",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default: 0,1,2)")
    parser.add_argument(
        "--tasks",
        default="ranking,rating",
        help="ranking: every model but svdpp, timesvdpp and autorec; rating: the rating models; joint: as ranking (default: ranking,rating)",
    )
    parser.add_argument(
        "--rating-models", default=",".join(RATING_MODELS), help="models trained with task=rating"
    )
    parser.add_argument("--reports", default="reports", help="root folder of the reports (default: reports)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the dashboard from existing runs")
    parser.add_argument(
        "--skip-finished", action="store_true", help="do not rerun seeds that already finished"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognised options {unknown}; Hydra overrides look like key=value")
    data = "ml100k"
    overrides = []
    for item in rest:
        if item.startswith("data="):
            data = item.split("=", 1)[1]
        else:
            overrides.append(item)
    return args, data, overrides


def _names(option: str, text: str, known: tuple[str, ...]) -> list[str]:
    names = [t for t in text.split(",") if t]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ConfigError([f"{option}={text!r}: expected a comma-separated list of {', '.join(known)}"])
    return names


def check_arguments(args: argparse.Namespace, data: str, extra: list[str]) -> None:
    """Every option of the command, before anything runs: names, seeds, the dataset and the overrides."""
    problems = []
    datasets = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml") if not p.stem.startswith("_"))
    if data not in datasets:
        problems.append(f"data={data!r}: expected one of {', '.join(datasets)}")
    for option, text, known in (("--models", args.models, MODELS), ("--rating-models", args.rating_models, MODELS),
                                ("--tasks", args.tasks, TASKS)):  # fmt: skip
        try:
            _names(option, text, known)
        except ConfigError as err:
            problems += err.problems
    seeds = [t for t in args.seeds.split(",") if t]
    if not seeds or not all(t.isdigit() for t in seeds):
        problems.append(f"--seeds={args.seeds!r}: expected a comma-separated list of integers >= 0, e.g. 0,1,2")
    for item in extra:
        if "=" not in item:
            problems.append(f"{item!r}: expected a Hydra override key=value (e.g. trainer.max_epochs=15)")
    if problems:
        raise ConfigError(problems)


def check_jobs(jobs: list[Job], data: str, extra: list[str]) -> None:
    """Compose the config of every job as train.py will, and check every option (nothing is trained)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    import ss4rec.training  # noqa: F401  (the ${uid:} resolver of the run folders)
    from ss4rec.config_checks import check_train_config

    try:
        parsed = OverridesParser.create().parse_overrides(extra)
    except HydraException as err:
        raise ConfigError([f"overrides {extra}: {err}"]) from err
    # sweeps (a=1,2) and Hydra's own settings are train.py's to expand; every other override is checked
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]
    for job in jobs:
        overrides = [f"data={data}", f"model={job.model}", f"task={job.task}", f"seed={job.seeds[0]}",
                     *job.overrides, *fixed]  # fmt: skip
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose("train", overrides=overrides)
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError([f"{job.name}: {str(err).strip()}"]) from err
        finally:
            GlobalHydra.instance().clear()
        with open_dict(cfg):
            cfg.paths.output_dir = "."  # set by Hydra when the job runs
        try:
            check_train_config(cfg)
        except UserError as err:
            raise type(err)(f"{job.name}: {err}") if not isinstance(err, ConfigError) else ConfigError(
                [f"{job.name}: {p}" for p in err.problems]) from err  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """The command; bad input exits with status 2 and ``error: <message>`` (``ss4rec.errors``)."""
    argv = sys.argv[1:] if argv is None else argv
    with reported_errors():
        return _main(argv)


def _main(argv: list[str]) -> int:
    args, data, extra = parse(argv)
    check_arguments(args, data, extra)
    out_dir = Path(args.reports).resolve() / data
    runs_dir = out_dir / "runs"
    split = lambda text: [t for t in text.split(",") if t]  # noqa: E731
    if any(o.startswith("logger=wandb") for o in extra):
        extra = [*extra, f"++experiment_name=compare_{data}"]  # one W&B group for the comparison

    failed: list[str] = []
    if not args.report_only:
        seeds = [int(s) for s in split(args.seeds)]
        jobs = plan(
            split(args.models), seeds, split(args.tasks), split(args.rating_models), variant_of(extra)
        )
        check_jobs(jobs, data, extra)
        for i, job in enumerate(jobs, 1):
            if args.skip_finished:
                missing = tuple(s for s in job.seeds if s not in finished_seeds(runs_dir / job.name))
                if not missing:
                    print(f"[{i}/{len(jobs)}] {job.name}: every seed finished, skipped", flush=True)
                    continue
                job = Job(job.model, job.task, missing, job.overrides, job.variant)
            command = job.command(data, runs_dir, extra)
            print(f"[{i}/{len(jobs)}] {job.name}: {shlex.join(command)}", flush=True)
            if args.dry_run:
                continue
            started = time.time()
            code = subprocess.run(command, check=False).returncode
            print(
                f"[{i}/{len(jobs)}] {job.name}: exit {code} after {time.time() - started:.0f} s", flush=True
            )
            if code != 0:
                failed.append(job.name)
        if args.dry_run:
            return 0

    try:
        reproduce = [a for a in argv if a not in ("--report-only", "--skip-finished", "--dry-run")]
        folders = job_folders(runs_dir)
        if not folders:
            raise ValueError(f"no finished run with test metrics found: no job folder (<model>-<task>) under {runs_dir}")
        paths = build_report(
            folders, out_dir, command=shlex.join(["python", "-m", "ss4rec.compare", *reproduce])
        )
    except ValueError as error:
        if not failed:
            raise UserError(str(error)) from error  # the runs given hold nothing to report
        print(f"error: {error}", file=sys.stderr)
    else:
        for kind, path in paths.items():
            print(f"{kind:9s} {path}")
    if failed:
        print(f"failed jobs (see their logs under {runs_dir}): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
