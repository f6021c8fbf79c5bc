"""``python -m ss4rec.serve RUN_DIR_OR_CKPT [RUN ...] [--port 8000] ...``: serve a trained model over HTTP (uvicorn).

Several rating runs of one split are served as one model, the mean of their predicted ratings
(``ss4rec.serve.ensemble.ServingEnsemble``), as ``python -m ss4rec.recommend`` exports them.

Defaults come from ``conf/serve/default.yaml``; every option is also a flag (``--help``). Bad input (a path
that is not a run folder or checkpoint, a damaged or foreign checkpoint, a flag out of range) exits with
status 2 and ``error: <message>`` before anything is loaded where it can (``ss4rec.errors``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from omegaconf import OmegaConf

from ss4rec.errors import reported_errors
from ss4rec.paths import CONFIG_DIR
from ss4rec.serve.core import NEW_USER_MODES


def parse(argv=None) -> argparse.Namespace:
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serve" / "default.yaml"))
    parser = argparse.ArgumentParser(prog="python -m ss4rec.serve", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="+", help="a run folder (outputs/runs/...) or a checkpoint inside one; several "
                        "rating runs of one split: served as one model, the mean of their ratings")
    parser.add_argument("--host", default=defaults["host"])
    parser.add_argument("--port", type=int, default=defaults["port"])
    parser.add_argument("--history", choices=["full", "window"], default=defaults["history"],
                        help="full: states carry the whole history (O(1) ingest); window: the last max_len events")
    parser.add_argument("--cache-mb", type=float, default=defaults["cache_mb"], help="bound of the state cache")
    parser.add_argument("--state-dir", default=defaults["state_dir"],
                        help="event journal and state snapshots (default: <run>/serving)")
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=defaults["fsync"],
                        help="fsync the event journal after every event (survives a machine crash)")
    parser.add_argument("--warm", action=argparse.BooleanOptionalAction, default=defaults["warm"],
                        help="build every user's state at start-up")
    parser.add_argument("--new-users", choices=NEW_USER_MODES, default=defaults["new_users"],
                        help="a model.rating_base run's users outside its training data: fold_in (the base's factors "
                             "fitted to their ratings), average_user (the base's average training user), or refuse (400)")
    parser.add_argument("--fold-in-noise", type=float, default=defaults["fold_in_noise"],
                        help="--new-users fold_in: a rating's variance around the base (smaller trusts a new user's "
                             "ratings sooner)")
    parser.add_argument("--threads", type=int, default=defaults["threads"], help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with reported_errors():
        from ss4rec.serve.checks import check_serve_arguments

        check_serve_arguments(args)
        serve(args)
    return 0


def serve(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch
    import uvicorn

    from ss4rec.serve.app import create_app
    from ss4rec.serve.ensemble import load_served

    torch.set_num_threads(args.threads)
    core = load_served(args.path, history=args.history, cache_mb=args.cache_mb, state_dir=args.state_dir,
                       fsync=args.fsync, new_users=args.new_users, fold_in_noise=args.fold_in_noise)  # fmt: skip
    if args.warm:
        logging.getLogger(__name__).info("warmed %d user states", core.warm())
    uvicorn.run(create_app(core), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(main())
