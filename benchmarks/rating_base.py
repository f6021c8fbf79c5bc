"""A cross-fitted rating base's ratings of training ratings (residual inputs and the drift stage read one per input
position): ``FrozenMF.out_of_fold``, from each rating's own fold's tables, against the query route
``base(base.user_part(users, items), items)``, which carries every run's part (weighted 0 but one) through the query.

The base is shaped like SS4Rec's on I-AutoRec on ML-100K (five fold runs and the full run: 6 tables of 501 factors,
943 users, 1,682 items; random values) and like one on SVD++ (6 tables of 64 + 1). Inputs: (B, L) = (64, 200), the
window of a training batch. Time = median of ``--repeats`` warm calls on one thread, with the ratio's spread over
``--rounds`` rounds (min-max); the two routes give the same numbers to the bit (checked here on every round).

Second table: every item's rating for a batch of ``--users`` held-out queries (what the batch export ranks a rating
model by, ``rate_every_item``): ``FrozenMF.every_item`` (one matrix product per table) against the query route
per (user, item) pair, a chunk of items at a time (``ss4rec.models.base.by_item_chunks``, what every item cost before);
the two agree to float32 rounding (checked on every round).

    python benchmarks/rating_base.py [--repeats 5] [--rounds 3] [--users 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ss4rec.models.base import by_item_chunks
from ss4rec.models.rating_base import FrozenMF

USERS, ITEMS, TABLES, FOLDS = 943, 1682, 6, 5


def random_base(factors: int, seed: int = 0) -> FrozenMF:
    """Five fold runs and a held-out run, random tables of ``factors`` columns."""
    g = torch.Generator().manual_seed(seed)
    base = FrozenMF(USERS, ITEMS, "random")
    base.user_factors = torch.randn(TABLES, USERS, factors, generator=g) * 0.1
    base.user_bias = torch.randn(TABLES, USERS, generator=g) * 0.1
    base.item_factors = torch.randn(TABLES, ITEMS + 1, factors, generator=g) * 0.1
    base.item_bias = torch.randn(TABLES, ITEMS + 1, generator=g) * 0.1
    base.mean = 3.5 + 0.01 * torch.randn(TABLES, generator=g)
    base.heldout_table = torch.tensor(True)
    assert base.folds == FOLDS
    return base


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rounds(base: FrozenMF, users, items, repeats: int, count: int, name: str) -> tuple[list, list, list]:
    """Both routes' median seconds and their ratio, per round; stops if they ever differ."""
    wide, narrow, ratios = [], [], []
    for _ in range(count):
        wide.append(median_seconds(lambda: base(base.user_part(users, items), items), repeats))
        narrow.append(median_seconds(lambda: base.out_of_fold(users, items), repeats))
        ratios.append(wide[-1] / narrow[-1])
        if not torch.equal(base(base.user_part(users, items), items), base.out_of_fold(users, items)):
            raise SystemExit(f"rating_base: the two routes differ on the {name} base")
    return wide, narrow, ratios


def every_item_rounds(base: FrozenMF, users, repeats: int, count: int, name: str) -> tuple[list, list, list]:
    """Pair by pair (chunked) and ``every_item``: median seconds and their ratio, per round; stops if they differ."""
    part = base.user_part(users)  # (U, T (K + 2)): held-out queries

    def pairwise():
        return by_item_chunks(lambda ids: base(part[:, None].expand(-1, len(ids), -1), ids.expand(len(part), -1)),
                              ITEMS + 1, len(part))  # fmt: skip

    chunked, every, ratios = [], [], []
    for _ in range(count):
        chunked.append(median_seconds(pairwise, repeats))
        every.append(median_seconds(lambda: base.every_item(part), repeats))
        ratios.append(chunked[-1] / every[-1])
        if not torch.allclose(pairwise(), base.every_item(part), rtol=0, atol=1e-4):
            raise SystemExit(f"rating_base: every_item differs from the pairwise route on the {name} base")
    return chunked, every, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs=2, default=[64, 200], metavar=("B", "L"))
    parser.add_argument("--users", type=int, default=64, help="users whose every item is rated at once")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, USERS, (args.batch[0], 1), generator=g).expand(*args.batch)
    items = torch.randint(0, ITEMS + 1, tuple(args.batch), generator=g)
    print(f"(B, L) = {tuple(args.batch)}, {TABLES} tables (5 folds + the held-out run), one thread")
    print("| base | factors | query route (ms) | out_of_fold (ms) | speed-up (min-max over rounds) |")
    print("|---|---:|---:|---:|---:|")
    with torch.no_grad():
        for name, factors in (("I-AutoRec-shaped", 501), ("SVD++-shaped", 65)):
            base = random_base(factors)
            wide, narrow, ratios = rounds(base, users, items, args.repeats, args.rounds, name)
            print(f"| {name} | {factors} | {1e3 * statistics.median(wide):.1f} | {1e3 * statistics.median(narrow):.1f} | "
                  f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}) |")  # fmt: skip
        print(f"\nevery item ({ITEMS} + padding) for {args.users} users, one thread")
        print("| base | factors | pair by pair, chunked (ms) | every_item (ms) | speed-up (min-max over rounds) |")
        print("|---|---:|---:|---:|---:|")
        some = torch.randint(0, USERS, (args.users,), generator=g)
        for name, factors in (("I-AutoRec-shaped", 501), ("SVD++-shaped", 65)):
            chunked, every, ratios = every_item_rounds(random_base(factors), some, args.repeats, args.rounds, name)
            print(f"| {name} | {factors} | {1e3 * statistics.median(chunked):.1f} | {1e3 * statistics.median(every):.1f} | "
                  f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}) |")  # fmt: skip


if __name__ == "__main__":
    main()
