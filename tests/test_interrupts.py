"""^C, SIGTERM or kill -9 at any moment of `ao spawn`: no trace or a complete record, never half of one."""
from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from supervisor import paths, store

SCRIPT = """
tasks:
  quick:
    steps:
      - say: done
"""
CONFIG = "max_concurrent: 1\n"


def _branches(repo: Path) -> set[str]:
    out = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=repo, capture_output=True, text=True)
    return {b for b in out.stdout.split() if b.startswith("ao/")}


def _traces(repo: Path) -> tuple[set[str], set[str], set[str], set[str]]:
    sessions = {r["session"] for r in store.all_sessions()} if paths.db_path().exists() else set()
    dirs = {p.name for p in paths.sessions_dir().iterdir()} if paths.sessions_dir().exists() else set()
    trees = {p.name for p in paths.worktrees_dir().iterdir()} if paths.worktrees_dir().exists() else set()
    return sessions, dirs, trees, {b.removeprefix("ao/") for b in _branches(repo)}


def _ao_started(pid: int, timeout: float = 20.0) -> None:
    """Wait until ao's own first line ran (it catches SIGTERM from there on): before it, the interpreter
    is still starting, and a signal then meets Python's handling, not ao's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as fh:
            caught = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)
    raise AssertionError("ao spawn did not start in time")


def _spawn(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "supervisor", "spawn", "--headless", "--repo", str(repo),
                             "--json", "[ao-task:quick] go"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_an_interrupted_spawn_leaves_no_trace_or_a_whole_session(ao, codex, scripted_model, config_for,
                                                                  sample_repo) -> None:
    config_for(scripted_model(SCRIPT), CONFIG)
    rng = random.Random(7)
    outcomes = []
    for trial in range(8):
        proc = _spawn(sample_repo)
        _ao_started(proc.pid)
        time.sleep(rng.uniform(0.0, 1.3))
        proc.send_signal(signal.SIGINT if trial % 2 else signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        sessions, dirs, trees, branches = _traces(sample_repo)
        for session in sessions:  # whole: its supervisor is recorded
            record = store.get(session)
            assert record["pid"], record
            if store.is_live(record):
                ao("kill", session)
        assert dirs <= sessions and trees <= sessions and branches <= sessions, (trial, sessions, dirs, trees)
        outcomes.append("whole" if proc.returncode == 0 else "gone")
    last = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:quick] go")
    assert last.returncode == 0, last.stderr
    assert json.loads(last.stdout)["status"] == "spawning"  # no leftover holds the only slot
    assert ao("wait", json.loads(last.stdout)["session"], "--timeout", "60").returncode == 0
    assert "gone" in outcomes  # the interrupts did land mid-spawn


def test_a_spawn_killed_outright_does_not_hold_the_slot(ao, codex, scripted_model, config_for, sample_repo) -> None:
    config_for(scripted_model(SCRIPT), CONFIG)
    store.insert({"session": "ao-test-stale1", "workspace": str(sample_repo), "runtime": "headless",
                  "status": "spawning", "launch": {"argv": []}, "started_at": time.time() - 120})
    fresh = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:quick] go")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["status"] == "spawning"
    stale = store.get("ao-test-stale1")
    assert stale["status"] == "failed" and "killed before" in (stale["error"] or "")
    with sqlite3.connect(paths.db_path()) as con:  # a young record is a spawn still under way: left alone
        con.execute("UPDATE sessions SET status = 'spawning', ended_at = NULL, started_at = ? "
                    "WHERE session = 'ao-test-stale1'", (time.time(),))
    ao("wait", json.loads(fresh.stdout)["session"], "--timeout", "60")
    assert store.get("ao-test-stale1")["status"] == "spawning"
