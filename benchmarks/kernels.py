"""The compiled CPU scan against the PyTorch path it replaces, measured side by side in one run.

Cases (SS4Rec's shapes: hidden 64, d_inner 128, d_state 32, length 200, batch 32, ML-100K's 1,349 items):

* ``scan``: selective scan forward + backward at B=32, L=200, D=128, N=32;
* ``step``: one whole SS4Rec training step (encode, full cross-entropy, backward, Adam);
* ``eval``: the evaluation forward over ML-100K's 943 validation users (encode + score every item +
  exact ranks, as validation runs it).

Settings: the PyTorch path on 1 thread with glibc's default malloc settings (the reference: what every run used
before the kernel), the compiled kernel on 1 thread, and on 2 threads, both with freed memory kept for reuse as
``train()`` now runs (``ss4rec.allocator``: no page faults for the step's large tensors). Each measurement runs in a fresh process (``SS4REC_KERNELS=off`` for
the PyTorch path), and the settings alternate over ``--rounds`` rounds, so slow phases of a shared CPU hit
all settings alike; a ratio is reference time / our time within one round, reported as the median and the
range over rounds.

    python benchmarks/kernels.py [--cases scan step eval] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

BATCH, LENGTH, D_INNER, D_STATE, ITEMS = 32, 200, 128, 32, 1349
# (label, SS4REC_KERNELS, threads, SS4REC_MALLOC): the reference is the PyTorch path as runs used it before the
# kernel (glibc's default malloc settings); the compiled settings run as train() now does (ss4rec.allocator)
SETTINGS = [("pytorch, 1 thread", "off", 1, "default"), ("compiled, 1 thread", "require", 1, "keep"),
            ("compiled, 2 threads", "require", 2, "keep")]  # fmt: skip


def scan_case(reps: int) -> list[float]:
    from ss4rec.models.selective_scan import selective_scan

    g = torch.Generator().manual_seed(0)
    x = lambda *s: torch.randn(*s, generator=g).requires_grad_()  # noqa: E731
    args = [x(BATCH, D_INNER, LENGTH), x(BATCH, D_INNER, LENGTH),
            (-torch.rand(D_INNER, D_STATE, generator=g) * 4).requires_grad_(), x(BATCH, D_STATE, LENGTH),
            x(BATCH, D_STATE, LENGTH), x(D_INNER), x(BATCH, D_INNER, LENGTH), x(D_INNER)]  # fmt: skip

    def run():
        selective_scan(*args, delta_softplus=True).square().mean().backward()

    return timed(run, reps)


def step_case(reps: int) -> list[float]:
    sys.path.insert(0, os.path.dirname(__file__))
    from throughput import make_batch

    from ss4rec.models.ss4rec import SS4Rec
    from ss4rec.objectives import CrossEntropy, Objective

    torch.manual_seed(0)
    model = SS4Rec(n_items=ITEMS, n_users=1, max_len=LENGTH).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = Objective(ranking=CrossEntropy())
    batch = make_batch(BATCH, LENGTH, ITEMS)

    def run():
        query, items, ratings = model.train_queries(batch)
        loss = objective(model, query, items, ratings)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(run, reps)


def eval_case(reps: int) -> list[float]:
    from ss4rec.batch import eval_targets
    from ss4rec.data.datamodule import SequenceDataModule
    from ss4rec.evaluation import rank_targets
    from ss4rec.models.ss4rec import SS4Rec

    dm = SequenceDataModule(name="ml100k", source="bundled", batch_size=BATCH)
    dm.prepare_data()
    dm.setup()
    batches = list(dm.val_dataloader())
    torch.manual_seed(0)
    model = SS4Rec(n_items=dm.n_items, n_users=dm.n_users, max_len=dm.max_len).eval()

    @torch.no_grad()
    def run():
        for batch in batches:
            query = model.eval_queries(batch)
            targets = eval_targets(batch)[0]
            rank_targets(lambda ids, q=query: model.score(q, ids), targets, model.n_items)

    return timed(run, reps)


CASES = {"scan": scan_case, "step": step_case, "eval": eval_case}


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up (and the kernel build / load)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure(case: str, mode: str, threads: int, malloc: str, reps: int) -> float:
    """Median seconds of ``reps`` runs of ``case`` in a fresh process."""
    env = {**os.environ, "SS4REC_KERNELS": mode, "SS4REC_MALLOC": malloc,
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}  # fmt: skip
    cmd = [sys.executable, __file__, "--run", case, "--threads", str(threads), "--reps", str(reps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{case} ({mode}, {threads} threads) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (spread across rounds)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="one round, one timed run (smoke test)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        torch.set_num_threads(args.threads)
        from ss4rec.allocator import keep_freed_memory

        keep_freed_memory()  # as train() does; a no-op under SS4REC_MALLOC=default
        times = CASES[args.run](args.reps)
        print(json.dumps({"median_s": statistics.median(times)}))
        return
    rounds, reps = (1, 1) if args.quick else (args.rounds, args.reps)
    print(f"torch {torch.__version__}; batch {BATCH}, length {LENGTH}, d_inner {D_INNER}, d_state {D_STATE}; "
          f"{rounds} rounds x median of {reps}")  # fmt: skip
    print(f"{'case':6} {'setting':22} {'ms (median, min-max over rounds)':>34} {'vs pytorch 1 thread':>24}")
    for case in args.cases:
        per_round = {label: [] for label, *_ in SETTINGS}
        for _ in range(rounds):
            for label, mode, threads, malloc in SETTINGS:
                per_round[label].append(measure(case, mode, threads, malloc, reps))
        reference = per_round[SETTINGS[0][0]]
        for label, *_ in SETTINGS:
            ms = [1000 * t for t in per_round[label]]
            ratios = [r / t for r, t in zip(reference, per_round[label])]
            spread = f"{statistics.median(ms):8.1f} ({min(ms):.1f}-{max(ms):.1f})"
            ratio = f"x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"{case:6} {label:22} {spread:>34} {ratio:>24}", flush=True)


if __name__ == "__main__":
    main()
