"""A run that diverges stops at once with status failed, exits non-zero and never keeps non-finite weights."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from composing import compose_train
from ss4rec.callbacks import NonFiniteGuard
from ss4rec.errors import NonFiniteError
from ss4rec.training import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=sasrec", "data.max_len=20", "data.batch_size=128", "logger=none", "threads=1",
        "trainer.enable_progress_bar=false", "trainer.max_epochs=3", "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]  # fmt: skip
# a good first epoch, then the learning rate jumps from 1e-3 to 1e12: the run diverges in epoch 1
JUMP = "scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 1.0e15}"


def _finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_divergence_after_a_good_epoch_keeps_the_finite_best_checkpoint(tmp_path):
    cfg = compose_train([*TINY, JUMP], tmp_path)
    with pytest.raises(NonFiniteError, match=r"the training loss is (nan|inf|-inf) at step \d+ \(epoch 1, batch \d+\)"):
        train(cfg)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "failed" and "the training loss is" in summary["reason"]
    assert "test" not in summary  # never tested, never a score
    best = Path(summary["checkpoint"])
    assert best.name == "best-epoch000.ckpt" and _finite(best)
    checkpoints = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} == {"best-epoch000.ckpt", "last.ckpt"}
    assert all(_finite(p) for p in checkpoints)
    assert str(tmp_path / "checkpoints" / "last.ckpt") in summary["reason"]  # where to resume from
    assert [row["epoch"] for row in summary["history"]] == [0]
    assert all(math.isfinite(v) for v in summary["history"][0].values())


def test_lr_1e12_from_the_cli_exits_1_with_the_step_and_value(tmp_path):
    """The issue's command, through train.py: status failed, exit 1, a clean message, no bad checkpoint."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "optimizer.lr=1e12", *TINY, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: the training loss is nan at step" in done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "failed" and "nan" in summary["reason"] and "test" not in summary
    assert all(_finite(p) for p in run_dir.rglob("*.ckpt"))


def _trainer(**metrics):
    return SimpleNamespace(
        sanity_checking=False, global_step=7, current_epoch=2, precision="32-true", checkpoint_callback=None,
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
    )  # fmt: skip


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_guard_stops_on_a_non_finite_validation_metric(value):
    guard = NonFiniteGuard()
    guard.on_validation_end(_trainer(**{"val/ndcg@10": 0.1}), None)  # finite: nothing happens
    with pytest.raises(NonFiniteError, match=rf"validation metric val/rmse is {value} after epoch 2 \(step 7\)"):
        guard.on_validation_end(_trainer(**{"val/ndcg@10": 0.1, "val/rmse": value}), None)


def test_guard_stops_on_an_infinite_gradient_norm_before_the_step():
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.tensor([1.0, float("inf"), 0.0])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    guard = NonFiniteGuard()
    with pytest.raises(NonFiniteError, match=r"the gradient norm is inf at step 7 \(epoch 2, batch -1\)"):
        guard.on_before_optimizer_step(_trainer(), None, optimizer)
    weight.grad = torch.ones(3)
    guard.on_before_optimizer_step(_trainer(), None, optimizer)


def test_guard_sees_a_nan_in_the_imaginary_part_of_a_complex_gradient():
    """S5's eigenvalues are complex parameters: casting their gradient to real would drop the NaN."""
    weight = torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))
    weight.grad = torch.tensor([1 + 1j, complex(1.0, math.nan)], dtype=torch.complex64)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    with pytest.raises(NonFiniteError, match="the gradient norm is nan"):
        NonFiniteGuard().on_before_optimizer_step(_trainer(), None, optimizer)


def test_guard_refuses_to_write_a_checkpoint_with_non_finite_weights():
    guard = NonFiniteGuard()
    guard.on_save_checkpoint(_trainer(), None, {"state_dict": {"w": torch.ones(2), "n": torch.tensor(3)}})
    with pytest.raises(NonFiniteError, match="weight model.w is not finite .* the checkpoint was not written"):
        guard.on_save_checkpoint(_trainer(), None, {"state_dict": {"model.w": torch.tensor([1.0, math.nan])}})
    with pytest.raises(NonFiniteError, match="weight model.lam is not finite"):
        guard.on_save_checkpoint(_trainer(), None, {"state_dict": {"model.lam": torch.tensor([complex(0, math.inf)])}})


def test_guard_can_be_turned_off(tmp_path):
    cfg = compose_train([*TINY, "optimizer.lr=1e12", "stop_on_nonfinite=false", "trainer.max_epochs=1"], tmp_path)
    assert train(cfg)["status"] == "finished"  # the old behaviour, on request


@pytest.mark.slow
def test_two_processes_stop_together(tmp_path):
    """DDP on CPU (``trainer=ddp`` as configured: SASRec's rating head gets no gradient under task=ranking,
    which plain DDP refuses): every process stops at the same step (none left waiting in an all-reduce)."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "optimizer.lr=1e12", *TINY, "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert "error: the training loss is nan at step" in done.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"


def test_a_killed_run_is_stopped_not_failed_and_says_where_it_stood(tmp_path):
    """SIGTERM in epoch 2 (kill, a scheduler's time limit): status stopped, the history and best epoch so far,
    and how to resume; no test numbers."""
    cfg = compose_train([*TINY, "trainer.max_epochs=4", "+callbacks.stop._target_=stoppers.SigtermAtEpoch",
                         "+callbacks.stop.epoch=2"], tmp_path)  # fmt: skip
    with pytest.raises(BaseException, match="") as raised:
        train(cfg)
    assert type(raised.value).__name__ == "SIGTERMException"
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "stopped" and summary["reason"].startswith("SIGTERMException")
    assert [row["epoch"] for row in summary["history"]] == [0, 1]
    monitored = [row[summary["monitor"]] for row in summary["history"]]
    assert summary["best_epoch"] == monitored.index(max(monitored))
    assert summary["best_val"][summary["monitor"]] == max(monitored)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert summary["last_checkpoint"] == str(last) and summary["resume"].endswith(f"ckpt_path={last}")
    assert "test" not in summary


def test_ctrl_c_is_a_stop_too(tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1): the record still says stopped, not failed."""
    cfg = compose_train([*TINY, "trainer.max_epochs=4", "+callbacks.stop._target_=stoppers.CtrlCAtEpoch",
                         "+callbacks.stop.epoch=2"], tmp_path)  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            train(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C after the first
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["status"] == "stopped" and summary["reason"] == "KeyboardInterrupt: "
    assert [row["epoch"] for row in summary["history"]] == [0, 1]
    assert summary["resume"].endswith("ckpt_path=" + str(tmp_path / "checkpoints" / "last.ckpt"))
