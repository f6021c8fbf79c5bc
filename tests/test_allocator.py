"""ss4rec.allocator: glibc keeps freed memory for reuse (no page faults for a step's large tensors), unless
SS4REC_MALLOC=default. Each check runs in a fresh process: the setting is process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from ss4rec.allocator import keep_freed_memory
print(keep_freed_memory())
w = torch.randn(64, 1349)
def step():  # scores, log-softmax and a gradient-sized buffer of (6400, 1349): 34.5 MB each, as a training step
    s = torch.randn(6400, 64) @ w
    g = s.log_softmax(1).exp() - 1.0
    return float(g[0, 0])
for _ in range(10):  # the heap settles at its peak footprint
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def faults_per_step(malloc: str) -> tuple[str, int]:
    env = {**os.environ, "SS4REC_MALLOC": malloc}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_unless_default():
    applied, faults = faults_per_step("keep")
    assert applied == "True" and faults < 1000  # per step; no new pages: the footprint stays put
    applied, faults = faults_per_step("default")
    assert applied == "False" and faults > 10000  # about 34,000: three tensors mapped fresh each step
