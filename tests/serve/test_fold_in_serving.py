"""A new user of a ``model.rating_base`` run served with ``new_users="fold_in"``: the query is the evaluation query of a
base row fitted to the user's ratings (``ss4rec.models.fold_in``), kept current as ratings arrive, for each kind of
base; and the offline check's new-user modes and short histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rating_fixtures import timed_store, varied_store
from serving_fixtures import DRIFT, based_model, core_of
from ss4rec.models.fold_in import UserPrior, posterior_row
from ss4rec.serve.interactions import InteractionLog


def user_events(store, user: int):
    rows = slice(int(store.offsets[user]), int(store.offsets[user + 1]))
    return tuple(np.asarray(column[rows]) for column in (store.items, store.times, store.ratings))


def query_batch(row: int, items, times, ratings, at: int) -> dict[str, torch.Tensor]:
    """The evaluation batch of user index ``row`` over these events, the target at ``at``."""
    return {"users": torch.tensor([row]), "items": torch.from_numpy(items.astype(np.int64))[None],
            "times": torch.from_numpy(times.astype(np.int64))[None], "ratings": torch.from_numpy(ratings.astype(np.float64))[None],
            "lengths": torch.tensor([len(items)]),
            "target_times": torch.from_numpy(np.append(times[1:], at).astype(np.int64))[None]}  # fmt: skip


def expected_factors(base, row: int, items, times, ratings, noise: float) -> torch.Tensor:
    """User ``row``'s factors (T, K) in each table, fitted independently to these ratings outside its fold at ``noise``."""
    prior = UserPrior(base)
    fold = base.rating_fold(torch.full((len(items),), row), torch.from_numpy(items.astype(np.int64)))
    factors = []
    for table in range(base.tables):
        keep = (fold != table).numpy() if table < base.folds and base.folds > 1 else np.ones(len(items), dtype=bool)
        chosen = torch.from_numpy(items[keep].astype(np.int64))
        features = torch.cat([base.item_factors[table, chosen], torch.ones(len(chosen), 1, dtype=torch.float64)], 1)
        targets = torch.from_numpy(ratings[keep].astype(np.float64)) - base.item_offsets(chosen, torch.from_numpy(times[keep]))[table]
        factors.append(posterior_row(features, targets, prior.mean[table], prior.covariance[table], noise)[:-1])
    return torch.stack(factors).to(base.user_factors.dtype)


@pytest.mark.parametrize(("kind", "options"), [("heldout", DRIFT), ("timesvdpp", DRIFT), ("svdpp", {}), ("autorec", DRIFT)])
def test_a_new_user_is_served_on_a_base_row_fitted_to_their_ratings(tmp_path, kind, options):
    """Ingested one by one with a query after each (so the state is stepped and then refitted): the last query is the
    evaluation query over every event with the user's row fitted to all their ratings, each fold run's to the ratings
    outside its fold; an event without a rating does not move the row."""
    store = timed_store() if kind == "timesvdpp" else varied_store()
    model = based_model(kind, tmp_path, store, **options)
    core = core_of(model, store, new_users="fold_in", fold_in_noise=0.7)
    items, times, ratings = user_events(store, 1)  # user 1's events, ingested as new user 777
    for item, when, rating in zip(items, times, ratings):
        core.ingest(777, int(store.item_map[item]), int(when), float(rating))
        core.query(777, int(when) + 60)
    base = model.rating_base
    row = base.n_users + 1  # the first new user's
    torch.testing.assert_close(base.user_factors[:, row], expected_factors(base, row, items, times, ratings, 0.7),
                               rtol=1e-9, atol=1e-9)  # fmt: skip
    at = int(times[-1]) + 3_600
    with torch.no_grad():
        expected = model.eval_queries(query_batch(row, items, times, ratings, at))
    torch.testing.assert_close(core.query(777, at), expected, rtol=0, atol=1e-10)
    fitted = base.user_factors[:, row].clone()
    core.ingest(777, int(store.item_map[items[0]]), at, None)  # no rating: the same row
    assert torch.equal(base.user_factors[:, row], fitted)
    assert core.info()["new_users"] == "fold_in"


def test_a_new_users_first_ratings_are_folded_in_at_their_own_noise(tmp_path):
    """``new_user_noises=(0.05, 0.3)``: one rating fitted at 0.05, two at 0.3, three on at ``fold_in_noise`` (4.0); the
    query reads the row so fitted; ``/info`` lists them."""
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store, new_users="fold_in", fold_in_noise=4.0, new_user_noises=(0.05, 0.3))
    items, times, ratings = user_events(store, 2)
    base, row = model.rating_base, model.rating_base.n_users + 1
    for count, noise in ((1, 0.05), (2, 0.3), (3, 4.0), (4, 4.0)):
        core.ingest(555, int(store.item_map[items[count - 1]]), int(times[count - 1]), float(ratings[count - 1]))
        at = int(times[count - 1]) + 60
        query = core.query(555, at)
        got = base.user_factors[:, row].clone()
        torch.testing.assert_close(got, expected_factors(base, row, *(c[:count] for c in (items, times, ratings)), noise),
                                   rtol=1e-9, atol=1e-9)  # fmt: skip
        with torch.no_grad():
            expected = model.eval_queries(query_batch(row, *(c[:count] for c in (items, times, ratings)), at))
        torch.testing.assert_close(query, expected, rtol=0, atol=1e-10)
    assert core.info()["new_user_noises"] == [0.05, 0.3]


def test_a_new_user_without_ratings_is_the_average_user(tmp_path):
    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    folded, average = (core_of(model, store, new_users=mode) for mode in ("fold_in", "average_user"))
    item = int(store.item_map[3])
    for core in (average, folded):  # the newer core folds users into the base
        core.ingest(555, item, 10**9, None)
    torch.testing.assert_close(folded.query(555, 10**9 + 60), average.query(555, 10**9 + 60), rtol=0, atol=1e-12)


