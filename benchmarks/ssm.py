"""SSM kernels side by side: forward+backward time and peak memory against reference implementations.

* S5 with per-position steps (batch 256, length 200, width 64, state 32): ours vs s5-pytorch 0.2.1 on the
  same weights.
* Selective scan (d_inner 128, d_state 32, length 200): ours (chunked, recomputing backward) vs
  - a plain autograd loop (precomputed exp(dt A) and dt B u, one multiply-add per step, autograd keeps
    every state), and
  - mamba_ssm's ``selective_scan_ref`` when mamba_ssm is installed, else a loop written like it (per-step
    indexing of the precomputed (B, D, L, N) tensors, whose backward allocates a full-size gradient per step).
  The references are too slow or too large at batch 256 on a 2-core CPU, so they run at smaller batches
  and ours is measured at the same batch for the ratio (printed in the table).

Memory: each case runs in a fresh subprocess; peak = increase of the process's maximum resident set size
(``resource.getrusage``) over one cold forward+backward. tracemalloc cannot see torch's CPU allocations,
and torch.profiler's memory events give allocations, not a peak; max RSS counts everything the process
touched (tensors, allocator slack, kernel workspaces). Time = median of warm forward+backward runs, on one
thread by default (``--threads N`` for more): on a CPU shared with other jobs, multi-threaded timings of
many small operations swing by several times from run to run.

    python benchmarks/ssm.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

LENGTH, WIDTH, S5_STATE, D_INNER, D_STATE = 200, 64, 32, 128, 32


# --------------------------------------------------------------------------------------------------------
# reference scans
# --------------------------------------------------------------------------------------------------------
def _discretize(u, delta, A, B, delta_bias):
    dt = F.softplus(delta + delta_bias[:, None])  # (B, D, L)
    dA = torch.exp(dt[..., None] * A[:, None, :])  # (B, D, L, N)
    dBu = (dt * u)[..., None] * B.transpose(1, 2)[:, None]  # (B, D, L, N)
    return dA, dBu


def scan_plain_loop(u, delta, A, B, C, D, z, delta_bias):
    """Autograd through a Python loop over steps (tensors unbound once, so backward stays O(L))."""
    dA, dBu = _discretize(u, delta, A, B, delta_bias)
    h, ys = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []
    for a_t, b_t, c_t in zip(dA.unbind(2), dBu.unbind(2), C.unbind(2)):
        h = a_t * h + b_t
        ys.append((h @ c_t[:, :, None]).squeeze(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z)


def scan_indexing_loop(u, delta, A, B, C, D, z, delta_bias):
    """Like mamba_ssm's reference: index dA[:, :, t] each step (each index's backward is full-size)."""
    dA, dBu = _discretize(u, delta, A, B, delta_bias)
    h, ys = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), []
    for t in range(u.shape[2]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z)


def mamba_reference():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
    except Exception:  # noqa: BLE001
        return None

    def run(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

    return run


# --------------------------------------------------------------------------------------------------------
# one case = one fresh process
# --------------------------------------------------------------------------------------------------------
def build_case(name: str, batch: int):
    """Return (leaves, step) where step() runs one forward+backward."""
    torch.manual_seed(0)
    if name.startswith("s5"):
        from ss4rec.models.s5 import S5

        ours = S5(WIDTH, S5_STATE)
        if name == "s5_ours":
            layer = ours
        else:
            import s5

            layer = s5.S5(WIDTH, S5_STATE)
            layer.load_state_dict(ours.state_dict())
        u = torch.randn(batch, LENGTH, WIDTH, requires_grad=True)
        gaps = torch.rand(batch, LENGTH) * 10
        gaps[torch.rand(batch, LENGTH) < 0.5] = 0.0  # half the gaps are ties, as in MovieLens
        return lambda: layer(u, gaps).square().mean().backward()

    from ss4rec.models.selective_scan import selective_scan_torch

    fn = {
        "scan_ours": lambda *a: selective_scan_torch(*a[:5], *a[5:7], a[7], delta_softplus=True),
        "scan_plain": scan_plain_loop,
        "scan_indexing": mamba_reference() or scan_indexing_loop,
    }[name]
    g = torch.Generator().manual_seed(0)
    shapes = [(batch, D_INNER, LENGTH), (batch, D_INNER, LENGTH), None, (batch, D_STATE, LENGTH),
              (batch, D_STATE, LENGTH), (D_INNER,), (batch, D_INNER, LENGTH), (D_INNER,)]  # fmt: skip
    args = [
        torch.randn(s, generator=g) if s else -torch.rand(D_INNER, D_STATE, generator=g) * 4 for s in shapes
    ]
    args = [a.requires_grad_() for a in args]
    return lambda: fn(*args).square().mean().backward()


def run_case(name: str, batch: int, reps: int) -> dict:
    step = build_case(name, batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    step()
    cold = time.perf_counter() - t0
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "ms": 1000 * (statistics.median(times) if times else cold),
        "peak_mb": peak_mb,
        "warm": bool(times),
    }


def spawn(name: str, batch: int, reps: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--case", name, "--batch", str(batch), "--reps", str(reps)]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller batches, one repetition (smoke run)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared CPU)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case, args.batch, args.reps)))
        return

    q = args.quick
    big, mid, small = (32, 8, 4) if q else (256, 64, 16)
    ref_name = "mamba_ssm selective_scan_ref" if mamba_reference() else "indexing loop (as mamba_ssm's ref)"
    plan = [  # (group, label, case, batch, warm repetitions)
        ("S5", "ours", "s5_ours", big, 1 if q else 3),
        ("S5", "s5-pytorch 0.2.1", "s5_ref", big, 1),
        ("scan", "ours", "scan_ours", big, 1 if q else 3),
        ("scan", "ours", "scan_ours", mid, 1 if q else 3),
        ("scan", "plain autograd loop", "scan_plain", mid, 1),
        ("scan", "ours", "scan_ours", small, 1 if q else 3),
        ("scan", ref_name, "scan_indexing", small, 0),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU; length {LENGTH}")
    print(
        f"S5: width {WIDTH}, state {S5_STATE}, per-position steps; scan: d_inner {D_INNER}, d_state {D_STATE}"
    )
    print(
        f"the scan references run at batch {mid} and {small}: at 256 one backward of the indexing loop takes "
        "minutes and the plain loop several GB; ratios compare equal batches"
    )
    print(f"{'':5} {'implementation':36} {'batch':>5} {'fwd+bwd ms':>11} {'peak MB':>8}")
    results = {}
    for group, label, case, batch, reps in plan:
        r = spawn(case, batch, reps, args.threads)
        results[(case, batch)] = r
        note = "" if r["warm"] else "  (one cold run)"
        print(f"{group:5} {label:36} {batch:5d} {r['ms']:11.0f} {r['peak_mb']:8.0f}{note}", flush=True)

    print("\nratios (reference / ours, same batch; > 1 means ours is faster or smaller):")
    for ref_case, batch, label in [
        ("s5_ref", big, "S5 vs s5-pytorch"),
        ("scan_plain", mid, "scan vs plain autograd loop"),
        ("scan_indexing", small, f"scan vs {ref_name}"),
    ]:
        ours = results[("s5_ours" if ref_case == "s5_ref" else "scan_ours", batch)]
        ref = results[(ref_case, batch)]
        print(
            f"  {label:48} batch {batch:3d}: time x{ref['ms'] / ours['ms']:.1f}, "
            f"memory x{ref['peak_mb'] / max(ours['peak_mb'], 1.0):.1f}"
        )


if __name__ == "__main__":
    main()
