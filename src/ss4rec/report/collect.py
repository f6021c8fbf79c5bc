"""Read runs' ``metrics.json`` files, group them by model and aggregate over seeds.

A run counts when its ``status`` is ``finished`` (or absent, for older files) and it has test metrics, or
when it was ``stopped`` and its best checkpoint so far was then tested with ``python -m
ss4rec.evaluate_checkpoint`` (the record ``evaluations/<best checkpoint>.json``, on the run's own split):
such a run is labelled "stopped" in the report. Every other run is listed as skipped with the reason. A seed counts once per group: of several runs with the
same seed (a rerun, or a resumed run writing its own ``metrics.json``), the last written one is kept and the
others are listed as skipped, with a warning. Groups are (data, model, task, experiment,
mask_seen, setting); a group's label is the model name, with the task/experiment/setting appended only where
one model appears in several groups, so a plain comparison reads "sasrec", "mf", ...

A source may be named, ``NAME=PATH`` (e.g. ``tuned=reports/ml100k/runs/tuned``): its runs get the setting
``NAME``, so runs of one model with different hyperparameters (the defaults and a search's best) form
separate groups instead of counting as repeated seeds. A source that exists as a path is never split at
its ``=``.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import re
import statistics
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ss4rec.errors import STOP_SIGNALS


@dataclass(frozen=True)
class Metric:
    """A column of the report: ``key`` is ``test/...``, ``val/...`` (best validation) or a top-level key."""

    key: str
    label: str
    higher_is_better: bool | None = None  # None: a cost, not a quality (nothing is marked best)
    digits: int = 4


#: the summary columns, in order (a column appears when at least one run has it)
SUMMARY_METRICS = (
    Metric("test/hr@10", "HR@10", True),
    Metric("test/ndcg@10", "NDCG@10", True),
    Metric("test/mrr@10", "MRR@10", True),
    Metric("test/rmse", "RMSE", False),
    Metric("test/mae", "MAE", False),
    Metric("train_time_s", "train time (s)", None, 1),
    Metric("parameters", "parameters", None, 0),
    Metric("peak_memory_mb", "peak memory (MB)", None, 0),
    Metric("epochs", "epochs", None, 1),
)

#: validation curves drawn from ``history`` when present
CURVE_METRICS = ("val/ndcg@10", "val/hr@10", "val/mrr@10", "val/rmse", "train/loss")


def metric_value(run: dict[str, Any], key: str) -> float | None:
    """A run's value of ``key``; None when the run does not have it (or it is not a finite number)."""
    if key.startswith("test/"):
        value = (run.get("test") or {}).get(key)
    elif key.startswith("val/"):
        value = (run.get("best_val") or {}).get(key)
    else:
        value = run.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Stats:
    mean: float
    std: float  # sample standard deviation over seeds (0 for a single run)
    n: int


def stats(values: list[float]) -> Stats | None:
    if not values:
        return None
    return Stats(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


@dataclass
class Group:
    """The runs of one configuration (different seeds)."""

    data: str
    model: str
    task: str
    experiment: str | None
    mask_seen: bool
    stopped: bool = False  # runs stopped before early stopping ended them, best checkpoint tested afterwards
    setting: str | None = None  # the name of the source the runs came from (``NAME=PATH``), if named
    runs: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted(int(r.get("seed", -1)) for r in self.runs)

    def values(self, key: str) -> list[float]:
        return [v for r in self.runs if (v := metric_value(r, key)) is not None]

    def stats(self, key: str) -> Stats | None:
        return stats(self.values(key))

    def curve(self, key: str) -> tuple[list[int], list[float], list[float]]:
        """Epochs, mean and std over the seeds that reached each epoch, of ``key`` in ``history``."""
        by_epoch: dict[int, list[float]] = {}
        for run in self.runs:
            for row in run.get("history") or []:
                value = row.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value) and "epoch" in row:
                    by_epoch.setdefault(int(row["epoch"]), []).append(float(value))
        epochs = sorted(by_epoch)
        summary = [stats(by_epoch[e]) for e in epochs]
        return epochs, [s.mean for s in summary], [s.std for s in summary]


