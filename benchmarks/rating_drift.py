"""How much of a trained MF's (or SVD++'s) held-out rating error the user's recent ratings explain.

A sequence model's rating side can only beat MF by what the order of a user's ratings tells beyond MF's
static user vector. This script measures the simplest such signal: MF's error on each user's validation and
test rating against MF's mean error on the user's last k training ratings (the user's recent drift from
their MF profile). For each k it prints the correlation and the RMSE left after the least-squares slope
(one number for all users, fitted on validation; test uses the validation slope), next to MF's own RMSE.

    python benchmarks/rating_drift.py reports/ml1m/runs/rating/mf_best/0_mf_s0
    python benchmarks/rating_drift.py RUN --k 1 5 20 100

The RUN is an ``mf`` or ``svdpp`` run folder (``model=mf|svdpp task=rating``); its split is rebuilt from its
config. An SVD++ run is read as the MF it is on a fixed training part (``ss4rec.models.rating_base``). A quoted
glob naming the K runs of a cross-fitting (``data.holdout_folds``) reads each training rating's error under the
run that left it out (out of sample, as a held-out rating's) and the held-out ratings under the runs' mean:

    python benchmarks/rating_drift.py 'reports/ml1m/runs/rating/svdpp_oof_s0/*_svdpp_s0'

The last column asks the same of the training ratings a sequence model learns from: over every training rating
after the user's first, the correlation of its error with the mean error of the k training ratings before it (out
of fold with a cross-fitting's glob; in sample, so shrunken, with one run). A second table splits that column, for
the first k, by how far each training rating lies from the end of the user's training part.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from ss4rec.data.store import SequenceStore
from ss4rec.errors import reported_errors
from ss4rec.models.rating_base import FrozenMF, RatingBaseError, cross_fitting
from ss4rec.paths import checkpoint_run
from ss4rec.serve.loading import run_config
from ss4rec.training import build_datamodule

FROM_END = ((1, 1), (2, 5), (6, 20), (21, 100), (101, 10**9))


def previous_means(errors: np.ndarray, k: int) -> np.ndarray:
    """(n - 1,): for t = 1..n-1 the mean of ``errors[max(0, t - k):t]``."""
    sums = np.concatenate([[0.0], np.cumsum(errors)])
    t = np.arange(1, len(errors))
    start = np.maximum(0, t - k)
    return (sums[t] - sums[start]) / (t - start)


def residuals(run: str | Path, ks: list[int], option: str = "run") -> dict[str, np.ndarray]:
    """Per held-out stage: (U,) MF errors and (U, len(ks)) mean MF errors of the last k training ratings; under
    ``train``, every training rating after a user's first: (R,) errors and (R, len(ks)) means of the k before it;
    ``from_end``: (R,) each one's place counted from the end of its user's training part (1 = the last).
    ``option``: the argument that gave ``run``, named by the error when ``run`` is no base run."""
    try:
        store, base = frozen_base(run)
    except RatingBaseError as err:
        raise err.naming(option) from None
    out = {stage: ([], []) for stage in ("val", "test", "train")}
    from_end = []
    for user in range(store.n_users):
        start, end = store.offsets[user], store.offsets[user + 1]
        items = torch.from_numpy(store.items[start:end].astype(np.int64))
        users = torch.full_like(items, user)
        with torch.no_grad():  # a past rating under the run that left its fold out, a held-out one the mean
            out_of_fold, mean = (base(base.user_part(users, each), items).numpy() for each in (items, None))
        ratings = store.ratings[start:end].astype(np.float64)
        errors = ratings - out_of_fold  # each rating's error under the run that left it out
        train = errors[: len(items) - 2]
        if len(train) > 1:
            out["train"][0].append(train[1:])
            out["train"][1].append(np.column_stack([previous_means(train, k) for k in ks]))
            from_end.append(np.arange(len(train) - 1, 0, -1))
        for stage, target in (("val", len(items) - 2), ("test", len(items) - 1)):
            past = errors[:target]  # what the model has read: the test target comes after the validation one
            out[stage][0].append(ratings[target] - mean[target])
            out[stage][1].append([past[-k:].mean() for k in ks])
    train = out.pop("train")
    return {stage: (np.array(y), np.array(x)) for stage, (y, x) in out.items()} | {
        "train": (np.concatenate(train[0]), np.concatenate(train[1])),
        "from_end": np.concatenate(from_end),
    }


def frozen_base(run: str | Path) -> tuple[SequenceStore, FrozenMF]:
    """The data store of ``run``'s split and its MF/SVD++ (or cross-fitting) as a float64 frozen base, filled."""
    first = checkpoint_run(cross_fitting(run)[0])
    if first is None:
        raise RatingBaseError(f"model.rating_base={str(run)!r}: a checkpoint outside a run folder's checkpoints/ has "
                              "no run config to rebuild the split from; pass the run folder")  # fmt: skip
    cfg = OmegaConf.create(run_config(first))
    cfg.model = OmegaConf.create({"_target_": "ss4rec.models.mf.MF"})
    store = build_datamodule(cfg)._ready()
    base = FrozenMF(store.n_users, store.n_items, str(run)).double()
    base.fill(store)  # float64 tables: the module's dtype; the store gives SVD++ its N(u)
    return store, base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an mf or svdpp run folder (model=mf|svdpp task=rating), or a glob of the K runs of a cross-fitting")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 20, 10_000], help="recent ratings averaged")
    args = parser.parse_args(argv)
    with reported_errors():  # a missing or wrong base run: one error line, not a traceback
        data = residuals(args.run, args.k)
    y_val, x_val = data["val"]
    print(f"base run {args.run}: RMSE of the base alone, validation {np.sqrt((y_val**2).mean()):.4f}, "
          f"test {np.sqrt((data['test'][0] ** 2).mean()):.4f}")  # fmt: skip
    print("| last k training errors | corr. (val) | corr. (test) | slope (fitted on val) | val RMSE after | test RMSE after | corr. (training ratings) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for j, k in enumerate(args.k):
        slope = (y_val * x_val[:, j]).sum() / (x_val[:, j] ** 2).sum()
        row = [f"{k}" if k < 10_000 else "all"]
        for stage in ("val", "test"):
            y, x = data[stage]
            row.append(f"{np.corrcoef(y, x[:, j])[0, 1]:.3f}")
        row.append(f"{slope:.2f}")
        for stage in ("val", "test"):
            y, x = data[stage]
            row.append(f"{np.sqrt(((y - slope * x[:, j]) ** 2).mean()):.4f}")
        y, x = data["train"]
        row.append(f"{np.corrcoef(y, x[:, j])[0, 1]:.3f}")
        print("| " + " | ".join(row) + " |")
    y, x = data["train"]
    print(f"\n| training ratings, place from the end of the training part | ratings | corr. with the mean of the {args.k[0]} before |")
    print("|---|---:|---:|")
    for low, high in FROM_END:
        rows = (data["from_end"] >= low) & (data["from_end"] <= high)
        place = f"{low}" if low == high else f"{low}-{high}" if high < 10**9 else f"{low} and more"
        corr = f"{np.corrcoef(y[rows], x[rows, 0])[0, 1]:.3f}" if rows.sum() > 2 else "-"
        print(f"| {place} | {rows.sum()} | {corr} |")


if __name__ == "__main__":
    main()
