"""Small rating data, a float64 SVD++ reference and a timeSVD++ run shared by the rating-base tests."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import torch

from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import Raw
from ss4rec.models.svdpp import SVDpp
from ss4rec.models.timesvdpp import TimeSVDpp


def varied_store():
    """Users with 3 to 10 ratings (training parts of 1 to 8 items), every item distinct within a user."""
    rng = np.random.default_rng(5)
    rows = [(u, int(i), float(rng.integers(1, 6)), 1000 + 10 * k)
            for u, n in enumerate([3, 10, 4, 7, 3, 9], start=1)
            for k, i in enumerate(rng.choice(np.arange(1, 16), n, replace=False))]  # fmt: skip
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0), None)


def svdpp_reference(model: SVDpp, store, user: int, item: int) -> float:
    """``mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``, N(u) the training part, float64, one by one."""
    w = {name: p.detach().double() for name, p in model.named_parameters()}
    n_u = store.items[store.offsets[user] : store.offsets[user + 1] - 2].tolist()
    z = w["user_embedding.weight"][user].clone()
    for j in n_u:
        z += w["implicit_embedding.weight"][j] / math.sqrt(len(n_u))
    bias = w["user_bias.weight"][user, 0] + w["item_bias.weight"][item, 0]
    return float(model.rating_head.rating_mean.double() + bias + w["item_embedding.weight"][item] @ z)


def timed_store():
    """Users with 3 to 10 ratings spread over days and years: zero gaps (same-second ties), minutes, hours, days,
    years; odd lengths; each user's first rating on another day."""
    rng = np.random.default_rng(7)
    rows = []
    for u, n in enumerate([3, 10, 4, 7, 5, 9], start=1):
        gaps = rng.choice([0, 0, 30, 3_600, 5 * 86_400, 800 * 86_400], size=n)
        times = 1_000_000_000 + int(rng.integers(0, 60 * 86_400)) + np.cumsum(gaps)
        items = rng.choice(np.arange(1, 16), n, replace=False)
        rows += [(u, int(i), float(rng.integers(1, 6)), int(t)) for i, t in zip(items, times)]
    frame = pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                       "timestamp": pl.Int64}, orient="row")  # fmt: skip
    return build_store(Raw(frame), Options(k_core=0), None)


def save_run(run, model, checkpoint="best-epoch001.ckpt", hyper=None, fold=None):
    """Save ``model`` as a run folder's checkpoint (its state under ``model.``, plus ``hyper_parameters`` when given);
    ``fold=(K, k)`` also writes the run config of fold k of a K-fold cross-fitting (``metrics.json``)."""
    (run / "checkpoints").mkdir(parents=True)
    saved = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    if hyper is not None:
        saved["hyper_parameters"] = hyper
    torch.save(saved, run / "checkpoints" / checkpoint)
    if fold is not None:
        target = f"{type(model).__module__}.{type(model).__qualname__}"
        config = {"data": {"holdout_folds": fold[0], "holdout_fold": fold[1]}, "model": {"_target_": target}}
        (run / "metrics.json").write_text(json.dumps({"config": config}))


def timesvdpp_run(run, store, seed=0, n_bins=4, beta=0.4, rows=None, fold=None):
    """A timeSVD++ with every table random, indexed on the training rows ``rows`` (default all), saved as a run
    folder (with ``data.holdout_fold`` ``fold`` of 3 when given); returns the model (float64, eval)."""
    users, times = store.users_of_rows(), np.asarray(store.times)
    rows = store.train_rows() if rows is None else rows
    torch.manual_seed(seed)
    model = TimeSVDpp(store.n_items, store.n_users, dim=3, init_std=0.5, n_bins=n_bins, beta=beta,
                      n_user_days=TimeSVDpp.count_user_days(users[rows], times[rows]))  # fmt: skip
    model.set_time_index(users[rows], times[rows])
    with torch.no_grad():
        for name in ("user_bias", "user_drift"):
            getattr(model, name).weight.normal_()
        for name in ("item_bias", "item_bin_bias"):
            getattr(model, name).weight[1:].normal_()
        model.day_bias.weight[:-1].normal_()
        model.rating_head.rating_mean.fill_(3.1 + 0.1 * seed)
    hyper = {"model": {"_target_": "ss4rec.models.timesvdpp.TimeSVDpp", "n_bins": n_bins, "beta": beta}}
    save_run(run, model, "best-epoch003.ckpt", hyper, fold=None if fold is None else (3, fold))
    return model.double().eval()


def random_svdpp(store, seed: int) -> SVDpp:
    """An SVD++ with random biases and factors (init_std 0.5), its mean 3.0 + 0.1 seed."""
    torch.manual_seed(seed)
    model = SVDpp(store.n_items, store.n_users, dim=4, init_std=0.5)
    with torch.no_grad():
        model.user_bias.weight.normal_()
        model.item_bias.weight[1:].normal_()
        model.rating_head.rating_mean.fill_(3.0 + 0.1 * seed)
    return model


def base_runs(kind: str, root, store) -> tuple[str, str | None]:
    """``rating_base`` (and ``rating_base_heldout``) naming runs with random tables of ``kind``."""
    if kind == "svdpp":
        save_run(root / "run", random_svdpp(store, 0))
        return str(root / "run"), None
    if kind == "timesvdpp":
        for fold in range(3):
            timesvdpp_run(root / f"run{fold}", store, seed=fold, fold=fold)
        return str(root / "run*"), None
    for fold in range(3):  # a cross-fitted SVD++, with the run on every training rating for held-out ones
        save_run(root / f"run{fold}", random_svdpp(store, fold), fold=(3, fold))
    if kind == "cross_fitted":
        return str(root / "run*"), None
    save_run(root / "full", random_svdpp(store, 7))
    (root / "full" / "metrics.json").write_text(json.dumps({"config": {"data": {"holdout_folds": 0}}}))
    return str(root / "run*"), str(root / "full")
