"""The detached supervisor of one session: waits for a slot, runs codex on its runtime, records what happens.

Started by `ao spawn` (and `ao resume`/`ao send`) in its own process session, so it outlives the
command that started it. It hosts the session's guard server, outside the agent's jail: codex's
hooks are thin clients that ask it over a unix socket. The runtime reports what happened; this
module alone turns that into the session's record: status, activity, thread, rollout, the end, the
budget stop, a run the guard never heard from (ungoverned), and a run that stalled (codex alive but
its model unreachable, a login screen, or no progress mid-turn for `stall_after_s`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import processes, runtimes
from supervisor.launch.runtimes.base import Changed, Exited, Job, Runtime, Started, Tick, Trouble, codex_home_of
from supervisor.locking import file_lock
from supervisor.records import PR_STATUSES, SessionRecord, Status


def wait_for_slot(session: str, limit: int, poll: float = 0.25,
                  sleep: Callable[[float], None] = time.sleep, slots: str = "alive") -> None:
    """Queued sessions start in spawn order as running ones end (or, under `slots: active`, go idle
    waiting for their user); a file lock keeps the check atomic."""
    from supervisor.sessions import reconcile

    while True:
        with file_lock(paths.ao_home() / "slots.lock"):
            reconcile.release_stale_spawns()
            record = store.get(session)
            if record["status"] != Status.QUEUED:
                return
            earlier = [s for s in store.all_sessions()
                       if s["status"] == Status.QUEUED and s["started_at"] < record["started_at"]]
            if reconcile.count_running(slots) < limit and not earlier:
                store.update(session, status=Status.SPAWNING)
                return
        sleep(poll)


# How long a tool call or a turn's end may come before SessionStart has reached the guard: the hook runs
# synchronously before codex's first turn, so any wait beyond this means the hooks did not run.
GOVERNANCE_GRACE_S = 3.0
UNGOVERNED = ("ungoverned: codex ran {what} but its hooks never reached ao's guard (hooks disabled or "
              "replaced); the session was stopped")


def finish(session: str, code: int | None, failed: bool, error: str | None, extra: dict[str, Any],
           blocked: bool = False, blocked_reason: str | None = None, lost: bool = False) -> Status:
    """Record the end of a run; a session `ao kill` already marked stays killed, and one it stopped
    after its work had finished keeps that outcome (`kept_status`). A run whose machine died is `lost`."""
    record = store.get(session)
    current = record["status"]
    kept = record.get("kept_status")
    if kept:
        status = Status(kept)
    elif current == Status.KILLED:
        status = Status.KILLED
    elif lost:
        status = Status.LOST
    elif blocked:
        status = Status.BLOCKED
        extra = {**extra, "error": blocked_reason or "stopped at a turn boundary: the session's budget is spent"}
    elif code == 0 and not failed:
        status = Status(current) if current in PR_STATUSES else Status.DONE
    else:
        status = Status.FAILED
    fields: dict[str, Any] = {"status": status, "exit_code": code, "activity": "exited",
                              "ended_at": time.time(), "codex_pid": None, **extra}
    if status in (Status.FAILED, Status.LOST):
        fields["error"] = error or f"codex exited {code}"
    store.update(session, **fields)
    try:
        from supervisor.govern import ledger

        ledger.ingest_wrapper_events(paths.session_dir(session))  # the wrappers' claims
        ledger.append(paths.session_dir(session), "lifecycle",
                      {"event": "exit", "status": status.value, "exit_code": code, "error": fields.get("error")})
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


DEFAULT_STALL_AFTER_S = 60.0
FOLLOW_S = 0.025  # how often the spend follower reads the rollout while a budget is set


def _follow_spend(follow: Callable[[str | None], bool], rollout_of: Callable[[], str | None],
                  done: threading.Event) -> None:
    """Price the rollout as codex writes it, so a response without a hooked tool call still stops at the
    ceiling; `follow` stops codex itself when spend reaches the budget."""
    complained = False
    while not done.wait(FOLLOW_S):
        try:
            if follow(rollout_of()):
                return
        except Exception as exc:  # the guard still prices at every hook; say it once
            if not complained:
                print(f"ao runner: the spend follower failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                complained = True


class StallWatch:
    """Pure: decides from reports and a clock whether a live run is stalled, and why.

    Trouble a runtime reports stalls at once; quiet stalls only mid-turn (activity `active`), with no
    command running and no approval waiting, after `stall_after_s`. Progress ends both.
    """

    def __init__(self, stall_after_s: float, now: float) -> None:
        self.stall_after_s = max(1.0, stall_after_s)
        self.last_progress = now
        self.trouble: str | None = None
        self.activity = "active"
        self.tool_running = False

    def see(self, report: object, now: float) -> None:
        if isinstance(report, Changed):
            self.activity = report.fields.get("activity", self.activity)
            if report.progress or report.tool_call:
                self.last_progress, self.trouble, self.tool_running = now, None, report.tool_call
        elif isinstance(report, Trouble):
            self.trouble = report.reason
        elif isinstance(report, Tick):
            self.tool_running = report.tool_running

    def reason(self, now: float, approval_waiting: Callable[[], bool]) -> str | None:
        """Why the run is stalled now, or None; asks about approvals only once the quiet is long enough."""
        if self.trouble:
            return self.trouble
        quiet = now - self.last_progress
        if self.activity != "active" or self.tool_running or quiet < self.stall_after_s or approval_waiting():
            return None
        # the same words while it lasts, so the record is written once, not on every tick
        return (f"no progress for over {self.stall_after_s:g} s (stall_after_s): codex is alive mid-turn "
                "but neither its model nor a tool has produced anything")


def supervise(session: str, runtime: Runtime, job: Job, budget_spent: Callable[[str], bool],
              governed: threading.Event | None = None,
              before_finish: Callable[[], None] = lambda: None,
              clock: Callable[[], float] = time.monotonic, stall_after_s: float = DEFAULT_STALL_AFTER_S,
              approval_waiting: Callable[[], bool] = lambda: False,
              on_thread: Callable[[str, str | None], None] = lambda _thread, _rollout: None,
              follow: Callable[[str | None], bool] | None = None,
              set_halt: Callable[[Callable[[str], None]], None] = lambda _halt: None) -> Status:
    """Run one job to its end on `runtime`, keeping the record; returns the final status.

    `governed` is set once the guard heard codex's SessionStart; a tool call or a turn's end without
    it stops the run. `before_finish` runs once codex is gone, before the end is recorded. `clock`
    and `stall_after_s` decide `stalled`; `approval_waiting` says the quiet is a human's turn.
    `on_thread` hears codex's own thread id (from its stdout or rollout), which pins the guard's
    provenance checks to the real thread rather than to whoever sent the first SessionStart.
    `follow` prices the rollout (True once the budget is reached); `set_halt` hands the guard the hard
    stop it calls, before it answers the hook, when a response crosses the ceiling.
    """
    try:
        run = runtime.start(job)
    except (OSError, FatalError) as exc:
        before_finish()
        return finish(session, None, True, f"cannot start codex: {exc}", {})
    killed = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal killed
        killed = True
        run.stop()

    signal.signal(signal.SIGTERM, on_term)
    exhausted: list[str] = []

    def on_exhausted(reason: str) -> None:
        if exhausted:
            return
        exhausted.append(reason)
        # freeze and kill codex's whole tree at once: nothing of it runs after this returns
        processes.kill_tree(getattr(run, "pid", None), grace=0)
        run.stop()

    set_halt(on_exhausted)
    stored: dict[str, Any] = {}
    following = threading.Event()
    if follow is not None:
        threading.Thread(target=_follow_spend, name="ao-spend",
                         args=(follow, lambda: stored.get("rollout_path") or job.rollout_path, following),
                         daemon=True).start()
    blocked = False
    ungoverned: str | None = None
    end = Exited(None, True, "the runtime ended without reporting an exit")
    watch = StallWatch(stall_after_s, clock())
    stalled: str | None = None
    for report in run.reports():
        if isinstance(report, Started):
            store.update(session, status=Status.WORKING, activity="active", codex_pid=report.pid,
                         exit_code=None, error=None, ended_at=None)
        elif isinstance(report, Changed):
            fresh = {k: v for k, v in report.fields.items() if stored.get(k) != v}
            if fresh:
                store.update(session, **fresh)
                stored.update(fresh)
            if fresh.get("thread_id") or fresh.get("rollout_path"):
                on_thread(stored.get("thread_id") or "", stored.get("rollout_path"))
            idle = report.fields.get("activity") == "idle"
            if governed is not None and not ungoverned and (report.tool_call or idle) \
                    and not governed.wait(GOVERNANCE_GRACE_S):
                ungoverned = UNGOVERNED.format(what="a tool call" if report.tool_call else "a turn")
                run.stop()
            if idle and not blocked and budget_spent(session):
                blocked = True  # the turn is over and the budget is spent: stop here
                run.stop()
        elif isinstance(report, Exited):
            end = report
            break
        if not killed and not blocked and not ungoverned and not exhausted:
            watch.see(report, clock())
            stalled = _record_stall(session, stalled, watch, clock(), approval_waiting)
    following.set()
    before_finish()
    if killed:
        store.update(session, status=Status.KILLED)
    if ungoverned:
        return finish(session, end.code, True, ungoverned, end.fields)
    if exhausted and not killed:
        return finish(session, end.code, end.failed, end.error, end.fields, blocked=True,
                      blocked_reason=f"stopped at the budget ceiling: {exhausted[0]}")
    if end.lost and not killed:
        return finish(session, end.code, True, end.error, end.fields, lost=True)
    return finish(session, end.code, end.failed, end.error, end.fields,
                  blocked=blocked or (not killed and budget_spent(session)))


def _record_stall(session: str, stalled: str | None, watch: StallWatch, now: float,
                  approval_waiting: Callable[[], bool]) -> str | None:
    """Write `stalled` with its reason, or `working` again once it passed; returns the reason now."""
    reason = watch.reason(now, approval_waiting)
    if reason == stalled:
        return stalled
    current = store.get(session)["status"]
    if reason:
        if current in (Status.WORKING, Status.STALLED):
            store.update(session, status=Status.STALLED, error=reason)
            if stalled is None:
                _ledger_note(session, {"event": "stalled", "reason": reason})
            return reason
        return stalled
    if current == Status.STALLED:
        store.update(session, status=Status.WORKING, error=None)
        _ledger_note(session, {"event": "recovered"})
    return None


def _ledger_note(session: str, body: dict[str, Any]) -> None:
    try:
        from supervisor.govern import ledger

        ledger.append(paths.session_dir(session), "lifecycle", body)
    except (OSError, FatalError) as exc:  # the store already holds the status
        print(f"ao runner: cannot append {body.get('event')} to the ledger: {exc}", file=sys.stderr)


def run(session: str) -> int:
    """Start the guard, render the command line around it, run codex to its end."""
    from supervisor.govern import guard, hooks
    from supervisor.govern.guard_server import GuardServer
    from supervisor.launch import plan

    os.umask(0o077)  # what codex and the agent create (rollouts, state dbs, new files) is the user's alone
    record = store.get(session)
    sdir = paths.ensure_private_dir(paths.session_dir(session))
    if record["status"] == Status.QUEUED:
        wait_for_slot(session, int(record["launch"].get("max_concurrent") or 1),
                      slots=str(record["launch"].get("slots") or "alive"))
    record = store.get(session)
    runtime = runtimes.of(record)
    server = GuardServer(session, paths.ao_home(), sdir, codex_home=codex_home_of(record))
    try:
        server.start()
    except (guard.GuardError, OSError) as exc:
        return 0 if finish(session, None, True, f"the session's guard could not start: {exc}", {}) == Status.DONE else 1
    resumed_thread = record.get("thread_id")
    if resumed_thread:  # a resumed thread: codex's own id, not the first SessionStart, pins it
        server.expect_thread(resumed_thread, record.get("rollout_path"))
    launch = record["launch"]
    jailed = bool(launch.get("jail"))
    # inside the jail's pid namespace the runner has no pid; the read-only socket dir guards the socket
    guard_pairs = hooks.guard_overrides(server.socket_dir, float(launch.get("approval_timeout_s") or 300),
                                        server_pid=0 if jailed else os.getpid())
    if launch.get("plan") == "enforce":  # the agent registers its plan through ao's MCP server
        guard_pairs += hooks.plan_mcp_overrides()
    try:
        # a remote runtime renders codex's command line on its node, around that node's hook relay and jail;
        # the one stored here shows its shape with this machine's paths
        argv = plan.render_argv(session, {**launch, "jail": None} if runtime.remote else launch, runtime,
                                [*guard_pairs, *hooks.safety_overrides()])
    except (OSError, FatalError) as exc:
        server.stop()
        return 0 if finish(session, None, True, f"cannot prepare the launch: {exc}", {}) == Status.DONE else 1
    store.update(session, launch={**launch, "argv": argv})
    home = str(paths.ao_home())
    status = supervise(session, runtime, job_for(store.get(session)),
                       budget_spent=lambda _s: server.budget_exhausted(), governed=server.session_started,
                       before_finish=lambda: server.stop(drain_s=10),
                       stall_after_s=float(launch.get("stall_after_s") or DEFAULT_STALL_AFTER_S),
                       approval_waiting=lambda: bool(guard.pending_approvals(home, session)),
                       on_thread=lambda thread, rollout: server.expect_thread(thread, rollout) if thread else None,
                       follow=server.follow, set_halt=lambda stop: setattr(server, "on_exhausted", stop))
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
    pid = proc.pid
    # The runner outlives this object, whose finalizer polls it. A ^C or SIGTERM landing inside that
    # finalizer is lost ("Exception ignored in Popen.__del__", a traceback on the terminal, and the spawn
    # goes on), so it runs with both held back; they are delivered, as KeyboardInterrupt, just after.
    # Only around the finalizer: a mask set before Popen would be the runner's too.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        del proc
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return pid


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
