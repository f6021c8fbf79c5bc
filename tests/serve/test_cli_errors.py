"""Bad input at the serving entry points (``python -m ss4rec.serve``, ``python -m ss4rec.recommend``): exit
status 2, ``error: <flag or file>: <what is allowed>``, no traceback, nothing loaded or written.

Most cases call ``main(argv)`` in-process (``ss4rec.serve``'s server start is replaced by a failure, so a
check that lets bad input through fails the test instead of serving); two run the real commands.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clean_errors import expect_clean_error
from ss4rec import recommend
from ss4rec.errors import CheckpointError, ConfigError
from ss4rec.serve import __main__ as serve_main
from ss4rec.serve.loading import resolve


@pytest.fixture(autouse=True)
def clean_errors(monkeypatch):
    # loggers set up by an earlier in-process run may still point at that test's closed capture stream
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(serve_main, "serve", _never_served)


def _never_served(args):
    raise AssertionError(f"bad input reached the server start: {args}")


def _call(main, argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


_expect = expect_clean_error


@pytest.fixture
def serve_cli(capsys):
    return lambda *argv: _call(serve_main.main, argv, capsys)


@pytest.fixture
def recommend_cli(capsys):
    return lambda *argv: _call(recommend.main, argv, capsys)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A run folder with the trained run's config and a checkpoint ``make(path)`` writes."""

    def make(write) -> Path:
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        metrics = json.loads((trained_run / "metrics.json").read_text())
        metrics.pop("checkpoint", None)
        (run / "metrics.json").write_text(json.dumps(metrics))
        write(run / "checkpoints" / "last.ckpt")
        return run

    return make


