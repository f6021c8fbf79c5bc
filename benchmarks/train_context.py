"""How much input context each training target sees, with plain windows and with ``data.train_max_len``.

RecBole (the paper's pipeline) trains on every prefix, truncated to its last ``max_len`` items, so the target
at position i of a user's training part sees ``min(i, max_len)`` inputs. Plain windows of ``max_len`` cut
long users from the end, so a target early in a later window sees only the inputs of its own window. For
each setting: windows, positions computed per epoch (the work), counted targets, the share of targets with
less context than RecBole's, and the mean context (capped at ``max_len``) against RecBole's. Reads the
prepared store (prepares it the first time); a few seconds.

    python benchmarks/train_context.py                       # ML-1M, float32 timestamps, max_len 200
    python benchmarks/train_context.py --data ml100k --timestamp-dtype int64 --windows 0 300 399
"""

from __future__ import annotations

import argparse

import numpy as np

from ss4rec.data import SequenceDataModule


def context_stats(dm: SequenceDataModule) -> dict:
    """Counted targets, how many see fewer inputs than a RecBole prefix, and both mean contexts."""
    windows = dm.train_dataloader().dataset.windows
    begins = windows["start"] - dm.store.offsets[windows["user"]]
    counted = short = ours = recbole = 0
    for begin, length, own_from in zip(begins, windows["length"], windows["own_from"]):
        position = begin + np.arange(own_from, length)  # input position of each counted target in the user's part
        mine = np.minimum(position - begin + 1, dm.max_len)
        theirs = np.minimum(position + 1, dm.max_len)
        counted += len(position)
        short += int((mine < theirs).sum())
        ours, recbole = ours + int(mine.sum()), recbole + int(theirs.sum())
    return {"windows": len(windows["user"]), "positions": int(windows["length"].sum()), "targets": counted,
            "short": short / counted, "mean": ours / counted, "recbole": recbole / counted}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml1m")
    parser.add_argument("--timestamp-dtype", default="float32", choices=("int64", "float32"))
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 400], help="train_max_len values (0: null)")
    args = parser.parse_args()
    base = None
    print(f"{args.data}, timestamp_dtype={args.timestamp_dtype}, max_len={args.max_len}")
    print("train_max_len  stride  windows  positions (x plain)  targets  short of RecBole  mean context  RecBole's")
    for window in args.windows:
        dm = SequenceDataModule(name=args.data, max_len=args.max_len, timestamp_dtype=args.timestamp_dtype,
                                train_max_len=window or None)  # fmt: skip
        dm.prepare_data()
        dm.setup("fit")
        s = context_stats(dm)
        base = base or s["positions"]
        print(f"{window or 'null':>13}  {dm.train_stride:>6}  {s['windows']:>7}  {s['positions']:>9} ({s['positions'] / base:.2f}x)"
              f"  {s['targets']:>7}  {s['short']:>15.1%}  {s['mean']:>12.1f}  {s['recbole']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
