"""`make gpu-check` on the CPU: the dry run, and the summary / exit status on made-up steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gpu_check as gc
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def script(code: str) -> list[str]:
    return [PY, "-c", code]


def test_make_dry_run_prints_every_step_and_runs_nothing(tmp_path):
    done = subprocess.run(["make", "-s", "gpu-check", "DRY_RUN=1", f"PY={PY}", f"ARGS=--workdir {tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for step in gc.steps():
        assert step.name in done.stdout
    assert "pip install" not in done.stdout  # GPU_INSTALL is not set
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_dry_run_with_gpu_install_shows_the_pinned_install(monkeypatch, capsys):
    monkeypatch.setenv("GPU_INSTALL", "1")
    monkeypatch.setattr(gc.subprocess, "run", lambda *a, **k: pytest.fail("a dry run must run nothing"))
    assert gc.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pip install --no-build-isolation -c {workdir}/torch.txt mamba-ssm" in out


def test_passing_failing_and_timed_out_steps(tmp_path):
    plan = [
        gc.Step("ok", "passes", script("print('fine')"), 30),
        gc.Step("broken", "fails", script("import sys; print('mismatch'); sys.exit(3)"), 30),
        gc.Step("slow", "hangs", script("import time; time.sleep(60)"), 1),
    ]
    results = gc.run_all(plan, budget_s=120, workdir=tmp_path)
    assert [r.outcome.status for r in results] == [gc.PASS, gc.FAIL, gc.TIMEOUT]
    assert "exit 3: mismatch" in results[1].outcome.detail
    text = gc.summary(results)
    assert "GPU CHECK FAILED: broken, slow" in text and "tested: ok" in text
    assert gc.exit_code(results) == 1
    assert gc.exit_code(results[:1]) == 0 and "GPU CHECK PASSED" in gc.summary(results[:1])


def test_no_gpu_stops_after_the_environment(tmp_path):
    no_gpu = json.dumps({"torch": "2.x", "cuda": False, "cuda_version": None, "device": "no GPU", "bf16": False,
                         "mamba_ssm": False, "causal_conv1d": False, "triton": False})
    plan = [gc.Step("environment", "env", script(f"print({no_gpu!r})"), 30, gc.environment_outcome),
            gc.Step("scans", "never runs", script("raise SystemExit('must not run')"), 30)]
    results = gc.run_all(plan, budget_s=60, workdir=tmp_path)
    assert [r.outcome.status for r in results] == [gc.FAIL, gc.NOT_RUN]
    assert "no CUDA device" in results[0].outcome.detail
    assert gc.exit_code(results) == 1 and "not tested: environment" in gc.summary(results)


def test_spent_budget_leaves_the_rest_not_run(tmp_path):
    plan = [gc.Step("a", "", script("pass"), 30), gc.Step("b", "", script("pass"), 30)]
    results = gc.run_all(plan, budget_s=0, workdir=tmp_path)
    assert [r.outcome.status for r in results] == [gc.NOT_RUN, gc.NOT_RUN]
    assert gc.exit_code(results) == 0 and "time budget spent" in gc.summary(results)


def junit(tmp_path: Path, cases: str) -> Path:
    (tmp_path / "junit.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    return tmp_path


PASSED = '<testcase name="test_a"/>'
SKIPPED = '<testcase name="test_b"><skipped message="could not import \'mamba_ssm\'"/></testcase>'
FAILED = '<testcase name="test_c"><failure message="assert False"/></testcase>'


@pytest.mark.parametrize(
    "cases,returncode,status,words",
    [
        (PASSED + SKIPPED, 0, gc.PASS, "1 passed, 1 skipped: test_b (could not import 'mamba_ssm')"),
        (SKIPPED, 0, gc.SKIP, "not tested: test_b"),
        (PASSED + FAILED, 1, gc.FAIL, "1 failed: test_c"),
        ("", 5, gc.FAIL, "no tests collected"),
    ],
)
def test_pytest_results_are_read_from_junit(tmp_path, cases, returncode, status, words):
    outcome = gc.pytest_outcome(returncode, "", junit(tmp_path, cases))
    assert outcome.status == status and words in outcome.detail


def test_a_training_run_with_a_nan_metric_fails(tmp_path):
    run = tmp_path / "runs" / "ml1m" / "ss4rec" / "x"
    run.mkdir(parents=True)
    summary = {"status": "finished", "test": {"test/ndcg@10": 0.1, "test/hr@10": float("nan")}}
    (run / "metrics.json").write_text(json.dumps(summary))
    assert gc.training_outcome(0, "", tmp_path).status == gc.FAIL
    summary["test"]["test/hr@10"] = 0.2
    (run / "metrics.json").write_text(json.dumps(summary))
    assert gc.training_outcome(0, "", tmp_path).status == gc.PASS


def test_every_test_the_check_runs_exists():
    """A renamed or moved CUDA test would otherwise only show up on the GPU day, as 'no tests collected'."""
    nodes = [part for step in gc.steps() if "pytest" in step.command for part in step.command
             if part.startswith("tests/")]  # fmt: skip
    assert len(nodes) == 3
    done = subprocess.run([PY, "-m", "pytest", "--collect-only", "-q", "-m", "slow or not slow", *nodes],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    for node in nodes:
        assert node.split("::")[0] in done.stdout


def test_main_prints_the_benchmark_table_and_the_verdict(tmp_path, monkeypatch, capsys):
    gpu = json.dumps({"torch": "2.x", "cuda": True, "cuda_version": "12.8", "device": "H200", "bf16": True,
                      "mamba_ssm": False, "causal_conv1d": False, "triton": True})
    plan = [gc.Step("environment", "env", script(f"print({gpu!r})"), 30, gc.environment_outcome),
            gc.Step("bench", "a table", script("print('case  ms\\nscan  1.0')"), 30, report=True)]
    monkeypatch.setattr(gc, "steps", lambda: plan)
    monkeypatch.delenv("GPU_INSTALL", raising=False)
    assert gc.main(["--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "case  ms\nscan  1.0" in out and "H200" in out and out.rstrip().endswith("GPU CHECK PASSED")
