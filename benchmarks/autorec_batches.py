"""An epoch of I-AutoRec training on batches of users (``model.batches=users``, ``history`` rows) against batches of
item columns (``model.batches=items``, ``columns``): the same model, ratings and optimizer, only what a batch holds.

A batch of 256 users touches most items, and I-AutoRec codes every item of a batch from its whole column, so an
epoch of user batches codes the whole matrix about once per batch; a batch of 256 items codes only its own columns,
so an epoch codes the matrix once. The ratings are random, shaped like ML-100K (943 users, 1,682 items, 100,000
ratings) or ML-1M (``--shape ml1m``: 6,040 users, 3,706 items, 1,000,209 ratings), with item popularity skewed
like MovieLens's (Zipf). An epoch = every batch's ``train_queries`` -> ``predict_rating`` -> squared error + the L2
term -> backward -> Adam step, on one thread; both layouts fit every rating once an epoch (checked). Time = median
of ``--repeats`` epochs, and the ratio's spread over ``--rounds`` rounds (min-max).

    python benchmarks/autorec_batches.py [--shape ml100k|ml1m] [--repeats 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ss4rec.models.autorec import IAutoRec

SHAPES = {"ml100k": (943, 1682, 100_000), "ml1m": (6040, 3706, 1_000_209)}
BATCH = 256


def random_ratings(users: int, items: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` distinct (user, item) pairs, items drawn Zipf-like, ratings 1..5."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    keys = np.unique(rng.integers(0, users, 3 * count) * (items + 1)
                     + 1 + rng.choice(items, 3 * count, p=popularity / popularity.sum()))[:count]  # fmt: skip
    keys = rng.permutation(keys)
    return keys // (items + 1), keys % (items + 1), rng.integers(1, 6, len(keys)).astype(np.float32)


def user_batches(users, items, ratings, n_users: int, rng) -> list[dict]:
    """``history`` batches of BATCH users, every rating of each (right-padded)."""
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for chunk in np.array_split(rng.permutation(n_users), -(-n_users // BATCH)):
        width = max(int(counts[chunk].max()), 1)
        history, values = np.zeros((len(chunk), width), np.int64), np.zeros((len(chunk), width), np.float32)
        for row, user in enumerate(chunk):
            rows = order[starts[user]:starts[user + 1]]
            history[row, :len(rows)], values[row, :len(rows)] = items[rows], ratings[rows]
        out.append({"users": torch.from_numpy(chunk.astype(np.int64)), "history": torch.from_numpy(history),
                    "history_ratings": torch.from_numpy(values)})  # fmt: skip
    return out


def item_batches(users, items, ratings, rng) -> list[dict]:
    """``columns`` batches of BATCH items, every rating of each."""
    out, rated = [], np.unique(items)
    for chunk in np.array_split(rng.permutation(rated), -(-len(rated) // BATCH)):
        rows = np.flatnonzero(np.isin(items, chunk))
        rows = rows[np.argsort(items[rows], kind="stable")]
        out.append({"users": torch.from_numpy(users[rows]), "items": torch.from_numpy(items[rows]),
                    "ratings": torch.from_numpy(ratings[rows])})  # fmt: skip
    return out


def epoch(model: IAutoRec, optimizer, batches: list[dict]) -> int:
    """One pass of training steps; the number of ratings fitted."""
    fitted = 0
    for batch in batches:
        query, items, targets = model.train_queries(batch)
        loss = (model.predict_rating(query, items) - targets).pow(2).mean() + model.extra_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        fitted += len(items)
    return fitted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ml100k")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per layout and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        parser.error(f"--repeats and --rounds must be >= 1, got {args.repeats}, {args.rounds}")
    torch.set_num_threads(1)
    n_users, n_items, count = SHAPES[args.shape]
    data = random_ratings(n_users, n_items, count)
    rng = np.random.default_rng(1)
    layouts = {"users": user_batches(*data, n_users, rng), "items": item_batches(*data, rng)}
    print(f"{args.shape}-shaped: {n_users} users, {n_items} items, {len(data[0])} ratings; "
          f"{len(layouts['users'])} user batches, {len(layouts['items'])} item batches of {BATCH}")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name, batches in layouts.items():
            torch.manual_seed(0)
            model = IAutoRec(n_items, n_users, batches=name)
            model.set_rating_matrix(*data)
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
            assert epoch(model, optimizer, batches) == len(data[0])  # warm-up; every rating fitted once
            samples = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                epoch(model, optimizer, batches)
                samples.append(time.perf_counter() - started)
            times[name].append(statistics.median(samples))
    ratios = [u / i for u, i in zip(times["users"], times["items"])]
    print("\n| layout | s / epoch (median of rounds) |\n|---|---:|")
    for name in layouts:
        print(f"| {name} | {statistics.median(times[name]):.2f} |")
    print(f"\nusers / items: {statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f} over "
          f"{args.rounds} rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
