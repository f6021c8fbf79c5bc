"""Files on disk that are damaged: ratings files (property-based), the cached store, checkpoints.

Well-formed ratings files of random content and layout round-trip through the readers; corrupted ones give
a ``DataError``, never another exception. A damaged cache is reported and rebuilt; a damaged checkpoint is a
``CheckpointError``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ss4rec.checkpoints import read_checkpoint
from ss4rec.data.errors import DataError
from ss4rec.data.prepare import prepare
from ss4rec.data.readers import COLUMNS, RatingFile, read_ratings
from ss4rec.data.store import load_store
from ss4rec.errors import CheckpointError

SCALE = (0.5, 5.0)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- ratings files -------------------------------------------------------------------------------------
ids = st.integers(min_value=0, max_value=2**40)
ratings = st.sampled_from([x / 2 for x in range(1, 11)])  # 0.5 .. 5.0, exact in float32
rows = st.lists(st.tuples(ids, ids, ratings, st.integers(min_value=0, max_value=2**40)), min_size=1, max_size=40)


@st.composite
def layouts(draw):
    """How a file is written: separator, header or field positions, rating format, line ending."""
    separator = draw(st.sampled_from([",", "\t", ";", "::", "|"]))
    header = draw(st.booleans())
    order = draw(st.permutations(range(4)))  # field position of user, item, rating, timestamp
    if header:
        names = draw(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True), min_size=4,
                              max_size=4, unique=True))  # fmt: skip
        columns = tuple(names)
    else:
        columns = tuple(order)
    return {
        "separator": separator, "header": header, "order": order, "columns": columns,
        "rating_format": draw(st.sampled_from(["{:g}", "{:.1f}", "{:.3f}"])),
        "newline": draw(st.sampled_from(["\n", "\r\n"])), "blank_lines": draw(st.booleans()),
    }  # fmt: skip


def render(data: list[tuple], layout: dict) -> tuple[list[str], RatingFile]:
    """The file's lines and the RatingFile that reads it (path filled in by ``write``)."""
    lines = []
    order = layout["order"]
    if layout["header"]:
        header = [""] * 4
        for key, position in zip(range(4), order):
            header[position] = layout["columns"][key]
        lines.append(layout["separator"].join(header))
    for user, item, rating, stamp in data:
        values = [str(user), str(item), layout["rating_format"].format(rating), str(stamp)]
        fields = [""] * 4
        for key, position in zip(range(4), order):
            fields[position] = values[key]
        lines.append(layout["separator"].join(fields))
        if layout["blank_lines"] and user % 3 == 0:
            lines.append("")
    spec = {"separator": layout["separator"], "header": layout["header"], "columns": layout["columns"]}
    if not layout["header"]:
        spec["n_fields"] = 4
    return lines, spec


def write(folder: Path, lines: list[str], spec: dict, newline: str = "\n") -> RatingFile:
    path = folder / "ratings.txt"
    path.write_bytes("".join(line + newline for line in lines).encode())
    return RatingFile(path=path, **spec)


@PROPERTY
@given(data=rows, layout=layouts())
def test_well_formed_files_round_trip(data, layout):
    lines, spec = render(data, layout)
    with tempfile.TemporaryDirectory() as folder:
        frame = read_ratings([write(Path(folder), lines, spec, layout["newline"])], SCALE)
    assert frame.columns == list(COLUMNS)
    assert frame["user"].to_list() == [r[0] for r in data]
    assert frame["item"].to_list() == [r[1] for r in data]
    assert frame["rating"].to_list() == [r[2] for r in data]
    assert frame["timestamp"].to_list() == [r[3] for r in data]


BAD_TOKENS = {  # per column: values that are never a valid field there
    0: ["abc", "", "1.5", "x1", "--1"],
    1: ["abc", "", "2.5", "1e3x"],
    2: ["abc", "", "nan", "inf", "-1", "9", "5.5", "0"],
    3: ["abc", "", "1.5", "12:00", "9" * 30],
}


@st.composite
def corruptions(draw):
    """(row, kind, detail): a bad token in one field, a field dropped, or a field added."""
    kind = draw(st.sampled_from(["token", "drop", "add"]))
    column = draw(st.integers(0, 3))
    return kind, column, draw(st.sampled_from(BAD_TOKENS[column])), draw(st.integers(0, 10**6))


@PROPERTY
@given(data=rows, layout=layouts(), corruption=corruptions())
def test_corrupted_files_give_a_data_error(data, layout, corruption):
    kind, column, token, where = corruption
    lines, spec = render(data, layout)
    body = [i for i, line in enumerate(lines) if line and not (layout["header"] and i == 0)]
    index = body[where % len(body)]
    fields = lines[index].split(layout["separator"])
    position = layout["order"][column]
    if kind == "token":
        fields[position] = token
    elif kind == "drop":
        del fields[position]
    else:
        fields.insert(position, "7")
    lines[index] = layout["separator"].join(fields)
    with tempfile.TemporaryDirectory() as folder:
        with pytest.raises(DataError):
            read_ratings([write(Path(folder), lines, spec, layout["newline"])], SCALE)


@PROPERTY
@given(data=rows, layout=layouts(), position=st.integers(0, 10**6), junk=st.binary(min_size=1, max_size=8),
       mode=st.sampled_from(["overwrite", "insert", "truncate"]))  # fmt: skip
