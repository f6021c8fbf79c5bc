"""Which users one ranking model serves better than another: a held-out ranking metric by user group, pooled over
the leave-last-out splits ``data.holdout_last=k`` of ``benchmarks/pooled_splits.py``.

    python benchmarks/user_groups.py ss4rec='protocol/ss4rec/{s}_ss4rec_s{s}' \\
        mamba4rec='protocol/mamba4rec/{s}_mamba4rec_s{s}' --root reports/ml100k/runs --splits 0 1 2 3 4 --seeds 0 1 --by gap

The models and ``--root``, ``--splits``, ``--seeds`` name run folders as in ``pooled_splits.py`` (the models first,
``{s}`` the seed, ``ROOT/holdout_last<k>/PATTERN`` beyond k = 0). Each run's best checkpoint is loaded, its split
rebuilt from its config, and the rank of every user's held-out target computed as evaluation computes it; the
run's own record must give the same metric over all users (checked, so a changed split or checkpoint is refused).

``--by`` groups the held-out targets (every split's target of every user; the grouping depends on the data, not
on the model, and is taken from the first model's runs of each seed, so runs whose seed also draws the data, such as
``data.user_sample_seed``, are grouped each on its own users):

- ``gap`` (default): the time from the user's previous rating to the target: none (the same second), up to an
  hour, up to a day, up to 30 days, longer. SS4Rec's time-aware S5 reads that gap (``target_time=known``).
- ``length``: the user's history before the target (number of ratings), in four groups of about equal size.

``--stage val`` reads the validation targets instead of the test targets; ``--metric`` is ``ndcg@K`` (default
``ndcg@10``), ``hr@K`` or ``mrr@K``. Printed: per group its number of targets (all splits, one seed; ``a-b`` where
the seeds' data differ), each model's metric (mean ± standard deviation over seeds) and every model's change against
the first: its mean over seeds, then each seed's change ± the half-width of its 95% interval. That interval is the
noise of the held-out targets, given the two trained models: 1.96 standard errors of the mean paired difference
(the same target under both models) over the first model's mean. It treats targets as independent, which a user's
targets in different splits are not, so over several splits it is somewhat narrow; it leaves out the noise of
training, which the spread over seeds shows.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ss4rec.batch import eval_targets
from ss4rec.errors import reported_errors
from ss4rec.evaluate_checkpoint import load_run
from ss4rec.evaluation import ranking_metrics_from_ranks

HOUR, DAY = 3600, 86_400
GAP_EDGES = (0, HOUR, DAY, 30 * DAY)  # a gap g falls in the first group whose edge is >= g; beyond the last: longer
GAP_LABELS = ("0 s (same second)", "1 s - 1 hour", "1 hour - 1 day", "1 - 30 days", "over 30 days")


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


splits_mod = _sibling("pooled_splits")


def held_out(run: str | Path, stage: str = "test") -> dict[str, np.ndarray]:
    """Per user (sorted by user id) of ``run``'s split: ``rank`` (0-based, among all items) of the held-out target
    under the run's best checkpoint, ``history`` (ratings before the target) and ``gap`` (seconds from the previous
    rating to the target)."""
    _, datamodule, module = load_run(run)
    if not module.rank:
        raise SystemExit(f"user_groups: {run} was trained for ratings only and ranks nothing; give ranking runs")
    datamodule.setup("validate" if stage == "val" else "test")
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    parts: dict[str, list[torch.Tensor]] = {"user": [], "rank": [], "history": [], "gap": []}
    with torch.no_grad():
        for batch in loader:
            _, target_times, _ = eval_targets(batch)
            last = batch["lengths"] - 1
            previous = batch["times"].gather(1, last[:, None])[:, 0]  # the input's last rating, right before the target
            parts["user"].append(batch["users"])
            parts["rank"].append(module.target_ranks(batch))
            parts["history"].append((batch["seen"] > 0).sum(1))
            parts["gap"].append(target_times - previous)
    out = {key: torch.cat(values).numpy() for key, values in parts.items()}
    order = np.argsort(out.pop("user"), kind="stable")
    return {key: values[order] for key, values in out.items()}


def per_target(ranks: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` (``ndcg@K``, ``hr@K``, ``mrr@K``) of each 0-based rank."""
    name, _, k = metric.partition("@")
    values = ranking_metrics_from_ranks(torch.as_tensor(ranks), int(k))
    return values[metric].numpy()


def groups(runs: list[list[dict[str, np.ndarray]]], by: str) -> tuple[list[np.ndarray], list[str]]:
    """Per seed the group index of every held-out target of that seed's splits (``runs[seed]``, concatenated), and
    the groups' labels. Length quartiles are cut on every seed's targets together, so all seeds share the groups."""
    if by == "gap":
        gaps = [np.concatenate([split["gap"] for split in seed]) for seed in runs]
        return [np.searchsorted(np.asarray(GAP_EDGES), gap, side="left") for gap in gaps], list(GAP_LABELS)
    histories = [np.concatenate([split["history"] for split in seed]) for seed in runs]
    pooled = np.concatenate(histories)
    edges = np.unique(np.quantile(pooled, [0.25, 0.5, 0.75], method="higher"))  # each group's largest length
    lows = [int(pooled.min()), *(int(e) + 1 for e in edges)]
    highs = [*(int(e) for e in edges), int(pooled.max())]
    labels = [f"{low}-{high} ratings" for low, high in zip(lows, highs)]
    return [np.searchsorted(edges, history, side="left") for history in histories], labels


