"""Batch export: top-k items for every user of a run, with Lightning ``predict`` and a prediction writer.

    python -m ss4rec.recommend RUN_DIR_OR_CKPT --k 100 --out recs.parquet [--at UNIX_S] [--no-exclude-seen]
    python -m ss4rec.recommend RUN_A RUN_B [...] --k 100 --out recs.parquet   # rating runs of one split, averaged

Each user's input is their most recent ``max_len`` events (the run's ``data.max_len``: what evaluation reads,
and ``--history window`` serving), with the request time ``--at`` (default: now) as the time of the next
interaction. Rows of the output: ``user_id, rank (1..k), item_id, score`` plus ``rating`` when the model has
a rating head and ``title`` when the data has titles. Rating-only models (``svdpp``, ``timesvdpp``, ``autorec``) rank
by predicted rating, with every item the user rated as N(u) and, for ``timesvdpp``, ``--at`` as the rating's time
(a time far past the data extrapolates its drift term: pass an ``--at`` near the data's end). Several runs (an
ensemble of rating runs on one split, ``ss4rec.serve.ensemble``) rank by the plain mean of their clamped
predicted ratings, which is also the row's ``score`` and ``rating``; each reads its own ``max_len`` last events.
Every process (GPU, DDP) writes its batches as part files; process 0 joins them into ``--out`` at the end.

Bad input (a path that is not a run folder or checkpoint, a damaged or foreign checkpoint, ``--k`` outside
1..catalogue, an ``--out`` that is not a writable ``.parquet`` path, a negative ``--at``, ...) exits with
status 2 and ``error: <message>`` (``ss4rec.errors``); the flags are checked before anything is loaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ss4rec.data.collate import segment_rows
from ss4rec.data.prepare import prepare
from ss4rec.data.preprocess import Options
from ss4rec.errors import ConfigError, reported_errors
from ss4rec.serve.checks import check_recommend_arguments
from ss4rec.serve.ensemble import RatingEnsemble, load_members


class LatestWindows(Dataset):
    """Index i -> user ``order[i]``'s last ``max_len`` events (items, times, ratings) and every item they have
    seen. The default order is by window length, longest first: a batch then holds windows of similar
    lengths and pads little (user index order pads most batches to ``max_len``, about twice the work on
    ML-1M); the output is sorted by user at the end, so the order changes nothing else."""

    def __init__(self, store, max_len: int, by_length: bool = True):
        self.store, self.max_len = store, max_len
        windows = np.minimum(np.diff(np.asarray(store.offsets)), max_len)
        self.order = np.argsort(-windows, kind="stable") if by_length else np.arange(store.n_users)

    def __len__(self) -> int:
        return self.store.n_users

    def __getitem__(self, index: int) -> dict:
        user = int(self.order[index])
        start, end = int(self.store.offsets[user]), int(self.store.offsets[user + 1])
        first = max(start, end - self.max_len)
        return {
            "user": user,
            "items": np.asarray(self.store.items[first:end], dtype=np.int64),
            "times": np.asarray(self.store.times[first:end], dtype=np.int64),
            "ratings": np.asarray(self.store.ratings[first:end], dtype=np.float32),
            "seen": np.asarray(self.store.items[start:end], dtype=np.int64),
        }


def collate(rows: list[dict], at: int) -> dict[str, torch.Tensor]:
    """A right-padded ``sequence`` batch whose next time after each row's last event is ``at``."""
    lengths = np.array([len(r["items"]) for r in rows])
    index, mask = segment_rows(np.zeros(len(rows), dtype=np.int64), lengths)

    def pad(key, dtype):
        out = np.zeros(index.shape, dtype=dtype)
        out[mask] = np.concatenate([r[key] for r in rows])
        return out

    times = pad("times", np.int64)
    next_times = np.zeros_like(times)
    next_times[:, :-1] = times[:, 1:]
    next_times[np.arange(len(rows)), lengths - 1] = at
    seen_len = np.array([len(r["seen"]) for r in rows])
    _, seen_mask = segment_rows(np.zeros(len(rows), dtype=np.int64), seen_len)
    seen = np.zeros(seen_mask.shape, dtype=np.int64)
    seen[seen_mask] = np.concatenate([r["seen"] for r in rows])
    return {
        "users": torch.tensor([r["user"] for r in rows]),
        "items": torch.from_numpy(pad("items", np.int64)),
        "times": torch.from_numpy(times),
        "ratings": torch.from_numpy(pad("ratings", np.float32)),
        "lengths": torch.from_numpy(lengths.astype(np.int64)),
        "target_times": torch.from_numpy(np.where(mask, next_times, 0)),
        "seen": torch.from_numpy(seen),
        "train_lengths": torch.from_numpy(seen_len.astype(np.int64)),  # SVD++'s N(u): the whole history
    }


class TopK(L.LightningModule):
    """``predict_step``: the top ``k`` items of each user of a batch, (B, k) indices, scores and ratings. A
    :class:`~ss4rec.serve.ensemble.RatingEnsemble` ranks by its mean rating, the row's score and rating."""

    def __init__(self, model, k: int, exclude_seen: bool, rating_range=None, ranks: bool = True):
        super().__init__()
        self.model, self.k, self.exclude_seen = model, k, exclude_seen
        self.rating_range, self.ranks = rating_range, ranks

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        ensemble = isinstance(self.model, RatingEnsemble)
        if ensemble:
            scores = self.model(batch)  # (B, N + 1), already clamped
        else:
            query = self.model.eval_queries(batch)  # (B, D)
            # a rating-only model ranks by predicted rating
            scores = self.model.score(query).float() if self.ranks else self.model.rate_every_item(query)
        scores[:, 0] = float("-inf")  # padding
        if self.exclude_seen:
            scores.scatter_(1, batch["seen"], float("-inf"))
        top = torch.topk(scores, self.k, dim=1)
        out = {"users": batch["users"], "items": top.indices, "scores": top.values}
        if ensemble:
            out["ratings"] = top.values
        elif self.rating_range is not None:
            ratings = self.model.predict_rating(query[:, None].expand(-1, self.k, -1), top.indices)
            out["ratings"] = ratings.clamp(*self.rating_range)
        return out


