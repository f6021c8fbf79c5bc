"""Figures of the report as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, and never a GUI window from a report

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ss4rec.report.collect import Collection, Metric  # noqa: E402


def group_colors(collection: Collection) -> dict[str, tuple]:
    """One colour per group label, the same in every figure."""
    cmap = plt.get_cmap("tab10" if len(collection.groups) <= 10 else "tab20")
    return {g.label: cmap(i % cmap.N) for i, g in enumerate(collection.groups)}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def bar_chart(collection: Collection, metric: Metric) -> bytes | None:
    """Mean over seeds per group with a ±1 std error bar and each seed as a dot; None without data."""
    colors = group_colors(collection)
    rows = [(g, g.stats(metric.key), g.values(metric.key)) for g in collection.groups]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    # the same size for every metric (as if every group had a bar), so the charts line up
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * len(collection.groups) + 1.5), 3.0))
    positions = range(len(rows))
    ax.bar(
        positions,
        [s.mean for _, s, _ in rows],
        yerr=[s.std for _, s, _ in rows],
        color=[colors[g.label] for g, _, _ in rows],
        capsize=4,
        edgecolor="black",
        linewidth=0.5,
    )
    for x, (_, _, values) in zip(positions, rows):
        ax.scatter([x] * len(values), values, color="black", s=8, zorder=3)
    ax.set_xticks(list(positions), [g.label for g, _, _ in rows], rotation=30, ha="right")
    better = {True: " (higher is better)", False: " (lower is better)"}.get(metric.higher_is_better, "")
    ax.set_title(f"{metric.label}{better}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _png(fig)


def curve_chart(collection: Collection, key: str) -> bytes | None:
    """``key`` from each run's ``history`` against the epoch: mean over seeds, ±1 std band."""
    colors = group_colors(collection)
    curves = [(g, *g.curve(key)) for g in collection.groups]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for group, epochs, mean, std in curves:
        color = colors[group.label]
        ax.plot(epochs, mean, color=color, label=group.label, marker="o" if len(epochs) < 3 else None, ms=4)
        low = [m - s for m, s in zip(mean, std)]
        high = [m + s for m, s in zip(mean, std)]
        ax.fill_between(epochs, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{key} over epochs (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    # outside the axes, on the right: with a dozen groups a legend inside hides the curves
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)
