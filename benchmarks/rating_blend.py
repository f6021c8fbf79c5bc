"""How far a linear blend of trained rating models gets below its best member, and what each member adds.

The issue's rating target asks SS4Rec for a test RMSE 5% below SVD++'s. SS4Rec's best rating model already
stacks (it corrects a frozen SVD++). This script measures the head-room left in the models at hand: it
predicts every validation and test rating with each named run's best checkpoint (the evaluation loop's own
predictions, clamped to the rating range), fits least-squares weights plus an intercept on validation, and
scores the blend on test. Validation is also scored by 10-fold cross-validation over users (weights fitted
on nine tenths, scored on the rest), so the validation number is not the one the weights were fitted to.
Each member is then dropped in turn to show what it adds. The members' plain mean, with nothing fitted, is shown
too: given one model's seeds (``s0=... s1=... s2=...``), the average of its independently trained networks.

    python benchmarks/rating_blend.py svdpp=reports/ml1m/runs/rating/svdpp_tuned/0_svdpp_s0 \\
        mf=reports/ml1m/runs/rating/mf_best/0_mf_s0 ss4rec=reports/ml1m/runs/rating/ss4rec_on_svdpp_oof_full_s0

``--drift RUN`` adds one more column, not a prediction: the user's recent drift, the mean error of the last
``--drift-k`` (5) training ratings under an ``mf``/``svdpp`` run (or a cross-fitting's glob), as
``benchmarks/rating_drift.py`` computes it. A blend of SS4Rec and that column is SS4Rec followed by a linear
second stage fitted on validation (stacking on a held-out set, as Netflix Prize blends were fitted on the probe set).

``--fit NAME=RUN`` (one per member, and ``--fit-drift RUN`` with ``--drift``) fits the weights on other runs
instead: the members' twins trained with ``data.holdout_last=1``, whose validation targets are each user's last
training rating. The blend then uses no held-out rating at all (the validation column becomes a second held-out
score), and shows what the stage is worth when nothing beyond the training ratings is there to fit it on.

``--record FILE`` also writes the blend of all as a JSON record shaped like a run's ``metrics.json`` (its test
RMSE, validation RMSE, weights, and the members' ``data.holdout_last``), so that ``benchmarks/pooled_splits.py``
pools a stage over several leave-last-out splits as it pools trained runs; with ``--record-mean`` the record is the
members' plain mean instead (nothing fitted: an ensemble of networks, pooled the same way).

Every run must be a ``task=rating`` (or ``joint``) run on the same split: the script refuses runs whose
held-out users, items or ratings differ. ``--threads`` sets torch's threads (default 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from ss4rec.batch import eval_targets
from ss4rec.errors import reported_errors
from ss4rec.evaluate_checkpoint import load_run
from ss4rec.serve.loading import resolve, run_config

STAGES = ("val", "test")


def predictions(run: str | Path) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """``{stage: (U, 4) float64}`` of user, target item, true rating and predicted rating, sorted by user;
    and the rating range the predictions are clamped to."""
    _, datamodule, module = load_run(run)
    if not module.rate:
        raise SystemExit(f"error: {run!r} was trained for ranking only and predicts no rating; give task=rating or joint runs")
    low, high = module.hparams.rating_range
    out = {}
    for stage in STAGES:
        datamodule.setup("validate" if stage == "val" else "test")
        rows = []
        loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
        with torch.no_grad():
            for batch in loader:
                targets, _, ratings = eval_targets(batch)
                predicted = module.model.predict_rating(module.model.eval_queries(batch), targets).clamp(low, high)
                rows.append(torch.stack([batch["users"].double(), targets.double(), ratings.double(), predicted.double()], 1))
        table = torch.cat(rows).numpy()
        out[stage] = table[np.argsort(table[:, 0], kind="stable")]
    return out, (float(low), float(high))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(((y - p) ** 2).mean()))


def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares weights of ``[1, x]`` for ``y``."""
    design = np.column_stack([np.ones(len(x)), x])
    return np.linalg.lstsq(design, y, rcond=None)[0]


