"""Serving latency and throughput of SS4Rec (default sizes) on one thread.

* ``recommend`` from a cached state (top-10, seen items excluded): p50 / p99 over random users;
* ``ingest`` of an in-order event (log append, journal line, one model step): p50 / p99;
* for a ``model.rating_base`` run (``--run``): new users' rated events ingested, each followed by ``rate``, served as
  the base's average training user and folded into the base (a refit, then the state rebuilt), p50 / p99;
* incremental update against full recompute at length 200: one serving step (``core.step``; for the
  compiled SS4Rec step also its PyTorch path) and one ``model.step`` on a user's state vs
  ``encode_sequence`` over the 200 events (batch 1), the ratios measured in the same run, repeated;
* a bounded load test of the real HTTP server (``python -m ss4rec.serve`` on 127.0.0.1, its own process,
  one torch thread): a fixed number of ``POST /recommend`` from concurrent clients with a time limit,
  sustained requests/s and p50 / p99 latency (the client shares the 2-core CPU with the server);
* batch export of the top-100 for every user (``python -m ss4rec.recommend``'s ``export``).

Without ``--run`` the model is untrained (latency does not depend on the weights): the script writes a run
folder with a freshly initialised checkpoint for the chosen data. ``--run RUN_DIR`` measures a trained run
and also reports how test metrics change for users longer than ``max_len`` when the served state carries
their full history instead of the last ``max_len`` events.

    python benchmarks/serve.py [--data ml1m] [--run RUN_DIR] [--requests 2000] [--quick] [OVERRIDE ...]

Overrides (``model.ffn=true``, ``model.hidden=128``) shape the untrained model, e.g. to time the compiled
step on a variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):7.3f} ms   p99 {np.percentile(ms, 99):7.3f} ms   (n={len(ms)})"


def untrained_run(data: str, folder: Path, overrides: list[str]) -> Path:
    """A run folder (metrics.json + checkpoint) of a freshly initialised SS4Rec, joint task, on ``data``, with
    ``overrides`` (Hydra's syntax) applied."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from ss4rec.paths import CONFIG_DIR
    from ss4rec.training import build_datamodule, build_module, resolved

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", "model=ss4rec", "task=joint", "logger=none", *overrides],
                      return_hydra_config=True)  # fmt: skip
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    module = build_module(cfg, build_datamodule(cfg))
    checkpoint = folder / "checkpoints" / "best-epoch000.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "epoch": 0,
                "global_step": 0}, checkpoint)  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({"config": resolved(cfg), "checkpoint": str(checkpoint)}))
    return folder


def time_calls(fn, args_list, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock ms of each call; ``cpu`` (when given) receives this thread's CPU ms of each call, which
    leaves out the time other processes held the CPU (on a shared machine the wall-clock tail is mostly that)."""
    out = []
    for args in args_list:
        c0, t0 = time.thread_time(), time.perf_counter()
        fn(*args)
        out.append(1000 * (time.perf_counter() - t0))
        if cpu is not None:
            cpu.append(1000 * (time.thread_time() - c0))
    return out


def core_latency(core, n_requests: int, rng: np.random.Generator) -> None:
    users = [int(u) for u in rng.choice(core.log.user_ids(), size=min(100, len(core.log)), replace=False)]
    t0 = time.perf_counter()
    core.warm(users)
    print(f"warm {len(users)} users (full histories, batched steps): {time.perf_counter() - t0:.1f} s")
    at = {u: core.log.last_event(u).time + 3600 for u in users}
    picks = [int(u) for u in rng.choice(users, n_requests)]
    for u in picks[:50]:  # warm-up
        core.recommend(u, 10, True, at[u])
    cpu: list[float] = []
    ms = time_calls(lambda u: core.recommend(u, 10, True, at[u]), [(u,) for u in picks], cpu)
    print(f"recommend, cached state, top-10 of {core.catalogue.n_items}: {percentiles(ms)}")
    print(f"  same calls, this thread's CPU time only:     {percentiles(cpu)}")
    items = core.catalogue.item_ids[1:]
    clock = {u: core.log.last_event(u).time for u in users}

    def ingest(u):
        clock[u] += 60
        core.ingest(u, int(items[rng.integers(len(items))]), clock[u], 4.0)

    cpu = []
    ms = time_calls(ingest, [(u,) for u in picks], cpu)
    print(f"ingest, in order (log + journal line + one step):  {percentiles(ms)}")
    print(f"  same calls, this thread's CPU time only:     {percentiles(cpu)}")


def new_user_latency(core, rng: np.random.Generator, users: int = 40, events: int = 25, long: int = 400) -> None:
    """A ``model.rating_base`` run: new users' rated events ingested one by one, each followed by ``rate`` of one item
    (with ``fold_in`` the row refitted and the state rebuilt), with ``--new-users average_user`` and ``fold_in``, on an
    empty log; p50 / p99 of ingest + rate over histories of 1 to ``events`` events, and of one user's ``long`` events."""
    from ss4rec.serve.core import ServeOptions, ServingCore
    from ss4rec.serve.interactions import InteractionLog

    items = core.catalogue.item_ids[1:]
    for mode in ("average_user", "fold_in"):
        log = InteractionLog(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), [0], [])
        served = ServingCore(core.model, core.catalogue, log, ServeOptions(**{**core.options.__dict__, "new_users": mode}))
        clock = [10**9]

        def ingest_and_rate(user, served=served, clock=clock):
            clock[0] += 60
            served.ingest(user, int(items[rng.integers(len(items))]), clock[0], float(rng.integers(1, 6)))
            served.rate(user, [int(items[0])], at=clock[0] + 1)

        ms = time_calls(ingest_and_rate, [(10**8 + u,) for u in range(users) for _ in range(events)])
        print(f"new user ({mode}), ingest of a rated event + rate, histories 1-{events}: {percentiles(ms)}")
        ms = time_calls(ingest_and_rate, [(10**9,)] * long)
        refits = " (a refit at every 5% more ratings after 20)" if mode == "fold_in" else ""
        print(f"  one new user ({mode}), ingest + rate, histories 1-{long}{refits}: {percentiles(ms)}, mean {np.mean(ms):.3f} ms")


