"""``python -m ss4rec.serve.new_user_weights RUN``: how much of the network's correction a new user's first ratings get.

A ``model.rating_base`` run's network was trained on users whose base rows were fitted on all their training ratings.
A new user folded into the base (``--new-users fold_in``) with one or two ratings has a row fitted on those alone, and
the network's correction, which reads the errors of those same ratings, can then do worse than the base alone (on
ML-1M it does: README "Serving"). So a folded-in user with k ratings is rated ``base + w_k (network - base)``, and this
command chooses ``w_1, ..., w_n`` (``--up-to n``) on validation: every user of the data served as a new user with only
their last k events before their validation target, the ``w`` of ``GRID`` with the lowest RMSE of the clamped ratings,
kept when its gain over ``w = 1`` is at least ``--min-z`` (``MIN_Z``) standard errors (over users) of the mean squared
error, else 1 (on ML-100K's 943 validation users, at noise 1, gains under that bar did not hold on test). It prints
each k's RMSE with the network's full correction, the base alone and the chosen weight, on validation and on test (the
test targets, served the same way, are never used to choose), and writes them into the run folder's
``new_user_weights.json`` (beside the checkpoint for a bare checkpoint), one fit per ``--fold-in-noise`` (a fit for
another noise is kept; the file is started afresh for another checkpoint), which ``python -m ss4rec.serve`` (and
``python -m ss4rec.serve.offline``) then use for that checkpoint and their ``--fold-in-noise``. k counts events, which
are all rated in MovieLens; serving counts a user's ratings. From n + 1 ratings on a user gets the whole correction.

The noise a user's first ratings are folded in at is chosen with the weights (``--noises``, by default half and twice
``--fold-in-noise`` beside it): a short history may be best trusted more, or less, than the serving noise trusts a long
one (README "Serving", "A new user's first ratings"). For each k the pair (noise, its best weight)
with the lowest validation RMSE is kept when its gain over the serving noise's pair passes the same ``--min-z`` bar, and
serving then folds a user with k <= n ratings in at that noise (``ServeOptions.new_user_noises``), from n + 1 ratings on
at ``--fold-in-noise``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ss4rec.errors import UserError, reported_errors
from ss4rec.serve.core import ServeOptions
from ss4rec.serve.offline import held_out_core, split_targets

log = logging.getLogger(__name__)

FILE_NAME = "new_user_weights.json"
#: the weights tried: 0 (the base alone) to 1 (the network's whole correction) by 0.05
GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2).tolist())
MAX_UP_TO = 20
#: a weight below 1 is kept when its validation gain in mean squared error is this many standard errors
MIN_Z = 2.0


def weights_path(run: Path | None, checkpoint: Path) -> Path:
    """Where a run's weights live: its folder (a bare checkpoint's folder when it has none)."""
    return (run or checkpoint.parent) / FILE_NAME


def read_fits(path: Path, sha256: str | None) -> list[dict]:
    """The fits in ``path`` (one per ``fold_in_noise``) when they are for the checkpoint of ``sha256``, else []
    (no file, an unreadable one, or another checkpoint's: logged)."""
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
        fits = [dict(fit, fold_in_noise=float(fit["fold_in_noise"]), weights=[float(w) for w in fit["weights"]],
                     noises=[float(v) for v in fit.get("noises", ())])
                for fit in record["fits"]]  # fmt: skip
        if not all(np.isfinite(v) and v > 0 for fit in fits for v in fit["noises"]):
            raise ValueError("a noise that is not a finite number > 0")
        same = record["checkpoint_sha256"] == sha256
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s is unreadable (%s): ignored", path, error)
        return []
    if not same:
        log.warning("%s was fitted for another checkpoint (sha256 %s): ignored", path,
                    str(record["checkpoint_sha256"])[:16])  # fmt: skip
    return fits if same else []


def read_weights(
    run: Path | None, checkpoint: Path, options: ServeOptions
) -> tuple[tuple[float, ...], tuple[float, ...]]:  # fmt: skip
    """The weights and the noises of a new user's first ratings fitted for this checkpoint (``checkpoint_sha256`` in
    ``options.info``) and ``options``' ``fold_in_noise`` (``ServeOptions.new_user_weights``, ``new_user_noises``; a
    file written before the noises were fitted has none); ((), ()) when new users are not folded in or there are none
    (logged when the file has none for this checkpoint and noise)."""
    path = weights_path(run, checkpoint)
    if options.new_users != "fold_in":
        return (), ()
    if not path.is_file():
        log.info("no %s: new users get the network's whole correction at every rating (fit their first ratings' "
                 "share with `make new-user-weights RUN=%s`)", path, run or checkpoint)  # fmt: skip
        return (), ()
    fits = read_fits(path, options.info.get("checkpoint_sha256"))
    found = [fit for fit in fits if fit["fold_in_noise"] == options.fold_in_noise]
    if not found:
        log.warning("%s has no weights for this checkpoint and --fold-in-noise %g (it has %s): new users get the "
                    "network's whole correction; fit them with `python -m ss4rec.serve.new_user_weights %s "
                    "--fold-in-noise %g`", path, options.fold_in_noise,
                    [fit["fold_in_noise"] for fit in fits] or "none", run or checkpoint, options.fold_in_noise)  # fmt: skip
        return (), ()
    weights, noises = found[0]["weights"], found[0]["noises"]
    log.info("new users with 1..%d ratings get %s of the network's correction, folded in at noise %s (%s)",
             len(weights), weights, noises or options.fold_in_noise, path)  # fmt: skip
    return tuple(weights), tuple(noises)


def new_user_predictions(
    core, split: str, events: int, progress: bool = False, noise: float | None = None
) -> dict[str, np.ndarray]:  # fmt: skip
    """Every user of ``core``'s data served as a new user with their last ``events`` events before their ``split``
    target (``split_targets``), folded into the base (at ``noise``, default the core's ``fold_in_noise``): the target's
    ``rating``, the network's ``network`` and the base's ``base`` predicted ratings (not clamped), (U,) each, float64."""
    noise = core.options.fold_in_noise if noise is None else noise
    store = core.store
    served = held_out_core(core, "window", True, split, events, options={"fold_in_noise": noise, "new_user_noises": ()})
    users = [int(user) for user in store.user_map]
    served.warm(users)
    items, times, ratings = split_targets(store, split)
    out = {"rating": ratings.astype(np.float64), "network": np.empty(len(users)), "base": np.empty(len(users))}
    rows = enumerate(users)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, total=len(users), desc=f"{split}, last {events} events, noise {noise:g}", unit="user")
    with torch.inference_mode():
        for row, user in rows:
            item = torch.tensor([int(items[row])])
            query = served.query(user, int(times[row]))
            out["network"][row] = float(served.model.predict_rating(query, item)[0])
            out["base"][row] = float(served.model.base_rating(query, item)[0])
    return out


