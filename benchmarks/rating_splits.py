"""Rating models scored on several leave-last-out splits at once: one held-out rating a user is too few to separate
differences under 1% on ML-100K (943 test ratings), so each model is also trained with ``data.holdout_last=k``
(every user's last k ratings left out: the test target is then the (k+1)-th from the end, validation the one before)
and its test and validation RMSE are pooled over the splits k = 0, 1, ..., K, as one test set of K+1 ratings a user.

    python benchmarks/rating_splits.py svdpp='svdpp_best/{s}_svdpp_s{s}' ss4rec='ss4rec_on_svdpp_oof/s{s}' \\
        --root reports/ml100k/runs/rating --splits 0 1 2 3 --seeds 0 1 2

The models come first (``--splits`` and ``--seeds`` take every number after them). Each ``NAME=PATTERN`` names
one run folder per split and seed: ``{s}`` is the seed, the folder is ``ROOT/PATTERN`` for k = 0 and
``ROOT/holdout_last<k>/PATTERN`` beyond (as the twins' commands in ``reports/ml100k/rating/README.md`` lay them
out); a PATTERN ending in ``.json`` names a record file instead of a folder, such as the one
``benchmarks/rating_blend.py --record`` writes for a fitted stage. Only records are read (``metrics.json``), so
the table comes from what is in git. A split's RMSE enters the pool as its mean squared error: every split holds
one rating per user of the same users (the script refuses a record whose ``data.holdout_last`` is not its
split's, or a run that did not finish). Printed: per split the mean over seeds of each model's test RMSE
(``--compare val``: validation RMSE); the pooled test and validation RMSE (mean ± standard deviation over seeds);
and, against the first model, the pooled change of the compared RMSE in every seed and how many of the splits the
model is below it in every seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

STAGES = {"test": 0, "val": 1}


def run_folder(root: Path, pattern: str, split: int, seed: int) -> Path:
    """The run of ``pattern`` (``{s}``: the seed) on split ``holdout_last=split``."""
    base = root if split == 0 else root / f"holdout_last{split}"
    return base / pattern.format(s=seed)


def read_record(folder: Path, split: int) -> tuple[float, float]:
    """(test RMSE, best validation RMSE) of a finished rating run trained with ``data.holdout_last=split``."""
    path = folder if folder.suffix == ".json" else folder / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"rating_splits: no run record {path}")
    record = json.loads(path.read_text())
    if record.get("status") != "finished":
        raise SystemExit(f"rating_splits: {path} has status {record.get('status')!r}, expected 'finished'")
    holdout = int(record["config"]["data"].get("holdout_last") or 0)
    if holdout != split:
        raise SystemExit(f"rating_splits: {path} was trained with data.holdout_last={holdout}, expected {split}")
    try:
        return float(record["test"]["test/rmse"]), float(record["best_val"]["val/rmse"])
    except (KeyError, TypeError):
        raise SystemExit(f"rating_splits: {path} has no test/rmse and val/rmse (not a task=rating run?)") from None


def spread(values: np.ndarray) -> str:
    """Mean ± standard deviation over seeds (the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def pooled(rmses: np.ndarray) -> np.ndarray:
    """RMSE over splits of equal size: the root of the splits' mean squared error (last axis)."""
    return np.sqrt((rmses**2).mean(axis=-1))


def collect(root: Path, models: dict[str, str], splits: list[int], seeds: list[int]) -> dict[str, np.ndarray]:
    """Per model a (2, seeds, splits) array: test and validation RMSE."""
    out = {}
    for name, pattern in models.items():
        values = [[read_record(run_folder(root, pattern, k, s), k) for k in splits] for s in seeds]
        out[name] = np.moveaxis(np.asarray(values, dtype=np.float64), -1, 0)
    return out


def table(scores: dict[str, np.ndarray], splits: list[int], stage: str = "test") -> str:
    """The markdown table; the first model is the reference of the last two columns, which (with the per-split
    columns) compare ``stage``'s RMSE: ``test`` or ``val``."""
    names = list(scores)
    index = STAGES[stage]
    ref = scores[names[0]][index]
    split_heads = " | ".join(f"{stage} k={k}" for k in splits)
    lines = [
        f"| model | {split_heads} | pooled test | pooled validation | {stage} vs {names[0]}, pooled (per seed) | "
        f"splits below {names[0]} in every seed |",
        "|---|" + "---:|" * len(splits) + "---:|---:|---|---:|",
    ]
    for name in names:
        shown = scores[name][index]
        per_split = " | ".join(f"{v:.4f}" for v in shown.mean(axis=0))
        change = pooled(shown) / pooled(ref) - 1
        per_seed = ", ".join(f"{100 * c:+.1f}%" for c in change)
        below = int((shown < ref).all(axis=0).sum())
        lines.append(f"| {name} | {per_split} | {spread(pooled(scores[name][0]))} | {spread(pooled(scores[name][1]))} | "
                     f"{100 * change.mean():+.1f}% ({per_seed}) | {below} of {len(splits)} |")  # fmt: skip
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
    parser.add_argument("--compare", choices=list(STAGES), default="test", help="the RMSE of the per-split columns "
                        "and the comparison with the first model: test (default) or val")  # fmt: skip
    args = parser.parse_args(argv)
    if len(set(args.splits)) != len(args.splits) or min(args.splits) < 0:
        parser.error(f"--splits must be distinct values >= 0, got {args.splits}")
    models = dict(args.models)
    if len(models) != len(args.models):
        parser.error("every model needs its own NAME")
    print(table(collect(args.root, models, args.splits, args.seeds), args.splits, args.compare))


if __name__ == "__main__":
    main()
