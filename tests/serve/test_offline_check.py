"""``python -m ss4rec.serve.offline RUN``: a run's test metrics reproduced through the serving core (status 0), a
mismatch reported (status 1), bad input refused (status 2); the store is rebuilt with every data option of the run."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from clean_errors import expect_clean_error
from composing import TINY_JOINT_RUN, compose_train
from ss4rec.serve.offline import main


@pytest.fixture(autouse=True)
def quiet_loggers(monkeypatch):
    # loggers set up by an earlier in-process run may still point at that test's closed capture stream
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


def run_check(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stopped:
        code = stopped.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_trained_run_is_reproduced_and_a_wrong_record_reported(trained_run, tmp_path, capsys):
    code, out, _ = run_check([trained_run], capsys)
    assert code == 0, out
    assert "the same: largest difference" in out and "rmse" in out and "ndcg@10" in out
    assert not (trained_run / "serving").exists()  # nothing written into the run folder
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    written = json.loads((copy / "metrics.json").read_text())
    written["test"]["test/rmse"] += 0.01
    (copy / "metrics.json").write_text(json.dumps(written))
    code, out, _ = run_check([copy], capsys)
    assert code == 1 and "DIFFERENT: largest difference 1.00e-02" in out


def test_a_run_on_shuffled_ties_and_float32_times_is_served_on_its_own_store(tmp_path, capsys):
    """Serving rebuilds the run's store with its tie order and timestamp type (it once used the defaults)."""
    threads = torch.get_num_threads()
    from ss4rec.training import train

    options = ["data.tie_order=shuffle", "data.tie_seed=3", "data.timestamp_dtype=float32"]
    assert train(compose_train([*TINY_JOINT_RUN, *options], tmp_path / "run"))["status"] == "finished"
    torch.set_num_threads(threads)
    code, out, _ = run_check([tmp_path / "run"], capsys)
    assert code == 0, out


@pytest.mark.parametrize(("setup", "pattern"), [
    (lambda run: None, r"path='.*nowhere': expected a run folder"),
    (lambda run: (run / "metrics.json").write_text(json.dumps({**json.loads((run / "metrics.json").read_text()), "test": {}})),
     r"expected a run whose metrics.json holds test metrics"),
    (lambda run: (run / "metrics.json").write_text(json.dumps({**json.loads((run / "metrics.json").read_text()), "mask_seen": True})),
     r"expected a run evaluated on the standard split \(data.holdout_last=0\) without masking seen items"),
])  # fmt: skip
def test_bad_input_exits_2_naming_it(trained_run, tmp_path, capsys, setup, pattern):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    setup(run)
    target = tmp_path / "nowhere" if "nowhere" in pattern else run
    code, _, err = run_check([target], capsys)
    expect_clean_error((code, err), pattern)


@pytest.mark.parametrize(("flag", "pattern"), [("--tolerance=-1", r"--tolerance=-1.0: expected a finite number >= 0"),
                                               ("--threads=0", r"--threads=0: expected an integer >= 1"),
                                               ("--as-new-users", r"--as-new-users: expected a run trained with model.rating_base"),
                                               ("--fold-in-noise=0", r"--fold-in-noise=0.0: expected a finite number > 0"),
                                               ("--last-events=3", r"--last-events=3: expected an integer >= 1, with --as-new-users")])  # fmt: skip
def test_bad_flags_exit_2(trained_run, capsys, flag, pattern):
    code, _, err = run_check([trained_run, flag], capsys)
    expect_clean_error((code, err), pattern)