def test_random_damage_gives_a_data_error_or_a_valid_frame(data, layout, position, junk, mode):
    """Arbitrary bytes, anywhere: the readers answer with ratings or a DataError, never another exception."""
    lines, spec = render(data, layout)
    with tempfile.TemporaryDirectory() as folder:
        rating_file = write(Path(folder), lines, spec, layout["newline"])
        raw = rating_file.path.read_bytes()
        at = position % len(raw)
        damaged = {"overwrite": raw[:at] + junk + raw[at + len(junk):], "insert": raw[:at] + junk + raw[at:],
                   "truncate": raw[:at]}[mode]  # fmt: skip
        rating_file.path.write_bytes(damaged)
        try:
            frame = read_ratings([rating_file], SCALE)
        except DataError:
            return
    assert frame.columns == list(COLUMNS) and frame.height >= 1
    assert frame["rating"].is_between(*SCALE).all()


# ---- the cached store ----------------------------------------------------------------------------------
SOURCE = {"kind": "synthetic", "n_rows": 3000, "seed": 1}


@pytest.fixture
def cached(tmp_path):
    store, folder, from_cache = prepare("synthetic", SOURCE, data_dir=tmp_path)
    assert not from_cache
    return tmp_path, folder, {k: np.array(getattr(store, k)) for k in ("items", "times", "ratings", "offsets")}


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "truncated items.npy": lambda f: (f / "items.npy").write_bytes((f / "items.npy").read_bytes()[:-100]),
    "one byte of times.npy altered": lambda f: _flip(f / "times.npy", (f / "times.npy").stat().st_size // 2),
    "ratings.npy header garbage": lambda f: _flip(f / "ratings.npy", 3),
    "offsets.npy removed": lambda f: (f / "offsets.npy").unlink(),
    "manifest.json cut in half": lambda f: (f / "manifest.json").write_text((f / "manifest.json").read_text()[:200]),
    "items.npy replaced by text": lambda f: (f / "items.npy").write_text("x" * (f / "items.npy").stat().st_size),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_reported_and_rebuilt(cached, damage, caplog):
    data_dir, folder, original = cached
    DAMAGE[damage](folder)
    with caplog.at_level(logging.WARNING, logger="ss4rec.data.store"):
        store, folder2, from_cache = prepare("synthetic", SOURCE, data_dir=data_dir)
    assert not from_cache and folder2 == folder  # rebuilt in place
    assert f"cache {folder} is damaged" in caplog.text
    for name, values in original.items():
        assert np.array_equal(np.asarray(getattr(store, name)), values), name
    assert load_store(folder) is not None  # and whole again


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["items", "times", "ratings", "offsets", "user_map", "item_map", "manifest"]),
       offset=st.integers(0, 10**7), value=st.integers(1, 255))  # fmt: skip
def test_any_altered_byte_of_the_cache_is_caught(cached, name, offset, value):
    _, folder, _ = cached
    path = folder / ("manifest.json" if name == "manifest" else f"{name}.npy")
    raw = bytearray(path.read_bytes())
    at = offset % len(raw)
    raw[at] ^= value
    backup = path.read_bytes()
    path.write_bytes(bytes(raw))
    try:
        loaded = load_store(folder)  # never raises
        if name != "manifest":
            assert loaded is None
    finally:
        path.write_bytes(backup)


def test_every_single_byte_flip_of_the_manifest_is_caught_or_harmless(cached):
    """Exhaustive over manifest.json: the store loads with its arrays intact, or is refused; never raises."""
    _, folder, original = cached
    path = folder / "manifest.json"
    whole = path.read_bytes()
    try:
        for at in range(len(whole)):
            raw = bytearray(whole)
            raw[at] ^= 0x01
            path.write_bytes(bytes(raw))
            loaded = load_store(folder)
            if loaded is not None:
                for name, values in original.items():
                    assert np.array_equal(np.asarray(getattr(loaded, name)), values), (at, name)
    finally:
        path.write_bytes(whole)


# ---- checkpoints ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.ckpt"
        torch.save({"state_dict": {"w": torch.arange(500.0)}, "epoch": 2, "global_step": 30, "loops": {}}, path)
        return path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10**6), offset=st.integers(0, 10**6), value=st.integers(1, 255), truncate=st.booleans())
def test_damaged_checkpoint_is_a_checkpoint_error(checkpoint_bytes, cut, offset, value, truncate):
    raw = bytearray(checkpoint_bytes)
    if truncate:
        raw = raw[: cut % len(raw)]
    else:
        raw[offset % len(raw)] ^= value
    assume(bytes(raw) != checkpoint_bytes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.ckpt"
        path.write_bytes(bytes(raw))
        try:
            loaded = read_checkpoint(path)
        except CheckpointError:
            return
    # a byte outside every member's data (zip padding, timestamps): the content is intact
    assert loaded["epoch"] == 2 and loaded["global_step"] == 30
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(500.0))


def test_every_single_byte_flip_of_a_checkpoint_is_caught_or_harmless(checkpoint_bytes, tmp_path):
    """Exhaustive: each byte of a small checkpoint altered in turn (the zip directory included)."""
    path = tmp_path / "c.ckpt"
    caught = 0
    for at in range(len(checkpoint_bytes)):
        raw = bytearray(checkpoint_bytes)
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))
        try:
            loaded = read_checkpoint(path)
        except CheckpointError:
            caught += 1
            continue
        assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.arange(500.0)), at
    assert caught > 0.5 * len(checkpoint_bytes)  # most bytes matter
