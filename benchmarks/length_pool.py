"""Epoch cost of SS4Rec training with length pools (``data.length_pool``) against plain shuffling.

A sequence batch is as wide as its longest window, so a random batch of ML-1M windows pads to about 200
while most windows are shorter. Length pools sort windows by length within pools of N batches, then
shuffle the batches. This script counts the padded positions of one whole epoch both ways (exact), and
times the same number of training steps (forward, full cross-entropy, backward, Adam) of SS4Rec on the
first batches of each epoch order; plain shuffling is the reference measured in the same run. The projected
epoch time is the mean step time times the number of batches.

    python benchmarks/length_pool.py [--data ml1m] [--pool 50] [--batch 32] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.objectives import CrossEntropy, Objective


def epoch_positions(loader) -> tuple[int, int]:
    """(padded positions, real positions) of one epoch of ``loader``."""
    padded = real = 0
    for batch in loader:
        padded += batch["items"].numel()
        real += int(batch["lengths"].sum())
    return padded, real


def step_seconds(dm: SequenceDataModule, loader, steps: int) -> float:
    """Mean seconds per training step over the first ``steps`` batches of an epoch (after one warm-up)."""
    torch.manual_seed(0)
    model = SS4Rec(n_items=dm.n_items, n_users=dm.n_users, max_len=dm.max_len).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = Objective(ranking=CrossEntropy())
    batches = list(itertools.islice(loader, steps + 1))
    elapsed = 0.0
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        query, items, ratings = model.train_queries(batch)
        loss = objective(model, query, items, ratings)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        elapsed += (time.perf_counter() - start) if i else 0.0  # batch 0 warms up
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml1m", help="a bundled dataset: ml100k or ml1m")
    parser.add_argument("--pool", type=int, default=50, help="batches per length pool")
    parser.add_argument("--batch", type=int, default=32, help="windows per batch")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.data}, batch {args.batch}")
    print(f"{'setting':>16} {'batches':>8} {'padded pos.':>12} {'real pos.':>10} {'s / step':>9} {'epoch s':>8}")
    results = {}
    for pool in (0, args.pool):
        dm = SequenceDataModule(name=args.data, source="bundled", batch_size=args.batch, length_pool=pool)
        dm.prepare_data()
        dm.setup()
        loader = dm.train_dataloader()
        n_batches = len(loader)
        padded, real = epoch_positions(loader)  # epoch 0, whole
        seconds = step_seconds(dm, loader, args.steps)  # the first batches of epoch 1
        results[pool] = (padded, seconds * n_batches)
        name = "plain shuffle" if pool == 0 else f"length_pool={pool}"
        print(f"{name:>16} {n_batches:>8} {padded:>12,} {real:>10,} {seconds:>9.3f} {seconds * n_batches:>8.0f}")
    (p0, t0), (p1, t1) = results[0], results[args.pool]
    print(f"length_pool={args.pool} vs plain: x{p0 / p1:.2f} fewer padded positions, x{t0 / t1:.2f} faster epoch")


if __name__ == "__main__":
    main()
