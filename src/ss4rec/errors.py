"""The errors every entry point reports the same way, and the one function that reports them.

Two kinds of failure reach a user:

- **bad input** (exit status 2): an option with a value it cannot take (:class:`ConfigError`), a file that
  is not what it should be (:class:`CheckpointError`, ``ss4rec.data.DataError``). The message names the
  key or file, the value and what is allowed;
- **a run that failed** (exit status 1): :class:`TrainingFailed`, e.g. a non-finite loss
  (:class:`NonFiniteError`). The run's ``metrics.json`` says ``status: failed`` and why.

Each is printed as one ``error: <message>`` block on stderr, without a traceback; with
``HYDRA_FULL_ERROR=1`` in the environment the exception propagates with its full traceback instead (the
variable Hydra itself reads, honoured by every entry point, Hydra or not).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.errors import CompactHydraException

#: exit statuses of every entry point
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UserError(ValueError):
    """Bad input: the message says what was given and what is allowed."""


class ConfigError(UserError):
    """One or more options with values they cannot take; one problem per line."""

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"invalid option {self.problems[0]}"
        else:
            text = f"{len(self.problems)} invalid options:\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text + (f"\n{hint}" if hint else ""))


class CheckpointError(UserError):
    """A checkpoint file that is missing, truncated or not a Lightning checkpoint."""


#: names of the exceptions that mean a run was told to stop, not that it failed (Lightning turns SIGTERM into
#: SIGTERMException): ``train()`` records such a run as ``stopped``, and the report reads older records that
#: called it ``failed`` by these names
STOP_SIGNALS = frozenset({"SIGTERMException", "KeyboardInterrupt"})


def stop_cause(error: BaseException) -> BaseException | None:
    """The exception that says a run was told to stop (``error`` or what it was raised from), None for a failure.

    Lightning answers Ctrl-C with ``sys.exit(1)``, raised while it handles the KeyboardInterrupt: the cause is
    that KeyboardInterrupt.
    """
    if isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt):
        return error.__context__
    return error if type(error).__name__ in STOP_SIGNALS else None


class TrainingFailed(CompactHydraException):
    """A run that could not finish (its metrics.json has ``status: failed`` and ``reason``).

    A ``CompactHydraException``, so that under a multirun, where the sweeper re-raises a failed job's
    exception after the other jobs ran, Hydra prints the message alone (exit status 1).
    """


class NonFiniteError(TrainingFailed):
    """A NaN or infinite training loss, gradient norm, validation metric or weight."""


def full_error() -> bool:
    """True when the user asked for tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def is_user_error(error: BaseException) -> bool:
    """Bad input (ours, or the data package's DataError, or a ValueError Hydra raised on a bad override)."""
    from ss4rec.data.errors import DataError

    return isinstance(error, UserError | DataError)


def exit_status(error: BaseException) -> int | None:
    """The exit status for an error an entry point reports cleanly, None for a bug (traceback)."""
    if is_user_error(error):
        return EXIT_BAD_INPUT
    if isinstance(error, TrainingFailed):
        return EXIT_FAILED
    return None


def report(error: BaseException) -> int:
    """Print ``error: <message>`` on stderr and return the exit status."""
    status = exit_status(error)
    assert status is not None, error
    print(f"error: {error}", file=sys.stderr, flush=True)
    return status


@contextmanager
def reported_errors(reraise: Callable[[BaseException], bool] | None = None) -> Iterator[None]:
    """Turn bad input and failed runs into ``error: ...`` + ``sys.exit(status)``; bugs propagate.

    ``reraise(error)`` returning True lets an error propagate anyway (e.g. a failed trial under a
    sweeper, which must record it). ``HYDRA_FULL_ERROR=1`` always lets errors propagate.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - classified below; anything else is re-raised
        if exit_status(error) is None or full_error() or (reraise is not None and reraise(error)):
            raise
        sys.exit(report(error))


def run_reported(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` inside :func:`reported_errors`."""
    with reported_errors():
        return function(*args, **kwargs)
