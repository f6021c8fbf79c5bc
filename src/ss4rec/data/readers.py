"""Parse rating files with polars into one frame: user, item, rating (float32), timestamp (int64).

The fast path parses the whole file with polars and checks the result with vectorised expressions
(missing fields, NaN, ratings outside the declared scale). Only when something is wrong does
:mod:`ss4rec.data.diagnose` walk the file line by line to name the first bad line.
Row order is the file's order (ties in time are later broken by it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ss4rec.data.errors import DataError, check_readable

COLUMNS = ("user", "item", "rating", "timestamp")
_UNIT_SEP = "\x1f"  # stands in for multi-character separators such as "::" (never occurs in the data)


@dataclass(frozen=True)
class RatingFile:
    """How to read one ratings file.

    ``columns`` maps user, item, rating, timestamp to header names (``header=True``) or to 0-based field
    positions (``header=False``). ``n_fields``: the number of fields every line must have (None: as many
    as the header or the first line). ``id_dtype``: ``int`` or ``str`` ids.
    """

    path: Path
    separator: str = ","
    header: bool = True
    columns: tuple = ("userId", "movieId", "rating", "timestamp")
    n_fields: int | None = None
    id_dtype: str = "int"
    fmt: str = "csv"  # csv | parquet
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def id_type(self) -> pl.DataType:
        if self.id_dtype not in ("int", "str"):
            raise DataError(f"unknown id_dtype {self.id_dtype!r}; known: int, str")
        return pl.Int64 if self.id_dtype == "int" else pl.String

    def dtypes(self) -> dict[str, pl.DataType]:
        return {"user": self.id_type, "item": self.id_type, "rating": pl.Float32, "timestamp": pl.Int64}


def read_ratings(files: list[RatingFile], scale: tuple[float, float] | None = None) -> pl.DataFrame:
    """Concatenate the files in order; raise DataError naming the first bad line of any of them."""
    frames = [_read_one(spec, scale) for spec in files]
    return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=True)


def _read_one(spec: RatingFile, scale: tuple[float, float] | None) -> pl.DataFrame:
    check_readable(spec.path)
    frame = _parse_parquet(spec) if spec.fmt == "parquet" else _parse_text(spec)
    frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))  # blank lines carry nothing
    problem = _first_problem(frame, scale)
    if problem is not None:
        from ss4rec.data.diagnose import diagnose

        diagnose(spec, scale)  # raises with the exact line when it finds one
        row, what = problem
        raise DataError(f"{spec.path}: row {row + 1} of the parsed data: {what}")
    if frame.height == 0:
        raise DataError(f"{spec.path} has no ratings: expected at least one line with {_expected(spec)}")
    return frame


def _first_problem(frame: pl.DataFrame, scale: tuple[float, float] | None) -> tuple[int, str] | None:
    """(row index, description) of the first row with a missing field, NaN, or rating outside ``scale``."""
    rating = pl.col("rating")
    bad = pl.any_horizontal(pl.all().is_null()) | rating.is_nan() | rating.is_infinite()
    if scale is not None:
        bad = bad | (rating < scale[0]) | (rating > scale[1])
    rows = frame.select(bad.arg_true().head(1)).to_series()
    if rows.len() == 0:
        return None
    row = int(rows[0])
    values = frame.row(row, named=True)
    lo_hi = f" within [{scale[0]}, {scale[1]}]" if scale else ""
    return row, f"got {values}; expected four numeric fields with a finite rating{lo_hi}"


def _expected(spec: RatingFile) -> str:
    names = dict(zip(COLUMNS, spec.columns))
    how = "header columns" if spec.header else "0-based fields"
    return f"user, item, rating, timestamp ({how} {names}) separated by {spec.separator!r}"


def _parse_text(spec: RatingFile) -> pl.DataFrame:
    source: str | Path | io.BytesIO = spec.path
    separator = spec.separator
    if len(separator) > 1:  # polars reads single-byte separators; "::" becomes a unit separator in memory
        source = io.BytesIO(spec.path.read_bytes().replace(separator.encode(), _UNIT_SEP.encode()))
        separator = _UNIT_SEP
    wanted = dict(zip(COLUMNS, spec.columns))
    if spec.header:
        names = list(wanted.values())
        dtypes = {wanted[key]: dtype for key, dtype in spec.dtypes().items()}
        kwargs = {"columns": names, "schema_overrides": dtypes}
    else:
        names = [f"field_{int(pos)}" for pos in wanted.values()]
        n_fields = spec.n_fields or _first_line_fields(spec.path, spec.separator)
        schema = {
            f"field_{j}": pl.String for j in range(max(n_fields, *(int(p) + 1 for p in wanted.values())))
        }
        schema.update(zip(names, spec.dtypes().values()))
        kwargs = {"schema": schema}
    try:
        frame = pl.read_csv(
            source,
            separator=separator,
            has_header=spec.header,
            quote_char=None,
            infer_schema_length=0,
            **kwargs,
        )
    except pl.exceptions.NoDataError as err:
        raise DataError(f"{spec.path} is empty: expected lines with {_expected(spec)}") from err
    except pl.exceptions.ColumnNotFoundError as err:
        raise _missing_columns(spec) from err
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.SchemaError) as err:
        from ss4rec.data.diagnose import diagnose

        diagnose(spec, None)
        raise DataError(f"{spec.path}: could not parse ({err}); expected {_expected(spec)}") from err
    return frame.select(names).rename(dict(zip(names, COLUMNS)))


def _first_line_fields(path: Path, separator: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return len(line.rstrip("\r\n").split(separator))
    return len(COLUMNS)


def _missing_columns(spec: RatingFile) -> DataError:
    with open(spec.path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n")
    return DataError(
        f"{spec.path}:1: header {header!r} lacks a configured column: expected {_expected(spec)} "
        "(set data.source.columns to the file's names)"
    )


def _parse_parquet(spec: RatingFile) -> pl.DataFrame:
    wanted = dict(zip(COLUMNS, spec.columns))
    try:
        frame = pl.read_parquet(spec.path, columns=list(wanted.values()))
    except pl.exceptions.ColumnNotFoundError as err:
        raise DataError(f"{spec.path}: parquet file lacks a column; expected {wanted}") from err
    except (OSError, pl.exceptions.ComputeError) as err:
        raise DataError(f"{spec.path}: not a readable parquet file ({err})") from err
    frame = frame.rename({name: key for key, name in wanted.items()})
    cast = frame.select(pl.col(key).cast(dtype, strict=False) for key, dtype in spec.dtypes().items())
    failed = pl.any_horizontal(cast[key].is_null() & frame[key].is_not_null() for key in COLUMNS)
    rows = pl.select(failed.arg_true().head(1)).to_series()
    if rows.len():
        row = int(rows[0])
        raise DataError(
            f"{spec.path}: row {row + 1}: {frame.row(row, named=True)}: expected numeric ids, a numeric "
            "rating and integer unix-second timestamps"
        )
    return cast
