"""A restart loses nothing: ingested events come back from the journal, states from the snapshot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import torch

from ss4rec.serve import load_core
from ss4rec.serve.persistence import restore_states, snapshot_path


def test_restart_keeps_every_event_and_state(trained_run, tmp_path):
    state_dir = tmp_path / "state"
    core = load_core(trained_run, state_dir=state_dir)
    users = core.log.user_ids()[:3]
    items = [int(i) for i in core.catalogue.item_ids[1:6]]
    core.ingest(users[0], items[0], 10**9, 5.0)
    core.ingest(users[0], items[1], 10**9 + 60)
    core.ingest(users[1], items[2], 8 * 10**8)  # out of order: older than that user's history
    core.ingest(424_242, items[3], 10**9, 3.5)  # a new user
    before = {u: core.scores(u, at=10**9 + 3600) for u in (*users, 424_242)}
    lengths = {u: core.log.length(u) for u in before}
    cached = len(core.cache)
    core.close()  # snapshot + journal closed, as the server does on shutdown

    again = load_core(trained_run, state_dir=state_dir)
    assert {u: again.log.length(u) for u in before} == lengths
    assert len(again.cache) == cached and snapshot_path(again).is_file()
    for user, scores in before.items():
        torch.testing.assert_close(again.scores(user, at=10**9 + 3600), scores, rtol=0, atol=0)
    assert again.cache.misses == 0  # every answer came from a restored state
    again.close()


def test_a_crash_loses_no_event_and_stale_states_are_rebuilt(trained_run, tmp_path):
    """No clean shutdown (no snapshot after the last events): the journal alone brings them back, and a
    snapshot entry that no longer matches the log is dropped and rebuilt."""
    state_dir = tmp_path / "state"
    core = load_core(trained_run, state_dir=state_dir)
    user = core.log.user_ids()[0]
    item = int(core.catalogue.item_ids[9])
    core.scores(user, at=10**9)
    core.close()  # snapshot holds the user's state at n events
    core = load_core(trained_run, state_dir=state_dir)
    core.ingest(user, item, 10**9)  # journaled, then the process "dies": no close()
    expected = core.scores(user, at=10**9 + 60)

    again = load_core(trained_run, state_dir=state_dir)
    assert again.log.length(user) == core.log.length(user)
    assert len(again.cache) == 0  # the snapshot's entry was stale (one event behind)
    torch.testing.assert_close(again.scores(user, at=10**9 + 60), expected, rtol=0, atol=1e-6)


def test_a_new_checkpoint_never_reads_old_states(trained_run, tmp_path):
    state_dir = tmp_path / "state"
    core = load_core(trained_run, state_dir=state_dir)
    core.scores(core.log.user_ids()[0], at=10**9)
    core.close()
    other = load_core(trained_run, state_dir=state_dir, restore=False)
    assert restore_states(other) == 1
    other.cache = type(other.cache)(other.cache.max_bytes)
    other.options.info["checkpoint_sha256"] = "0" * 64  # as if another checkpoint were served
    assert restore_states(other) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_real_server_restarts_without_losing_events(trained_run, tmp_path):
    """``python -m ss4rec.serve``: ingest over HTTP, stop the process (SIGINT), start it again."""
    state_dir, port = tmp_path / "state", _free_port()
    command = [sys.executable, "-m", "ss4rec.serve", str(trained_run), "--port", str(port), "--state-dir",
               str(state_dir)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def start():
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                return process
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.2)
        process.kill()
        raise AssertionError("server did not start in 90 s")

    server = start()
    try:
        made = _post(f"http://127.0.0.1:{port}/events", {"user_id": 5_550_555, "item_id": 50, "timestamp": 10**9})
        assert made == {"user_id": 5_550_555, "n_events": 1, "in_order": True}
        recs = _post(f"http://127.0.0.1:{port}/recommend", {"user_id": 5_550_555, "k": 3, "at": 10**9})
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert server.returncode == 0
    server = start()
    try:
        again = _post(f"http://127.0.0.1:{port}/recommend", {"user_id": 5_550_555, "k": 3, "at": 10**9})
        assert again == recs
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=5).read())
        assert info["state_cache"]["users"] >= 1  # restored from the snapshot written at shutdown
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
