"""Which users one ranking model serves better than another: a held-out ranking metric by user group, pooled over
the leave-last-out splits ``data.holdout_last=k`` of ``benchmarks/pooled_splits.py``.

    python benchmarks/user_groups.py ss4rec='protocol/ss4rec/{s}_ss4rec_s{s}' \\
        mamba4rec='protocol/mamba4rec/{s}_mamba4rec_s{s}' --root reports/ml100k/runs --splits 0 1 2 3 4 --seeds 0 1 --by gap

The models and ``--root``, ``--splits``, ``--seeds`` name run folders as in ``pooled_splits.py`` (the models first,
``{s}`` the seed, ``ROOT/holdout_last<k>/PATTERN`` beyond k = 0). Each run's best checkpoint is loaded, its split
rebuilt from its config, and the rank of every user's held-out target computed as evaluation computes it; the
run's own record must give the same metric over all users (checked, so a changed split or checkpoint is refused).

``--by`` groups the held-out targets (every split's target of every user; the grouping depends on the data, not
on the model, and is taken from the first model's runs):

- ``gap`` (default): the time from the user's previous rating to the target: none (the same second), up to an
  hour, up to a day, up to 30 days, longer. SS4Rec's time-aware S5 reads that gap (``target_time=known``).
- ``length``: the user's history before the target (number of ratings), in four groups of about equal size.

``--stage val`` reads the validation targets instead of the test targets; ``--metric`` is ``ndcg@K`` (default
``ndcg@10``), ``hr@K`` or ``mrr@K``. Printed: per group its number of targets (all splits, one seed), each model's
metric (mean ± standard deviation over seeds) and every model's change against the first in each seed.
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


def groups(first: list[dict[str, np.ndarray]], by: str) -> tuple[np.ndarray, list[str]]:
    """Group index of every held-out target of the splits ``first`` (concatenated), and the groups' labels."""
    if by == "gap":
        gap = np.concatenate([split["gap"] for split in first])
        return np.searchsorted(np.asarray(GAP_EDGES), gap, side="left"), list(GAP_LABELS)
    history = np.concatenate([split["history"] for split in first])
    edges = np.unique(np.quantile(history, [0.25, 0.5, 0.75], method="higher"))  # each group's largest length
    index = np.searchsorted(edges, history, side="left")
    lows = [int(history.min()), *(int(e) + 1 for e in edges)]
    highs = [*(int(e) for e in edges), int(history.max())]
    return index, [f"{low}-{high} ratings" for low, high in zip(lows, highs)]


def collect(root: Path, models: dict[str, str], splits: list[int], seeds: list[int], stage: str, metric: str):
    """Per model a (seeds, targets) array of ``metric``, every split's targets concatenated; the runs of the first
    model's first seed (for the grouping). Each run's mean must be its record's."""
    scores, first = {}, None
    for name, pattern in models.items():
        rows = []
        for seed in seeds:
            row, runs = [], []
            for k in splits:
                folder = splits_mod.run_folder(root, pattern, k, seed)
                recorded = splits_mod.read_record(folder, k, metric)[0 if stage == "test" else 1]
                targets = held_out(folder, stage)
                values = per_target(targets["rank"], metric)
                if abs(values.mean() - recorded) > 1e-4:
                    raise SystemExit(f"user_groups: {folder}'s best checkpoint gives {stage} {metric} {values.mean():.5f}, "
                                     f"its record {recorded:.5f}: not the run's split or checkpoint")  # fmt: skip
                row.append(values)
                runs.append(targets)
            rows.append(np.concatenate(row))
            first = runs if first is None else first
        scores[name] = np.stack(rows)
    return scores, first


def table(scores: dict[str, np.ndarray], index: np.ndarray, labels: list[str], metric: str) -> str:
    """The markdown table: a row per non-empty group and one of all targets."""
    names = list(scores)
    head = " | ".join(names)
    changes = " | ".join(f"{name} vs {names[0]} (per seed)" for name in names[1:])
    lines = [f"| group | targets | {head} | {changes} |", "|---|---:|" + "---:|" * len(names) + "---|" * (len(names) - 1)]
    rows = [(label, index == g) for g, label in enumerate(labels)] + [("all", np.ones_like(index, dtype=bool))]
    for label, members in rows:
        if not members.any():
            continue
        means = {name: values[:, members].mean(axis=1) for name, values in scores.items()}  # (seeds,)
        cells = [splits_mod.spread(means[name]) for name in names]
        ref = means[names[0]]
        for name in names[1:]:
            if (ref > 0).all():
                change = means[name] / ref - 1
                cells.append(f"{100 * change.mean():+.1f}% ({', '.join(f'{100 * c:+.1f}%' for c in change)})")
            else:  # a seed of the reference never hits in the group
                cells.append(f"{names[0]} 0 in a seed")
        lines.append(f"| {label} | {int(members.sum())} | " + " | ".join(cells) + " |")
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
    index, labels = groups(first, args.by)
    print(table(scores, index, labels, args.metric))


if __name__ == "__main__":
    main()
