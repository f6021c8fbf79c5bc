"""``python -m ss4rec.serve.offline RUN_DIR_OR_CKPT [RUN ...]``: the run's test metrics reproduced through the serving core.

Each user of the data is served every event before their test target (the last ``data.max_len`` of them, as
evaluation reads them: ``--history window``) and asked at the target's time; the served scores rank the target
among all items (seen items not masked) and the served rating is its predicted rating. The metrics are printed
beside ``metrics.json``'s, and the command exits with status 1 when any differs by more than ``--tolerance``: a
check, before deploying a run, that serving computes what training measured. Runs evaluated on another split
(``data.holdout_last`` > 0) or with seen items masked are refused (status 2), as is a path that is not a run.
Several rating runs are served as one model (``python -m ss4rec.serve RUN_A RUN_B``, their mean rating) and its test
RMSE is printed; no record holds it (``benchmarks/rating_blend.py``'s "mean of the members" row scores the same model).
``--as-new-users`` serves every user of a ``model.rating_base`` run as a new user (their events known, no base factors:
served as ``--new-users`` says, ``python -m ss4rec.serve``'s option: folded into the base by default, or as the base's
average training user) and prints that RMSE beside ``metrics.json``'s (several such runs: the RMSE of the model they
make, served as one): what serving a user the base was not trained on costs; ``--last-events N`` keeps only each
user's last N events before the target (a user who has just arrived).
A run's ``new_user_weights.json`` (``python -m ss4rec.serve.new_user_weights``) applies here as in serving.
``--split valid`` takes each user's validation target (the event before the last) instead of the test target, against
``metrics.json``'s ``best_val``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np
import torch

from ss4rec.errors import UserError, reported_errors
from ss4rec.paths import run_metrics
from ss4rec.serve.core import NEW_USER_MODES, ServeOptions, ServingCore
from ss4rec.serve.interactions import InteractionLog

#: which of each user's events a check's targets are, counted from the end, and its ``metrics.json`` section and prefix
SPLITS = {"test": (1, "test", "test"), "valid": (2, "best_val", "val")}


def held_out_core(
    served, history: str = "window", as_new_users: bool = False, split: str = "test", last_events: int | None = None,
    options: dict | None = None,
):  # fmt: skip
    """``served`` (a core, or an ensemble of cores) on its data without each user's events from their ``split`` target
    on (``SPLITS``); ``history``: ``window`` (the last ``max_len`` events, what evaluation reads) or ``full``;
    ``as_new_users``: every user served as a new user (their events known, no base factors: a ``model.rating_base``
    run's ``new_users`` option decides); ``last_events``: each user keeps only that many events before the target;
    ``options``: ``ServeOptions`` fields that replace the cores' (e.g. ``fold_in_noise``)."""
    from ss4rec.serve.ensemble import ServingEnsemble

    cores = getattr(served, "cores", [served])
    held_out = InteractionLog.from_store(cores[0].store, drop_last=SPLITS[split][0],
                                         known_users=0 if as_new_users else None, keep_last=last_events)  # fmt: skip
    made = [ServingCore(core.model, core.catalogue, held_out,
                        ServeOptions(**{**core.options.__dict__, "history": history, **(options or {})}))
            for core in cores]  # fmt: skip
    return made[0] if len(made) == 1 else ServingEnsemble(made)


def split_targets(store, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ``split`` target (``SPLITS``), by user row of ``store``: its item indices, unix times and ratings,
    (U,) each."""
    events = np.asarray(store.offsets[1:]) - SPLITS[split][0]
    return np.asarray(store.items)[events], np.asarray(store.times)[events], np.asarray(store.ratings)[events]


def served_metrics(
    core, ranks: bool = True, progress: bool = False, users=None, history: str = "window", as_new_users: bool = False,
    split: str = "test", last_events: int | None = None,
) -> dict[str, float]:  # fmt: skip
    """RMSE (with a rating head) and, with ``ranks``, HR/NDCG/MRR@10 without masking seen items, of the served
    predictions of each user's ``split`` target (``test``: their last event, ``valid``: the one before): for every user
    of the data and ``history="window"``, what ``metrics.json`` reports for the run ``core`` serves (``test``, and
    ``best_val`` of the checkpoint it keeps). ``users``: original ids (default every user of the data); the rest as
    :func:`held_out_core`'s."""
    from ss4rec.evaluation import ranking_metrics_from_ranks

    store, offline = core.store, held_out_core(core, history, as_new_users, split, last_events)
    rows = {int(user): row for row, user in enumerate(store.user_map)}
    users = list(rows) if users is None else [int(user) for user in users]
    offline.warm(users)
    items, times, ratings = split_targets(store, split)
    positions, errors = [], []
    if progress:
        from tqdm import tqdm

        users = tqdm(users, desc="users", unit="user")
    for user in users:
        row = rows[user]
        target, when, rating = int(items[row]), int(times[row]), float(ratings[row])
        if ranks:
            scores = offline.scores(user, at=when)
            s = scores[target - 1]
            positions.append(int((scores > s).sum() + (scores == s).sum() - 1))
        if core.options.has_rating:
            errors.append(float(offline.predicted_ratings(user, torch.tensor([target]), at=when)[0]) - rating)
    got = {k: float(v.mean()) for k, v in ranking_metrics_from_ranks(torch.tensor(positions), 10).items()} if ranks else {}
    if errors:
        got["rmse"] = float(np.sqrt(np.mean(np.square(errors))))
    return got


def _standard_split(path: str) -> dict:
    """The run's ``metrics.json``, refused (UserError) unless it holds test metrics on the standard split, unmasked."""
    from ss4rec.serve.loading import resolve

    run, _ = resolve(path)
    written = run_metrics(run) if run is not None else {}
    if not written.get("test"):
        raise UserError(f"path={path!r}: expected a run whose metrics.json holds test metrics (a finished run)")
    data = (written.get("config") or {}).get("data") or {}
    if data.get("holdout_last") or written.get("mask_seen"):
        raise UserError(f"path={path!r}: expected a run evaluated on the standard split (data.holdout_last=0) without "
                        "masking seen items; this check reproduces those")  # fmt: skip
    return written


def _serve_offline(
    paths: list[str], threads: int, check=None, split: str = "test", new_users: dict | None = None, **metrics
) -> tuple[list[dict], dict[str, float]]:
    """Each run's ``metrics.json`` (``_standard_split``) and the served ``split`` metrics (``served_metrics``, ranking
    metrics when the served model ranks) of the runs served as ``python -m ss4rec.serve`` serves them (``new_users``:
    its ``--new-users`` and ``--fold-in-noise``), windows of ``max_len``, state in a temporary folder (nothing written
    into the runs); ``check(served)`` first, when given."""
    from ss4rec.serve.ensemble import load_served

    torch.set_num_threads(threads)
    written = [_standard_split(path) for path in paths]
    with tempfile.TemporaryDirectory() as state:
        served = load_served(paths, history="window", state_dir=state, restore=False, **(new_users or {}))
        if check is not None:
            check(served)
        got = served_metrics(served, **{"ranks": served.options.ranks, "progress": True, "split": split, **metrics})
        served.close(save=False)
    return written, got


def recorded(written: dict, split: str, name: str) -> float:
    """Metric ``name`` (``rmse``, ``ndcg@10``, ...) of ``split`` in a run's ``metrics.json``."""
    _, section, prefix = SPLITS[split]
    return float(written[section][f"{prefix}/{name}"])


def check_ensemble(paths: list[str], threads: int, split: str, new_users: dict) -> int:
    """Print the ``split`` RMSE of several rating runs served as one model; 0."""
    _, got = _serve_offline(paths, threads, split=split, new_users=new_users)
    print(f"served as one model (the mean of {len(paths)} runs' ratings): {split} RMSE {got['rmse']:.6f}")
    return 0


def check_run(path: str, tolerance: float, threads: int, split: str, new_users: dict) -> int:
    """Print the served ``split`` metrics beside ``metrics.json``'s; 0 when each is within ``tolerance``, else 1."""
    (written,), got = _serve_offline([path], threads, split=split, new_users=new_users)
    worst = 0.0
    print(f"{'metric':<10} {'served':>10} {'metrics.json':>13} {'difference':>11}")
    for name, value in got.items():
        expected = recorded(written, split, name)
        worst = max(worst, abs(value - expected))
        print(f"{name:<10} {value:>10.6f} {expected:>13.6f} {value - expected:>+11.2e}")
    verdict = "the same" if worst <= tolerance else "DIFFERENT"
    print(f"{verdict}: largest difference {worst:.2e} (tolerance {tolerance:g})")
    return 0 if worst <= tolerance else 1


def check_new_users(paths: list[str], threads: int, split: str, new_users: dict, last_events: int | None) -> int:
    """Print the ``split`` RMSE of ``model.rating_base`` runs (one, or several served as one model) with every user
    served as a new user (with only their last ``last_events`` events when given), one run's beside its
    ``metrics.json``; 0."""
    weights = []

    def has_base(served) -> None:
        for core in getattr(served, "cores", [served]):
            if core.base is None:
                path = core.options.info.get("run_dir") or core.options.info.get("checkpoint")
                raise UserError(f"--as-new-users: expected a run trained with model.rating_base; path={path!r} has none "
                                "(a new user is served as any user)")  # fmt: skip
            weights.append((list(core.options.new_user_weights), list(core.options.new_user_noises)))

    written, got = _serve_offline(paths, threads, check=has_base, split=split, new_users=new_users, ranks=False,
                                  as_new_users=True, last_events=last_events)  # fmt: skip
    options = ServeOptions(**new_users)
    scaled = ""
    if any(w for w, _ in weights):
        each = weights[0][0] if len(weights) == 1 else "; ".join(str(w or "none") for w, _ in weights)
        scaled = f", the network's correction scaled by {each} (new_user_weights.json)"
    if any(v for _, v in weights):
        each = weights[0][1] if len(weights) == 1 else "; ".join(str(v or "none") for _, v in weights)
        scaled += f", the first ratings folded in at noise {each}"
    how = {"fold_in": f"the base fitted to their ratings, noise {options.fold_in_noise:g}{scaled}",
           "average_user": "the base's average training user"}[options.new_users]  # fmt: skip
    events = "" if last_events is None else f" with their last {last_events} events"
    if len(paths) > 1:
        print(f"{split} RMSE of the {len(paths)} runs served as one model (the mean of their ratings), every user served "
              f"as a new user{events} ({how}): {got['rmse']:.6f}")  # fmt: skip
        return 0
    known = recorded(written[0], split, "rmse")
    print(f"{split} RMSE, every user served as a new user{events} ({how}): {got['rmse']:.6f}; "
          f"as themselves (metrics.json): {known:.6f} ({got['rmse'] / known - 1:+.1%})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.serve.offline", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="+", help="a run folder (outputs/runs/...) or a checkpoint inside one; several "
                        "rating runs of one split: served as one model, the mean of their ratings")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest difference allowed (default 1e-4)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--split", choices=list(SPLITS), default="test",
                        help="the targets: each user's last event (test) or the one before it (valid)")
    parser.add_argument("--as-new-users", action="store_true",
                        help="model.rating_base runs (one, or several as one model): the RMSE with every user served "
                             "as a new user")
    parser.add_argument("--new-users", choices=NEW_USER_MODES[:2], default=ServeOptions.new_users,
                        help="how a new user is served (python -m ss4rec.serve's --new-users)")
    parser.add_argument("--fold-in-noise", type=float, default=ServeOptions.fold_in_noise,
                        help="--new-users fold_in: a rating's variance around the base (python -m ss4rec.serve's)")
    parser.add_argument("--last-events", type=int, default=None,
                        help="--as-new-users: each user with only their last N events before the target")
    args = parser.parse_args(argv)
    with reported_errors():
        if not (args.tolerance >= 0 and np.isfinite(args.tolerance)):
            raise UserError(f"--tolerance={args.tolerance}: expected a finite number >= 0")
        if args.threads < 1:
            raise UserError(f"--threads={args.threads}: expected an integer >= 1")
        if not (np.isfinite(args.fold_in_noise) and args.fold_in_noise > 0):
            raise UserError(f"--fold-in-noise={args.fold_in_noise}: expected a finite number > 0")
        if args.last_events is not None and (args.last_events < 1 or not args.as_new_users):
            raise UserError(f"--last-events={args.last_events}: expected an integer >= 1, with --as-new-users")
        new_users = {"new_users": args.new_users, "fold_in_noise": args.fold_in_noise}
        if args.as_new_users:
            return check_new_users(args.path, args.threads, args.split, new_users, args.last_events)
        if len(args.path) > 1:
            return check_ensemble(args.path, args.threads, args.split, new_users)
        return check_run(args.path[0], args.tolerance, args.threads, args.split, new_users)


if __name__ == "__main__":
    sys.exit(main())
