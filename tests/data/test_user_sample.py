"""``data.user_sample``: a seeded subset of users with every one of their rows, items unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules import ml100k_module as module
from rating_fixtures import varied_store
from ss4rec.data.errors import DataError


def test_the_drawn_users_keep_all_their_rows_in_order_and_nothing_else():
    store = varied_store()
    out = store.sample_users(4, seed=3)
    drawn = np.sort(np.random.default_rng(3).choice(store.n_users, size=4, replace=False))  # the documented draw
    assert out.n_users == 4 and out.n_items == store.n_items
    np.testing.assert_array_equal(out.user_map, store.user_map[drawn])
    np.testing.assert_array_equal(out.item_map, store.item_map)
    assert out.info["user_sample"] == {"users": 4, "seed": 3}
    for new, old in enumerate(drawn):
        kept, rows = slice(out.offsets[new], out.offsets[new + 1]), slice(store.offsets[old], store.offsets[old + 1])
        for name in ("items", "times", "ratings"):
            np.testing.assert_array_equal(getattr(out, name)[kept], getattr(store, name)[rows])
    assert out.n_interactions == store.lengths[drawn].sum()
    assert store.sample_users(store.n_users) is store
    assert not np.array_equal(store.sample_users(4, seed=4).user_map, out.user_map)  # another seed, other users


def test_impossible_sample_sizes_are_refused():
    store = varied_store()
    for n in (0, store.n_users + 1):
        with pytest.raises(ValueError, match=rf"user_sample must be between 1 and the {store.n_users} users"):
            store.sample_users(n)


def test_the_sample_is_the_same_for_every_model_seed_and_under_holdout_last(tmp_path):
    full = module(tmp_path)
    a = module(tmp_path, user_sample=100, user_sample_seed=1, seed=0)
    b = module(tmp_path, user_sample=100, user_sample_seed=1, seed=5)
    shifted = module(tmp_path, user_sample=100, user_sample_seed=1, holdout_last=2)
    assert a.n_users == 100 and a.n_items == full.n_items
    np.testing.assert_array_equal(a.store.user_map, b.store.user_map)
    np.testing.assert_array_equal(shifted.store.user_map, a.store.user_map)  # the same users, two ratings shorter
    np.testing.assert_array_equal(shifted.store.lengths, a.store.lengths - 2)
    with pytest.raises(DataError, match=r"data\.user_sample must be between 1 and the 943 users"):
        module(tmp_path, user_sample=944)
    with pytest.raises(DataError, match=r"user_sample must be >= 0"):
        module(tmp_path, user_sample=-1)