def step_vs_recompute(core, n_items: int, length: int, rounds: int, reps: int) -> None:
    """The serving step (``core.step``: ``model.frozen_step()``, compiled for a float32 SS4Rec; then also its
    PyTorch path) and ``model.step`` against one full recompute, each ratio from medians measured in the same
    round."""
    model = core.model
    g = torch.Generator().manual_seed(0)
    times = 9 * 10**8 + torch.cumsum(torch.randint(0, 2, (1, length + 1), generator=g) * 600, 1)
    batch = {"items": torch.randint(1, n_items + 1, (1, length)), "times": times[:, :-1],
             "ratings": torch.full((1, length), 4.0), "lengths": torch.tensor([length]),
             "target_times": times[:, 1:]}  # fmt: skip
    from ss4rec.models.stepping import step_through

    prefix = {k: v[:, :-1] if v.dim() == 2 else v - 1 for k, v in batch.items()}
    users = torch.zeros(1, dtype=torch.long)  # user index 0: a rating base's residual inputs read it
    batch["users"] = prefix["users"] = users
    with torch.no_grad():
        _, state = step_through(model, prefix)
        event = {"items": batch["items"][:, -1], "ratings": batch["ratings"][:, -1], "times": batch["times"][:, -1],
                 "next_times": batch["target_times"][:, -1], "users": users}  # fmt: skip
        kinds = {"serving step (core.step)": core.step, "model.step": model.step}
        if getattr(core.step, "compiled", False):  # SS4Rec's float32 kernel: its PyTorch path beside it
            from ss4rec.models.ss4rec_step import FrozenStep

            kinds["same, PyTorch path"] = FrozenStep(model, compiled=False)
        ratios, steps, fulls = {k: [] for k in kinds}, {k: [] for k in kinds}, []
        for _ in range(rounds):
            full_ms = statistics.median(time_calls(lambda: model.encode_sequence(batch), [()] * max(3, reps // 20)))
            fulls.append(full_ms)
            for name, step in kinds.items():
                step_ms = statistics.median(time_calls(lambda step=step: step(state, event), [()] * reps))
                steps[name].append(step_ms), ratios[name].append(full_ms / step_ms)
    print(f"length {length}: full recompute {statistics.median(fulls):.2f} ms")
    for name in kinds:
        r = ratios[name]
        print(f"  {name:<25} {statistics.median(steps[name]):.3f} ms -> {statistics.median(r):.0f}x faster "
              f"(min {min(r):.0f}x, max {max(r):.0f}x over {rounds} rounds)")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Connection:
    """A minimal HTTP/1.1 keep-alive client (asyncio streams): far less client CPU than a full client
    library, which matters when client and server share two cores."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\n\r\n").encode()  # fmt: skip
        self.writer.write(head + data)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


async def load_test(port: int, users: list[int], at: dict, n: int, concurrency: int, limit_s: float):
    latencies: list[float] = []
    errors = 0
    queue = iter(range(n))
    deadline = float("inf")

    async def worker(connection):
        nonlocal errors
        for i in queue:
            if time.perf_counter() > deadline:
                return
            user = users[i % len(users)]
            t0 = time.perf_counter()
            status, _ = await connection.post("/recommend", {"user_id": user, "k": 10, "at": at[user]})
            latencies.append(1000 * (time.perf_counter() - t0))
            errors += status != 200

    connections = [await Connection(port).open() for _ in range(concurrency)]
    for u in users:  # build every queried user's state first (cache misses are not what we time)
        await connections[0].post("/recommend", {"user_id": u, "k": 10, "at": at[u]})
    t0 = time.perf_counter()
    deadline = t0 + limit_s
    await asyncio.gather(*(worker(c) for c in connections))
    wall = time.perf_counter() - t0
    for c in connections:
        c.close()
    return latencies, errors, wall


def http_benchmark(run: Path, core, n: int, concurrency: int, limit_s: float, rng) -> None:
    port = free_port()
    state = tempfile.mkdtemp(prefix="ss4rec-bench-state-")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "ss4rec.serve", str(run), "--port", str(port),
                               "--state-dir", state, "--threads", "1"], env=env)  # fmt: skip
    try:
        import urllib.request

        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        users = [int(u) for u in rng.choice(core.log.user_ids(), size=min(50, len(core.log)), replace=False)]
        at = {u: core.log.last_event(u).time + 3600 for u in users}
        latencies, errors, wall = asyncio.run(load_test(port, users, at, n, concurrency, limit_s))
        print(f"HTTP POST /recommend, {concurrency} concurrent clients, {len(latencies)} requests in {wall:.1f} s "
              f"(limit {n} requests / {limit_s:.0f} s): {len(latencies) / wall:.0f} requests/s, "
              f"{percentiles(latencies)}, {errors} errors")  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def export_benchmark(run: Path, at: int, k: int) -> None:
    from ss4rec.recommend import export

    out = Path(tempfile.mkdtemp(prefix="ss4rec-bench-export-")) / "recs.parquet"
    t0 = time.perf_counter()
    export(run, out, k=k, at=at, trainer_kwargs={"enable_progress_bar": False, "accelerator": "cpu"})
    took = time.perf_counter() - t0
    import polars as pl

    frame = pl.read_parquet(out)
    print(f"batch export top-{k} for {frame['user_id'].n_unique()} users: {took:.1f} s ({frame.height} rows)")


def window_vs_full(run: Path) -> None:
    """Test metrics through the core with the state over the full history vs the last max_len events,
    for users whose test input is longer than max_len (the others get identical inputs)."""
    from ss4rec.serve import load_core
    from ss4rec.serve.offline import served_metrics

    base = load_core(run, state_dir=tempfile.mkdtemp(), restore=False)
    store, max_len = base.store, base.options.max_len
    long_users = [int(u) for u, n in zip(store.user_map, store.lengths) if n - 1 > max_len]
    print(f"users whose test input is longer than max_len={max_len}: {len(long_users)} of {store.n_users}")
    for history in ("window", "full"):
        m = served_metrics(base, users=long_users, history=history)
        rmse = f", RMSE {m['rmse']:.4f}" if "rmse" in m else ""
        print(f"  history={history:<6} HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  MRR@10 {m['mrr@10']:.4f}{rmse}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="ml1m", help="dataset of the untrained run (ignored with --run)")
    parser.add_argument("--run", type=Path, default=None, help="a trained run folder instead")
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency measurement")
    parser.add_argument("--http-requests", type=int, default=3000)
    parser.add_argument("--http-seconds", type=float, default=30.0, help="time limit of the HTTP load test")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke run)")
    parser.add_argument("overrides", nargs="*", help="config overrides of the untrained run, e.g. model.ffn=true")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.http_requests, args.http_seconds = 200, 300, 10.0
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    from ss4rec.serve import load_core

    with tempfile.TemporaryDirectory(prefix="ss4rec-bench-") as tmp:
        t0 = time.perf_counter()
        run = args.run or untrained_run(args.data, Path(tmp) / "run", args.overrides)
        core = load_core(run, state_dir=Path(tmp) / "state", restore=False)
        print(f"load average at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{core.info()['model']} on {core.info()['data']} ({core.catalogue.n_items} items, {len(core.log)} "
              f"users), {'trained run ' + str(run) if args.run else 'untrained'}; 1 torch thread; "
              f"set-up {time.perf_counter() - t0:.1f} s")  # fmt: skip
        core_latency(core, args.requests, rng)
        if core.base is not None:
            new_user_latency(core, rng)
        step_vs_recompute(core, core.catalogue.n_items, 200, rounds=3, reps=args.requests // 4)
        http_benchmark(run, core, args.http_requests, args.concurrency, args.http_seconds, rng)
        latest = max(core.log.last_event(u).time for u in core.log.user_ids())
        export_benchmark(run, latest + 3600, k=100)
        if args.run:
            window_vs_full(run)
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs (other jobs share them; latencies grow with the load)")


if __name__ == "__main__":
    main()