def squared_errors(predicted: dict[str, np.ndarray], weight: float, rating_range: tuple[float, float]) -> np.ndarray:
    """Each user's squared error of ``base + weight (network - base)``, clamped to ``rating_range``."""
    base = predicted["base"]
    rating = np.clip(base + weight * (predicted["network"] - base), *rating_range)
    return np.square(rating - predicted["rating"])


def weighted_rmse(predicted: dict[str, np.ndarray], weight: float, rating_range: tuple[float, float]) -> float:
    return float(np.sqrt(np.mean(squared_errors(predicted, weight, rating_range))))


def best_weight(predicted: dict[str, np.ndarray], rating_range: tuple[float, float], min_z: float = MIN_Z) -> float:
    """The weight of ``GRID`` with the lowest ``weighted_rmse`` (the larger one on a tie), kept only when its gain
    over the whole correction (1) in mean squared error is at least ``min_z`` standard errors of that mean over the
    users (else 1: a gain the noise of the validation targets could give)."""
    scores = [np.mean(squared_errors(predicted, w, rating_range)) for w in GRID]
    best = GRID[max(range(len(GRID)), key=lambda i: (-scores[i], i))]
    if best == 1.0:
        return best
    gain = squared_errors(predicted, 1.0, rating_range) - squared_errors(predicted, best, rating_range)
    return best if significant(gain, min_z) else 1.0