def collect(root: Path, models: dict[str, str], splits: list[int], seeds: list[int], stage: str, metric: str):
    """Per model a list over seeds of ``metric`` of every held-out target (the splits concatenated), and per seed
    the first model's runs (for the grouping). Each run's mean must be its record's, and in each seed every model
    must hold the same targets as the first (they are compared target by target)."""
    scores, first, names = {}, [], list(models)
    for name, pattern in models.items():
        rows = []
        for i, seed in enumerate(seeds):
            row, runs = [], []
            for j, k in enumerate(splits):
                folder = splits_mod.run_folder(root, pattern, k, seed)
                recorded = splits_mod.read_record(folder, k, metric)[0 if stage == "test" else 1]
                targets = held_out(folder, stage)
                values = per_target(targets["rank"], metric)
                if abs(values.mean() - recorded) > 1e-4:
                    raise SystemExit(f"user_groups: {folder}'s best checkpoint gives {stage} {metric} {values.mean():.5f}, "
                                     f"its record {recorded:.5f}: not the run's split or checkpoint")  # fmt: skip
                if name != names[0] and not same_targets(targets, first[i][j]):
                    raise SystemExit(f"user_groups: {folder}'s {stage} targets (histories and gaps) are not those of "
                                     f"{names[0]}'s run of seed {seed}, split {k}: the models must share the data")  # fmt: skip
                row.append(values)
                runs.append(targets)
            rows.append(np.concatenate(row))
            if name == names[0]:
                first.append(runs)
        scores[name] = rows
    return scores, first


def same_targets(one: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> bool:
    """Whether two runs' held-out targets are the same users' (the same histories and gaps, in user order)."""
    return all(np.array_equal(one[key], other[key]) for key in ("history", "gap"))


def paired_change(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """The relative change of ``values``' mean against ``reference``'s (the same targets, paired) and the half-width
    of its 95% interval over targets: 1.96 standard errors of the mean difference over the reference's mean."""
    reference = reference.astype(np.float64)
    difference = values.astype(np.float64) - reference
    half = 1.96 * difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else np.inf
    return difference.mean() / reference.mean(), half / reference.mean()


def table(scores: dict[str, list[np.ndarray]], indexes: list[np.ndarray], labels: list[str], metric: str) -> str:
    """The markdown table: a row per non-empty group and one of all targets (``indexes``: per seed, each target's
    group)."""
    names = list(scores)
    head = " | ".join(names)
    changes = " | ".join(f"{name} vs {names[0]} (per seed ± 95% over targets)" for name in names[1:])
    lines = [f"| group | targets | {head} | {changes} |", "|---|---:|" + "---:|" * len(names) + "---|" * (len(names) - 1)]
    rows = [(label, [index == g for index in indexes]) for g, label in enumerate(labels)]
    rows.append(("all", [np.ones_like(index, dtype=bool) for index in indexes]))
    for label, members in rows:
        counts = [int(m.sum()) for m in members]
        if not any(counts):
            continue
        means = {name: np.array([v[m].mean() if m.any() else np.nan for v, m in zip(values, members)])
                 for name, values in scores.items()}  # fmt: skip
        cells = [splits_mod.spread(means[name]) for name in names]
        ref = scores[names[0]]
        for name in names[1:]:
            if (means[names[0]] > 0).all():
                pairs = [paired_change(v[m], r[m]) for v, r, m in zip(scores[name], ref, members)]
                per_seed = ", ".join(f"{100 * c:+.1f} ± {100 * h:.1f}%" for c, h in pairs)
                cells.append(f"{100 * np.mean([c for c, _ in pairs]):+.1f}% ({per_seed})")
            else:  # a seed of the reference never hits in the group (or has no target in it)
                cells.append(f"{names[0]} 0 in a seed")
        count = str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
        lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=splits_mod.parse_model, help="NAME=PATTERN, the first is the reference")
    parser.add_argument("--root", type=Path, required=True, help="folder of the k=0 runs; holdout_last<k>/ below it")
    parser.add_argument("--splits", type=int, nargs="+", default=[0], help="the holdout_last values (default: 0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--by", choices=("gap", "length"), default="gap", help="how targets are grouped (default gap)")
    parser.add_argument("--stage", choices=("test", "val"), default="test")
    parser.add_argument("--metric", default="ndcg@10", help="ndcg@K (default ndcg@10), hr@K or mrr@K")
    args = parser.parse_args(argv)
    name, at, k = args.metric.partition("@")
    if name not in ("ndcg", "hr", "mrr") or not at or not k.isdigit() or int(k) < 1:
        parser.error(f"--metric must be ndcg@K, hr@K or mrr@K with K >= 1, got {args.metric!r}")
    if len(set(args.splits)) != len(args.splits) or min(args.splits) < 0:
        parser.error(f"--splits must be distinct values >= 0, got {args.splits}")
    models = dict(args.models)
    if len(models) != len(args.models):
        parser.error("every model needs its own NAME")
    torch.set_num_threads(1)
    with reported_errors():  # a folder that is not a run, a damaged checkpoint: one error line, not a traceback
        scores, first = collect(args.root, models, args.splits, args.seeds, args.stage, args.metric)
    indexes, labels = groups(first, args.by)
    print(table(scores, indexes, labels, args.metric))


if __name__ == "__main__":
    main()
