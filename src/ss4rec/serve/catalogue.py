"""The item catalogue of a served model: original MovieLens ids <-> item indices, titles and genres."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from ss4rec.serve.errors import UnknownItem


class Catalogue:
    """Items ``1..N`` (0 is padding) with their original ids and, where the data has them, titles and genres.

    ``item_map`` (N + 1,) original id of each index ([0] a placeholder); ``titles`` (N + 1,) str or None;
    ``genres`` (N + 1, G) bool with ``genre_names`` (G,) or None.
    """

    def __init__(self, item_map, titles=None, genres=None, genre_names: Iterable[str] = ()):
        self.item_ids = np.asarray(item_map).astype(np.int64)
        self.titles = None if titles is None else np.asarray(titles).astype(str)
        self.genres = None if genres is None else np.asarray(genres, dtype=bool)
        self.genre_names = list(genre_names)
        self.index = {int(original): i for i, original in enumerate(self.item_ids) if i > 0}

    @functools.cached_property
    def rows(self) -> list[tuple[int, str | None, tuple[str, ...] | None]]:
        """Per item index: (original id, title, genres), built once (a response reads these per item)."""
        rows = [(0, None, None)]
        for i in range(1, len(self.item_ids)):
            genres = self.genres_of(i)
            rows.append((int(self.item_ids[i]), self.title(i), None if genres is None else tuple(genres)))
        return rows

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def lookup(self, item_id: int) -> int:
        """Index of an original item id; ``UnknownItem`` when the catalogue does not have it."""
        try:
            return self.index[int(item_id)]
        except (KeyError, TypeError, ValueError):
            raise UnknownItem(
                f"unknown item_id {item_id!r}: not in the model's catalogue of {self.n_items} items "
                "(original MovieLens ids of items kept by the data's k-core filter)"
            ) from None

    def title(self, index: int) -> str | None:
        if self.titles is None:
            return None
        return str(self.titles[index]) or None

    def genres_of(self, index: int) -> list[str] | None:
        if self.genres is None:
            return None
        return [self.genre_names[g] for g in np.flatnonzero(self.genres[index])]