def apply(weights: np.ndarray, x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(weights[0] + x @ weights[1:], low, high)


def cross_validated(x: np.ndarray, y: np.ndarray, low: float, high: float, folds: int = 10) -> float:
    """RMSE over ``y`` of blends each fitted on the other folds (a fixed random split of the rows)."""
    fold = np.random.default_rng(0).permutation(len(y)) % folds
    out = np.empty_like(y)
    for k in range(folds):
        out[fold == k] = apply(fit(x[fold != k], y[fold != k]), x[fold == k], low, high)
    return rmse(y, out)


def columns(names: list[str], data: dict[str, dict[str, np.ndarray]]) -> tuple[dict, dict]:
    """Per stage: the true ratings (R,) and the members' predictions (R, len(names))."""
    y = {stage: data[names[0]][stage][:, 2] for stage in STAGES}
    x = {stage: np.column_stack([data[name][stage][:, 3] for name in names]) for stage in STAGES}
    return y, x


def blend_rows(
    names: list[str], data: dict[str, dict[str, np.ndarray]], low: float, high: float, features: int = 0,
    fit_on: dict[str, dict[str, np.ndarray]] | None = None,
) -> list[str]:
    """Markdown rows: each member alone, their plain mean (two or more), the blend of all, and the blend without
    each member. The last
    ``features`` names are columns that are not predictions (``--drift``): blended, never shown alone.
    ``fit_on`` (``data``'s layout, the same names): fit the weights on its validation ratings instead of
    ``data``'s, whose validation RMSE is then scored as held out."""
    y, x = columns(names, data)
    y_fit, x_fit = columns(names, fit_on) if fit_on is not None else (y, x)
    members = len(names) - features
    rows = [f"| {name} alone | | {rmse(y['val'], x['val'][:, j]):.4f} | {rmse(y['test'], x['test'][:, j]):.4f} |"
            for j, name in enumerate(names[:members])]  # fmt: skip
    if members > 1:  # the plain average: nothing fitted (e.g. one model's seeds, an ensemble)
        mean = {stage: x[stage][:, :members].mean(1) for stage in STAGES}
        rows.append(f"| mean of the members | equal weights, nothing fitted | {rmse(y['val'], mean['val']):.4f} | "
                    f"{rmse(y['test'], mean['test']):.4f} |")  # fmt: skip
    subsets = [("blend of all", list(range(len(names))))]
    if len(names) > 2:
        subsets += [(f"blend without {name}", [k for k in range(len(names)) if k != j]) for j, name in enumerate(names)]
    for label, keep in subsets:
        weights, val, test = score(keep, (y, x), (y_fit, x_fit), low, high, cross_validate=fit_on is None)
        shown = ", ".join(f"{names[k]} {w:+.3f}" for k, w in zip(keep, weights[1:], strict=True))
        val_text = f"{val:.4f} (10-fold)" if fit_on is None else f"{val:.4f}"
        rows.append(f"| {label} | {shown}, intercept {weights[0]:+.3f} | {val_text} | {test:.4f} |")
    return rows


def score(keep: list[int], members: tuple[dict, dict], fit_on: tuple[dict, dict], low: float, high: float,
          cross_validate: bool) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """The blend of columns ``keep``: its weights (intercept first) fitted on ``fit_on``'s validation ratings
    (``columns``' (y, x)), and its validation and test RMSE on ``members``' ratings; validation by 10-fold
    cross-validation when the weights were fitted on that same validation (``cross_validate``)."""
    (y, x), (y_fit, x_fit) = members, fit_on
    weights = fit(x_fit["val"][:, keep], y_fit["val"])
    if cross_validate:
        val = cross_validated(x["val"][:, keep], y["val"], low, high)
    else:
        val = rmse(y["val"], apply(weights, x["val"][:, keep], low, high))
    return weights, val, rmse(y["test"], apply(weights, x["test"][:, keep], low, high))


def check_same_split(data: dict[str, dict[str, np.ndarray]]) -> None:
    """Every run must hold out the same users, items and ratings."""
    first, *others = data
    for name in others:
        for stage in STAGES:
            a, b = data[first][stage], data[name][stage]
            if a.shape != b.shape or not np.array_equal(a[:, :3], b[:, :3]):
                raise SystemExit(f"error: {name!r} and {first!r} hold out different {stage} ratings; blend runs of one split")


def drift_column(run: str, k: int, like: dict[str, np.ndarray], option: str = "--drift") -> dict[str, np.ndarray]:
    """``predictions``' layout for the drift feature: ``like``'s user, item and rating columns, then the mean
    error of each user's last ``k`` training ratings under ``run`` (``benchmarks/rating_drift.py``)."""
    spec = importlib.util.spec_from_file_location("rating_drift", Path(__file__).with_name("rating_drift.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drift = module.residuals(run, [k], option)
    out = {}
    for stage in STAGES:
        users = like[stage][:, 0]
        if not np.array_equal(users, np.arange(len(drift[stage][1]))):
            raise SystemExit(f"error: {option} {run!r} and the members hold out different {stage} users")
        out[stage] = np.column_stack([like[stage][:, :3], drift[stage][1][:, 0]])
    return out


def parse_member(text: str) -> tuple[str, str]:
    name, sep, run = text.partition("=")
    if not sep or not name or not run:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=RUN (e.g. svdpp=reports/ml1m/runs/rating/svdpp_tuned/0_svdpp_s0)")
    return name, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+", type=parse_member, help="NAME=RUN, two or more rating runs of one split")
    parser.add_argument("--drift", metavar="RUN", help="an mf or svdpp run (or a cross-fitting's glob): blend "
                        "the mean error of each user's last --drift-k training ratings under it")  # fmt: skip
    parser.add_argument("--drift-k", type=int, default=5, help="training ratings averaged by --drift (default 5)")
    parser.add_argument("--fit", metavar="NAME=RUN", type=parse_member, action="append", default=[],
                        help="fit the weights on this run's validation ratings instead of the member NAME's (one per "
                        "member; e.g. its twin trained with data.holdout_last=1)")  # fmt: skip
    parser.add_argument("--fit-drift", metavar="RUN", help="with --fit: the --drift column of the runs fitted on")
    parser.add_argument("--record", metavar="FILE", type=Path, help="also write the blend of all as a JSON record "
                        "(test and validation RMSE, weights, the split's data.holdout_last) for pooled_splits.py")  # fmt: skip
    parser.add_argument("--record-mean", action="store_true", help="with --record: record the members' plain mean "
                        "(nothing fitted) instead of the fitted blend")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    names = [name for name, _ in args.members]
    if len(names) + bool(args.drift) < 2 or len(set(names)) != len(names):
        parser.error("give two or more members with distinct names (or one and --drift)")
    fit_names = [name for name, _ in args.fit]
    if args.fit and sorted(fit_names) != sorted(names):
        parser.error(f"--fit names {', '.join(fit_names)}; give one --fit NAME=RUN for each member ({', '.join(names)})")
    if bool(args.fit) and bool(args.drift) != bool(args.fit_drift):
        parser.error("with --fit, give --drift and --fit-drift together (or neither)")
    if args.fit_drift and not args.fit:
        parser.error("--fit-drift is the drift column of the --fit runs; give them")
    if args.drift_k < 1:
        parser.error(f"--drift-k={args.drift_k}: expected a positive number of ratings")
    if args.record_mean and (not args.record or args.drift or args.fit):
        parser.error("--record-mean records the members' plain mean: give --record, and neither --drift nor --fit")
    if args.drift and f"drift{args.drift_k}" in names:
        parser.error(f"drift{args.drift_k} names the --drift column; give the member another name")
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/rating_blend.py", *(sys.argv[1:] if argv is None else argv)])
    record = (args.record, command, args.record_mean) if args.record else None
    with reported_errors():  # a missing run or checkpoint: one error line, not a traceback
        fit_runs = dict(args.fit)
        blend(names, [run for _, run in args.members], args.drift, args.drift_k,
              [fit_runs[name] for name in names] if args.fit else None, args.fit_drift, record)  # fmt: skip


def load(names: list[str], runs: list[str], drift: str | None, k: int, option: str = "--drift") -> tuple[dict, float, float]:
    """Each run's predictions (and the drift column, from ``drift`` as ``option`` gave it) on one split, and the
    rating range they share."""
    data, ranges = {}, set()
    for name, run in zip(names, runs, strict=True):
        data[name], bounds = predictions(run)
        ranges.add(bounds)
        print(f"{name}: {run}", file=sys.stderr)
    check_same_split(data)
    if len(ranges) != 1:
        raise SystemExit(f"error: the runs clamp to different rating ranges {sorted(ranges)}")
    low, high = ranges.pop()
    if drift is not None:
        data[f"drift{k}"] = drift_column(drift, k, data[names[0]], option)
        print(f"drift{k}: the mean error of the last {k} training ratings under {drift}", file=sys.stderr)
    return data, low, high


def blend(
    names: list[str], runs: list[str], drift: str | None = None, k: int = 5,
    fit_runs: list[str] | None = None, fit_drift: str | None = None, record: tuple[Path, str, bool] | None = None,
) -> None:
    """Print the blends' table; ``record``: (file, the command that asked for it, whether to record the members'
    plain mean rather than the blend of all) to write to."""
    data, low, high = load(names, runs, drift, k)
    fit_on = None
    if fit_runs is not None:
        fit_on, *bounds = load(names, fit_runs, fit_drift, k, "--fit-drift")
        if tuple(bounds) != (low, high):
            raise SystemExit(f"error: the --fit runs clamp to {tuple(bounds)}, the members to {(low, high)}")
        if np.array_equal(fit_on[names[0]]["val"][:, :3], data[names[0]]["val"][:, :3]):
            raise SystemExit("error: the --fit runs hold out the members' own validation ratings; train them with "
                             "data.holdout_last=1 (or more)")  # fmt: skip
    fitted = "validation" if fit_on is None else "the --fit runs' validation"
    print(f"| predictions | weights (fitted on {fitted}) | validation RMSE | test RMSE |")
    print("|---|---|---:|---:|")
    print("\n".join(blend_rows(list(data), data, low, high, features=int(drift is not None), fit_on=fit_on)))
    if record is not None:
        path, command, mean = record
        write_record(path, command, list(data), data, low, high, fit_on, runs[0], mean)


def write_record(
    path: Path, command: str, names: list[str], data: dict, low: float, high: float, fit_on: dict | None, run: str,
    mean: bool = False,
) -> None:
    """The blend of all as a run-like record: ``test/rmse``, ``best_val``'s ``val/rmse`` (held out when fitted on
    --fit runs, 10-fold otherwise), the weights, and ``config.data.holdout_last`` of the members' split; ``mean``:
    the members' plain mean instead (equal weights, nothing fitted)."""
    members = columns(names, data)
    if mean:
        y, x = members
        weights = np.array([0.0] + [1 / len(names)] * len(names))
        val, test = (rmse(y[stage], x[stage].mean(1)) for stage in STAGES)
        fitted = "nothing (the members' plain mean)"
    else:
        weights, val, test = score(list(range(len(names))), members, columns(names, fit_on) if fit_on else members, low,
                                   high, cross_validate=fit_on is None)  # fmt: skip
        fitted = "validation (scored by 10-fold cross-validation)" if fit_on is None else "the --fit runs' validation"
    holdout = int(run_config(resolve(run)[0])["data"].get("holdout_last") or 0)
    out = {
        "status": "finished",
        "command": command,
        "config": {"data": {"holdout_last": holdout}},
        "weights": {"intercept": float(weights[0]), **{n: float(w) for n, w in zip(names, weights[1:], strict=True)}},
        "fitted_on": fitted,
        "best_val": {"val/rmse": val},
        "test": {"test/rmse": test},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"record: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
