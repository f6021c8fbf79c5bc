"""Item metadata (titles, genres): the MovieLens zips' ``u.item``, ``movies.dat``, ``movies.csv``, and
RecBole's ``.item`` atomic file.

Each reader returns a frame with columns item (int64, the original id), title (str), genres (list[str]).
Metadata is optional: a missing or unparsable metadata file only logs a warning.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import polars as pl

from ss4rec.data.errors import DataError, check_readable

log = logging.getLogger(__name__)

#: the 19 genre flags of ml-100k's u.item, in file order (ml-100k/u.genre)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = "(no genres listed)"


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # ml-100k and ml-1m metadata are latin-1
        return data.decode("latin-1")


def read_u_item(path: Path) -> pl.DataFrame:
    """ml-100k ``u.item``: ``id|title|release|video release|url|19 genre flags``."""
    raw = pl.read_csv(
        io.StringIO(_text(path)), separator="|", has_header=False, quote_char=None, infer_schema_length=0
    )
    flags = raw.select(raw.columns[-len(ML100K_GENRES) :]).to_numpy() == "1"
    names = np.array(ML100K_GENRES, dtype=object)
    genres = [list(names[row]) for row in flags]
    return pl.DataFrame(
        {"item": raw[raw.columns[0]].cast(pl.Int64), "title": raw[raw.columns[1]], "genres": genres},
        schema={"item": pl.Int64, "title": pl.String, "genres": pl.List(pl.String)},
    )


def read_movies_dat(path: Path) -> pl.DataFrame:
    """ml-1m / ml-10m ``movies.dat``: ``id::title::Genre|Genre``."""
    text = _text(path).replace("::", "\x1f")
    raw = pl.read_csv(
        io.StringIO(text), separator="\x1f", has_header=False, quote_char=None, infer_schema_length=0,
        new_columns=["item", "title", "genres"],
    )  # fmt: skip
    return _split_genres(raw)


def read_movies_csv(path: Path) -> pl.DataFrame:
    """ml-20m / ml-25m / ml-latest ``movies.csv``: header ``movieId,title,genres``, quoted titles."""
    raw = pl.read_csv(path, infer_schema_length=0).rename({"movieId": "item"})
    return _split_genres(raw.select("item", "title", "genres"))


def _split_genres(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.with_columns(
        pl.col("item").cast(pl.Int64),
        pl.col("genres").str.split("|").list.filter(pl.element() != NO_GENRES),
    )


def read_recbole_items(path: Path) -> pl.DataFrame:
    """RecBole ``.item``: header ``item_id:token`` (the title), ..., ``genre:token`` (space-separated).

    The item id is the 1-based row (the file has no numeric id). Raises DataError when the file lacks
    those columns or repeats a title (items are keyed by title).
    """
    raw = pl.read_csv(check_readable(path, "item file"), separator="\t", quote_char=None, infer_schema_length=0)
    missing = {"item_id:token", "genre:token"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}:1: header {raw.columns} lacks {sorted(missing)}: expected a RecBole .item file")
    repeated = raw.filter(pl.col("item_id:token").is_duplicated())
    if repeated.height:
        raise DataError(f"{path}: title {repeated['item_id:token'][0]!r} appears on more than one line; "
                        "expected one line per item (items are keyed by title)")  # fmt: skip
    return pl.DataFrame(
        {
            "item": pl.int_range(1, raw.height + 1, eager=True, dtype=pl.Int64),
            "title": raw["item_id:token"],
            "genres": raw["genre:token"].fill_null("").str.split(" ").list.filter(pl.element() != ""),
        },
        schema={"item": pl.Int64, "title": pl.String, "genres": pl.List(pl.String)},
    )


READERS = {"u.item": read_u_item, "movies.dat": read_movies_dat, "movies.csv": read_movies_csv}


def read_items(path: Path | None) -> pl.DataFrame | None:
    """Metadata of ``path`` by its file name, or None (with a warning) when it cannot be read."""
    if path is None:
        return None
    reader = READERS.get(Path(path).name)
    try:
        return reader(Path(path)) if reader else None
    except (OSError, pl.exceptions.PolarsError, ValueError) as err:
        log.warning("item metadata %s not loaded: %s", path, err)
        return None


def genre_matrix(items: pl.DataFrame | None, item_ids: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """Multi-hot genres (n_items + 1, G) bool aligned with ``item_ids`` (index 0 = padding) and the names."""
    if items is None or items.height == 0:
        return None, []
    exploded = items.select("item", "genres").explode("genres").drop_nulls()
    names = sorted(exploded["genres"].unique().to_list())
    if not names:
        return None, []
    lookup = pl.DataFrame({"item": item_ids[1:], "row": np.arange(1, len(item_ids))})
    pairs = exploded.join(lookup, on="item", how="inner").with_columns(
        pl.col("genres").replace_strict(names, list(range(len(names))), return_dtype=pl.Int64).alias("col")
    )
    matrix = np.zeros((len(item_ids), len(names)), dtype=bool)
    matrix[pairs["row"].to_numpy(), pairs["col"].to_numpy()] = True
    return matrix, names


def titles(items: pl.DataFrame | None, item_ids: np.ndarray) -> np.ndarray | None:
    """Title per item index (n_items + 1,), '' for padding and items without metadata."""
    if items is None:
        return None
    lookup = pl.DataFrame({"item": item_ids[1:], "row": np.arange(1, len(item_ids))})
    found = lookup.join(items.select("item", "title").unique("item"), on="item", how="left").sort("row")
    return np.array([""] + found["title"].fill_null("").to_list(), dtype=str)
