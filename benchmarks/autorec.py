"""Is SVD++ the right bar for the rating target? I-AutoRec on the same leave-last-out split, against a rating run.

The issue's rating target is set against SVD++. On ML-1M's random 90/10 splits the strongest classic rating model
of its time is I-AutoRec (Sedhain et al. 2015: 0.831 against 0.845 for biased MF), so this script asks whether it
is also stronger on the split the project uses: each user's last rating held out for test, the one before for
validation. I-AutoRec reads every item's column of the training rating matrix (one entry per user, 0 where the user
did not rate it), codes it with one sigmoid layer and decodes it back with an identity one:

    r_hat(u, i) = W_u . sigmoid(V r_i + b) + c_u

trained on the squared error of the observed entries only, plus ``l2 / 2 (|W|^2 + |V|^2)`` (the paper's objective
divided by the number of training ratings), with Adam over batches of item columns. A held-out rating is read off
its item's reconstruction, whose input holds the training ratings only (never a validation or test rating), and is
clamped to the rating range; an item with no training rating gets the training mean. Early stopping on validation
RMSE; the test RMSE (and MAE) is the one of the best validation epoch.

    python benchmarks/autorec.py reports/ml1m/runs/rating/svdpp_tuned/0_svdpp_s0 --l2 30 100 300 --seeds 0

The positional RUN is the reference: a ``task=rating`` run folder whose ``metrics.json`` gives the split (its data
config, so the same held-out ratings) and the RMSE to compare with; its checkpoint is not needed. Every (l2, seed)
pair is one model; the table shows each one's best epoch, validation and test RMSE and its change against the
reference. ``--record FILE`` writes them as JSON; a record of one model (one l2, one seed) is also shaped like a run's
``metrics.json`` (``status``, ``config.data``, ``best_val``, ``test``), so ``benchmarks/pooled_splits.py`` pools it
over leave-last-out splits (``NAME=autorec/<file>.json``, one record per split and seed). ``--threads`` sets torch's threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from ss4rec.errors import reported_errors
from ss4rec.paths import run_metrics
from ss4rec.serve.loading import run_config
from ss4rec.training import build_datamodule

STAGES = ("val", "test")


def rating_matrix(store) -> tuple[torch.Tensor, torch.Tensor]:
    """(N + 1, U) float32 training ratings by item column (row 0, the padding id, stays empty) and its 0/1 mask.

    Only training rows enter; a user who rated an item twice in training keeps the later rating."""
    rows = store.train_rows()
    items = torch.from_numpy(np.asarray(store.items)[rows].astype(np.int64))
    users = torch.from_numpy(store.users_of_rows()[rows])
    ratings = torch.zeros(store.n_items + 1, store.n_users)
    ratings[items, users] = torch.from_numpy(np.asarray(store.ratings)[rows].astype(np.float32))
    mask = torch.zeros_like(ratings)
    mask[items, users] = 1.0
    return ratings, mask


def held_out(store, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U,) users, items and ratings of the validation (second last) or test (last) rating of every user."""
    rows = store.train_ends + (0 if stage == "val" else 1)
    return np.arange(store.n_users), np.asarray(store.items)[rows].astype(np.int64), np.asarray(store.ratings)[rows]


class IAutoRec(nn.Module):
    """Item-based AutoRec: an item's rating column (U,) -> its reconstruction (U,), through ``hidden`` sigmoid units."""

    def __init__(self, n_users: int, hidden: int):
        super().__init__()
        self.encoder = nn.Linear(n_users, hidden)
        self.decoder = nn.Linear(hidden, n_users)

    def forward(self, columns: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.sigmoid(self.encoder(columns)))

    def penalty(self) -> torch.Tensor:
        return self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum()


def masked_loss(model: IAutoRec, columns: torch.Tensor, mask: torch.Tensor, l2: float, n_ratings: int) -> torch.Tensor:
    """Mean squared error over the observed entries of ``columns`` + ``l2 / 2 * penalty / n_ratings``."""
    error = (model(columns) - columns) * mask
    return error.pow(2).sum() / mask.sum().clamp_min(1) + l2 / 2 * model.penalty() / n_ratings


def predict(model: IAutoRec, ratings: torch.Tensor, per_item: torch.Tensor, users: np.ndarray, items: np.ndarray,
            mean: float, low: float, high: float) -> np.ndarray:  # fmt: skip
    """Predicted ratings of (user, item) pairs from the items' training columns, clamped; items with no training rating
    (``per_item``, (N + 1,): each item's count) get ``mean``."""
    items_t, users_t = torch.from_numpy(items), torch.from_numpy(users)
    unique, where = torch.unique(items_t, return_inverse=True)  # each item's column decoded once
    with torch.no_grad():
        out = model(ratings[unique])[where, users_t].clamp(low, high)
    return torch.where(per_item[items_t] == 0, torch.full_like(out, mean), out).double().numpy()