@dataclass
class Collection:
    groups: list[Group]
    skipped: list[tuple[str, str]]  # (path, reason)

    @property
    def datasets(self) -> list[str]:
        return sorted({g.data for g in self.groups})

    @property
    def n_runs(self) -> int:
        return sum(len(g.runs) for g in self.groups)

    def metrics(self, candidates: Iterable[Metric] = SUMMARY_METRICS) -> list[Metric]:
        """The candidate metrics at least one group has."""
        return [m for m in candidates if any(g.values(m.key) for g in self.groups)]

    def test_metrics(self) -> list[Metric]:
        """Every ``test/...`` metric any run has, as columns of the full table."""
        keys = sorted(
            {k for g in self.groups for r in g.runs for k in (r.get("test") or {})}, key=_metric_order
        )
        return [Metric(k, k.removeprefix("test/"), not k.endswith(("/rmse", "/mae"))) for k in keys]


def _metric_order(key: str) -> tuple:
    name, _, k = key.removeprefix("test/").partition("@")
    order = {"hr": 0, "ndcg": 1, "mrr": 2, "rmse": 3, "mae": 4}
    return (k == "", int(k) if k.isdigit() else 0, order.get(name, 9), name)


def history_from_csv(path: Path) -> list[dict[str, float]]:
    """Per-epoch rows (``val/...``, ``train/...``) from a Lightning CSV logger's ``metrics.csv``."""
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            if not record.get("epoch"):
                continue
            row = rows.setdefault(int(float(record["epoch"])), {"epoch": int(float(record["epoch"]))})
            for key, value in record.items():
                if key and key.startswith(("val/", "train/")) and value not in ("", None):
                    row[key] = float(value)
    return [rows[e] for e in sorted(rows)]


def _complete_history(run: dict[str, Any], run_dir: Path) -> None:
    """Use the CSV log's epochs when ``history`` has fewer (e.g. cut at the best checkpoint's epoch)."""
    have = {r.get("epoch") for r in run.get("history") or [] if any(k.startswith("val/") for k in r)}
    for path in sorted(run_dir.glob("**/metrics.csv")):
        try:
            rows = history_from_csv(path)
        except (OSError, ValueError, csv.Error):
            continue
        if len([r for r in rows if any(k.startswith("val/") for k in r)]) > len(have):
            run["history"] = rows
            return


