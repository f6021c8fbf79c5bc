"""timeSVD++: predictions and every gradient against a float64 reference written from the formula, the time
index from the training part only, refusals, and the index surviving a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from composing import compose_train
from ss4rec.batch import HISTORY
from ss4rec.lightning_module import RecModule
from ss4rec.models.timesvdpp import TimeSVDpp
from ss4rec.training import build_datamodule, train

N_ITEMS, N_USERS, DIM, BINS, BETA = 13, 6, 4, 5, 0.4
DAY = 86_400
T0 = 1_000_000_000  # 2001-09-09


def training_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[int, list[int]], dict[int, list[int]]]:
    """Training interactions of users 0, 1, 2, 4, 5 (user 3 has none): same-second ties, several ratings on one
    day, gaps of years; odd lengths. Returns users, times (R,) and per-user items and times, in time order."""
    rng = np.random.default_rng(seed)
    lengths = {0: 3, 1: 7, 2: 1, 4: 5, 5: 2}
    items, times = {}, {}
    for user, n in lengths.items():
        gaps = rng.choice([0, 0, 30, 3_600, 5 * DAY, 800 * DAY], size=n)  # zero and huge gaps
        times[user] = (T0 + int(rng.integers(0, 40 * DAY)) + np.cumsum(gaps)).tolist()
        items[user] = (rng.permutation(N_ITEMS)[:n] + 1).tolist()
    users = np.concatenate([[u] * n for u, n in lengths.items()]).astype(np.int64)
    flat_times = np.concatenate([times[u] for u in lengths]).astype(np.int64)
    return users, flat_times, items, times


def make(users: np.ndarray, times: np.ndarray, **kwargs) -> TimeSVDpp:
    torch.manual_seed(0)
    model = TimeSVDpp(N_ITEMS, N_USERS, dim=DIM, init_std=0.3, n_bins=BINS, beta=BETA,
                      n_user_days=TimeSVDpp.count_user_days(users, times), **kwargs)  # fmt: skip
    model.set_time_index(users, times)
    with torch.no_grad():  # every term non-zero (the time terms start at zero), padding rows left alone
        for name in ("user_bias", "user_drift"):
            getattr(model, name).weight.normal_()
        for name in ("item_bias", "item_bin_bias"):
            getattr(model, name).weight[1:].normal_()
        model.day_bias.weight[:-1].normal_()
        model.rating_head.rating_mean.fill_(3.2)
    return model.double()


class Reference:
    """The formula, one rating at a time, in float64, from the raw training interactions (not the model's index)."""

    def __init__(self, users: np.ndarray, times: np.ndarray, params: dict[str, torch.Tensor], mean: float):
        self.params, self.mean = params, mean
        self.origin, end = int(times.min()), int(times.max())
        self.width = math.ceil((end - self.origin + 1) / BINS)
        # t_u: the mean UTC day of the user's training ratings (Koren's mean rating date)
        self.mean_day = {int(u): np.mean([t // DAY for uu, t in zip(users, times) if uu == u]) for u in set(users)}
        self.days = sorted({(int(u), int(t) // DAY) for u, t in zip(users, times)})  # the table's rows, in key order

    def __call__(self, user: int, rated: list[int], item: int, t: int) -> torch.Tensor:
        p = self.params
        implicit = sum((p["implicit_embedding.weight"][j] for j in rated), torch.zeros(DIM, dtype=torch.float64))
        if rated:
            implicit = implicit / math.sqrt(len(rated))
        z = p["user_embedding.weight"][user] + implicit
        bin_ = min(max((t - self.origin) // self.width, 0), BINS - 1)
        delta = t // DAY - self.mean_day.get(user, t // DAY)  # 0 for a user without training ratings
        dev = math.copysign(abs(delta) ** BETA, delta) if delta else 0.0
        day_bias = p["day_bias.weight"][self.days.index((user, t // DAY)), 0] if (user, t // DAY) in self.days else 0.0
        user_bias = p["user_bias.weight"][user, 0] + p["user_drift.weight"][user, 0] * dev + day_bias
        item_bias = p["item_bias.weight"][item, 0] + p["item_bin_bias.weight"][item, bin_]
        return self.mean + user_bias + item_bias + p["item_embedding.weight"][item] @ z


def leaf_params(model: TimeSVDpp) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone().requires_grad_(True) for name, p in model.named_parameters()}


def history_batch(items: dict[int, list[int]], times: dict[int, list[int]], fold: bool) -> dict[str, torch.Tensor]:
    order = [4, 0, 2, 3, 1, 5]  # user 3: no training part
    width = max(len(items.get(u, [])) for u in order)
    history = torch.zeros(len(order), width, dtype=torch.long)
    stamps = torch.zeros(len(order), width, dtype=torch.long)
    for row, u in enumerate(order):
        history[row, : len(items.get(u, []))] = torch.tensor(items.get(u, []), dtype=torch.long)
        stamps[row, : len(times.get(u, []))] = torch.tensor(times.get(u, []), dtype=torch.long)
    ratings = torch.where(history > 0, (history % 5 + 1).double(), 0.0).float()
    batch = {"users": torch.tensor(order), "history": history, "history_ratings": ratings, "history_times": stamps}
    if fold:  # a held-out fold (data.holdout_folds): every other rating is no target but stays in N(u)
        batch["history_targets"] = (history > 0) & (torch.arange(width)[None, :] % 2 == 0)
    return batch


@pytest.mark.parametrize("fold", [False, True])
def test_training_predictions_and_every_gradient_match_the_float64_reference(fold):
    users, times, items, stamps = training_rows()
    model = make(users, times)
    batch = history_batch(items, stamps, fold)
    query, targets, ratings = model.train_queries(batch)
    predicted = model.predict_rating(query, targets)
    params = leaf_params(model)
    reference = Reference(users, times, params, 3.2)
    expected, expected_ratings = [], []
    keep = batch.get("history_targets", batch["history"] > 0)
    for row, u in enumerate(batch["users"].tolist()):
        rated = items.get(u, [])
        for k, (j, t) in enumerate(zip(rated, stamps.get(u, []))):
            if keep[row, k]:
                expected.append(reference(u, rated, j, t))
                expected_ratings.append(float(batch["history_ratings"][row, k]))
    expected = torch.stack(expected)
    torch.testing.assert_close(predicted, expected.detach())
    assert ratings.tolist() == expected_ratings
    weights = torch.linspace(0.5, 1.5, len(expected), dtype=torch.float64)  # a loss that weighs each rating apart
    (weights * predicted).sum().backward()
    (weights * expected).sum().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, params[name].grad, msg=name)
        assert parameter.grad.abs().sum() > 0, name
    assert not model.day_bias.weight.grad[-1].any()  # the "no such day" row stays zero
    assert not model.item_bin_bias.weight.grad[0].any()  # padding


def test_evaluation_uses_the_target_time_new_days_and_times_outside_the_training_period():
    users, times, items, stamps = training_rows(seed=1)
    model = make(users, times)
    reference = Reference(users, times, leaf_params(model), 3.2)
    last = {u: stamps[u][-1] for u in stamps}
    cases = [  # (user, target item, target time)
        (1, 2, last[1]),  # the same second as the last training rating: that day's bias
        (1, 5, last[1] + 2 * DAY + 7),  # a new day: no day bias, the drift further out
        (0, 9, last[0] + 9 * 365 * DAY),  # years later: the last bin
        # before the training period, for the user who rated first: the first bin, no day (not the first one's)
        (int(users[times.argmin()]), 1, int(times.min()) - 3 * DAY),
        (3, 7, last[1]),  # no training part: dev_u 0, N(u) empty, no days
        (5, 13, last[5] + 1),
    ]
    width = max(len(items.get(u, [])) for u, _, _ in cases) + 1
    seen = torch.zeros(len(cases), width, dtype=torch.long)
    for row, (u, _, _) in enumerate(cases):
        seen[row, : len(items.get(u, []))] = torch.tensor(items.get(u, []), dtype=torch.long)
    seen[0, len(items[1])] = 11  # a validation item after the training part: never in N(u)
    target_items = torch.tensor([[i] for _, i, _ in cases])
    batch = {
        "users": torch.tensor([u for u, _, _ in cases]), "seen": seen,
        "train_lengths": torch.tensor([len(items.get(u, [])) for u, _, _ in cases]),
        "lengths": torch.ones(len(cases), dtype=torch.long), "target_items": target_items,
        "target_times": torch.tensor([[t] for _, _, t in cases]), "target_ratings": torch.full((len(cases), 1), 4.0),
    }  # fmt: skip
    predicted = model.predict_rating(model.eval_queries(batch), target_items[:, 0])
    expected = torch.stack([reference(u, items.get(u, []), i, t) for u, i, t in cases]).detach()
    torch.testing.assert_close(predicted, expected)
    _, day, bins = model._time_terms(batch["users"], batch["target_times"][:, 0])
    assert (day != 0).tolist() == [True, False, False, False, False, True]
    assert bins.tolist()[2:4] == [BINS - 1, 0]


def test_the_time_penalty_reaches_every_time_term_and_only_them():
    users, times, items, stamps = training_rows()
    model = make(users, times, time_l2=0.1)
    batch = history_batch(items, stamps, fold=False)
    model.train_queries(batch)
    penalty = model.extra_loss(batch)
    assert penalty is not None and penalty > 0
    penalty.backward()
    graded = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert graded == {"user_drift.weight", "day_bias.weight", "item_bin_bias.weight"}
    for time_l2, drift_l2, expected in ((0.1, 0.0, {"day_bias.weight", "item_bin_bias.weight"}), (0.0, 0.1, {"user_drift.weight"})):
        model.zero_grad()
        model.time_l2, model.drift_l2 = time_l2, drift_l2  # drift_l2: alpha_u's own coefficient
        model.train_queries(batch)
        model.extra_loss(batch).backward()
        assert {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0} == expected
    model.zero_grad()
    model.time_l2 = model.drift_l2 = 0.1
    model.l2 = 0.1  # with SVD++'s own penalty both are summed
    model.train_queries(batch)
    model.extra_loss(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_format_and_the_time_index():
    users, times, _, _ = training_rows()
    model = make(users, times)
    assert model.train_format == HISTORY and model.supports_rating and not model.supports_ranking
    distinct = {(int(u), int(t) // DAY) for u, t in zip(users, times)}
    assert model.n_user_days == len(distinct) == model.day_keys.numel() < len(users)  # ties share a day
    assert model.time_origin == times.min()
    first_day = times.min() // DAY
    for u in (0, 1, 2, 4, 5):
        mean_day = model.user_day_sum[u].item() / model.user_day_count[u].item()
        assert mean_day == pytest.approx(np.mean(times[users == u] // DAY - first_day))
    assert model.user_day_count[3] == model.user_day_sum[3] == 0


def test_refusals_name_what_was_expected():
    users, times, _, _ = training_rows()
    model = TimeSVDpp(N_ITEMS, N_USERS, dim=DIM, n_user_days=3)
    with pytest.raises(ValueError, match=r"has \d+ user-days but the model was built with n_user_days=3"):
        model.set_time_index(users, times)
    with pytest.raises(ValueError, match=r"two equal 1-d arrays.*shapes \(18,\) and \(17,\)"):
        model.set_time_index(users, times[:-1])
    with pytest.raises(ValueError, match=r"user indices must lie in \[0, 6\), got 0\.\.6"):
        model.set_time_index(np.append(users, 6), np.append(times, T0))
    with pytest.raises(ValueError, match="expected n_bins >= 1, beta > 0"):
        TimeSVDpp(N_ITEMS, N_USERS, n_bins=0)
    with pytest.raises(ValueError, match=r"time_l2 and drift_l2 >= 0; got .*, -1\.0$"):
        TimeSVDpp(N_ITEMS, N_USERS, drift_l2=-1.0)
    assert TimeSVDpp(N_ITEMS, N_USERS, time_l2=0.3).drift_l2 == 0.3  # None: time_l2's
    batch = {"users": torch.tensor([0]), "history": torch.tensor([[1]]), "history_ratings": torch.tensor([[3.0]])}
    with pytest.raises(KeyError, match="no 'history_times'"):
        model.train_queries(batch)


def test_learns_a_day_effect_svdpp_cannot():
    """Users rate everything +2 on one day and -2 on another; the same items on both days: only the day tells."""
    torch.manual_seed(1)
    n_users, per_day = 30, 4
    history = torch.stack([torch.randperm(N_ITEMS)[:per_day] + 1 for _ in range(n_users)]).repeat(1, 2)
    stamps = torch.cat([torch.full((n_users, per_day), T0), torch.full((n_users, per_day), T0 + 3 * DAY)], 1)
    ratings = torch.cat([torch.full((n_users, per_day), 5.0), torch.full((n_users, per_day), 1.0)], 1)
    batch = {"users": torch.arange(n_users), "history": history, "history_ratings": ratings, "history_times": stamps}
    users = batch["users"][:, None].expand_as(history).reshape(-1).numpy()
    model = TimeSVDpp(N_ITEMS, n_users, dim=4, init_std=0.1, rating_mean=3.0,
                      n_user_days=TimeSVDpp.count_user_days(users, stamps.reshape(-1).numpy()))  # fmt: skip
    model.set_time_index(users, stamps.reshape(-1).numpy())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        query, items, targets = model.train_queries(batch)
        loss = F.mse_loss(model.predict_rating(query, items), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05  # SVD++ cannot go below 4 here: each (user, item) pair is rated 5 and 1


def test_a_training_run_indexes_the_training_part_only_and_its_checkpoint_carries_the_index(tmp_path):
    """End to end on ML-100K: the trainer sizes and fills the index from the training interactions (a validation
    or test rating on a day of its own gets no day bias), and the checkpoint reloads it with no arguments."""
    cfg = compose_train(["model=timesvdpp", "task=rating", "debug=limit", "logger=none", "optimizer.lr=0.05"], tmp_path)
    summary = train(cfg)
    assert summary["status"] == "finished"
    store = build_datamodule(cfg)._ready()
    model = RecModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu").model.eval()
    rows = store.train_rows()
    users, times = store.users_of_rows()[rows], np.asarray(store.times)[rows]
    training_days = {(int(u), int(t) // DAY) for u, t in zip(users, times)}
    assert model.n_user_days == len(training_days) and model.time_origin == times.min()
    assert model.day_bias.weight[:-1].abs().sum() > 0  # trained
    held_out = store.offsets[1:] - 1  # each user's test rating
    held_users = torch.arange(store.n_users)
    held_times = torch.from_numpy(np.asarray(store.times)[held_out].astype(np.int64))
    with torch.no_grad():
        _, day, _ = model._time_terms(held_users, held_times)
    new_day = torch.tensor([(u, int(t) // DAY) not in training_days for u, t in enumerate(held_times.tolist())])
    assert new_day.any() and (~new_day).any()
    assert not day[new_day].any() and day[~new_day].abs().sum() > 0
