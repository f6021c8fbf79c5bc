"""ML-25M at full size on this machine: preparation, training throughput, evaluation, memory, projected epochs.

Runs ``experiment=<--experiment> data=synthetic_ml25m`` (default ``ml25m_sampled``: SS4Rec, hidden 64, 2 layers,
256 windows of up to 200 targets, sampled softmax over 256 negatives) with ``--scale`` of ML-25M's users and
ratings (the catalogue stays 59,047 items, so scoring costs what it costs on ML-25M):

1. preparation: generate the ratings, sort, 5-core, split, store (``SequenceDataModule.setup``), time and
   memory (the growth of the process's peak resident set);
2. training: ``--steps`` optimiser steps on real batches; targets/s (real, non-padding targets);
3. evaluation: ``--eval-users`` validation users: the encoder over their last 200 events, then full ranking
   over every item (``rank_targets``, as the config masks seen items or not); users/s of each part. Below
   full scale the 5-core leaves fewer than 59,047 items; ranking users/s is then scaled to 59,047 items;
4. projections: one epoch = every training target once; the evaluation pass = every user once.

GPU projection from the FLOP count (forward + backward ~ 3 x forward; 2 FLOPs per multiply-add)::

    MACs per target ~ W + S + K x H
      W: weights used once per position (every Linear, conv and S5 B/C of the encoder: its parameters
         without the embeddings and the rating head)
      S: the scans, per layer d_inner x mamba_d_state x 3 (Mamba: decay, update, readout)
         + d_state x 4 x 2 (S5, complex: decay and update)
      K x H: scoring K items (1 + 256 negatives for sampled softmax, all 59,047 for full CE) at hidden H
    FLOPs per epoch = 6 x MACs per target x targets per epoch
    GPU time >= FLOPs / peak; with --gpu-tflops (default 989: H100/H200 dense bf16) and --gpu-utilisation
    (default 0.01: a hidden-64 model is memory- and launch-bound, so about 1% of peak, what this CPU reaches
    of its own, is the assumption until `make gpu-check` measures a step).

Nothing here has run on a GPU: the GPU line is arithmetic, not a measurement.

    python benchmarks/scale.py [--scale 1.0] [--steps 3] [--eval-users 2048] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ss4rec.batch import eval_targets
from ss4rec.evaluation import rank_targets
from ss4rec.paths import CONFIG_DIR

ML25M = {"n_rows": 25_000_095, "n_users": 162_541, "n_items": 59_047}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def compose(experiment: str, scale: float, data_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    rows, users = int(ML25M["n_rows"] * scale), int(ML25M["n_users"] * scale)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=[
            f"experiment={experiment}", "data=synthetic_ml25m", f"data.source.n_rows={rows}",
            f"data.source.n_users={users}", "data.num_workers=0", "data.pin_memory=false", "trainer=cpu",
            f"data.data_dir={data_dir}", "logger=none",
        ])  # fmt: skip


def macs_per_target(model, n_scored: int, cfg) -> tuple[int, int, int]:
    """(W, S, K x H) of the docstring, for one target."""
    skip = ("item_embedding", "rating_head", "rating_embedding")
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1 and not n.startswith(skip))
    m = cfg.model
    d_inner = m.expand * m.hidden
    scans = m.n_layers * (d_inner * m.mamba_d_state * 3 + m.d_state * 4 * 2)
    return weights, scans, n_scored * m.hidden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of ML-25M's users and ratings")
    parser.add_argument("--experiment", default="ml25m_sampled")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--eval-users", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-tflops", type=float, default=989.0)
    parser.add_argument("--gpu-utilisation", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ss4rec.training import build_datamodule, build_module

    data_dir = Path(tempfile.mkdtemp(prefix="ss4rec-scale-"))
    try:
        cfg = compose(args.experiment, args.scale, data_dir)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); experiment={args.experiment} "
              f"data=synthetic_ml25m at scale {args.scale} ({int(ML25M['n_rows'] * args.scale):,} ratings, "
              f"{int(ML25M['n_users'] * args.scale):,} users, {ML25M['n_items']:,} items)")
        base = peak_rss_gb()
        started = time.perf_counter()
        datamodule = build_datamodule(cfg)
        prep_s = time.perf_counter() - started
        store = datamodule.store
        prep_peak = peak_rss_gb()
        store_gb = sum(a.nbytes for a in (store.items, store.times, store.ratings, store.offsets)) / 2**30
        print(f"\n1. preparation: {prep_s:.1f} s, peak RSS {prep_peak:.2f} GB (+{prep_peak - base:.2f} GB); "
              f"after 5-core: {store.n_interactions:,} ratings, {store.n_users:,} users, {store.n_items:,} items; "
              f"store arrays {store_gb:.2f} GB (memory-mapped from the cache); RSS now {rss_gb():.2f} GB")

        module = build_module(cfg, datamodule)
        model, objective = module.model, module.objective
        optimizer = module.configure_optimizers()
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        loader = iter(datamodule.train_dataloader())
        n_batches = len(datamodule.train_dataloader())
        model.train()

        def train_step(batch) -> int:
            query, items, ratings = model.train_queries(batch)
            loss = objective(model, query, items, ratings)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return int(items.shape[0])

        train_step(next(loader))  # warm-up
        targets, started = 0, time.perf_counter()
        for _ in range(args.steps):
            targets += train_step(next(loader))
        train_s = time.perf_counter() - started
        tps = targets / train_s
        # leave-one-out: the last 2 of each user are validation/test; the first training item has no predecessor
        epoch_targets = int(store.n_interactions - 3 * store.n_users)
        print(f"2. training: {args.steps} steps after a warm-up, {targets:,} targets in {train_s:.1f} s = "
              f"{tps:,.0f} targets/s ({n_batches:,} batches of {datamodule.train_batch_size} windows per epoch); "
              f"peak RSS {peak_rss_gb():.2f} GB")

        model.eval()
        users, encode_s, rank_s = 0, 0.0, 0.0
        chunk = int(cfg.evaluation.chunk_size)
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                started = time.perf_counter()
                query = model.eval_queries(batch)  # (B, H): the encoder over each user's last max_len events
                encode_s += time.perf_counter() - started
                started = time.perf_counter()
                seen = batch["seen"] if cfg.evaluation.mask_seen else None
                rank_targets(lambda ids, q=query: model.score(q, ids), eval_targets(batch)[0], model.n_items,
                             seen=seen, chunk_size=chunk)  # fmt: skip
                rank_s += time.perf_counter() - started
                users += int(batch["lengths"].shape[0])
                if users >= args.eval_users:
                    break
        rank_ups = users / rank_s * model.n_items / ML25M["n_items"]  # scoring is linear in the catalogue
        eval_ups = 1 / (encode_s / users + 1 / rank_ups)
        scaled = f" (= {rank_ups:,.0f} users/s at 59,047 items)" if model.n_items != ML25M["n_items"] else ""
        print(f"3. evaluation: {users:,} users, encoder {users / encode_s:,.0f} users/s; full ranking over "
              f"{model.n_items:,} items {users / rank_s:,.0f} users/s{scaled}; "
              f"both: {eval_ups:,.0f} users/s (batches of {cfg.data.eval_batch_size} users, {chunk} items per "
              f"chunk); peak RSS {peak_rss_gb():.2f} GB")

        loss_cfg = cfg.task.get("ranking_loss")
        negatives = int(loss_cfg.get("n_negatives", 0)) if loss_cfg else 0
        full = loss_cfg is not None and loss_cfg["_target_"].endswith("CrossEntropy")
        n_scored = ML25M["n_items"] if full else (1 + negatives if loss_cfg else 0)
        w, s, kh = macs_per_target(model, n_scored, cfg)
        flops_per_target = 6 * (w + s + kh)
        full_targets = epoch_targets / args.scale  # the full ML-25M shape
        flops = flops_per_target * full_targets
        gpu_rate = args.gpu_tflops * 1e12
        eval_flops = 2 * ML25M["n_users"] * ML25M["n_items"] * model.hidden  # one pass of scoring matmuls
        print(f"4. projections for the full ML-25M shape ({full_targets:,.0f} training targets, "
              f"{ML25M['n_users']:,} users, {ML25M['n_items']:,} items):")
        print(f"   here ({torch.get_num_threads()} thread(s)): epoch {full_targets / tps / 3600:.1f} h, "
              f"evaluation pass {ML25M['n_users'] / eval_ups / 60:.0f} min "
              f"(this CPU reaches {tps * flops_per_target / 1e9:.2f} GFLOP/s in training)")
        print(f"   FLOPs per target = 6 x (W {w:,} + S {s:,} + KxH {kh:,}) = {flops_per_target:,}; "
              f"per epoch {flops:.3g}; evaluation scoring {eval_flops:.3g} per pass")
        print(f"   one GPU at {args.gpu_tflops:.0f} TFLOP/s: epoch >= {flops / gpu_rate:.2f} s at peak, "
              f"{flops / gpu_rate / args.gpu_utilisation:.0f} s at {args.gpu_utilisation:.0%} of peak; scoring pass "
              f">= {eval_flops / gpu_rate * 1e3:.1f} ms at peak. Arithmetic, not measured (nothing has run on a "
              f"GPU): a hidden-64 model is bound by memory traffic and kernel launches, not FLOPs; "
              f"{n_batches / args.scale:,.0f} steps per epoch x the step time `make gpu-check` measures is the "
              f"better estimate")
        print(f"\npeak RSS of the whole run: {peak_rss_gb():.2f} GB (target < 8 GB)")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