def _tested_after_stop(run: dict[str, Any], run_dir: Path) -> dict[str, float] | None:
    """The test metrics of a stopped run's best checkpoint, from ``evaluate_checkpoint``'s record of it."""
    best = run.get("checkpoint")
    if not best:
        return None
    try:
        record = json.loads((run_dir / "evaluations" / f"{Path(best).stem}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("data_overrides"):
        return None  # not a record, or one made on another split
    if Path(str(record.get("checkpoint"))).name != Path(best).name:
        return None  # another checkpoint's
    tested = {k: v for k, v in (record.get("metrics") or {}).items() if k.startswith("test/")}
    return tested or None


def find_metric_files(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    """``metrics.json`` files under run folders, folders of runs, glob patterns or the files themselves."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found: set[Path] = set()
    for source in sources:
        paths = [Path(p) for p in sorted(glob.glob(str(source), recursive=True))] or [Path(source)]
        for path in paths:
            if path.is_file() and path.name == "metrics.json":
                found.add(path.resolve())
            elif path.is_dir():
                found.update(p.resolve() for p in path.rglob("metrics.json"))
    return sorted(found)


_NAMED = re.compile(r"^([A-Za-z][\w.+-]*)=(.+)$")


def split_source(source: str | Path) -> tuple[str | None, str | Path]:
    """``NAME=PATH`` -> (NAME, PATH); anything else, or a source that exists as given -> (None, source)."""
    match = _NAMED.match(str(source))
    if match is None or Path(source).exists() or glob.glob(str(source), recursive=True):
        return None, source
    return match.group(1), match.group(2)


def load_runs(sources: str | Path | Iterable[str | Path]) -> Collection:
    """Read and group every run found in ``sources`` (see ``find_metric_files``; ``NAME=PATH`` names one)."""
    groups: dict[tuple, Group] = {}
    skipped: list[tuple[str, str]] = []
    written: dict[int, tuple[float, str]] = {}  # id(run) -> (mtime, path) of its metrics.json
    settings: dict[Path, str | None] = {}  # each file once, with the name of the first source that found it
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        setting, where = split_source(source)
        for path in find_metric_files(where):
            settings.setdefault(path, setting)
    for path, setting in sorted(settings.items()):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            skipped.append((str(path), f"unreadable: {error}"))
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as error:  # e.g. a file cut short by a kill
            skipped.append((str(path), f"not valid JSON, truncated or damaged ({error})"))
            continue
        if not isinstance(run, dict):
            skipped.append((str(path), f"not a run summary (a JSON {type(run).__name__}, expected an object)"))
            continue
        status = run.get("status", "finished")
        if status == "failed" and str(run.get("reason", "")).partition(":")[0] in STOP_SIGNALS:
            status = "stopped"  # files written before `stopped` existed recorded a signal as a failure
        if status == "stopped" and (tested := _tested_after_stop(run, path.parent)):
            run["test"], run["stopped"] = tested, True
        elif status != "finished":
            reason = f": {run['reason']}" if run.get("reason") else ""  # e.g. the step and value of a NaN loss
            skipped.append((str(path), f"status {status}{reason}"))
            continue
        if not run.get("test"):
            skipped.append((str(path), "no test metrics"))
            continue
        run.setdefault("run_dir", str(path.parent))
        _complete_history(run, path.parent)
        key = (
            str(run.get("data")),
            str(run.get("model")),
            str(run.get("task")),
            run.get("experiment"),
            bool(run.get("mask_seen", False)),
            bool(run.get("stopped", False)),
            setting,
        )
        groups.setdefault(key, Group(*key)).runs.append(run)
        written[id(run)] = (path.stat().st_mtime, str(path))
    ordered = sorted(groups.values(), key=_group_order)
    for group in ordered:
        skipped += _one_run_per_seed(group, written)
    _label(ordered)
    return Collection(ordered, skipped)


def _one_run_per_seed(group: Group, written: dict[int, tuple[float, str]]) -> list[tuple[str, str]]:
    """Keep the last written run of each repeated seed in ``group``; (path, reason) of the runs dropped."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for run in group.runs:
        if isinstance(run.get("seed"), int):  # files without a seed cannot be told apart: all count
            by_seed.setdefault(run["seed"], []).append(run)
    dropped: list[tuple[str, str]] = []
    for seed, runs in by_seed.items():
        if len(runs) < 2:
            continue
        runs.sort(key=lambda r: written[id(r)])
        kept = written[id(runs[-1])][1]
        for run in runs[:-1]:
            dropped.append((written[id(run)][1], f"seed {seed} repeated in {group.model}: {kept} counted instead"))
        warnings.warn(f"{len(runs)} runs of {group.model} ({group.task}) with seed {seed}: only the last "
                      f"written counts ({kept})", stacklevel=3)
    gone = {path for path, _ in dropped}
    group.runs = [r for r in group.runs if written[id(r)][1] not in gone]
    return dropped


#: row order of the report: non-sequential baselines, sequential baselines, then SS4Rec; others after
MODEL_ORDER = ("pop", "mf", "svdpp", "timesvdpp", "autorec", "ncf", "hybrid_vae", "gru4rec", "sasrec", "mamba4rec", "ss4rec")
TASK_ORDER = ("ranking", "joint", "rating")


def _group_order(g: Group) -> tuple:
    model = MODEL_ORDER.index(g.model) if g.model in MODEL_ORDER else len(MODEL_ORDER)
    task = TASK_ORDER.index(g.task) if g.task in TASK_ORDER else len(TASK_ORDER)
    return (g.data, model, g.model, task, g.task, str(g.experiment), g.mask_seen, g.stopped, str(g.setting))


def _label(groups: list[Group]) -> None:
    """Model name, plus what tells apart groups of the same model (data, task, experiment, masking, setting)."""
    for group in groups:
        same = [g for g in groups if g.model == group.model]
        extra = []
        for attribute, show in (
            ("data", str),
            ("task", str),
            ("experiment", str),
            ("mask_seen", lambda v: "masked"),
            ("setting", str),
        ):
            if len({getattr(g, attribute) for g in same}) > 1 and getattr(group, attribute):
                extra.append(show(getattr(group, attribute)))
        if group.stopped:
            extra.append("stopped, best checkpoint so far")
        group.label = f"{group.model} [{', '.join(extra)}]" if extra else group.model