def fit(datamodule, hidden: int, l2: float, lr: float, max_epochs: int, patience: int, seed: int, batch: int = 256,
        log=print) -> dict:  # fmt: skip
    """Train one I-AutoRec on the datamodule's split with early stopping on validation RMSE; the record of its best
    epoch. Predictions are clamped to the datamodule's ``rating_range`` and unrated items get its ``rating_mean``, as
    the trainer does for every rating model."""
    torch.manual_seed(seed)
    store = datamodule._ready()
    ratings, mask = rating_matrix(store)
    per_item = mask.sum(1)  # (N + 1,) training ratings of each item
    rated = torch.nonzero(per_item > 0).squeeze(1)
    n_ratings = int(mask.sum())
    mean, (low, high) = datamodule.rating_mean, datamodule.rating_range
    targets = {stage: held_out(store, stage) for stage in STAGES}
    model = IAutoRec(store.n_users, hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    best = {"val_rmse": float("inf")}
    curve, started = [], time.perf_counter()
    for epoch in range(max_epochs):
        model.train()
        for chunk in rated[torch.randperm(len(rated))].split(batch):
            loss = masked_loss(model, ratings[chunk], mask[chunk], l2, n_ratings)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if not torch.isfinite(loss):
            raise SystemExit(f"error: I-AutoRec (l2 {l2:g}, seed {seed}) diverged in epoch {epoch}: training loss "
                             f"{loss.item()}; lower --lr (now {lr:g})")  # fmt: skip
        model.eval()
        errors = {stage: np.asarray(targets[stage][2], np.float64)
                  - predict(model, ratings, per_item, *targets[stage][:2], mean, low, high) for stage in STAGES}  # fmt: skip
        scores = {stage: float(np.sqrt((errors[stage] ** 2).mean())) for stage in STAGES}
        curve.append(round(scores["val"], 5))
        if scores["val"] < best["val_rmse"]:
            best = {"val_rmse": scores["val"], "test_rmse": scores["test"], "val_mae": float(np.abs(errors["val"]).mean()),
                    "test_mae": float(np.abs(errors["test"]).mean()), "best_epoch": epoch}  # fmt: skip
        log(f"  hidden {hidden} l2 {l2:g} seed {seed} epoch {epoch}: loss {loss.item():.4f}, val {scores['val']:.4f}, "
            f"test {scores['test']:.4f}")  # fmt: skip
        if epoch - best["best_epoch"] >= patience:
            break
    return {"hidden": hidden, "l2": l2, "lr": lr, "seed": seed, **best, "epochs": len(curve),
            "wall_time_s": round(time.perf_counter() - started, 1), "val_curve": curve}  # fmt: skip


def run_record(result: dict, config: dict) -> dict:
    """The fields of a run's ``metrics.json`` that ``benchmarks/pooled_splits.py`` reads, for one model."""
    return {
        "status": "finished",
        "model": "i_autorec",
        "config": {"data": config["data"]},
        "best_epoch": result["best_epoch"],
        "best_val": {"val/rmse": result["val_rmse"], "val/mae": result["val_mae"]},
        "test": {"test/rmse": result["test_rmse"], "test/mae": result["test_mae"]},
    }


def reference(run: Path) -> tuple[dict, dict]:
    """The reference run's resolved config and its ``{val, test}`` RMSE, from its ``metrics.json``."""
    metrics = run_metrics(run)
    if not metrics:
        raise SystemExit(f"error: no readable metrics.json in {run}; give the folder of a finished task=rating run")
    if metrics.get("task") not in ("rating", "joint") or "test/rmse" not in metrics.get("test", {}):
        raise SystemExit(f"error: {run} is not a finished task=rating run with a test RMSE in its metrics.json")
    return run_config(run), {"val": metrics["best_val"]["val/rmse"], "test": metrics["test"]["test/rmse"]}


def datamodule_of(config: dict):
    """The run's data module, set up (the pairs layout of ``mf``: only its store, mean and range are read)."""
    cfg = OmegaConf.create(config)
    cfg.model = OmegaConf.create({"_target_": "ss4rec.models.mf.MF"})
    return build_datamodule(cfg)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="reference task=rating run folder (its split and its RMSE)")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units (500 in the paper)")
    parser.add_argument("--l2", type=float, nargs="+", default=[100.0], help="L2 coefficients to try")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=15, help="epochs without a better validation RMSE")
    parser.add_argument("--batch", type=int, default=256, help="item columns per step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no line per epoch (a line per model still)")
    parser.add_argument("--record", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    for name in ("hidden", "max_epochs", "patience", "batch", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0 or min(args.l2) < 0:
        parser.error(f"--lr must be > 0 and --l2 >= 0, got lr {args.lr}, l2 {args.l2}")
    torch.set_num_threads(args.threads)
    config, ref = reference(args.run)
    datamodule = datamodule_of(config)
    store = datamodule._ready()
    print(f"reference {args.run}: val RMSE {ref['val']:.4f}, test RMSE {ref['test']:.4f} "
          f"({store.n_users} users, {store.n_items} items)")  # fmt: skip
    log = (lambda _line: None) if args.quiet else print
    results = []
    for l2 in args.l2:
        for seed in args.seeds:
            results.append(fit(datamodule, args.hidden, l2, args.lr, args.max_epochs, args.patience, seed, args.batch, log))
            r = results[-1]
            print(f"l2 {l2:g} seed {seed} done ({len(results)} of {len(args.l2) * len(args.seeds)}): best epoch "
                  f"{r['best_epoch']} of {r['epochs']}, val RMSE {r['val_rmse']:.4f}, {r['wall_time_s']:.0f} s", flush=True)  # fmt: skip
    print("\n| l2 | seed | best epoch | val RMSE | test RMSE | test vs reference |\n|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['l2']:g} | {r['seed']} | {r['best_epoch']} | {r['val_rmse']:.4f} | {r['test_rmse']:.4f} | "
              f"{100 * (r['test_rmse'] / ref['test'] - 1):+.2f}% |")  # fmt: skip
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        payload = {"reference": str(args.run), "reference_rmse": ref, "hidden": args.hidden, "lr": args.lr,
                   "batch": args.batch, "results": results}  # fmt: skip
        if len(results) == 1:  # one model: also shaped like a run's metrics.json, for benchmarks/pooled_splits.py
            payload.update(run_record(results[0], config))
        args.record.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.record}")


if __name__ == "__main__":
    with reported_errors():
        main()
