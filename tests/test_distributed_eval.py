"""Distributed evaluation, fast: two gloo processes on CPU split the users and their summed metrics are one
process's. Counting the users catches every process evaluating every user, which averages cannot see
(sums and counts would both double); tests/test_distributed.py runs the whole ``trainer=ddp`` (slow)."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from distributed_eval import STAGES, build, evaluate, worker

WORLD = 2


def test_two_processes_split_the_users_and_sum_to_one_process(tmp_path, isolated_data_dir):
    data_dir = str(isolated_data_dir)
    datamodule, module = build(data_dir)  # prepares the cache before the processes read it
    single = evaluate(datamodule, module)
    n_users = datamodule.n_users
    mp.spawn(worker, args=(WORLD, str(tmp_path / "init"), data_dir, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    for stage in STAGES:
        assert sorted(single[stage]["users"]) == list(range(n_users))
        shards = [set(r[stage]["users"]) for r in ranks]
        assert all(len(s) == len(r[stage]["users"]) for s, r in zip(shards, ranks))  # no user twice
        assert all(len(s) > 0 for s in shards)
        assert not shards[0] & shards[1], f"{stage}: a user evaluated by both processes"
        assert shards[0] | shards[1] == set(range(n_users)), f"{stage}: users left out"
        for r in ranks:  # every process sees the same synced sums: the single process's
            states = r[stage]["states"]
            assert states.keys() == single[stage]["states"].keys()
            for name, total in single[stage]["states"].items():
                if name.endswith(".count"):
                    assert states[name].item() == total.item() == n_users, (stage, name)
                else:
                    torch.testing.assert_close(states[name], total, rtol=1e-12, atol=0, msg=f"{stage} {name}")
            for name, value in single[stage]["computed"].items():
                assert abs(r[stage]["computed"][name] - value) <= 1e-12 * abs(value), (stage, name)