def significant(gain: np.ndarray, min_z: float) -> bool:
    """Whether the mean of per-user gains in squared error is at least ``min_z`` standard errors of that mean."""
    spread = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
    return bool(gain.mean() >= min_z * spread)


def best_noise(
    by_noise: dict[float, tuple[float, dict]], serving: float, rating_range: tuple[float, float], min_z: float = MIN_Z
) -> float:  # fmt: skip
    """Of ``by_noise`` (noise: (its weight, its validation predictions)), the noise whose weighted ratings have the
    lowest mean squared error (``serving`` on a tie), kept only when its gain over ``serving``'s is ``significant``
    (else ``serving``)."""
    errors = {noise: squared_errors(predicted, weight, rating_range) for noise, (weight, predicted) in by_noise.items()}
    best = min(errors, key=lambda noise: (errors[noise].mean(), noise != serving))
    return best if best == serving or significant(errors[serving] - errors[best], min_z) else serving


def fit_weights(core, up_to: int, min_z: float = MIN_Z, progress: bool = True, noises: tuple[float, ...] = ()) -> dict:
    """For k = 1..``up_to`` events, the noise (of the core's ``fold_in_noise`` and ``noises``; ``best_noise``) and the
    weight (``best_weight``) chosen on validation, and each length's RMSE at that noise (network, base alone, weighted)
    on validation and test, with every noise's validation RMSE at its weight: the record ``new_user_weights.json``
    holds."""
    rating_range, serving = core.options.rating_range, core.options.fold_in_noise
    tried = sorted({serving, *(float(noise) for noise in noises)})
    weights, chosen, table = [], [], []
    for events in range(1, up_to + 1):
        predicted = {noise: {split: new_user_predictions(core, split, events, progress, noise)
                             for split in ("valid", "test")} for noise in tried}  # fmt: skip
        valid = {noise: (best_weight(predicted[noise]["valid"], rating_range, min_z), predicted[noise]["valid"])
                 for noise in tried}  # fmt: skip
        noise = best_noise(valid, serving, rating_range, min_z)
        weight = valid[noise][0]
        weights.append(weight)
        chosen.append(noise)
        table.append({"events": events, "noise": noise, "weight": weight, **{
            f"{split}_{name}": weighted_rmse(predicted[noise][split], w, rating_range)
            for split in ("valid", "test")
            for name, w in (("network", 1.0), ("base", 0.0), ("weighted", weight))},
            "valid_weighted_by_noise": [[v, weighted_rmse(p, w, rating_range)] for v, (w, p) in valid.items()],
        })  # fmt: skip
    return {"noises_tried": tried, "weights": weights, "noises": chosen, "rmse": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.serve.new_user_weights",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("path", help="a model.rating_base run folder (outputs/runs/...) or a checkpoint inside one")
    parser.add_argument("--up-to", type=int, default=5,
                        help=f"fit the weights of new users with 1..N ratings (default 5, at most {MAX_UP_TO})")
    parser.add_argument("--fold-in-noise", type=float, default=ServeOptions.fold_in_noise,
                        help="the --fold-in-noise the weights are for (python -m ss4rec.serve's)")
    parser.add_argument("--noises", type=float, nargs="*", default=None, metavar="NOISE",
                        help="other fold-in noises tried for a user's first ratings, beside --fold-in-noise (default: "
                             "its half and its double; the flag alone: --fold-in-noise only)")
    parser.add_argument("--min-z", type=float, default=MIN_Z,
                        help=f"keep a weight below 1 when its validation gain is this many standard errors (default "
                             f"{MIN_Z:g}; 0: the best weight whatever its gain)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    with reported_errors():
        if not 1 <= args.up_to <= MAX_UP_TO:
            raise UserError(f"--up-to={args.up_to}: expected an integer from 1 to {MAX_UP_TO}")
        if not (np.isfinite(args.fold_in_noise) and args.fold_in_noise > 0):
            raise UserError(f"--fold-in-noise={args.fold_in_noise}: expected a finite number > 0")
        noises = (args.fold_in_noise / 2, args.fold_in_noise * 2) if args.noises is None else tuple(args.noises)
        for noise in noises:
            if not (np.isfinite(noise) and noise > 0):
                raise UserError(f"--noises: {noise} is not a finite number > 0")
        if not (np.isfinite(args.min_z) and args.min_z >= 0):
            raise UserError(f"--min-z={args.min_z}: expected a finite number >= 0")
        if args.threads < 1:
            raise UserError(f"--threads={args.threads}: expected an integer >= 1")
        return fit_and_write(args.path, args.up_to, args.fold_in_noise, args.threads, args.min_z, noises)


def fit_and_write(
    path: str, up_to: int, noise: float, threads: int, min_z: float = MIN_Z, noises: tuple[float, ...] = ()
) -> int:  # fmt: skip
    """Fit a run's weights and first ratings' noises (``fit_weights``), print them and write ``new_user_weights.json``;
    0."""
    from ss4rec.serve.loading import load_core, resolve
    from ss4rec.serve.offline import _standard_split

    torch.set_num_threads(threads)
    _standard_split(path)
    run, checkpoint = resolve(path)
    with tempfile.TemporaryDirectory() as state:
        quiet, log.disabled = log.disabled, True  # no word on what the file being fitted lacks
        try:
            core = load_core(path, history="window", state_dir=state, restore=False, new_users="fold_in",
                             fold_in_noise=noise)  # fmt: skip
        finally:
            log.disabled = quiet
        if core.base is None:
            raise UserError(f"path={path!r}: expected a run trained with model.rating_base (it has no base to fold new "
                            "users into)")  # fmt: skip
        core.options.new_user_weights = ()  # measure the network's whole correction, whatever a file says
        fitted = fit_weights(core, up_to, min_z, noises=noises)
        core.close(save=False)
    tried = "".join(f" {v:g}" for v in noises)
    fit = {"fold_in_noise": noise, "grid": list(GRID), "chosen_on": "valid", "min_z": min_z, **fitted,
           "command": f"python -m ss4rec.serve.new_user_weights {path} --up-to {up_to} --fold-in-noise {noise:g} "
                      f"--noises{tried} --min-z {min_z:g}"}  # fmt: skip
    out, sha = weights_path(run, checkpoint), core.options.info["checkpoint_sha256"]
    kept = [other for other in read_fits(out, sha) if other["fold_in_noise"] != noise]
    fits = sorted([*kept, fit], key=lambda each: each["fold_in_noise"])
    record = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha, "fits": fits}
    temporary = out.with_suffix(f".tmp-{os.getpid()}")  # written whole, then renamed: a crash leaves the old file
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, out)
    print_fit(fitted["rmse"])
    print(f"wrote {out}: with --fold-in-noise {noise:g} a folded-in user with k <= {up_to} ratings is folded in at "
          "noise v_k and gets weight w_k of the network's correction")
    if len(fits) > 1:
        print("validation RMSE, weighted, of each --fold-in-noise fitted for this checkpoint (with its first ratings' "
              "noises; k = 1, 2, ...):")
        for each in fits:
            rmse = " ".join(f"{row['valid_weighted']:.4f}" for row in each["rmse"])
            print(f"  --fold-in-noise {each['fold_in_noise']:g}: {rmse}")
    return 0


def print_fit(rows: list[dict]) -> None:
    """Each length's noise and weight, its RMSE at that noise, and every noise's validation RMSE at its weight."""
    print(f"{'events':>6} {'noise':>6} {'weight':>6}  {'valid: network':>14} {'base':>7} {'weighted':>8}  "
          f"{'test: network':>13} {'base':>7} {'weighted':>8}  valid weighted by noise")
    for row in rows:
        by_noise = " ".join(f"{v:g}: {rmse:.4f}" for v, rmse in row["valid_weighted_by_noise"])
        print(f"{row['events']:>6} {row['noise']:>6g} {row['weight']:>6.2f}  "
              f"{row['valid_network']:>14.4f} {row['valid_base']:>7.4f} {row['valid_weighted']:>8.4f}  "
              f"{row['test_network']:>13.4f} {row['test_base']:>7.4f} {row['test_weighted']:>8.4f}  {by_noise}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
