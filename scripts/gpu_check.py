"""`make gpu-check`: everything that needs a GPU, in one unattended run, with one summary table.

Steps (each with its own timeout; the whole run is capped at ``--budget`` seconds, 570 by default, so it
ends within 10 minutes on one H100/H200-class GPU):

1. ``environment``: torch, CUDA device, bf16 support, which optional kernels import (mamba_ssm,
   causal_conv1d, triton). Fails when no CUDA device is visible: nothing else here means anything then.
2. ``scans``: our S5 and selective scans on CUDA against the CPU path (tests/models/test_cuda_scans.py).
3. ``encoder``: the whole SS4Rec encoder, outputs and gradients, CUDA against CPU (tests/models/test_ss4rec.py).
4. ``mamba_ssm``: mamba_ssm's fused kernels against our block (tests/models/test_mamba.py); skipped, and
   listed as not tested, when mamba_ssm does not import.
5. ``train-bf16``: a short ``experiment=ml1m_paper`` run in bf16-mixed (one epoch of 200 batches, 20
   validation and test batches); passes when the run finishes with finite test metrics.
6. ``bench``: benchmarks/gpu.py (scans, training step fp32/bf16, full-ranking evaluation at 59k items).

It uses whatever torch is installed and never installs anything, unless ``GPU_INSTALL=1``: then it first
installs the ``gpu`` extras of pyproject.toml (mamba-ssm, causal-conv1d) against the installed torch, which
stays pinned. ``GPU_CHECK_TRAIN_ARGS="data=synthetic"`` adds overrides to step 5 (where ML-1M's data wheel
is not installed and no registry can be reached). ``DRY_RUN=1`` (or ``--dry-run``) prints the steps and
runs nothing (works on a CPU).
Exit status: 0 when no step failed or timed out, 1 otherwise.

    python scripts/gpu_check.py [--dry-run] [--budget 570]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASS, FAIL, SKIP, TIMEOUT, NOT_RUN = "pass", "FAIL", "skip", "TIMEOUT", "not run"
FAILED = (FAIL, TIMEOUT)


@dataclass
class Outcome:
    status: str
    detail: str = ""


@dataclass
class Step:
    """A command and how to read its result: ``judge(returncode, output, workdir) -> Outcome``."""

    name: str
    what: str
    command: list[str]
    timeout_s: int
    judge: Callable[[int, str, Path], Outcome] = field(repr=False, default=None)  # type: ignore[assignment]
    report: bool = False  # print the step's output (a benchmark's table) after the summary

    def __post_init__(self):
        if self.judge is None:
            self.judge = exit_status


@dataclass
class Result:
    step: Step
    outcome: Outcome
    seconds: float


# ---- judging a step's output ------------------------------------------------------------------------------
def exit_status(returncode: int, output: str, workdir: Path) -> Outcome:
    if returncode == 0:
        return Outcome(PASS, last_line(output))
    return Outcome(FAIL, f"exit {returncode}: {last_line(output)}")


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def pytest_outcome(returncode: int, output: str, workdir: Path) -> Outcome:
    """Counts from pytest's JUnit XML (``workdir/junit.xml``); every skip is listed with its reason."""
    path = workdir / "junit.xml"
    if not path.is_file():
        return Outcome(FAIL, f"pytest wrote no report (exit {returncode}): {last_line(output)}")
    passed, failed, skipped = [], [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif (skip := case.find("skipped")) is not None:
            skipped.append(f"{name} ({skip.get('message', '').strip()})")
        else:
            passed.append(name)
    if failed or (returncode not in (0, 5) and not skipped):
        return Outcome(FAIL, f"{len(failed)} failed: {', '.join(failed) or last_line(output)}")
    if not passed and not skipped:
        return Outcome(FAIL, "no tests collected")
    if not passed:
        return Outcome(SKIP, "not tested: " + "; ".join(skipped))
    detail = f"{len(passed)} passed"
    return Outcome(PASS, detail + (f", {len(skipped)} skipped: " + "; ".join(skipped) if skipped else ""))


def training_outcome(returncode: int, output: str, workdir: Path) -> Outcome:
    """The run's metrics.json: status finished and every test metric finite."""
    found = sorted(workdir.glob("runs/*/*/*/metrics.json"))
    if not found:
        return Outcome(FAIL, f"no metrics.json (exit {returncode}): {last_line(output)}")
    summary = json.loads(found[-1].read_text())
    test = summary.get("test") or {}
    bad = [k for k, v in test.items() if not math.isfinite(v)]
    if returncode != 0 or summary.get("status") != "finished" or not test or bad:
        return Outcome(FAIL, f"status {summary.get('status')}, {summary.get('reason', '')} non-finite: {bad}")
    shown = ", ".join(f"{k}={v:.4f}" for k, v in test.items() if k in ("test/ndcg@10", "test/hr@10"))
    return Outcome(PASS, f"{shown}; {summary.get('wall_time_s', 0):.0f} s, peak {summary.get('peak_memory_mb', 0):.0f} MB")


def environment_outcome(returncode: int, output: str, workdir: Path) -> Outcome:
    try:
        info = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Outcome(FAIL, f"could not read torch's environment (exit {returncode}): {last_line(output)}")
    kernels = ", ".join(f"{k} {'yes' if info[k] else 'no'}" for k in ("mamba_ssm", "causal_conv1d", "triton"))
    text = f"torch {info['torch']}, CUDA {info['cuda_version']}, {info['device']}, bf16 {info['bf16']}; {kernels}"
    if not info["cuda"]:
        return Outcome(FAIL, "no CUDA device visible (torch.cuda.is_available() is False); " + text)
    return Outcome(PASS, text)


ENVIRONMENT = """
import importlib, json, torch
def imports(name):
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda": cuda, "cuda_version": torch.version.cuda,
    "device": torch.cuda.get_device_name(0) if cuda else "no GPU",
    "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
    "mamba_ssm": imports("mamba_ssm.ops.selective_scan_interface"), "causal_conv1d": imports("causal_conv1d"),
    "triton": imports("triton")}))
"""


# ---- the steps --------------------------------------------------------------------------------------------
def steps(python: str = sys.executable) -> list[Step]:
    def pytest(*nodes: str) -> list[str]:
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
                "--junitxml={workdir}/junit.xml", *nodes]

    return [
        Step("environment", "torch, CUDA device, bf16, optional kernels", [python, "-c", ENVIRONMENT], 60,
             environment_outcome),
        Step("scans", "S5 + selective scans: CUDA vs CPU", pytest("tests/models/test_cuda_scans.py"), 120,
             pytest_outcome),
        Step("encoder", "SS4Rec encoder + gradients: CUDA vs CPU",
             pytest("tests/models/test_ss4rec.py::test_cuda_matches_cpu"), 90, pytest_outcome),
        Step("mamba_ssm", "mamba_ssm fused kernels vs our block",
             pytest("tests/models/test_mamba.py::test_cuda_kernels_match_cpu_when_installed"), 90, pytest_outcome),
        Step("train-bf16", "ml1m_paper, bf16-mixed, 1 epoch x 200 batches",
             [python, "train.py", "experiment=ml1m_paper", "trainer=gpu", "trainer.precision=bf16-mixed",
              "trainer.max_epochs=1", "+trainer.limit_train_batches=200", "+trainer.limit_val_batches=20",
              "+trainer.limit_test_batches=20", "logger=none", "trainer.enable_progress_bar=false",
              "paths.log_dir={workdir}", *os.environ.get("GPU_CHECK_TRAIN_ARGS", "").split()], 240,
             training_outcome),
        Step("bench", "benchmarks/gpu.py: scans, train step, evaluation", [python, "benchmarks/gpu.py"], 150,
             report=True),
    ]


