"""The slow path of the readers: walk a text ratings file line by line and name the first bad line.

Only called after the vectorised parse found a problem, so its speed does not matter; it checks the same
things the fast path relies on: field count, integer ids, a finite rating inside the declared scale,
an integer unix-second timestamp. Blank lines are skipped, as the fast path skips them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ss4rec.data.errors import DataError, bad_line
from ss4rec.data.readers import COLUMNS, RatingFile


def _lines(spec: RatingFile) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line end) of every line."""
    with open(spec.path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def _positions(spec: RatingFile, header: list[str] | None) -> dict[str, int]:
    if header is None:
        return {key: int(pos) for key, pos in zip(COLUMNS, spec.columns)}
    positions = {}
    for key, name in zip(COLUMNS, spec.columns):
        if name not in header:
            raise DataError(f"{spec.path}:1: header {header} has no column {name!r} for the {key}")
        positions[key] = header.index(name)
    return positions


def check_fields(spec: RatingFile, fields: list[str], where: dict[str, int], scale) -> str | None:
    """What is wrong with one line's fields, or None when it is fine."""
    for key in ("user", "item"):
        text = fields[where[key]].strip()
        if not text:
            return (
                f"{'an' if key == 'item' else 'a'} {key} id in field {where[key] + 1}, found an empty field"
            )
        if spec.id_dtype == "int" and not _is_int(text):
            return f"an integer {key} id in field {where[key] + 1}, found {text!r}"
    text = fields[where["rating"]].strip()
    try:
        rating = float(text)
    except ValueError:
        return f"a numeric rating in field {where['rating'] + 1}, found {text!r}"
    if not math.isfinite(rating):
        return f"a finite rating in field {where['rating'] + 1}, found {text!r}"
    if scale is not None and not scale[0] <= rating <= scale[1]:
        return f"a rating within the declared scale [{scale[0]}, {scale[1]}], found {text}"
    text = fields[where["timestamp"]].strip()
    if not _is_int(text):
        return f"an integer unix-second timestamp in field {where['timestamp'] + 1}, found {text!r}"
    return None


def _is_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def diagnose(spec: RatingFile, scale: tuple[float, float] | None) -> None:
    """Raise DataError for the first bad line of ``spec.path``; return quietly when every line is fine."""
    header = None
    n_fields = spec.n_fields
    where = None
    for number, line in _lines(spec):
        fields = line.split(spec.separator)
        if spec.header and header is None:
            header = [name.strip() for name in fields]
            n_fields = n_fields or len(header)
            where = _positions(spec, header)
            continue
        if where is None:
            where = _positions(spec, None)
        if not line.strip():
            continue
        n_fields = n_fields or len(fields)
        if len(fields) != n_fields:
            raise bad_line(
                spec.path,
                number,
                line,
                f"{n_fields} fields separated by {spec.separator!r}, found {len(fields)}",
            )
        problem = check_fields(spec, fields, where, scale)
        if problem:
            raise bad_line(spec.path, number, line, problem)


def find_pair(specs: list[RatingFile], user, item, limit: int = 2) -> list[str]:
    """``file:line: text`` of the first ``limit`` lines rating ``item`` by ``user`` (for duplicate errors)."""
    found = []
    for spec in specs:
        if spec.fmt != "csv":
            continue
        where = None if spec.header else _positions(spec, None)
        for number, line in _lines(spec):
            fields = line.split(spec.separator)
            if where is None:
                where = _positions(spec, [name.strip() for name in fields])
                continue
            if (
                len(fields) > max(where.values())
                and fields[where["user"]].strip() == str(user)
                and (fields[where["item"]].strip() == str(item))
            ):
                found.append(f"{spec.path}:{number}: {line!r}")
                if len(found) >= limit:
                    return found
    return found
