"""The one exception type of the data package, and helpers that build its messages.

Every problem with input data raises :class:`DataError` (a ``ValueError``) whose message names the file,
the line number and the line itself where there is one, and what was expected instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data; the message says where and what was expected."""


def bad_line(path: str | Path, line_no: int, line: str, expected: str) -> DataError:
    """Error for one malformed line: ``file:line: 'text': expected ...``."""
    text = line.rstrip("\r\n")
    if len(text) > 200:
        text = text[:200] + "..."
    return DataError(f"{path}:{line_no}: malformed line {text!r}: expected {expected}")


def unknown_name(kind: str, name: str, known: Iterable[str]) -> DataError:
    """Error for a name that is not in a registry; lists the known ones."""
    return DataError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


def missing_file(path: str | Path, what: str = "file", hint: str = "") -> DataError:
    """Error for a file that does not exist or cannot be read."""
    path = Path(path)
    if path.exists() and path.is_dir():
        reason = "is a directory, not a file"
    elif path.exists():
        reason = "exists but cannot be read (check its permissions)"
    else:
        reason = "does not exist"
    return DataError(f"{what} {path} {reason}" + (f"; {hint}" if hint else ""))


def check_readable(path: str | Path, what: str = "ratings file", hint: str = "") -> Path:
    """Return ``path`` if it is a readable file, else raise :func:`missing_file`'s error."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise missing_file(path, what, hint) from err
    return path
