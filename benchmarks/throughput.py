"""Training throughput (sequences per second) of SS4Rec against SASRec at several sequence lengths.

Both models take the same synthetic batches (full-length sequences, random items, realistic bursty time
gaps) and the same training step: encode, full cross-entropy over the catalogue, backward, Adam. SASRec
is the reference measured in the same run; the table reports SS4Rec's throughput as a ratio of it.

    python benchmarks/throughput.py [--lengths 50 200 1000] [--batch 32] [--items 3000] [--steps 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from ss4rec.models.sasrec import SASRec
from ss4rec.objectives import CrossEntropy, Objective


def make_batch(batch: int, length: int, n_items: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items + 1, (batch, length + 1), generator=g)
    # half the gaps are 0 (rating bursts), the rest spread over minutes to months
    gaps = torch.where(
        torch.rand(batch, length + 1, generator=g) < 0.5,
        torch.zeros(batch, length + 1),
        torch.exp(torch.empty(batch, length + 1).uniform_(4, 16, generator=g)),
    ).long()
    times = 9e8 + gaps.cumsum(1)
    times = times.long()
    return {
        "users": torch.arange(batch),
        "items": items[:, :-1],
        "times": times[:, :-1],
        "ratings": torch.randint(1, 6, (batch, length), generator=g).float(),
        "lengths": torch.full((batch,), length),
        "target_items": items[:, 1:],
        "target_times": times[:, 1:],
        "target_ratings": torch.randint(1, 6, (batch, length), generator=g).float(),
    }


def build(name: str, n_items: int, length: int) -> torch.nn.Module:
    if name == "sasrec":
        return SASRec(n_items=n_items, n_users=1, max_len=length)
    from ss4rec.models.ss4rec import SS4Rec

    return SS4Rec(n_items=n_items, n_users=1, max_len=length)


def sequences_per_second(name: str, batch: dict, n_items: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build(name, n_items, batch["items"].shape[1]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = Objective(ranking=CrossEntropy())

    def step() -> None:
        query, items, ratings = model.train_queries(batch)
        loss = objective(model, query, items, ratings)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch["items"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.items} items")
    print(f"{'length':>7} {'SASRec seq/s':>13} {'SS4Rec seq/s':>13} {'SS4Rec / SASRec':>16}")
    for length in args.lengths:
        batch = make_batch(args.batch, length, args.items)
        # fewer timed steps at long lengths keep the whole benchmark around a minute on 2 cores
        steps = max(1, args.steps if length <= 200 else args.steps // 2)
        reference = sequences_per_second("sasrec", batch, args.items, steps)
        ours = sequences_per_second("ss4rec", batch, args.items, steps)
        print(f"{length:>7} {reference:>13.1f} {ours:>13.1f} {ours / reference:>15.2f}x")


if __name__ == "__main__":
    main()
