"""GroupLens downloads against a local HTTP server: verification, re-download, interruption, caching."""

import hashlib
import http.server
import shutil
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ss4rec.data import synthetic
from ss4rec.data.errors import DataError
from ss4rec.data.metadata import ML100K_GENRES
from ss4rec.data.prepare import prepare


class Server:
    """Serves a folder on 127.0.0.1; counts requests per path; can cut a file short."""

    def __init__(self, root: Path):
        self.root, self.hits, self.truncate = root, Counter(), set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root.parent), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] += 1
                name = self.path.rsplit("/", 1)[-1]
                if name in server.truncate:  # promise the whole file, send half of it, hang up
                    data = (root / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/movielens/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def build_zip(folder: Path, md5_text: str | None = None) -> str:
    """ml-100k.zip with a synthetic u.data and u.item; writes ml-100k.zip.md5; returns the true MD5."""
    frame = synthetic.generate(n_rows=3_000, n_users=40, n_items=150, seed=9)
    data = synthetic.write(frame, folder / "u.data", "tsv").read_bytes()
    lines = []
    for j, item in enumerate(sorted(set(frame["item"].to_list()))):
        flags = ["1" if (item + g) % 7 == 0 else "0" for g in range(len(ML100K_GENRES))]
        lines.append(
            "|".join([str(item), f"Movie {item} (199{j % 10})", "01-Jan-1995", "", "http://x"] + flags)
        )
    path = folder / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", data)
        zf.writestr("ml-100k/u.item", "\n".join(lines).encode("latin-1"))
        zf.writestr("ml-100k/README", "synthetic")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    (folder / "ml-100k.zip.md5").write_text(md5_text or f"MD5 (ml-100k.zip) = {md5}\n")
    return md5


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www" / "movielens"
    root.mkdir(parents=True)
    srv = Server(root)
    yield srv
    srv.close()


def download(server, data_dir, **extra):
    return prepare(
        "ml100k", {"kind": "download", "base_url": server.url, "progress": False, **extra}, data_dir=data_dir
    )


def test_download_verify_extract_and_cache(server, tmp_path):
    build_zip(server.root)
    store, _, cached = download(server, tmp_path / "data")
    assert not cached and server.hits["/movielens/ml-100k.zip"] == 1
    assert store.n_users == 40 and store.info["raw_interactions"] == 3_000
    genres = store.item_genres
    assert genres.shape == (store.n_items + 1, len(ML100K_GENRES)) and not genres[0].any()
    item = int(store.item_map[1])
    names = [n for n, on in zip(store.info["genres"], genres[1]) if on]
    assert sorted(names) == sorted(g for k, g in enumerate(ML100K_GENRES) if (item + k) % 7 == 0)
    assert store.item_titles[1].startswith(f"Movie {item} ")
    _, _, cached = download(server, tmp_path / "data")
    assert cached and server.hits["/movielens/ml-100k.zip"] == 1  # nothing fetched again
    zips = list((tmp_path / "data" / "downloads").iterdir())
    assert sorted(p.name for p in zips) == ["ml-100k.zip", "ml-100k.zip.md5"]


def test_checksum_mismatch_downloads_once_more_then_names_file_and_hashes(server, tmp_path):
    true_md5 = build_zip(server.root, md5_text="0123456789abcdef0123456789abcdef  ml-100k.zip\n")
    with pytest.raises(DataError) as err:
        download(server, tmp_path / "data")
    message = str(err.value)
    assert "ml-100k.zip" in message and "0123456789abcdef0123456789abcdef" in message and true_md5 in message
    assert server.hits["/movielens/ml-100k.zip"] == 2
    assert not (tmp_path / "data" / "downloads" / "ml-100k.zip").exists()
    assert not (tmp_path / "data" / "prepared").exists() or not any(
        (tmp_path / "data" / "prepared").iterdir()
    )


def test_corrupted_cached_zip_is_downloaded_again(server, tmp_path):
    build_zip(server.root)
    download(server, tmp_path / "data")
    cached_zip = tmp_path / "data" / "downloads" / "ml-100k.zip"
    cached_zip.write_bytes(b"garbage")
    shutil.rmtree(tmp_path / "data" / "prepared")  # force a new preparation from the (now bad) zip
    shutil.rmtree(tmp_path / "data" / "raw")
    store, _, cached = download(server, tmp_path / "data")
    assert not cached and store.n_users == 40
    assert server.hits["/movielens/ml-100k.zip"] == 2  # the bad copy was replaced by one new download
    assert (
        hashlib.md5(cached_zip.read_bytes()).hexdigest()
        in (tmp_path / "data/downloads/ml-100k.zip.md5").read_text()
    )


def test_interrupted_download_leaves_nothing_trusted(server, tmp_path):
    build_zip(server.root)
    server.truncate.add("ml-100k.zip")
    with pytest.raises(
        DataError, match=r"download of http://127\.0\.0\.1:\d+/movielens/ml-100k\.zip .* failed"
    ):
        download(server, tmp_path / "data")
    leftovers = [p.name for p in (tmp_path / "data" / "downloads").iterdir()]
    assert leftovers == ["ml-100k.zip.md5"]  # no zip, no temporary file
    server.truncate.clear()
    store, _, cached = download(server, tmp_path / "data")
    assert not cached and store.n_users == 40


def test_md5_option_overrides_the_published_one(server, tmp_path):
    build_zip(server.root)
    with pytest.raises(DataError, match="expected MD5 ffffffffffffffffffffffffffffffff"):
        download(server, tmp_path / "data", md5="f" * 32)
    assert server.hits["/movielens/ml-100k.zip.md5"] == 0


def test_md5_file_without_a_hash(server, tmp_path):
    build_zip(server.root, md5_text="<html>not found</html>")
    with pytest.raises(DataError, match=r"ml-100k\.zip\.md5 does not contain an MD5 hash"):
        download(server, tmp_path / "data")


def test_known_md5s_are_used_for_grouplens_itself():
    from ss4rec.data.sources import DATASETS, GroupLensSource

    source = GroupLensSource("ml1m", DATASETS["ml1m"], Path("/nonexistent"))
    assert source.expected_md5() == "c4d9eecfca2ab87c1945afe126590906"
    assert np.all([len(d.md5) == 32 for n, d in DATASETS.items() if n != "ml_latest_small"])
