"""How much each training target weighs in the loss when it is the mean over a batch's targets.

A ``sequence`` batch holds whole windows, so its target count varies, and with ``data.length_pool`` (batches of
windows of similar length) it varies a lot: a target weighs the inverse of its batch's count. This counts one
epoch's batches exactly (no model) for plain shuffling and for length pools, and prints the spread of the
weights (1 = every target the same, what ``task.target_weighting=uniform`` gives) and the share of the loss
held by targets in small batches.

    python benchmarks/target_weights.py [--data ml1m] [--batch 8] [--pool 50] [--small 400] [--timestamp-dtype float32]
"""

from __future__ import annotations

import argparse

import numpy as np

from ss4rec.data.datamodule import SequenceDataModule


def target_counts(data: str, batch: int, pool: int, max_len: int, timestamp_dtype: str) -> np.ndarray:
    """Targets of every training batch of epoch 0."""
    dm = SequenceDataModule(name=data, source="bundled", batch_size=batch, length_pool=pool, max_len=max_len,
                            timestamp_dtype=timestamp_dtype)  # fmt: skip
    dm.prepare_data()
    dm.setup()
    return np.array([int((b["target_items"] > 0).sum()) for b in dm.train_dataloader()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml1m", help="a bundled dataset: ml100k or ml1m")
    parser.add_argument("--batch", type=int, default=8, help="windows per batch")
    parser.add_argument("--pool", type=int, default=50, help="batches per length pool")
    parser.add_argument("--max-len", type=int, default=200, help="window length (data.max_len)")
    parser.add_argument("--small", type=int, default=400, help="a batch with fewer targets than this is small")
    parser.add_argument("--timestamp-dtype", default="int64", help="data.timestamp_dtype")
    args = parser.parse_args()
    print(f"{args.data}, {args.batch} windows per batch, max_len {args.max_len}")
    print(f"{'setting':>16} {'batches':>8} {'targets/batch p10 / median / max':>34} "
          f"{'weight p10 / median / p90 / max':>32} {'small batches: targets, loss':>30}")  # fmt: skip
    for pool in (0, args.pool):
        counts = target_counts(args.data, args.batch, pool, args.max_len, args.timestamp_dtype)
        weights = np.repeat(counts.mean() / counts, counts)  # each target's weight, mean 1 over the epoch
        small = np.repeat(counts < args.small, counts)
        name = "plain shuffle" if pool == 0 else f"length_pool={pool}"
        spread = f"{np.percentile(counts, 10):.0f} / {np.median(counts):.0f} / {counts.max()}"
        w = f"{np.percentile(weights, 10):.2f} / {np.median(weights):.2f} / {np.percentile(weights, 90):.2f} / {weights.max():.1f}"
        share = f"{small.mean():.1%}, {weights[small].sum() / weights.sum():.1%}"
        print(f"{name:>16} {len(counts):>8} {spread:>34} {w:>32} {share:>30}")


if __name__ == "__main__":
    main()
