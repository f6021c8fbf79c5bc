"""``data.holdout_last=k``: each user's last k ratings left out of everything, so validation and test move k back
(a pseudo-held-out split for fitting second stages without the real held-out ratings)."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules import ml100k_module as module
from rating_fixtures import varied_store
from ss4rec.batch import eval_targets
from ss4rec.data.errors import DataError
from ss4rec.data.store import SequenceStore


@pytest.mark.parametrize("k", [1, 2])
def test_each_users_last_k_rows_are_left_out_and_nothing_else_moves(k):
    store = varied_store()  # users with 3 to 10 ratings
    long = store.lengths >= k + 3
    keep_users = np.flatnonzero(long)
    store = SequenceStore(  # only the users long enough: the short ones are refused (next test)
        **{name: np.concatenate([getattr(store, name)[store.offsets[u] : store.offsets[u + 1]] for u in keep_users])
           for name in ("items", "times", "ratings")},
        offsets=np.concatenate([[0], np.cumsum(store.lengths[keep_users])]), user_map=store.user_map[keep_users],
        item_map=store.item_map, info={"source": "test"},
    )  # fmt: skip
    out = store.without_last(k)
    assert out.n_users == store.n_users and out.n_items == store.n_items
    assert out.info == {"source": "test", "holdout_last": k}
    for user in range(store.n_users):
        rows = slice(store.offsets[user], store.offsets[user + 1] - k)  # the user's rows but the last k
        kept = slice(out.offsets[user], out.offsets[user + 1])
        for name in ("items", "times", "ratings"):
            np.testing.assert_array_equal(getattr(out, name)[kept], getattr(store, name)[rows])
    assert store.without_last(0) is store


def test_users_too_short_and_negative_counts_are_refused():
    store = varied_store()  # its shortest users have 3 ratings
    with pytest.raises(ValueError, match=r"holdout_last=1 leaves 2 users \(e\.g\. user 1, 3 interactions\) with fewer than 3"):
        store.without_last(1)
    with pytest.raises(ValueError, match=r"holdout_last must be >= 0"):
        store.without_last(-1)




def _targets(loader):
    rows = [np.column_stack([batch["users"].numpy(), *(t.numpy() for t in eval_targets(batch)[::2])]) for batch in loader]
    table = np.concatenate(rows)
    return table[np.argsort(table[:, 0], kind="stable")]


def test_validation_and_test_move_back_by_k_on_ml100k(tmp_path):
    full, shifted = module(tmp_path), module(tmp_path, holdout_last=1)
    assert shifted.store.n_interactions == full.store.n_interactions - full.n_users
    np.testing.assert_array_equal(_targets(shifted.test_dataloader()), _targets(full.val_dataloader()))
    val = _targets(shifted.val_dataloader())
    last_train = full.store.offsets[1:] - 3  # each user's last training row under the protocol
    np.testing.assert_array_equal(val[:, 1], full.store.items[last_train])
    np.testing.assert_array_equal(val[:, 2], full.store.ratings[last_train])
    with pytest.raises(DataError, match=r"data\.holdout_last=20 leaves \d+ users .* every user needs 23"):
        module(tmp_path, holdout_last=20)