def _truncated(trained_run):
    whole = resolve(trained_run)[1].read_bytes()
    return lambda path: path.write_bytes(whole[: len(whole) // 2])


def _foreign(path: Path) -> None:  # a Lightning checkpoint of some other module
    torch.save({"state_dict": {"layer.weight": torch.ones(2)}, "epoch": 0, "global_step": 1}, path)


# ---- python -m ss4rec.serve ---------------------------------------------------------------------------------
def test_serve_missing_path(serve_cli, tmp_path):
    _expect(serve_cli(tmp_path / "nope", "--port", 8123),
            r"path='.*nope': expected a run folder .* or a checkpoint file inside one \(no such file or folder\)")  # fmt: skip


def test_serve_runs_named_twice_or_missing_among_several(serve_cli, trained_run, tmp_path):
    """Several runs (an ensemble): each path checked, one run named twice (a folder and its checkpoint) refused."""
    checkpoint = resolve(trained_run)[1]
    err = _expect(serve_cli(trained_run, checkpoint, tmp_path / "nope", "--state-dir", tmp_path / "s"),
                  r"path: .*best-.*\.ckpt named twice; expected each run once")  # fmt: skip
    assert "nope': expected a run folder" in err


def test_serve_text_file_goes_through_the_checkpoint_check(serve_cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not a checkpoint\n")
    _expect(serve_cli(readme), r"^error: path='.*README\.md' is not a checkpoint \(not a torch\.save zip archive")


def test_serve_folder_without_checkpoints(serve_cli, tmp_path):
    _expect(serve_cli(tmp_path), r"path='.*': expected a run folder .*\(the folder has no checkpoints/best-\*\.ckpt")


def test_serve_run_record_without_its_checkpoint(serve_cli, tmp_path):
    """A run folder as a clone of the repo has it: metrics.json naming a best checkpoint that is not there."""
    (tmp_path / "metrics.json").write_text('{"checkpoint": "/gone/checkpoints/best-epoch002.ckpt"}')
    _expect(serve_cli(tmp_path), r"expected a run folder .*\(its metrics.json names best-epoch002.ckpt, which is not in "
            r".*\(run records in git keep no checkpoints\); train the run again")  # fmt: skip


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_serve_port_out_of_range(serve_cli, trained_run, tmp_path, port):
    _expect(serve_cli(trained_run, "--port", port, "--state-dir", tmp_path / "s"),
            rf"^error: invalid option --port={port}: expected an integer in 1\.\.65535")  # fmt: skip
    assert not (tmp_path / "s").exists()


def test_serve_port_in_use(serve_cli, trained_run, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _expect(serve_cli(trained_run, "--port", port, "--state-dir", tmp_path / "s"),
                rf"--port={port}: expected a port free to listen on at --host='127\.0\.0\.1'")  # fmt: skip


def test_serve_unknown_host(serve_cli, trained_run, tmp_path):
    _expect(serve_cli(trained_run, "--host", "no-such-host.invalid", "--state-dir", tmp_path / "s"),
            r"--host='no-such-host\.invalid': expected a host name or address to listen on")  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_serve_cache_mb_not_positive(serve_cli, trained_run, tmp_path, value):
    _expect(serve_cli(trained_run, "--cache-mb", value, "--state-dir", tmp_path / "s"),
            rf"--cache-mb={value}(\.0)?: expected a finite number > 0")  # fmt: skip


def test_serve_threads_zero(serve_cli, trained_run, tmp_path):
    _expect(serve_cli(trained_run, "--threads", 0, "--state-dir", tmp_path / "s"), r"--threads=0: expected a positive integer")


def test_serve_state_dir_under_a_file(serve_cli, trained_run, tmp_path):
    (tmp_path / "file").write_text("")
    _expect(serve_cli(trained_run, "--state-dir", tmp_path / "file" / "state"),
            r"--state-dir='.*file/state': expected a folder that exists or can be created, writable \(.*file is a file\)")  # fmt: skip


def test_serve_lists_every_problem_at_once(serve_cli, tmp_path):
    err = _expect(serve_cli(tmp_path / "nope", "--port", 0, "--cache-mb", -1, "--threads", 0), r"4 invalid options:")
    for key in ("path=", "--port=0", "--cache-mb=-1.0", "--threads=0"):
        assert f"\n  {key}" in err


def test_serve_truncated_checkpoint_in_a_run(serve_cli, run_copy, trained_run, tmp_path):
    run = run_copy(_truncated(trained_run))
    _expect(serve_cli(run, "--state-dir", tmp_path / "s"),
            r"^error: checkpoint='.*last\.ckpt' (is not a checkpoint|could not be read|is damaged|is a damaged archive)")  # fmt: skip
    assert not (tmp_path / "s").exists()


def test_serve_foreign_lightning_checkpoint(serve_cli, run_copy, tmp_path):
    run = run_copy(_foreign)
    _expect(serve_cli(run / "checkpoints" / "last.ckpt", "--state-dir", tmp_path / "s"),
            r"path='.*last\.ckpt' is not an ss4rec model checkpoint \(its hyper_parameters lack model, n_items")  # fmt: skip


def test_serve_checkpoint_outside_a_run(serve_cli, trained_run, tmp_path):
    alone = tmp_path / "alone.ckpt"
    alone.write_bytes(resolve(trained_run)[1].read_bytes())
    _expect(serve_cli(alone, "--state-dir", tmp_path / "s"), r"path='.*alone\.ckpt': no run config .*not inside a run's checkpoints/")


def test_serve_good_input_reaches_the_server(serve_cli, trained_run, tmp_path, monkeypatch):
    """The checks pass a valid run (the server start itself is replaced)."""
    started = []
    monkeypatch.setattr(serve_main, "serve", started.append)
    assert serve_cli(trained_run, "--port", 8123, "--state-dir", tmp_path / "s") == (0, "")
    assert started and started[0].port == 8123


def test_serve_full_traceback_on_request(trained_run, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match=r"--port=0"):
        serve_main.main([str(trained_run), "--port", "0"])


# ---- python -m ss4rec.recommend -----------------------------------------------------------------------------
def test_recommend_missing_path(recommend_cli, tmp_path):
    _expect(recommend_cli(tmp_path / "nope", "--k", 10, "--out", tmp_path / "x.parquet"),
            r"path='.*nope': expected a run folder .*\(no such file or folder\)")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--k", "0"], r"--k=0: expected a positive integer"),
        (["--at", "-1"], r"--at=-1: expected an integer >= 0"),
        (["--batch-size", "0"], r"--batch-size=0: expected a positive integer"),
        (["--threads", "0"], r"--threads=0: expected a positive integer"),
        (["--out", "recs.csv"], r"--out='.*recs\.csv': expected a file name ending in \.parquet"),
    ],
    ids=lambda v: "".join(v).lstrip("-") if isinstance(v, list) else "",
)
def test_recommend_bad_option(recommend_cli, trained_run, tmp_path, argv, pattern):
    argv = [a if a != "recs.csv" else str(tmp_path / a) for a in argv]
    out = [] if "--out" in argv else ["--out", tmp_path / "recs.parquet"]
    _expect(recommend_cli(trained_run, *out, *argv), rf"^error: invalid option {pattern}")
    assert not any(tmp_path.iterdir())  # nothing written


def test_recommend_out_is_a_folder(recommend_cli, trained_run, tmp_path):
    (tmp_path / "recs.parquet").mkdir()
    _expect(recommend_cli(trained_run, "--out", tmp_path / "recs.parquet"), r"--out='.*recs\.parquet': expected a \.parquet file \(it is a folder\)")


def test_recommend_out_under_a_file(recommend_cli, trained_run, tmp_path):
    (tmp_path / "file").write_text("")
    _expect(recommend_cli(trained_run, "--out", tmp_path / "file" / "recs.parquet"),
            r"--out='.*file/recs\.parquet': expected a file in a writable folder \(.*file is a file\)")  # fmt: skip


def test_recommend_k_larger_than_the_catalogue(recommend_cli, trained_run, tmp_path):
    _expect(recommend_cli(trained_run, "--k", 10**6, "--out", tmp_path / "r.parquet"),
            r"^error: invalid option --k=1000000: expected an integer in 1\.\.\d+ \(the catalogue size\)")  # fmt: skip
    assert not (tmp_path / "r.parquet").exists()


def test_recommend_truncated_checkpoint(recommend_cli, run_copy, trained_run, tmp_path):
    run = run_copy(_truncated(trained_run))
    _expect(recommend_cli(run / "checkpoints" / "last.ckpt", "--out", tmp_path / "r.parquet"),
            r"^error: path='.*last\.ckpt' (is not a checkpoint|could not be read|is damaged|is a damaged archive)")  # fmt: skip


def test_recommend_full_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match=r"--k=0"):
        recommend.main([str(tmp_path), "--k", "0"])


def test_load_core_names_a_damaged_checkpoint(run_copy, trained_run, tmp_path):
    """The library entry (``load_core``) raises the same CheckpointError the commands report."""
    from ss4rec.serve import load_core

    run = run_copy(_foreign)
    with pytest.raises(CheckpointError, match=r"is not an ss4rec model checkpoint"):
        load_core(run, state_dir=tmp_path / "s")


# ---- the real commands, in a subprocess -------------------------------------------------------------------
def _command(*args: str, cwd: Path, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_serve_command_missing_path(tmp_path):
    """The issue's case: ``python -m ss4rec.serve /nonexistent --port 8123`` printed a traceback."""
    done = _command("-m", "ss4rec.serve", str(tmp_path / "nonexistent"), "--port", "8123", cwd=tmp_path)
    _expect((done.returncode, done.stderr), r"^error: invalid option path='.*nonexistent': expected a run folder")


def test_recommend_command_bad_checkpoint_and_full_error(tmp_path):
    bad = tmp_path / "README.md"
    bad.write_text("not a checkpoint\n")
    args = ("-m", "ss4rec.recommend", str(bad), "--k", "10", "--out", str(tmp_path / "x.parquet"))
    done = _command(*args, cwd=tmp_path)
    _expect((done.returncode, done.stderr), r"^error: path='.*README\.md' is not a checkpoint")
    loud = _command(*args, cwd=tmp_path, full_error=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "CheckpointError" in loud.stderr, loud.stderr
