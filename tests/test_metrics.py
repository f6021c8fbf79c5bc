"""Ranking and rating metrics against float64 references, and exact two-process evaluation (gloo)."""

import json
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ss4rec.evaluation import rank_targets
from ss4rec.metrics import RankingMetrics, RatingMetrics


def reference(ranks: list[int], k: int) -> dict[str, float]:
    n = len(ranks)
    return {
        f"hr@{k}": sum(1.0 for r in ranks if r < k) / n,
        f"ndcg@{k}": sum(1.0 / math.log2(r + 2) for r in ranks if r < k) / n,
        f"mrr@{k}": sum(1.0 / (r + 1) for r in ranks if r < k) / n,
    }


def test_ranking_metrics_match_reference():
    ranks = torch.randint(0, 30, (101,), generator=torch.Generator().manual_seed(3))
    metric = RankingMetrics(ks=(1, 5, 10, 20))
    for chunk in ranks.split(17):  # several updates accumulate
        metric.update(chunk)
    values = metric.compute()
    for k in (1, 5, 10, 20):
        for name, expected in reference(ranks.tolist(), k).items():
            assert values[name].item() == pytest.approx(expected, abs=1e-12), name


def test_rating_metrics_match_reference():
    g = torch.Generator().manual_seed(1)
    predicted, target = torch.rand(57, generator=g) * 5, torch.randint(1, 6, (57,), generator=g).float()
    metric = RatingMetrics()
    metric.update(predicted[:20], target[:20])
    metric.update(predicted[20:], target[20:])
    values = metric.compute()
    errors = [float(p) - float(t) for p, t in zip(predicted.double(), target.double())]
    assert values["rmse"].item() == pytest.approx(math.sqrt(sum(e * e for e in errors) / 57), abs=1e-12)
    assert values["mae"].item() == pytest.approx(sum(abs(e) for e in errors) / 57, abs=1e-12)


N_USERS, N_ITEMS = 23, 40  # an odd number of users: the two shards differ in size


def _case():
    g = torch.Generator().manual_seed(7)
    scores = torch.randint(0, 5, (N_USERS, N_ITEMS + 1), generator=g).float()
    targets = torch.randint(1, N_ITEMS + 1, (N_USERS,), generator=g)
    ratings = torch.randint(1, 6, (N_USERS,), generator=g).float()
    return scores, targets, ratings


def _evaluate(users: torch.Tensor) -> dict[str, float]:
    scores, targets, ratings = _case()
    ranking, rating = RankingMetrics(), RatingMetrics()
    for chunk in users.split(4):
        rows = scores[chunk]
        ranks = rank_targets(lambda ids, rows=rows: rows[:, ids], targets[chunk], N_ITEMS, chunk_size=16)
        ranking.update(ranks)
        rating.update(scores[chunk, 1] / 2, ratings[chunk])
    return {k: float(v) for k, v in {**ranking.compute(), **rating.compute()}.items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        values = _evaluate(torch.arange(N_USERS)[rank::world])  # each process sees its shard only
        if rank == 0:
            with open(out, "w") as f:
                json.dump(values, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_evaluation_equals_one_process(tmp_path):
    single = _evaluate(torch.arange(N_USERS))
    out = tmp_path / "metrics.json"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    distributed = json.loads(out.read_text())
    assert distributed.keys() == single.keys()
    for name in single:
        assert distributed[name] == pytest.approx(single[name], abs=1e-12), name
    # and the shards alone differ from the whole: the sync really happened
    assert _evaluate(torch.arange(N_USERS)[0::2]) != single
