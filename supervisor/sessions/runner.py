"""The detached supervisor of one session: waits for a slot, runs codex on its runtime, records what happens.

Started by `ao spawn` (and `ao resume`/`ao send`) in its own process session, so it outlives the
command that started it. The runtime reports what happened; this module alone turns that into the
session's record: status, activity, thread, rollout, the end, and the budget stop.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import runtimes
from supervisor.launch.runtimes.base import Changed, Exited, Job, Run, Runtime, Started, codex_home_of
from supervisor.locking import file_lock
from supervisor.records import PR_STATUSES, SessionRecord, Status


def wait_for_slot(session: str, limit: int, poll: float = 0.25,
                  sleep: Callable[[float], None] = time.sleep) -> None:
    """Queued sessions start in spawn order as running ones end; a file lock keeps the check atomic."""
    while True:
        with file_lock(paths.ao_home() / "slots.lock"):
            record = store.get(session)
            if record["status"] != Status.QUEUED:
                return
            earlier = [s for s in store.all_sessions()
                       if s["status"] == Status.QUEUED and s["started_at"] < record["started_at"]]
            if store.count_running() < limit and not earlier:
                store.update(session, status=Status.SPAWNING)
                return
        sleep(poll)


def budget_stopped(session: str) -> bool:
    from supervisor.govern import guard

    return bool(guard.session_governance(str(paths.ao_home()), session)["budget_blocked"])


def finish(session: str, code: int | None, failed: bool, error: str | None, extra: dict[str, Any],
           blocked: bool = False) -> Status:
    """Record the end of a run; a session `ao kill` already marked stays killed."""
    current = store.get(session)["status"]
    if current == Status.KILLED:
        status = Status.KILLED
    elif blocked:
        status = Status.BLOCKED
        extra = {**extra, "error": "stopped at a turn boundary: the session's budget is spent"}
    elif code == 0 and not failed:
        status = Status(current) if current in PR_STATUSES else Status.DONE
    else:
        status = Status.FAILED
    fields: dict[str, Any] = {"status": status, "exit_code": code, "activity": "exited",
                              "ended_at": time.time(), "codex_pid": None, **extra}
    if status == Status.FAILED:
        fields["error"] = error or f"codex exited {code}"
    store.update(session, **fields)
    try:
        from supervisor.govern import ledger

        ledger.ingest_wrapper_events(paths.session_dir(session))
        ledger.spool(paths.session_dir(session), "lifecycle",
                     {"event": "exit", "status": status.value, "exit_code": code})
    except (OSError, FatalError) as exc:  # the run's end is already recorded in the store
        print(f"ao runner: cannot append the exit to the ledger: {exc}", file=sys.stderr)
    return status


def job_for(record: SessionRecord) -> Job:
    launch = record["launch"]
    return Job(session=record["session"], workspace=record["workspace"], argv=list(launch["argv"]),
               env=dict(launch.get("env") or {}), unset=list(launch.get("unset") or []),
               session_dir=paths.session_dir(record["session"]), codex_home=codex_home_of(record),
               started_at=record["started_at"], thread_id=record.get("thread_id"),
               rollout_path=record.get("rollout_path"), prompt_file=launch.get("prompt_file"))


def supervise(session: str, runtime: Runtime, job: Job,
              budget_spent: Callable[[str], bool] = budget_stopped) -> Status:
    """Run one job to its end on `runtime`, keeping the record; returns the final status."""
    try:
        run = runtime.start(job)
    except (OSError, FatalError) as exc:
        return finish(session, None, True, f"cannot start codex: {exc}", {})
    killed = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal killed
        killed = True
        run.stop()

    signal.signal(signal.SIGTERM, on_term)
    blocked = False
    stored: dict[str, Any] = {}
    end = Exited(None, True, "the runtime ended without reporting an exit")
    for report in run.reports():
        if isinstance(report, Started):
            store.update(session, status=Status.WORKING, activity="active", codex_pid=report.pid,
                         exit_code=None, error=None, ended_at=None)
        elif isinstance(report, Changed):
            fresh = {k: v for k, v in report.fields.items() if stored.get(k) != v}
            if fresh:
                store.update(session, **fresh)
                stored.update(fresh)
            if report.fields.get("activity") == "idle" and not blocked and budget_spent(session):
                blocked = True  # the turn is over and the budget is spent: stop here
                run.stop()
        elif isinstance(report, Exited):
            end = report
            break
    if killed:
        store.update(session, status=Status.KILLED)
    return finish(session, end.code, end.failed, end.error, end.fields,
                  blocked=blocked or (not killed and budget_spent(session)))


def run(session: str) -> int:
    record = store.get(session)
    paths.session_dir(session).mkdir(parents=True, exist_ok=True)
    if record["status"] == Status.QUEUED:
        wait_for_slot(session, int(record["launch"].get("max_concurrent") or 1))
    record = store.get(session)
    status = supervise(session, runtimes.of(record), job_for(record))
    return 0 if status == Status.DONE else 1


def start_detached(session: str) -> int:
    """Fork the runner into its own process session; returns its pid."""
    from supervisor.launch.runtimes.headless import private_log

    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["AO_HOME"] = str(paths.ao_home())
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with private_log(sdir / "runner.log") as log:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor.sessions.runner", session],
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