class ParquetWriter(BasePredictionWriter):
    """Writes each predicted batch as ``<parts>/rank<r>-<batch>.parquet`` (long format, original ids); a single
    process keeps its batches in memory instead (``frames``), and ``export`` writes the file once."""

    def __init__(self, parts: Path, user_ids: np.ndarray, item_ids: np.ndarray, titles: np.ndarray | None):
        super().__init__(write_interval="batch")
        self.parts, self.user_ids, self.item_ids = Path(parts), user_ids, item_ids
        # titles as one string column, gathered per batch (a NumPy str array costs a conversion per row)
        self.titles = None if titles is None else pl.Series("title", titles, dtype=pl.String)
        self.frames: list[pl.DataFrame] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        users = prediction["users"].cpu().numpy()
        items = prediction["items"].cpu().numpy()  # (B, k)
        B, k = items.shape
        columns = {
            "user_id": np.repeat(self.user_ids[users], k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), B),
            "item_id": self.item_ids[items.reshape(-1)],
            "score": prediction["scores"].float().cpu().numpy().reshape(-1),
        }
        if "ratings" in prediction:
            columns["rating"] = prediction["ratings"].float().cpu().numpy().reshape(-1)
        keep = np.isfinite(columns["score"])  # fewer than k unseen items: no -inf filler rows
        frame = pl.DataFrame({name: values[keep] for name, values in columns.items()})
        if self.titles is not None:
            frame = frame.with_columns(self.titles.gather(items.reshape(-1)[keep]))
        if trainer.world_size == 1:
            self.frames.append(frame)
        else:
            frame.write_parquet(self.parts / f"rank{trainer.global_rank}-{batch_idx:06d}.parquet")


def export(
    path: str | Path | list[str | Path],
    out: str | Path,
    k: int = 100,
    exclude_seen: bool = True,
    at: int | None = None,
    batch_size: int = 512,
    trainer_kwargs: dict | None = None,
) -> Path:
    """Top-``k`` of every user of a run into the parquet file ``out``; returns its path. A list of several runs
    (rating runs of one split) exports the mean of their predicted ratings."""
    members = load_members([path] if isinstance(path, str | Path) else list(path))
    model, data = members[0].model, members[0].config["data"]
    store, _, _ = prepare(data["name"], data.get("source"), Options.of_run(data), data.get("data_dir"))
    if not 1 <= k <= store.n_items:
        raise ConfigError([f"--k={k}: expected an integer in 1..{store.n_items} (the catalogue size)"])
    objective = members[0].objective
    rating_range = members[0].rating_range if objective.uses_rating else None
    if len(members) > 1:
        model = RatingEnsemble([m.model for m in members], [m.max_len for m in members], members[0].rating_range)
    at = int(time.time()) if at is None else int(at)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    titles = None if store.item_titles is None else np.asarray(store.item_titles).astype(str)
    writer = ParquetWriter(parts, np.asarray(store.user_map), np.asarray(store.item_map), titles)
    loader = DataLoader(LatestWindows(store, max(m.max_len for m in members)), batch_size=batch_size,
                        collate_fn=partial(collate, at=at))  # fmt: skip
    settings = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
                "accelerator": "auto", "devices": 1} | (trainer_kwargs or {})  # fmt: skip
    trainer = L.Trainer(callbacks=[writer], **settings)
    module = TopK(model, k, exclude_seen, rating_range, ranks=bool(objective.uses_ranking))
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        # under DDP the distributed sampler pads the last shard with repeated users: keep one copy each
        frames = writer.frames if trainer.world_size == 1 else [pl.read_parquet(p) for p in sorted(parts.glob("*.parquet"))]
        frame = pl.concat(frames)
        frame.unique(["user_id", "rank"], keep="first", maintain_order=True).sort(["user_id", "rank"]).write_parquet(out)
        shutil.rmtree(parts, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ss4rec.recommend", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="+", help="a run folder (outputs/runs/...) or a checkpoint inside one; several "
                        "rating runs of one split: the mean of their predicted ratings")  # fmt: skip
    parser.add_argument("--k", type=int, default=100, help="items per user")
    parser.add_argument("--out", default="recs.parquet", help="output parquet file")
    parser.add_argument("--at", type=int, default=None, help="request time, unix seconds (default: now)")
    parser.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch-size", type=int, default=512, help="users per batch")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="1", help="Lightning devices (e.g. 2 with --strategy ddp)")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    with reported_errors():
        check_recommend_arguments(args)
        run(args)
    return 0


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    started = time.perf_counter()
    out = export(args.path, args.out, args.k, args.exclude_seen, args.at, args.batch_size,
                 {"accelerator": args.accelerator, "devices": devices, "strategy": args.strategy})  # fmt: skip
    if out.is_file():
        rows = pl.scan_parquet(out).select(pl.len()).collect().item()
        print(f"wrote {rows} rows to {out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
