"""The comparison dashboard: runs' ``metrics.json`` -> ``index.html`` + ``results.md`` (+ ``summary.json``).

``build_report("reports/ml100k/runs", "reports/ml100k")`` or ``python -m ss4rec.report <runs> --out <dir>``.
Nothing is retrained: the report is rebuilt from the files the runs left behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ss4rec.report.collect import SUMMARY_METRICS, Collection, load_runs
from ss4rec.report.render import all_figures, markdown, page

__all__ = ["build_report", "load_runs", "summary"]


def summary(collection: Collection) -> dict:
    """Aggregates as plain data: per group, mean/std/n of every summary and test metric, and the seeds."""
    metrics = collection.metrics(SUMMARY_METRICS) + collection.test_metrics()
    out = []
    for group in collection.groups:
        values = {}
        for metric in metrics:
            if (s := group.stats(metric.key)) is not None:
                values[metric.key] = {"mean": s.mean, "std": s.std, "n": s.n}
        out.append(
            {
                "label": group.label,
                "data": group.data,
                "model": group.model,
                "task": group.task,
                "experiment": group.experiment,
                "mask_seen": group.mask_seen,
                "setting": group.setting,
                "seeds": group.seeds,
                "metrics": values,
            }
        )
    return {"groups": out, "skipped": [{"path": p, "reason": r} for p, r in collection.skipped]}


def build_report(
    runs: str | Path | Iterable[str | Path], out_dir: str | Path, command: str | None = None
) -> dict[str, Path]:
    """Read every run under ``runs`` (folders, globs or metrics.json files) and write the report.

    Returns the paths written: ``html`` (self-contained page), ``markdown`` (the table), ``summary`` (JSON).
    Raises ValueError when no finished run is found.
    """
    collection = load_runs(runs)
    if not collection.groups:
        reasons = "; ".join(f"{p}: {r}" for p, r in collection.skipped[:5])
        raise ValueError(
            f"no finished run with test metrics found in {runs}" + (f" ({reasons})" if reasons else "")
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "index.html", "markdown": out / "results.md", "summary": out / "summary.json"}
    paths["html"].write_text(page(collection, all_figures(collection), command), encoding="utf-8")
    paths["markdown"].write_text(markdown(collection, command), encoding="utf-8")
    paths["summary"].write_text(json.dumps(summary(collection), indent=2), encoding="utf-8")
    return paths
