"""SS4Rec's rating network on a cross-fitted I-AutoRec, on ML-100K's leave-last-out splits (or ML-1M's standard
one): every run it needs, in order, for each split k and seed s (``reports/ml100k/rating/README.md``, "SS4Rec on
I-AutoRec"):

1. the ranking encoder: ``experiment=ml100k_ss4rec`` (about 4 minutes of one core);
2. I-AutoRec on the split: ``model=autorec`` (2-3 minutes), the base for the held-out ratings and the baseline;
3. I-AutoRec on each of the five cross-fitting folds (10 minutes together);
4. ``experiment=ml100k_rating`` with its encoder, base and held-out base pointed at 1-3 (8-15 minutes).

``--data ml1m`` (split 0 only; ``reports/ml1m/rating/README.md``, "SS4Rec on I-AutoRec"): 1. ``experiment=ml1m_paper``
into ``reports/ml1m/runs/pretrain/ss4rec_known_s<s>`` (about an hour of one core); 2-3. ``model=autorec
model.batches=items`` at lr 3e-4 into ``autorec_items/<s>_autorec_s<s>`` and ``autorec_items_oof_s<s>/<f>_autorec_s<s>``
(10-20 minutes each); 4. ``experiment=ml1m_rating_autorec`` (10-20 minutes).

    python benchmarks/autorec_splits.py --splits 1 2 3 4 --seeds 0 1 2
    python benchmarks/autorec_splits.py --splits 0 --seeds 0 --dry-run     # print the commands only
    python benchmarks/autorec_splits.py --data ml1m --splits 0 --seeds 1

Each run goes into the folder the write-up's commands and ``benchmarks/pooled_splits.py`` read
(``reports/<data>/runs[/rating][/holdout_last<k>]/...``, k = 0 without ``holdout_last``). A run whose record says
``finished`` and whose best checkpoint is in its folder is skipped (a finished record without it, as git holds
them, is run again); one with a ``checkpoints/last.ckpt`` and no finished record resumes from it (the same
command with ``ckpt_path``), so the script can be stopped and started again. Each run gets ``threads=1``: two
instances over different splits share two cores. A run that fails stops the script with its exit code.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = Path("reports/ml100k/runs")
FOLDS = 5
AUTOREC = ["model=autorec", "task=rating", "trainer.max_epochs=300", "callbacks.early_stopping.patience=15"]
RESULT = "ss4rec_pretrained_frozen_on_autorec_oof_full_stage"
ML1M_RUNS = Path("reports/ml1m/runs")
ML1M_AUTOREC = ["data=ml1m", *AUTOREC, "model.batches=items", "optimizer.lr=0.0003"]
ML1M_RESULT = "ss4rec_pretrained_frozen_on_autorec_items_oof_full"
DATA = ("ml100k", "ml1m")


def plan(split: int, seed: int, data: str = "ml100k") -> Iterator[tuple[Path, list[str]]]:
    """(run folder, overrides without ``hydra.run.dir``) of every run split ``split`` and seed ``seed`` need."""
    if data == "ml1m":
        yield from plan_ml1m(seed)
        return
    ranking = RUNS / "default" if split == 0 else RUNS / f"holdout_last{split}" / "default"
    rating = RUNS / "rating" if split == 0 else RUNS / "rating" / f"holdout_last{split}"
    on_split = [f"seed={seed}", *([f"data.holdout_last={split}"] if split else [])]
    encoder = ranking / "ss4rec" / f"{seed}_ss4rec_s{seed}"
    full = rating / "autorec_best" / f"{seed}_autorec_s{seed}"
    folds = rating / f"autorec_oof_s{seed}"
    yield encoder, ["experiment=ml100k_ss4rec", *on_split, "trainer.max_epochs=200", "callbacks.early_stopping.patience=10"]
    yield full, [*AUTOREC, *on_split]
    for fold in range(FOLDS):
        yield folds / f"{fold}_autorec_s{seed}", [*AUTOREC, *on_split, f"data.holdout_folds={FOLDS}", f"data.holdout_fold={fold}"]
    yield rating / RESULT / f"s{seed}", ["experiment=ml100k_rating", *on_split, f"init_from={encoder}",
                                         f"model.rating_base='{folds}/*_autorec_s{seed}'",
                                         f"model.rating_base_heldout={full}"]  # fmt: skip


def plan_ml1m(seed: int) -> Iterator[tuple[Path, list[str]]]:
    """``plan`` on ML-1M's standard split: the folders ``experiment=ml1m_rating_autorec`` reads."""
    rating = ML1M_RUNS / "rating"
    yield ML1M_RUNS / "pretrain" / f"ss4rec_known_s{seed}", ["experiment=ml1m_paper", f"seed={seed}"]
    yield rating / "autorec_items" / f"{seed}_autorec_s{seed}", [*ML1M_AUTOREC, f"seed={seed}"]
    for fold in range(FOLDS):
        yield (rating / f"autorec_items_oof_s{seed}" / f"{fold}_autorec_s{seed}",
               [*ML1M_AUTOREC, f"seed={seed}", f"data.holdout_folds={FOLDS}", f"data.holdout_fold={fold}"])  # fmt: skip
    yield rating / ML1M_RESULT / f"s{seed}", ["experiment=ml1m_rating_autorec", f"seed={seed}"]


def done(folder: Path) -> bool:
    """Whether the run's record says ``finished`` and its best checkpoint is here (a later run reads it; checkpoints
    are not in git, so a record alone does not count)."""
    record = REPO / folder / "metrics.json"
    if not record.is_file():
        return False
    record = json.loads(record.read_text())
    best = record.get("checkpoint")
    return record.get("status") == "finished" and bool(best) and (REPO / folder / "checkpoints" / Path(best).name).is_file()


def command(folder: Path, overrides: list[str]) -> list[str] | None:
    """``train.py``'s arguments for the run, resumed from its ``last.ckpt`` when one is there; None when finished."""
    if done(folder):
        return None
    last = folder / "checkpoints" / "last.ckpt"
    resume = [f"ckpt_path={last}"] if (REPO / last).is_file() else []
    return [*overrides, "threads=1", f"hydra.run.dir={folder}", *resume]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, nargs="+", required=True, help="the k of data.holdout_last (0: the standard split)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--data", choices=DATA, default="ml100k", help="ml1m: its standard split only (--splits 0)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands left to run, run nothing")
    args = parser.parse_args(argv)
    if bad := [k for k in args.splits if k < 0]:
        parser.error(f"--splits: {bad} are not leave-last-out splits (expected k >= 0)")
    if args.data == "ml1m" and args.splits != [0]:
        parser.error(f"--data ml1m: only the standard split (--splits 0) is planned, got --splits {args.splits}")
    for seed in args.seeds:
        for split in args.splits:
            for folder, overrides in plan(split, seed, args.data):
                argv_ = command(folder, overrides)
                if argv_ is None:
                    print(f"done: {folder}", flush=True)
                    continue
                print(shlex.join(["python", "train.py", *argv_]), flush=True)
                if not args.dry_run and (rc := subprocess.run([sys.executable, "train.py", *argv_], cwd=REPO).returncode):
                    print(f"autorec_splits: the run into {folder} exited with {rc}; stopped", file=sys.stderr)
                    return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