def install_command(python: str = sys.executable) -> list[str]:
    """pip install of the ``gpu`` extras, with the installed torch pinned (never replaced)."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+

        extras = tomllib.loads(text)["project"]["optional-dependencies"]["gpu"]
    except ImportError:  # Python 3.10: the list's quoted entries
        block = re.search(r"^gpu = \[(.*?)^\]", text, re.S | re.M).group(1)
        extras = re.findall(r'^\s*"([^"]+)"', block, re.M)
    return [python, "-m", "pip", "install", "--no-build-isolation", "-c", "{workdir}/torch.txt", *extras]


# ---- running ----------------------------------------------------------------------------------------------
def run_step(step: Step, timeout_s: float, workdir: Path) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    command = [part.replace("{workdir}", str(workdir)) for part in step.command]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired as err:
        tail = (err.stdout or b"")[-2000:]
        (workdir / "output.txt").write_text(tail.decode(errors="replace") if isinstance(tail, bytes) else tail)
        return Result(step, Outcome(TIMEOUT, f"killed after {timeout_s:.0f} s"), time.monotonic() - started)
    except OSError as err:
        return Result(step, Outcome(FAIL, f"could not start: {err}"), time.monotonic() - started)
    output = done.stdout + done.stderr
    (workdir / "output.txt").write_text(output)
    outcome = step.judge(done.returncode, output, workdir)
    return Result(step, outcome, time.monotonic() - started)


def run_all(plan: list[Step], budget_s: float, workdir: Path, run=run_step) -> list[Result]:
    """Every step in order, each within its timeout and the budget left; the steps after a failed
    ``environment`` are not run (without a GPU they would only fail or skip)."""
    results: list[Result] = []
    deadline = time.monotonic() + budget_s
    for step in plan:
        left = deadline - time.monotonic()
        if left < 5:
            results.append(Result(step, Outcome(NOT_RUN, "time budget spent"), 0.0))
            continue
        if results and results[0].step.name == "environment" and results[0].outcome.status in FAILED:
            results.append(Result(step, Outcome(NOT_RUN, "no usable CUDA environment"), 0.0))
            continue
        results.append(run(step, min(step.timeout_s, left), workdir / step.name))
    return results


def summary(results: list[Result]) -> str:
    """The table, then what could and could not be tested, then the verdict."""
    lines = [f"{'step':<12} {'status':<8} {'s':>5}  detail", "-" * 100]
    for r in results:
        lines.append(f"{r.step.name:<12} {r.outcome.status:<8} {r.seconds:>5.0f}  {r.outcome.detail}")
    tested = [r.step.name for r in results if r.outcome.status == PASS]
    untested = [f"{r.step.name} ({r.outcome.status}: {r.outcome.detail})" for r in results if r.outcome.status != PASS]
    lines += ["", "tested: " + (", ".join(tested) or "nothing"), "not tested: " + ("; ".join(untested) or "none")]
    failed = [r.step.name for r in results if r.outcome.status in FAILED]
    lines.append(f"GPU CHECK FAILED: {', '.join(failed)}" if failed else "GPU CHECK PASSED")
    return "\n".join(lines)


def exit_code(results: list[Result]) -> int:
    return 1 if any(r.outcome.status in FAILED for r in results) else 0


def shown(command: list[str]) -> str:
    """A command as a shell line; an inline script shows as <script>."""
    return " ".join("<script>" if "\n" in part else shlex.quote(part) for part in command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY_RUN", "") not in ("", "0"))
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all steps together")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and run outputs (default: a temp dir)")
    args = parser.parse_args(argv)
    plan = steps()
    install = os.environ.get("GPU_INSTALL") == "1"
    if args.dry_run:
        print(f"gpu-check, dry run: {len(plan)} steps, budget {args.budget:.0f} s, run from {ROOT}")
        if install:
            print(f"  first: {' '.join(install_command())}")
        for i, step in enumerate(plan, 1):
            print(f"{i}. {step.name:<12} (timeout {step.timeout_s:>3} s) {step.what}\n   $ {shown(step.command)}")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    print(f"gpu-check: logs under {workdir}", flush=True)
    if install:
        import torch

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "torch.txt").write_text(f"torch=={torch.__version__}\n")
        command = [p.replace("{workdir}", str(workdir)) for p in install_command()]
        print("$ " + " ".join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            print("GPU CHECK FAILED: GPU_INSTALL=1 could not install the gpu extras")
            return 1
    results = run_all(plan, args.budget, workdir,
                      run=lambda step, t, wd: _announced(step, t, wd))
    for r in results:
        log = workdir / r.step.name / "output.txt"
        if r.step.report and r.outcome.status == PASS and log.is_file():
            print(f"\n== {r.step.name} ({' '.join(r.step.command[1:])})\n{log.read_text().strip()}")
    print()
    print(summary(results))
    return exit_code(results)


def _announced(step: Step, timeout_s: float, workdir: Path) -> Result:
    print(f"-> {step.name}: {step.what} (timeout {timeout_s:.0f} s)", flush=True)
    result = run_step(step, timeout_s, workdir)
    print(f"   {result.outcome.status} in {result.seconds:.0f} s; log: {workdir / 'output.txt'}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
