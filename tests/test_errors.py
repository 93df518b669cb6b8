"""One command contract: one line for every failure, the traceback of a bug in ao.log, ^C as one line."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from supervisor import paths, store
from supervisor.records import Status


def _session(status: Status = Status.QUEUED) -> str:
    store.insert({"session": "ao-test-err001", "workspace": "/nonexistent", "runtime": "headless",
                  "status": status, "launch": {"argv": ["codex"]}})
    return "ao-test-err001"


def test_a_user_error_is_one_line_with_its_exit_code(ao) -> None:
    proc = ao("wait", "no-such-session", "--timeout", "1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ao: error: unknown session 'no-such-session'; "
                                                "`ao status` lists the known ones"]


def test_a_bug_prints_one_line_and_logs_the_traceback(ao) -> None:
    session = _session()
    with sqlite3.connect(paths.db_path()) as con:  # a record no version of ao writes
        con.execute("UPDATE sessions SET launch = '{not json' WHERE session = ?", (session,))
    try:
        proc = ao("status", "--json")
    finally:  # the fixture that ends leftover sessions reads every record
        with sqlite3.connect(paths.db_path()) as con:
            con.execute("UPDATE sessions SET launch = '{}' WHERE session = ?", (session,))
    log = paths.ao_home() / "logs" / "ao.log"
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ao: unexpected error: JSONDecodeError")
    assert str(log) in lines[0] and "Traceback" not in proc.stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "status --json" in text
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_ctrl_c_prints_one_line_and_exits_130() -> None:
    session = _session()  # queued with no runner: `ao wait` waits until interrupted
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "wait", session, "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # past start-up, inside the wait loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.strip() == "ao: interrupted"
