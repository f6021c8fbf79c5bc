"""The report as Markdown (a table for the README) and as one self-contained HTML page."""

from __future__ import annotations

import base64
import datetime as dt
import html
import sys
from pathlib import Path

from ss4rec.report.collect import CURVE_METRICS, Collection, Group, Metric, Stats, metric_value

DASH = "–"


def write_or_print(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (its folder created) or, without one, to stdout."""
    if out is None:
        sys.stdout.write(text)
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def format_number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def format_stats(s: Stats | None, metric: Metric) -> str:
    """``mean ± std`` (just the mean for one run); a dash when the group has no value."""
    if s is None:
        return DASH
    mean = format_number(s.mean, metric.digits)
    if s.n == 1 or (metric.digits == 0 and s.std == 0):  # one run, or an exact count (parameters)
        return mean
    return f"{mean} ± {format_number(s.std, metric.digits)}"


def best_groups(collection: Collection, metric: Metric) -> set[str]:
    """Labels of the group(s) with the best mean of a quality metric (none for costs)."""
    if metric.higher_is_better is None:
        return set()
    means = {g.label: s.mean for g in collection.groups if (s := g.stats(metric.key)) is not None}
    if len(means) < 2:
        return set()
    best = max(means.values()) if metric.higher_is_better else min(means.values())
    return {label for label, mean in means.items() if mean == best}


def protocol_note(collection: Collection) -> str:
    masked = {g.mask_seen for g in collection.groups}
    masking = {frozenset({False}): "seen items not masked", frozenset({True}): "seen items masked"}.get(
        frozenset(masked), "seen items masked only where the table says so"
    )
    return (
        "Test metrics of the checkpoint with the best validation NDCG@10 (validation RMSE for rating-only "
        f"runs), leave-one-out, full ranking over every item, {masking}; mean ± sample standard deviation "
        "over seeds. Train time is wall-clock fitting time; peak memory is the process's peak RSS on CPU "
        "(torch's peak allocation on GPU)."
    )


def _rows(collection: Collection, metrics: list[Metric]) -> list[tuple[Group, list[tuple[str, bool]]]]:
    best = {m.key: best_groups(collection, m) for m in metrics}
    return [
        (g, [(format_stats(g.stats(m.key), m), g.label in best[m.key]) for m in metrics])
        for g in collection.groups
    ]


# ----------------------------------------------------------------------------- Markdown
def partitions(collection: Collection) -> list[tuple[str, str, Collection]]:
    """(title, id suffix, groups) per evaluation protocol: masked and unmasked rows are never compared."""
    masks = sorted({g.mask_seen for g in collection.groups})
    if len(masks) < 2:
        return [("", "", collection)]
    return [
        (title, suffix, Collection([g for g in collection.groups if g.mask_seen == mask], []))
        for mask, title, suffix in (
            (False, "Seen items not masked (the default protocol)", ""),
            (True, "Seen items masked (evaluation.mask_seen=true)", "-masked"),
        )
    ]


def markdown(collection: Collection, command: str | None = None) -> str:
    metrics = collection.metrics()
    header = ["model", "task", "seeds", *(m.label for m in metrics)]
    lines = [
        f"# Results: {', '.join(collection.datasets) or 'no runs'}",
        "",
        protocol_note(collection) + " Best mean in bold.",
    ]
    for title, _, part in partitions(collection):
        lines += ["", f"### {title}", ""] if title else [""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(metrics)) + "|")
        for group, cells in _rows(part, metrics):
            shown = [f"**{text}**" if best else text for text, best in cells]
            lines.append("| " + " | ".join([group.label, group.task, str(len(group.runs)), *shown]) + " |")
    if command:
        lines += ["", f"Reproduce: `{command}`"]
    if collection.skipped:
        lines += ["", f"{len(collection.skipped)} run(s) skipped (not finished, without test metrics, or a repeated seed)."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- HTML
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 1400px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { padding: 0.25rem 0.5rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
td.path { text-align: left; }
td.best { font-weight: bold; background: #eaf6ea; }
.note { color: #555; font-size: 0.9rem; max-width: 950px; }
.grid { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.grid figure { margin: 0; border: 1px solid #eee; padding: 0.3rem; flex: 0 1 auto; }
.grid img { max-width: 100%; height: auto; display: block; }
code { background: #f4f4f4; padding: 0.1rem 0.3rem; }
"""

# marks the page once every image has decoded (the screenshot test reads it from the DOM)
ONLOAD = (
    "<script>window.addEventListener('load', function () {"
    " var ok = Array.from(document.images).filter(function (i) { return i.complete && i.naturalWidth > 0; });"
    " document.body.setAttribute('data-images-rendered', ok.length); });</script>"
)


def _table(collection: Collection, metrics: list[Metric], table_id: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in ["model", "task", "seeds", *(m.label for m in metrics)])
    body = []
    for group, cells in _rows(collection, metrics):
        tds = "".join(f'<td class="best">{e(t)}</td>' if best else f"<td>{e(t)}</td>" for t, best in cells)
        body.append(
            f"<tr><td>{e(group.label)}</td><td>{e(group.task)}</td><td>{len(group.runs)}</td>{tds}</tr>"
        )
    table = f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _runs_table(collection: Collection) -> str:
    e = html.escape
    keys = [("test/hr@10", 4), ("test/ndcg@10", 4), ("test/mrr@10", 4), ("test/rmse", 4), ("train_time_s", 1)]
    head = "".join(
        f"<th>{h}</th>" for h in ["model", "seed", "task", "masked", *(k for k, _ in keys), "epochs", "run"]
    )
    rows = []
    for group in collection.groups:
        for run in sorted(group.runs, key=lambda r: r.get("seed", -1)):
            values = [metric_value(run, k) for k, _ in keys]
            cells = "".join(
                f"<td>{DASH if v is None else format_number(v, d)}</td>" for v, (_, d) in zip(values, keys)
            )
            rows.append(
                f"<tr><td>{e(group.label)}</td><td>{run.get('seed')}</td><td>{e(group.task)}</td>"
                f"<td>{'yes' if group.mask_seen else 'no'}</td>{cells}<td>{run.get('epochs', DASH)}</td>"
                f"<td class='path'><code>{e(str(run.get('run_dir', '')))}</code></td></tr>"
            )
    table = f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _titled(title: str, table: str) -> str:
    return f"<h3>{html.escape(title)}</h3>{table}" if title else table


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"></figure>'


def page(collection: Collection, figures: dict[str, bytes], command: str | None = None) -> str:
    """The whole page; ``figures`` maps a caption (``bar:<key>`` or ``curve:<key>``) to PNG bytes."""
    e = html.escape
    bars = "".join(_figure(png, name) for name, png in figures.items() if name.startswith("bar:"))
    curves = "".join(_figure(png, name) for name, png in figures.items() if name.startswith("curve:"))
    skipped = "".join(f"<li><code>{e(p)}</code>: {e(r)}</li>" for p, r in collection.skipped)
    title = f"ss4rec comparison: {', '.join(collection.datasets) or 'no runs'}"
    parts = partitions(collection)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class='note'>{len(collection.groups)} configurations, {collection.n_runs} runs; generated "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>",
        f"<p class='note'>{e(protocol_note(collection))} Best mean highlighted.</p>",
        f"<p class='note'>Reproduce: <code>{e(command)}</code></p>" if command else "",
        "<h2>Summary</h2>",
        *(_titled(t, _table(part, collection.metrics(), "summary" + i)) for t, i, part in parts),
        "<h2>Every test metric</h2>",
        *(_titled(t, _table(part, collection.test_metrics(), "test-metrics" + i)) for t, i, part in parts),
        "<h2>Metrics by model</h2>",
        f"<div class='grid'>{bars}</div>",
        "<h2>Validation curves</h2>",
        f"<div class='grid'>{curves or '<p>No per-epoch history in these runs.</p>'}</div>",
        "<h2>Runs</h2>",
        _runs_table(collection),
        f"<h2>Skipped runs</h2><ul>{skipped}</ul>" if skipped else "",
        ONLOAD,
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def all_figures(collection: Collection) -> dict[str, bytes]:
    """A bar chart per summary metric and a curve per history metric, where there is data."""
    from ss4rec.report.plots import bar_chart, curve_chart  # matplotlib only when drawing

    figures: dict[str, bytes] = {}
    for metric in collection.metrics():
        if (png := bar_chart(collection, metric)) is not None:
            figures[f"bar:{metric.key}"] = png
    for key in CURVE_METRICS:
        if (png := curve_chart(collection, key)) is not None:
            figures[f"curve:{key}"] = png
    return figures
