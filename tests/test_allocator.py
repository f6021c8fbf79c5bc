"""ss4rec.allocator: glibc keeps freed memory for reuse (no page faults for a step's large tensors), unless
SS4REC_MALLOC=default. Each check runs in a fresh process: the setting is process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from ss4rec.allocator import keep_freed_memory
print(keep_freed_memory())
w = torch.randn(64, 1349)
def step():  # scores, log-softmax and a gradient-sized buffer of (6400, 1349): 34.5 MB each, as a training step
    s = torch.randn(6400, 64) @ w
    g = s.log_softmax(1).exp() - 1.0
    return float(g[0, 0])
for _ in range(int(sys.argv[1])):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
TENSOR_PAGES = 6400 * 1349 * 4 // 4096  # 8,431 pages: the faults of one such tensor mapped fresh


def faults_per_step(malloc: str, steps: int) -> tuple[str, list[int]]:
    env = {**os.environ, "SS4REC_MALLOC": malloc}
    cmd = [sys.executable, "-c", SCRIPT, str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    applied, *faults = out.stdout.split()
    return applied, [int(f) for f in faults]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_unless_default():
    # The heap grows to its peak footprint over the first steps; how many it takes varies between processes
    # (small allocations land in freed holes, forcing a larger tensor to the top: step 17 at the latest in 61
    # runs). After that, no step maps new pages.
    applied, faults = faults_per_step("keep", 60)
    assert applied == "True" and sum(faults[30:]) < 1000, faults  # in total over the last 30 steps
    applied, faults = faults_per_step("default", 8)
    assert applied == "False" and min(faults[3:]) > 3 * TENSOR_PAGES, faults  # about 34,000: mapped fresh
