"""Start-up checks of ``python -m ss4rec.serve`` and ``python -m ss4rec.recommend``: every option, before
any checkpoint or data is loaded.

Each raises one :class:`~ss4rec.errors.ConfigError` listing every problem, one per line, as
``<flag>=<value>: expected <what is allowed>`` (exit status 2, ``error: ...``, as every other entry point).
Then, as ``train.py`` checks ``ckpt_path``, the checkpoint goes through ``ss4rec.checkpoints.read_checkpoint``
(:class:`~ss4rec.errors.CheckpointError`: a damaged or foreign file is named before any data are read);
``--k`` is checked against the catalogue size once the data are loaded.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
from pathlib import Path

from ss4rec.config_checks import NON_NEGATIVE_INT, POSITIVE_INT, Problems, Rule
from ss4rec.errors import CheckpointError
from ss4rec.serve.loading import (
    config_problem,
    default_state_dir,
    path_problem,
    read_model_checkpoint,
    resolve,
)

PORT: Rule = (lambda v: isinstance(v, int) and 1 <= v <= 65535,
              "an integer in 1..65535 (0, any free port, is not offered: the server would not say which)")  # fmt: skip
POSITIVE_FINITE: Rule = (lambda v: isinstance(v, int | float) and math.isfinite(v) and v > 0, "a finite number > 0")


def creatable_folder(path: Path) -> str | None:
    """Why the folder ``path`` cannot be used or created (its nearest existing ancestor), or None."""
    path = Path(path).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            return f"{path} is a file"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"


def _check_path(problems: Problems, path: str) -> tuple[Path | None, Path] | None:
    """The (run, checkpoint) the positional path names, or None after adding its problem (names only)."""
    problem = path_problem(path)
    if problem is None:
        return resolve(path)
    problems.append(problem)
    return None


def check_checkpoint(path: str) -> None:
    """After the flags, as ``train.py`` checks ``ckpt_path``: the checkpoint's content
    (:func:`~ss4rec.serve.loading.read_model_checkpoint`, CheckpointError) and its run config."""
    run, checkpoint = resolve(path)
    read_model_checkpoint(checkpoint, what="path" if Path(path).expanduser().is_file() else "checkpoint")
    problem = config_problem(run, checkpoint)
    if problem is not None:
        raise CheckpointError(problem)


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (unknown host, port in use, no permission), or None.

    Binds and closes a socket as uvicorn will (``SO_REUSEADDR``), so the seconds of loading are not spent
    before a bind that fails; another process can still take the port in between."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as err:
        return f"--host={host!r}: expected a host name or address to listen on ({err})"
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        return f"--port={port}: expected a port free to listen on at --host={host!r} ({err.strerror or err})"
    return None


def _named_twice(problems: Problems, checkpoints: list[Path]) -> None:
    twice = sorted({str(c) for c in checkpoints if checkpoints.count(c) > 1})
    if twice:
        problems.append(f"path: {', '.join(twice)} named twice; expected each run once (the ratings are averaged "
                        "with equal weights)")  # fmt: skip


def check_serve_arguments(args: argparse.Namespace) -> None:
    """``python -m ss4rec.serve``'s paths (one or more) and flags (``--host``, ``--port`` (in range, and free to
    listen on), ``--cache-mb``, ``--fold-in-noise``, ``--threads``, ``--state-dir``)."""
    paths = [args.path] if isinstance(args.path, str) else args.path
    problems = Problems()
    located = [_check_path(problems, path) for path in paths]
    _named_twice(problems, [each[1].resolve() for each in located if each])
    found = located[0]
    if not args.host:
        problems.add("--host", args.host, "a host name or address to listen on")
    if problems.check("--port", args.port, PORT) and args.host:
        problem = listen_problem(args.host, args.port)
        if problem is not None:
            problems.append(problem)
    problems.check("--cache-mb", args.cache_mb, POSITIVE_FINITE)
    problems.check("--fold-in-noise", args.fold_in_noise, POSITIVE_FINITE)
    problems.check("--threads", args.threads, POSITIVE_INT)
    state_dir = Path(args.state_dir) if args.state_dir else None
    if state_dir is None and found is not None:
        run, checkpoint = found
        state_dir = default_state_dir(run, checkpoint)  # load_core's default (the first run's)
    why = None if state_dir is None else creatable_folder(state_dir)
    if why is not None:
        flag = "--state-dir" if args.state_dir else "--state-dir (default <run>/serving)"
        problems.add(flag, str(state_dir), f"a folder that exists or can be created, writable ({why})")
    problems.raise_if_any()
    for path in paths:
        check_checkpoint(path)


def check_recommend_arguments(args: argparse.Namespace) -> None:
    """``python -m ss4rec.recommend``'s paths (one or more) and flags (``--k``, ``--out``, ``--at``,
    ``--batch-size``, ``--threads``)."""
    paths = args.path  # nargs="+": a list
    problems = Problems()
    _named_twice(problems, [found[1].resolve() for found in (_check_path(problems, path) for path in paths) if found])
    problems.check("--k", args.k, POSITIVE_INT)
    out = Path(args.out).expanduser()
    if out.suffix != ".parquet":
        problems.add("--out", args.out, "a file name ending in .parquet")
    elif out.is_dir():
        problems.add("--out", args.out, "a .parquet file (it is a folder)")
    else:
        why = creatable_folder(out.parent)
        if why is not None:
            problems.add("--out", args.out, f"a file in a writable folder ({why})")
    if args.at is not None:
        problems.check("--at", args.at, NON_NEGATIVE_INT)
    problems.check("--batch-size", args.batch_size, POSITIVE_INT)
    if args.threads is not None:
        problems.check("--threads", args.threads, POSITIVE_INT)
    problems.raise_if_any()
    for path in paths:
        check_checkpoint(path)
