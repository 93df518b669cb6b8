"""The detached supervisor of one headless session: runs `codex exec --json` and records what happens.

Started by `ao spawn` in its own process session, so it outlives the command that started it.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import command
from supervisor.observe import exec_events


def _slot_lock() -> Any:
    path = paths.ao_home() / "slots.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w")


def wait_for_slot(session: str, limit: int, poll: float = 0.25) -> None:
    """Queued sessions start in spawn order as running ones end; a file lock keeps the check atomic."""
    while True:
        with _slot_lock() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = store.get(session)
            if record["status"] != "queued":
                return
            earlier = [s for s in store.all_sessions() if s["status"] == "queued" and s["started_at"] < record["started_at"]]
            if store.count_running() < limit and not earlier:
                store.update(session, status="spawning")
                return
        time.sleep(poll)


def run(session: str) -> int:
    record = store.get(session)
    launch = record["launch"]
    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True, exist_ok=True)
    if record["status"] == "queued":
        wait_for_slot(session, int(launch.get("max_concurrent") or 1))
    env = command.apply_env(launch["env"], launch.get("unset") or [])
    fold = exec_events.ExecFold(thread_id=record.get("thread_id"))
    killed = {"flag": False}
    with open(sdir / "exec.jsonl", "ab") as events_out, open(sdir / "codex.stderr.log", "ab") as err_out:
        try:
            child = subprocess.Popen(launch["argv"], cwd=record["workspace"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=err_out)
        except OSError as exc:
            store.update(session, status="failed", activity="exited", error=f"cannot start codex: {exc}",
                         ended_at=time.time(), pid=None)
            return 1

        def on_term(signum: int, _frame: Any) -> None:
            killed["flag"] = True
            try:
                child.terminate()
            except OSError:
                pass

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        store.update(session, status="working", activity="active", codex_pid=child.pid, exit_code=None,
                     error=None, ended_at=None)
        assert child.stdout is not None
        for line in child.stdout:
            events_out.write(line)
            events_out.flush()
            changes = fold.feed(line)
            if changes:
                store.update(session, **changes)
        code = child.wait()
    final: dict[str, Any] = {"exit_code": code, "activity": "exited", "ended_at": time.time(), "codex_pid": None}
    if killed["flag"]:
        final["status"] = "killed"
    elif code == 0 and not fold.failed:
        final["status"] = "done"
    else:
        final["status"] = "failed"
        final["error"] = fold.error or _stderr_tail(sdir / "codex.stderr.log") or f"codex exited {code}"
    if fold.thread_id and not record.get("rollout_path"):
        rollout = exec_events.find_rollout(fold.thread_id, Path(env.get("CODEX_HOME") or paths.codex_home()))
        if rollout:
            final["rollout_path"] = str(rollout)
    store.update(session, **final)
    return 0 if final["status"] == "done" else 1


def _stderr_tail(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


def start_detached(session: str) -> int:
    """Fork the runner into its own process session; returns its pid."""
    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True, exist_ok=True)
    log = open(sdir / "runner.log", "ab")
    env = dict(os.environ)
    env["AO_HOME"] = str(paths.ao_home())
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.launch.runner", session],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            start_new_session=True, close_fds=True)
    log.close()
    return proc.pid


def main() -> None:
    session = sys.argv[1]
    try:
        code = run(session)
    except FatalError as exc:
        print(f"ao runner: {exc}", file=sys.stderr)
        try:
            store.update(session, status="failed", activity="exited", error=str(exc), ended_at=time.time())
        except FatalError:
            pass
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