def test_the_offline_check_serves_short_histories_of_new_users_before_their_validation_target(tmp_path):
    """``held_out_core(..., as_new_users=True, split="valid", last_events=2)``: each user, new to the model, knows only the
    two events before their validation target (their second-to-last event), and is served on a row fitted to those."""
    from ss4rec.serve.offline import held_out_core

    store = varied_store()
    model = based_model("svdpp", tmp_path, store, **DRIFT)
    offline = held_out_core(core_of(model, store, new_users="fold_in"), as_new_users=True, split="valid", last_events=2)
    before = lambda user: int(store.times[store.offsets[user + 1] - 2])  # noqa: E731 - the validation target's time
    served = [offline.query(int(user_id), before(user)) for user, user_id in enumerate(store.user_map)]
    # the same two events of each user ingested by a fresh core (which now folds users into the base), in user order
    fresh = core_of(model, store, log=InteractionLog(store.items[:0], store.times[:0], store.ratings[:0], [0], []),
                    new_users="fold_in")  # fmt: skip
    for user in range(store.n_users):
        items, times, ratings = (column[-4:-2] for column in user_events(store, user))
        for item, when, rating in zip(items, times, ratings):
            fresh.ingest(10_000 + user, int(store.item_map[item]), int(when), float(rating))
        with torch.no_grad():
            expected = model.eval_queries(query_batch(fresh._model_row(10_000 + user), items, times, ratings, before(user)))
        assert fresh._model_row(10_000 + user) == model.rating_base.n_users + 1 + user  # the offline core's row too
        torch.testing.assert_close(served[user], expected, rtol=0, atol=1e-10)


def test_a_restart_serves_a_folded_in_user_as_before_and_never_restores_another_ways_states(tmp_path):
    """The journal replayed in arrival order gives a new user the same row, so their snapshot state is restored and
    answers as before the restart; a snapshot taken with another ``new_users`` (or noise) is not restored."""
    from ss4rec.serve.loading import open_state

    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)

    def started(**options):
        core = core_of(model, store, new_users=options.get("new_users", "fold_in"), fold_in_noise=options.get("noise", 1.0))
        open_state(core, [core], tmp_path / "state", fsync=False, restore=True)
        return core

    core = started()
    for new_user, user in ((888, 2), (889, 3)):
        for item, when, rating in zip(*user_events(store, user)):
            core.ingest(new_user, int(store.item_map[item]), int(when), float(rating))
    at, known = 2 * 10**9, int(store.user_map[4])
    before = {user: core.query(user, at) for user in (889, 888, known)}
    core.close()  # snapshot + journal, as the server does on shutdown
    again = started()
    assert len(again.cache) == 3
    for user, query in before.items():
        torch.testing.assert_close(again.query(user, at), query, rtol=0, atol=1e-12)
    # the training user answered from the restored state; each new user's row refitted, their state rebuilt
    assert again.cache.misses == 2
    again.close()
    for options in ({"new_users": "average_user"}, {"noise": 0.5}):
        assert len(started(**options).cache) == 0


def test_a_long_history_is_refitted_at_every_rating_then_at_every_five_percent(tmp_path):
    """Ratings 1-40 each refit the row (and drop the state, rebuilt at the next query); from 40 on, a refit needs 5% more
    ratings than the last (42, 44, ..., 60); in between, the state steps on under the row it has."""
    from ss4rec.serve.core import REFIT_GROWTH

    store = varied_store()
    model = based_model("heldout", tmp_path, store, **DRIFT)
    core = core_of(model, store, new_users="fold_in")
    generator = np.random.default_rng(0)
    row, refits, when = model.rating_base.n_users + 1, [], 10**9
    for count in range(1, 61):
        before = model.rating_base.user_factors[:, row].clone() if count > 1 else None
        when += 60
        core.ingest(333, int(store.item_map[generator.integers(1, store.n_items + 1)]), when, float(generator.integers(1, 6)))
        if before is not None and not torch.equal(model.rating_base.user_factors[:, row], before):
            refits.append(count)
            assert core.cache.get(333) is None  # dropped with the refit
        elif count > 1:
            assert core.cache.get(333).n_events == count  # stepped
        core.query(333, when + 1)
    assert REFIT_GROWTH == 0.05 and refits == [*range(2, 41), *range(42, 61, 2)]


def test_a_timed_base_offsets_are_its_prediction_for_a_user_with_no_terms(tmp_path):
    """timeSVD++: ``item_offsets`` at a time is what the base predicts then for a row with zero factors and bias and no
    drift or days (a new user's), the item's time-bin bias included."""
    store = timed_store()
    base = based_model("timesvdpp", tmp_path, store).rating_base
    base.add_users(base.n_users + 2)
    row = base.n_users + 1
    base.user_factors[:, row], base.user_bias[:, row] = 0.0, 0.0
    items = torch.arange(1, store.n_items + 1)
    for when in (int(store.times.min()) - 10**6, int(np.median(store.times)), int(store.times.max()) + 10**7):
        times = torch.full_like(items, when)
        predicted = base(base.user_part(torch.full_like(items, row), times=times), items)
        weights = (torch.full((base.tables,), 1.0 / base.folds, dtype=torch.float64) if not bool(base.heldout_table)
                   else torch.nn.functional.one_hot(torch.tensor(base.folds), base.tables).double())
        torch.testing.assert_close(predicted, (weights[:, None] * base.item_offsets(items, times)).sum(0), rtol=0, atol=1e-10)
    assert base.item_bin_bias.abs().sum() > 0  # the bins carry something to get wrong
