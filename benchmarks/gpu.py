"""GPU benchmarks (run by `make gpu-check`): the scans, a training step in fp32 and bf16, full-ranking evaluation.

Rows (forward+backward unless said; median of ``--repeats`` timed runs after one warm-up, CUDA synchronised):

* ``selective scan torch``: our pure-PyTorch chunked scan (B 64, d_inner 128, L 200, d_state 32);
  ``selective scan dispatch``: what ``selective_scan`` picks on this device (mamba_ssm's fused kernel when it
  imports). Their ratio answers the issue's question: is the PyTorch scan on CUDA fast enough, or does a GPU
  without mamba_ssm need a Triton scan of our own?
* ``S5 scan parallel`` / ``S5 scan loop``: ``zoh_scan`` (B 64, L 200, P 32 complex) both ways.
* ``train step fp32`` / ``train step bf16``: SS4Rec as ``ml1m_paper`` builds it (hidden 64, 2 layers), 64 windows
  of 200 targets, full cross-entropy over 3,706 items, Adam; in targets/s.
* ``evaluation``: ``rank_targets`` over 59,047 items (ML-25M's catalogue) for 4,096 users, hidden 64; users/s.

    python benchmarks/gpu.py [--device cuda] [--quick]      # --device cpu --quick: a smoke run anywhere
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from ss4rec.evaluation import rank_targets
from ss4rec.models import selective_scan as ss
from ss4rec.models.linear_scan import zoh_scan
from ss4rec.models.ss4rec import SS4Rec
from ss4rec.objectives import CrossEntropy, Objective


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def selective_scan_case(device, batch, dispatch: bool):
    g = torch.Generator().manual_seed(0)
    d_inner, length, d_state = 128, 200, 32
    r = lambda *s: torch.randn(*s, generator=g).to(device).requires_grad_()  # noqa: E731
    u, delta, z = r(batch, d_inner, length), r(batch, d_inner, length), r(batch, d_inner, length)
    B, C, D, bias = r(batch, d_state, length), r(batch, d_state, length), r(d_inner), r(d_inner)
    A = (-torch.rand(d_inner, d_state, generator=g) * 4).to(device).requires_grad_()
    fn = ss.selective_scan if dispatch else ss.selective_scan_torch

    def run():
        fn(u, delta, A, B, C, D, z, bias, True).sum().backward()

    return run


def s5_case(device, batch, parallel: bool):
    g = torch.Generator().manual_seed(0)
    P, length = 32, 200
    Lambda = torch.complex(-torch.rand(P, generator=g) - 0.1, torch.randn(P, generator=g)).to(device)
    Lambda.requires_grad_()
    step = torch.rand(batch, length, P, generator=g).to(device).requires_grad_()
    Bu = torch.randn(batch, length, P, generator=g, dtype=torch.complex64).to(device).requires_grad_()

    def run():
        zoh_scan(Lambda, step, Bu, parallel).real.sum().backward()

    return run


def train_case(device, batch, length, n_items, bf16: bool):
    torch.manual_seed(0)
    model = SS4Rec(n_items=n_items, n_users=1, max_len=length, hidden=64, n_layers=2, d_state=32,
                   mamba_d_state=32).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = Objective(ranking=CrossEntropy())
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, n_items + 1, (batch, length + 1), generator=g)
    gaps = (torch.rand(batch, length + 1, generator=g) > 0.5) * torch.exp(torch.empty(batch, length + 1).uniform_(4, 16))
    times = (9e8 + gaps.cumsum(1)).long()
    ratings = torch.randint(1, 6, (batch, length + 1), generator=g).float()
    data = {"users": torch.arange(batch), "items": items[:, :-1], "times": times[:, :-1], "ratings": ratings[:, :-1],
            "lengths": torch.full((batch,), length), "target_items": items[:, 1:], "target_times": times[:, 1:],
            "target_ratings": ratings[:, 1:]}
    data = {k: v.to(device) for k, v in data.items()}

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            query, positives, target_ratings = model.train_queries(data)
            loss = objective(model, query, positives, target_ratings)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def eval_case(device, users, n_items, hidden=64):
    g = torch.Generator().manual_seed(2)
    table = torch.randn(n_items + 1, hidden, generator=g).to(device)
    query = torch.randn(users, hidden, generator=g).to(device)
    targets = torch.randint(1, n_items + 1, (users,), generator=g).to(device)

    def run():
        with torch.no_grad():
            rank_targets(lambda ids: query @ table[ids].T, targets, n_items, chunk_size=8192)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run on the CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")
    quick = args.quick
    batch = 4 if quick else 64
    length = 20 if quick else 200
    n_items = 500 if quick else 3706
    users, catalogue = (64, 5000) if quick else (4096, 59_047)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; mamba_ssm kernel: {ss._cuda_selective_scan is not None}")
    rows = [
        ("selective scan torch", "calls/s", 1, selective_scan_case(device, batch, dispatch=False)),
        ("selective scan dispatch", "calls/s", 1, selective_scan_case(device, batch, dispatch=True)),
        ("S5 scan parallel", "calls/s", 1, s5_case(device, batch, parallel=True)),
        ("S5 scan loop", "calls/s", 1, s5_case(device, batch, parallel=False)),
        ("train step fp32", "targets/s", batch * length, train_case(device, batch, length, n_items, bf16=False)),
        ("train step bf16", "targets/s", batch * length, train_case(device, batch, length, n_items, bf16=True)),
        (f"evaluation {catalogue} items", "users/s", users, eval_case(device, users, catalogue)),
    ]
    print(f"{'case':<28} {'ms':>9} {'throughput':>14}")
    for label, unit, per_call, fn in rows:
        seconds = timed(fn, device, args.repeats)
        print(f"{label:<28} {seconds * 1e3:>9.2f} {per_call / seconds:>12.0f} {unit}")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
