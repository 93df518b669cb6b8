"""The detached supervisor of one session: waits for a slot, runs codex, records what happens.

Started by `ao spawn` (and `ao resume`/`ao send`) in its own process session, so it outlives
the command that started it. Headless: reads `codex exec --json` events. tmux: watches the
tmux session and finds the thread's rollout.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.govern import guard, ledger
from supervisor.launch import command, tmux
from supervisor.observe import activity, exec_events, locate


def wait_for_slot(session: str, limit: int, poll: float = 0.25) -> None:
    """Queued sessions start in spawn order as running ones end; a file lock keeps the check atomic."""
    lock_path = paths.ao_home() / "slots.lock"
    while True:
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = store.get(session)
            if record["status"] != "queued":
                return
            earlier = [s for s in store.all_sessions()
                       if s["status"] == "queued" and s["started_at"] < record["started_at"]]
            if store.count_running() < limit and not earlier:
                store.update(session, status="spawning")
                return
        time.sleep(poll)


def _die_with_parent() -> None:
    """In the codex child: get SIGTERM when this runner dies, even by kill -9 (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere `ao status` ends an orphaned codex when it sees the runner gone


def budget_stopped(session: str) -> bool:
    return bool(guard.session_governance(str(paths.ao_home()), session)["budget_blocked"])


def finish(session: str, code: int | None, failed: bool, error: str | None, extra: dict[str, Any],
           blocked: bool = False) -> str:
    """Record the end of a run; a session `ao kill` already marked stays killed."""
    current = store.get(session)["status"]
    if current == "killed":
        status = "killed"
    elif blocked:
        status = "blocked"
        extra = {**extra, "error": "stopped at a turn boundary: the session's budget is spent"}
    elif code == 0 and not failed:
        status = current if current in ("pr_open", "merged", "closed") else "done"
    else:
        status = "failed"
    fields: dict[str, Any] = {"status": status, "exit_code": code, "activity": "exited",
                              "ended_at": time.time(), "codex_pid": None, **extra}
    if status == "failed":
        fields["error"] = error or f"codex exited {code}"
    store.update(session, **fields)
    try:
        ledger.ingest_wrapper_events(paths.session_dir(session))
        ledger.spool(paths.session_dir(session), "lifecycle", {"event": "exit", "status": status, "exit_code": code})
    except (OSError, FatalError) as exc:  # the run's end is already recorded in the store
        print(f"ao runner: cannot append the exit to the ledger: {exc}", file=sys.stderr)
    return status


def _codex_home(env: dict[str, str]) -> Path:
    return Path(env.get("CODEX_HOME") or paths.codex_home())


def run_headless(session: str, record: dict[str, Any], env: dict[str, str]) -> str:
    launch, sdir = record["launch"], paths.session_dir(session)
    fold = exec_events.ExecFold(thread_id=record.get("thread_id"))
    rollout = record.get("rollout_path")
    killed = False
    with open(sdir / "exec.jsonl", "ab") as events_out, open(sdir / "codex.stderr.log", "ab") as err_out:
        try:
            child = subprocess.Popen(launch["argv"], cwd=record["workspace"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=err_out, preexec_fn=_die_with_parent)
        except OSError as exc:
            return finish(session, None, True, f"cannot start codex: {exc}", {})

        def on_term(_signum: int, _frame: Any) -> None:
            nonlocal killed
            killed = True
            child.terminate()

        signal.signal(signal.SIGTERM, on_term)
        store.update(session, status="working", activity="active", codex_pid=child.pid, exit_code=None,
                     error=None, ended_at=None)
        assert child.stdout is not None
        blocked = False
        for line in child.stdout:
            events_out.write(line)
            events_out.flush()
            changes = fold.feed(line)
            if "thread_id" in changes and not rollout:
                # codex has created the rollout by now: map thread -> path once, so status never searches
                found = locate.find_rollout(changes["thread_id"], _codex_home(env), record["started_at"])
                if found:
                    rollout = changes["rollout_path"] = str(found)
            if changes:
                store.update(session, **changes)
                if changes.get("activity") == "idle" and budget_stopped(session):
                    blocked = True  # the guard denied every tool call; stop at this turn boundary
                    child.terminate()
        code = child.wait()
    extra: dict[str, Any] = {}
    if fold.thread_id and not rollout:
        rollout = locate.find_rollout(fold.thread_id, _codex_home(env), record["started_at"])
        if rollout:
            extra["rollout_path"] = str(rollout)
    if killed:
        store.update(session, status="killed")
    error = fold.error or _stderr_tail(sdir / "codex.stderr.log")
    if code is not None and code < 0 and not killed:
        error = f"codex was killed by signal {-code}" + (f" ({error})" if error else "")
    return finish(session, code, fold.failed, error, extra, blocked=blocked or budget_stopped(session))


def run_tmux(session: str, record: dict[str, Any], env: dict[str, str], poll: float = 0.5) -> str:
    launch = record["launch"]
    pid = tmux.start(session, record["workspace"], launch["argv"], launch["env"], launch.get("unset") or [])
    store.update(session, status="working", activity="active", codex_pid=pid, exit_code=None, error=None,
                 ended_at=None)
    thread, rollout = record.get("thread_id"), record.get("rollout_path")
    since = time.time() - 1
    blocked = False
    while tmux.alive(session):
        if not thread:
            found = locate.find_by_workspace(record["workspace"], since, _codex_home(env))
            if found:
                thread, rollout = found[0], str(found[1])
                store.update(session, thread_id=thread, rollout_path=rollout)
        if rollout and budget_stopped(session) and activity.activity(rollout, True) == "idle":
            blocked = True  # the turn is over and the budget is spent: stop the TUI
            tmux.kill(session)
            break
        time.sleep(poll)
    code = tmux.exit_code(session)
    return finish(session, code, False, None if code == 0 else f"codex exited {code}", {}, blocked=blocked)


def run(session: str) -> int:
    record = store.get(session)
    launch = record["launch"]
    paths.session_dir(session).mkdir(parents=True, exist_ok=True)
    if record["status"] == "queued":
        wait_for_slot(session, int(launch.get("max_concurrent") or 1))
    env = command.apply_env(launch["env"], launch.get("unset") or [])
    runner = run_tmux if record["runtime"] == "tmux" else run_headless
    return 0 if runner(session, store.get(session), env) == "done" else 1


_STDERR_NOISE = ("Reading additional input from stdin", "WARNING: proceeding, even though")


def _stderr_tail(path: Path) -> str:
    """codex's last meaningful stderr line (its start-up chatter is not an error)."""
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines()
                 if l.strip() and not l.startswith(_STDERR_NOISE)]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


def start_detached(session: str) -> int:
    """Fork the runner into its own process session; returns its pid."""
    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["AO_HOME"] = str(paths.ao_home())
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(sdir / "runner.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor.launch.runner", session],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
    return proc.pid


def main() -> None:
    session = sys.argv[1]
    try:
        code = run(session)
    except FatalError as exc:
        print(f"ao runner: {exc}", file=sys.stderr)
        try:
            finish(session, None, True, str(exc), {})
        except FatalError:
            pass
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
