"""Models scored on several leave-last-out splits at once. One held-out target a user is too few to separate
differences of a few percent on ML-100K (943 users), so each run is also trained with ``data.holdout_last=k``
(every user's last k ratings left out: the test target is then the (k+1)-th from the end, validation the one before)
and its test and validation metric are pooled over the splits k = 0, 1, ..., K, as one test set of K+1 targets a user.

    python benchmarks/pooled_splits.py svdpp='svdpp_best/{s}_svdpp_s{s}' ss4rec='ss4rec_on_svdpp_oof/s{s}' \\
        --root reports/ml100k/runs/rating --splits 0 1 2 3 4 --seeds 0 1 2
    python benchmarks/pooled_splits.py ss4rec='default/ss4rec/{s}_ss4rec_s{s}' \\
        gru4rec='default/gru4rec/{s}_gru4rec_s{s}' --root reports/ml100k/runs --metric ndcg@10 --seeds 0

The models come first (``--splits`` and ``--seeds`` take every number after them). Each ``NAME=PATTERN`` names
one run folder per split and seed: ``{s}`` is the seed, the folder is ``ROOT/PATTERN`` for k = 0 and
``ROOT/holdout_last<k>/PATTERN`` beyond (as the commands in ``reports/ml100k/rating/README.md`` lay them out); a
PATTERN ending in ``.json`` names a record file instead of a folder, such as the one
``benchmarks/rating_blend.py --record`` writes for a fitted stage. Only records are read (``metrics.json``), so
the table comes from what is in git.

``--metric`` (default ``rmse``) is any metric the records hold (``rmse``, ``mae``, ``ndcg@10``, ``hr@10``,
``mrr@10``, ...): the run's ``test/<metric>`` and its best epoch's ``val/<metric>``. Every split holds one target per
user of the same users, so a split enters the pool with equal weight: RMSE as its mean squared error, any other
metric as its mean. Lower is better for ``rmse`` and ``mae``, higher for the rest. The script refuses a record whose
``data.holdout_last`` is not its split's, a run that did not finish, or one without the metric.

Printed: per split the mean over seeds of each model's test metric (``--compare val``: validation); the pooled test
and validation metric (mean ± standard deviation over seeds); and, against the first model, the pooled change of
the compared metric in every seed and how many of the splits the model is better in every seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STAGES = {"test": 0, "val": 1}
LOWER_IS_BETTER = ("rmse", "mae")


def run_folder(root: Path, pattern: str, split: int, seed: int) -> Path:
    """The run of ``pattern`` (``{s}``: the seed) on split ``holdout_last=split``."""
    base = root if split == 0 else root / f"holdout_last{split}"
    return base / pattern.format(s=seed)


def read_record(folder: Path, split: int, metric: str = "rmse") -> tuple[float, float]:
    """(test, best validation) ``metric`` of a finished run trained with ``data.holdout_last=split``."""
    path = folder if folder.suffix == ".json" else folder / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"pooled_splits: no run record {path}")
    record = json.loads(path.read_text())
    if record.get("status") != "finished":
        raise SystemExit(f"pooled_splits: {path} has status {record.get('status')!r}, expected 'finished'")
    holdout = int(record["config"]["data"].get("holdout_last") or 0)
    if holdout != split:
        raise SystemExit(f"pooled_splits: {path} was trained with data.holdout_last={holdout}, expected {split}")
    try:
        return float(record["test"][f"test/{metric}"]), float(record["best_val"][f"val/{metric}"])
    except (KeyError, TypeError):
        raise SystemExit(f"pooled_splits: {path} has no test/{metric} and val/{metric} (another task's run?)") from None


def spread(values: np.ndarray) -> str:
    """Mean ± standard deviation over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def pooled(values: np.ndarray, metric: str = "rmse") -> np.ndarray:
    """The metric over splits of equal size (last axis): RMSE as the root of their mean squared error, the others
    as their mean."""
    if metric == "rmse":
        return np.sqrt((values**2).mean(axis=-1))
    return values.mean(axis=-1)


def collect(root: Path, models: dict[str, str], splits: list[int], seeds: list[int], metric: str = "rmse") -> dict[str, np.ndarray]:
    """Per model a (2, seeds, splits) array: the test and validation metric."""
    out = {}
    for name, pattern in models.items():
        values = [[read_record(run_folder(root, pattern, k, s), k, metric) for k in splits] for s in seeds]
        out[name] = np.moveaxis(np.asarray(values, dtype=np.float64), -1, 0)
    return out


def table(scores: dict[str, np.ndarray], splits: list[int], stage: str = "test", metric: str = "rmse") -> str:
    """The markdown table; the first model is the reference of the last two columns, which (with the per-split
    columns) compare ``stage``'s metric: ``test`` or ``val``."""
    names = list(scores)
    index = STAGES[stage]
    ref = scores[names[0]][index]
    sign = -1 if metric in LOWER_IS_BETTER else 1
    split_heads = " | ".join(f"{stage} k={k}" for k in splits)
    lines = [
        f"| model ({metric}) | {split_heads} | pooled test | pooled validation | {stage} vs {names[0]}, pooled (per seed) | "
        f"splits better than {names[0]} in every seed |",
        "|---|" + "---:|" * len(splits) + "---:|---:|---|---:|",
    ]
    for name in names:
        shown = scores[name][index]
        per_split = " | ".join(f"{v:.4f}" for v in shown.mean(axis=0))
        change = pooled(shown, metric) / pooled(ref, metric) - 1
        per_seed = ", ".join(f"{100 * c:+.1f}%" for c in change)
        better = int((sign * (shown - ref) > 0).all(axis=0).sum())
        test, val = (spread(pooled(scores[name][i], metric)) for i in (0, 1))
        lines.append(f"| {name} | {per_split} | {test} | {val} | {100 * change.mean():+.1f}% ({per_seed}) | "
                     f"{better} of {len(splits)} |")  # fmt: skip
    return "\n".join(lines)


def parse_model(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"expected NAME=PATTERN (e.g. svdpp='svdpp_best/{{s}}_svdpp_s{{s}}'), got {text!r}")
    return name, pattern


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=parse_model, help="NAME=PATTERN, the first is the reference")
    parser.add_argument("--root", type=Path, required=True, help="folder of the k=0 runs; holdout_last<k>/ below it")
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2, 3], help="the holdout_last values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--metric", default="rmse", help="a metric of the records: rmse (default), mae, ndcg@10, ...")
    parser.add_argument("--compare", choices=list(STAGES), default="test", help="the metric of the per-split columns "
                        "and the comparison with the first model: test (default) or val")  # fmt: skip
    args = parser.parse_args(argv)
    if len(set(args.splits)) != len(args.splits) or min(args.splits) < 0:
        parser.error(f"--splits must be distinct values >= 0, got {args.splits}")
    models = dict(args.models)
    if len(models) != len(args.models):
        parser.error("every model needs its own NAME")
    scores = collect(args.root, models, args.splits, args.seeds, args.metric)
    print(table(scores, args.splits, args.compare, args.metric))


if __name__ == "__main__":
    main()
