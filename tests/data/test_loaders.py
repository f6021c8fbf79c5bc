"""Training windows, evaluation batches, pairs and histories: coverage, leakage, padding, determinism."""

from collections import Counter

import numpy as np
import pytest
import torch

from data_modules import ml100k_module as module
from ss4rec.batch import eval_targets
from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.data.datasets import training_windows
from ss4rec.data.errors import DataError


def pooled_padding_bound(lengths: np.ndarray, batch_size: int, pool: int) -> int:
    """Most cells that batches cut from length-sorted pools of ``pool`` batches can pad to.

    Within a sorted pool with batches b_1..b_m, max(b_j) <= min(b_j+1), so sum_j |b_j| max(b_j) is at most
    the pool's lengths plus batch_size * (max - min of the pool); the pools' ranges are at most the global one.
    """
    n_pools = -(-len(lengths) // (pool * batch_size))
    return int(lengths.sum()) + n_pools * batch_size * int(lengths.max() - lengths.min())


def expected_targets(store):
    """(user, item, time) of every training target: items 2..T of each training part."""
    out = Counter()
    for u in range(store.n_users):
        for row in range(store.offsets[u] + 1, store.offsets[u + 1] - 2):
            out[(u, int(store.items[row]), int(store.times[row]))] += 1
    return out


@pytest.mark.parametrize(
    "max_len, stride, pool, window",
    [(200, None, 0, None), (7, None, 0, None), (7, 3, 0, None), (5, 1, 0, None), (1, None, 0, None),
     (200, None, 4, None), (7, 3, 2, None), (7, None, 0, 15), (7, 4, 2, 15), (9, None, 0, 5)],
)  # fmt: skip
def test_every_training_target_once_per_epoch(data_dir, ml100k, max_len, stride, pool, window):
    dm = module(data_dir, max_len=max_len, train_stride=stride, batch_size=64, length_pool=pool, train_max_len=window)
    got = Counter()
    for batch in dm.train_dataloader():
        has = batch["target_items"] > 0
        users = batch["users"][:, None].expand_as(has)
        got.update(
            zip(users[has].tolist(), batch["target_items"][has].tolist(), batch["target_times"][has].tolist())
        )
        assert batch["items"].shape[1] <= (window or max_len)
    assert got == expected_targets(ml100k)


@pytest.mark.parametrize("max_len, stride, window", [(200, None, None), (7, 3, None), (7, 4, 15), (9, None, 5)])
def test_each_training_target_knows_its_place_from_the_end_of_its_users_training_part(data_dir, ml100k, max_len, stride, window):
    """Over an epoch each user's targets carry the places T-1, ..., 1 once each (T: the training part's length), in
    the order of the history: 1 on the user's last training rating, and 0 wherever there is no target."""
    dm = module(data_dir, max_len=max_len, train_stride=stride, batch_size=64, train_max_len=window)
    places = {}
    for batch in dm.train_dataloader():
        has = batch["target_items"] > 0
        assert (batch["target_from_end"][~has] == 0).all()
        users = batch["users"][:, None].expand_as(has)
        for user, time, item, place in zip(users[has].tolist(), batch["target_times"][has].tolist(),
                                           batch["target_items"][has].tolist(), batch["target_from_end"][has].tolist()):  # fmt: skip
            places.setdefault(user, []).append((place, time, item))
    for user in range(ml100k.n_users):
        first, end = ml100k.offsets[user], ml100k.train_ends[user]
        expected = [(int(end - row), int(ml100k.times[row]), int(ml100k.items[row])) for row in range(first + 1, end)]
        assert sorted(places.get(user, [])) == sorted(expected)
        if expected:
            assert min(places[user])[2] == ml100k.items[end - 1]  # place 1: the last training rating


@pytest.mark.parametrize("max_len, window", [(7, 15), (10, 20), (10, 11)])
def test_longer_training_windows_give_every_target_recbole_context(data_dir, ml100k, max_len, window):
    """train_max_len > max_len: each owned target has at least min(its position + 1, max_len) inputs (a RecBole prefix)."""
    windows = module(data_dir, max_len=max_len, train_max_len=window).train_dataloader().dataset.windows
    assert windows["length"].max() == window
    short = 0
    for user, start, length, own_from in zip(windows["user"], windows["start"], windows["length"], windows["own_from"]):
        begin = int(start - ml100k.offsets[user])  # the window's first input, counted in the user's history
        for j in range(int(own_from), int(length)):
            short += j + 1 < min(begin + j + 1, max_len)
    assert short == 0
    # the plain windows of max_len do cut the context of targets early in a later window
    plain = module(data_dir, max_len=max_len).train_dataloader().dataset.windows
    begins = plain["start"] - ml100k.offsets[plain["user"]]
    assert ((begins > 0) & (plain["length"] == max_len)).any()


def test_no_training_target_in_its_own_input(data_dir):
    dm = module(data_dir, max_len=50, batch_size=128)
    for batch in dm.train_dataloader():
        items, targets = batch["items"], batch["target_items"]
        seen_before = torch.cumsum(torch.nn.functional.one_hot(items, dm.n_items + 1), dim=1)  # (B, L, N + 1)
        leaked = seen_before.gather(2, targets[..., None]).squeeze(-1) > 0
        assert not (leaked & (targets > 0)).any()
        # each target is the next input item where the window continues
        inner = targets[:, :-1] > 0
        assert torch.equal(
            targets[:, :-1][inner & (items[:, 1:] > 0)], items[:, 1:][inner & (items[:, 1:] > 0)]
        )


def test_windows_of_long_users_are_recent_first_and_full(ml100k):
    windows = training_windows(ml100k, max_len=10)
    lengths = ml100k.lengths - 2
    for u in np.flatnonzero(lengths > 25)[:20]:
        mine = windows["start"][windows["user"] == u]
        sizes = windows["length"][windows["user"] == u]
        ends = mine + sizes
        assert (
            ends.max() == ml100k.offsets[u] + lengths[u] - 1
        )  # the most recent window ends at the last input
        assert np.all(sizes[ends != ends.min()] == 10)  # only the earliest window may be short


@pytest.mark.parametrize("stage", ["val", "test"])
def test_eval_batches(data_dir, ml100k, stage):
    max_len = 30
    dm = module(data_dir, max_len=max_len, eval_batch_size=100)
    loader = dm.val_dataloader() if stage == "val" else dm.test_dataloader()
    users = []
    for batch in loader:
        users += batch["users"].tolist()
        target, target_time, target_rating = eval_targets(batch)
        for b, u in enumerate(batch["users"].tolist()):
            end = ml100k.offsets[u + 1] - (2 if stage == "val" else 1)  # the held-out row
            start = max(ml100k.offsets[u], end - max_len)
            n = int(batch["lengths"][b])
            assert n == end - start
            assert batch["items"][b, :n].tolist() == ml100k.items[start:end].tolist()
            assert batch["times"][b, :n].tolist() == ml100k.times[start:end].tolist()
            assert int(target[b]) == ml100k.items[end] and int(target_time[b]) == ml100k.times[end]
            assert float(target_rating[b]) == ml100k.ratings[end]
            assert int(target[b]) not in batch["items"][b, :n].tolist()  # never in its own input
            seen = batch["seen"][b]
            assert seen[seen > 0].tolist() == ml100k.items[ml100k.offsets[u] : end].tolist()
            train = int(batch["train_lengths"][b])  # the training part: the validation row is not in it
            assert seen[:train].tolist() == ml100k.items[ml100k.offsets[u] : ml100k.offsets[u + 1] - 2].tolist()
            assert batch["target_items"][b, : n - 1].tolist() == batch["items"][b, 1:n].tolist()
            assert not batch["items"][b, n:].any() and not batch["target_items"][b, n:].any()
    assert users == list(range(ml100k.n_users))  # every user once, in order


def test_test_input_ends_with_the_validation_item(data_dir, ml100k):
    dm = module(data_dir, max_len=20)
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    val_target = eval_targets(val)[0]
    last_test_input = test["items"].gather(1, (test["lengths"] - 1)[:, None]).squeeze(1)
    assert torch.equal(last_test_input, val_target)


def test_shuffling_depends_on_seed_and_epoch_only(data_dir):
    def first_users(seed, epoch):
        loader = module(data_dir, max_len=20, seed=seed).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["users"]

    assert torch.equal(first_users(0, 0), first_users(0, 0))
    assert torch.equal(first_users(0, 3), first_users(0, 3))
    assert not torch.equal(first_users(0, 0), first_users(0, 1))
    assert not torch.equal(first_users(0, 0), first_users(1, 0))


def test_lightning_sets_the_epoch(data_dir):
    from lightning.fabric.utilities.data import _set_sampler_epoch

    loader = module(data_dir).train_dataloader()
    _set_sampler_epoch(loader, 7)
    assert loader.sampler.epoch == 7


def test_pairs_cover_every_training_interaction_once(data_dir, ml100k):
    dm = module(data_dir, batch_size=4096)
    dm.train_format = "pairs"
    got = Counter()
    for batch in dm.train_dataloader():
        got.update(zip(batch["users"].tolist(), batch["items"].tolist(), batch["times"].tolist()))
    expected = Counter(
        (u, int(ml100k.items[r]), int(ml100k.times[r]))
        for u in range(ml100k.n_users)
        for r in range(ml100k.offsets[u], ml100k.offsets[u + 1] - 2)
    )
    assert got == expected


def test_histories_are_the_training_parts(data_dir, ml100k):
    dm = module(data_dir, batch_size=100)
    dm.train_format = "history"
    seen = []
    for batch in dm.train_dataloader():
        for b, u in enumerate(batch["users"].tolist()):
            row = batch["history"][b]
            assert (
                row[row > 0].tolist() == ml100k.items[ml100k.offsets[u] : ml100k.offsets[u + 1] - 2].tolist()
            )
            seen.append(u)
    assert sorted(seen) == list(range(ml100k.n_users))


def test_fixed_length_and_workers(data_dir):
    dm = module(data_dir, max_len=16, fixed_length=True, batch_size=32)
    plain = [b for _, b in zip(range(3), dm.train_dataloader())]
    assert all(b["items"].shape[1] == 16 for b in plain)
    dm_workers = module(data_dir, max_len=16, fixed_length=True, batch_size=32, num_workers=2)
    with_workers = [b for _, b in zip(range(3), dm_workers.train_dataloader())]
    for a, b in zip(plain, with_workers):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_batch_dtypes(data_dir):
    batch = next(iter(module(data_dir).train_dataloader()))
    for key in ("users", "items", "lengths", "target_items", "times", "target_times"):
        assert batch[key].dtype == torch.int64, key
    assert batch["ratings"].dtype == batch["target_ratings"].dtype == torch.float32
    assert (batch["lengths"] >= 1).all()


def test_default_batch_size_follows_the_training_layout(data_dir):
    dm = module(data_dir)
    sizes = {}
    for layout in ("sequence", "pairs", "history"):
        dm.train_format = layout
        sizes[layout] = next(iter(dm.train_dataloader()))["users"].shape[0]
    assert sizes == {"sequence": 32, "pairs": 1024, "history": 64}
    explicit = module(data_dir, batch_size=10)
    explicit.train_format = "pairs"
    assert next(iter(explicit.train_dataloader()))["users"].shape[0] == 10


def test_sharded_batches_cover_every_example_once():
    from ss4rec.data.datasets import BatchSampler

    for shuffle in (False, True):
        shards = [list(BatchSampler(103, 10, shuffle, seed=1, rank=r, world=3)) for r in range(3)]
        seen = np.concatenate([b for shard in shards for b in shard])
        assert len(seen) == len(set(seen.tolist()))  # never repeated
        if shuffle:  # training: equal step counts, at most world - 1 batches skipped
            assert len({len(s) for s in shards}) == 1 and len(seen) >= 103 - 2 * 10 - 3
        else:  # evaluation: every example exactly once
            assert sorted(seen.tolist()) == list(range(103))
        assert [len(s) for s in shards] == [
            len(BatchSampler(103, 10, shuffle, 1, rank=r, world=3)) for r in range(3)
        ]


@pytest.mark.parametrize("world", [1, 3])
def test_length_pools_sort_within_pools_and_shuffle_batches(world):
    from ss4rec.data.datasets import BatchSampler

    n, size, pool = 1003, 10, 5
    lengths = np.random.default_rng(0).integers(1, 200, n)
    samplers = [
        BatchSampler(n, size, True, seed=2, rank=r, world=world, lengths=lengths, pool=pool)
        for r in range(world)
    ]
    plain = [BatchSampler(n, size, True, seed=2, rank=r, world=world) for r in range(world)]
    shards = [list(s) for s in samplers]  # epoch 0
    batches = [b for shard in shards for b in shard]
    seen = np.concatenate(batches)
    assert len(seen) == len(set(seen.tolist()))  # never repeated
    assert len(seen) >= n - (world - 1) * size - 3  # only the batches that even out the shards are skipped
    assert [len(s) for s in samplers] == [len(s) for s in plain]

    def padded(batches):
        return sum(lengths[b].max() * len(b) for b in batches)

    assert padded(batches) <= pooled_padding_bound(lengths, size, pool) < padded([b for s in plain for b in s])
    # each batch is a run of one pool's sorted order: pools of the epoch's permutation, sorted by length
    order = np.random.default_rng([2, 0]).permutation(n)
    pools = [set(p.tolist()) for p in np.split(order, range(pool * size, n, pool * size))]
    for b in batches:
        assert any(set(b.tolist()) <= p for p in pools)
        assert np.all(np.diff(lengths[b]) >= 0)
    # the batch order is shuffled, not pool after pool
    pool_of = {i: k for k, members in enumerate(pools) for i in members}
    pool_ids = [pool_of[b[0]] for b in shards[0]]  # rank 0, in the order it trains
    assert pool_ids != sorted(pool_ids)
    again = [b for s in samplers for b in s]  # next epoch
    assert not all(np.array_equal(a, b) for a, b in zip(batches, again))


def test_length_pool_needs_lengths_and_a_valid_size():
    from ss4rec.data.datasets import BatchSampler
    from ss4rec.data.errors import DataError

    with pytest.raises(ValueError, match="one length per example"):
        BatchSampler(10, 2, True, pool=3)
    with pytest.raises(ValueError, match="pool must be >= 0"):
        BatchSampler(10, 2, True, lengths=np.ones(10), pool=-1)
    with pytest.raises(DataError, match="length_pool must be >= 0"):
        SequenceDataModule(name="ml100k", length_pool=-2)


def test_length_pool_pads_less_on_ml100k(data_dir):
    widths, lengths = {}, {}
    for pool in (0, 8):
        dm = module(data_dir, length_pool=pool)
        batches = list(dm.train_dataloader())
        widths[pool] = sum(b["items"].numel() for b in batches)
        lengths[pool] = np.sort(torch.cat([b["lengths"] for b in batches]).numpy())
    assert np.array_equal(lengths[8], lengths[0])  # the same windows, batched differently
    bound = pooled_padding_bound(lengths[8], dm.train_batch_size, 8)
    assert lengths[8].sum() <= widths[8] <= bound < widths[0]


def test_evaluation_with_fewer_batches_than_processes_gives_every_process_a_batch():
    """201 users in batches of 512 over 2 processes: Lightning refuses a process with an empty loader."""
    from ss4rec.data.datasets import BatchSampler

    shards = [list(BatchSampler(201, 512, False, rank=r, world=2)) for r in range(2)]
    assert all(len(shard) == 1 for shard in shards)
    assert sorted(np.concatenate([b for shard in shards for b in shard]).tolist()) == list(range(201))


def test_recent_windows_are_each_users_most_recent_window_with_every_target_owned(ml100k):
    every = training_windows(ml100k, max_len=10)
    recent = training_windows(ml100k, max_len=10, stride=3, which="recent")  # stride has no effect
    users_with_targets = np.unique(every["user"])
    assert recent["user"].tolist() == users_with_targets.tolist()  # one window per user
    assert np.all(recent["own_from"] == 0)
    ends = every["start"] + every["length"]
    for i, u in enumerate(recent["user"][:50]):
        mine = every["user"] == u
        latest = np.argmax(np.where(mine, ends, -1))
        assert recent["start"][i] == every["start"][latest] and recent["length"][i] == every["length"][latest]
    with pytest.raises(ValueError, match="train_windows"):
        training_windows(ml100k, max_len=10, which="last")


def test_datamodule_trains_on_recent_windows_and_refuses_an_unknown_choice(data_dir):
    dm = module(data_dir, max_len=20, train_windows="recent")
    assert sum(len(b["users"]) for b in dm.train_dataloader()) == dm.n_users
    with pytest.raises(DataError, match="train_windows"):
        module(data_dir, max_len=20, train_windows="newest")


@pytest.mark.parametrize("max_len, stride, pool, window", [(200, None, 0, None), (7, 3, 2, None), (7, None, 4, 15)])
def test_targets_per_batch_is_the_epochs_mean_target_count(data_dir, max_len, stride, pool, window):
    dm = module(data_dir, max_len=max_len, train_stride=stride, batch_size=16, length_pool=pool, train_max_len=window)
    counts = [int((batch["target_items"] > 0).sum()) for batch in dm.train_dataloader()]
    assert len(set(counts)) > 1  # windows of different lengths: the counts vary
    assert dm.train_targets_per_batch() == pytest.approx(np.mean(counts), rel=1e-12)
    dm.train_format = "pairs"
    assert dm.train_targets_per_batch() is None  # one target per example
