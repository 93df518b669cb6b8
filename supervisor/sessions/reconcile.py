"""Reconcile: the writes a read needs, in one named step.

What a session's record says can lag behind the world: the wrappers wrote branch and PR events, or the
session's supervisor died without recording an end. `reconcile` folds the events into the store, moves
them into the signed ledger while the run is live, and ends a codex whose supervisor is gone. `ao status`,
`ao wait` and `ao send` call it before they read; nothing else writes on a read path.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import cast

from supervisor import paths, store
from supervisor.launch import processes
from supervisor.records import RUNNER_OWNED, SessionRecord, Status


def fold_events(record: SessionRecord) -> SessionRecord:
    """Fold the wrappers' branch and PR events into the record; a failed or killed run keeps that status."""
    from supervisor.observe import events

    found = events.read_events(record["session"])
    if found and store.is_live(record):  # the runner takes the rest into the ledger when the run ends
        from supervisor.govern import ledger

        ledger.ingest_wrapper_events(paths.session_dir(record["session"]))
    fields = events.fold(found)
    if record["status"] in RUNNER_OWNED:
        fields.pop("status", None)
    elif record["status"] in (Status.MERGED, Status.CLOSED) and fields.get("status") == Status.PR_OPEN:
        fields.pop("status")  # a PR's end (seen on GitHub by the reactions service, or by a wrapper) stays
    changed = {k: v for k, v in fields.items() if record.get(k) != v}
    if changed:
        store.update(record["session"], **changed)
        record = cast(SessionRecord, {**record, **changed})
    return record


def end_orphan(record: SessionRecord) -> list[int]:
    """End what is left of a session whose supervisor died: codex (or the jail or tmux pane around it) with
    its descendants and every process carrying its AO_SESSION, checked against the record so a reused pid
    is left alone, and the runtime's own session (tmux). Returns the pids ended."""
    from supervisor.errors import FatalError
    from supervisor.launch import runtimes

    ended = processes.end_session(record["session"], [record.get("codex_pid")], record["started_at"])
    try:
        runtimes.of(record).stop(record)
    except (FatalError, OSError):  # tmux gone or uninstalled: its processes are ended above
        pass
    return ended


def turn_ended(record: SessionRecord) -> bool:
    """An interactive agent finished its turn and waits for its user: live, status working/pr_open/merged,
    and its rollout's newest turn event is a turn's end, written by this run (a resumed thread's rollout
    ends with the previous run's turn until the new one starts)."""
    from supervisor.errors import FatalError
    from supervisor.launch import runtimes
    from supervisor.observe import activity
    from supervisor.observe import codex_format as cf

    if not store.is_live(record) or record["status"] not in TURN_STATUSES or not record.get("rollout_path"):
        return False
    try:
        if not runtimes.of(record).interactive:
            return False
    except FatalError:  # a runtime this ao does not know: it cannot say
        return False
    events = activity.last_events(Path(record["rollout_path"] or ""))
    kinds = [cf.line_kind(e) for e in events]
    if activity.classify(kinds, 0.0, True) != "idle":  # age 0: a long quiet command is not a turn's end
        return False
    from supervisor.govern import guard

    gov = guard.session_governance(str(paths.ao_home()), record["session"])
    if gov["budget_blocked"] or gov["waiting_input"]:  # the runner is about to stop it as blocked, or a human
        return False  # must answer first: neither is work done
    ended_at = next((activity.event_time(e) for e in reversed(events) if cf.line_kind(e) in cf.IDLE_KINDS), None)
    run_started = processes.create_time(record.get("pid"))
    return ended_at is None or run_started is None or ended_at >= run_started - processes.CLOCK_SLACK_S


def count_running(slots: str = "active") -> int:
    """Sessions holding a concurrency slot under config `slots`; see `store.count_running`."""
    return store.count_running(slots, holds_slot=lambda record: not turn_ended(record))


# A spawn records its session, then starts the session's supervisor within a second or two; a record
# with no supervisor long after that belongs to an `ao spawn` killed in between (kill -9: a ^C or
# SIGTERM takes the record back itself). It must not hold a slot.
STALE_SPAWN_S = 30.0
# An interactive agent with one of these whose turn ended has done what was asked until its user speaks.
TURN_STATUSES = frozenset({Status.WORKING, Status.PR_OPEN, Status.MERGED})


def is_stale_spawn(record: SessionRecord, now: float | None = None) -> bool:
    return (record["status"] in (Status.SPAWNING, Status.QUEUED) and not record.get("pid")
            and store.is_live(record) and (now or time.time()) - record["started_at"] > STALE_SPAWN_S)


def release_stale_spawns() -> None:
    """Fail every record an interrupted `ao spawn` left without a supervisor, so none holds a slot."""
    for record in store.all_sessions():
        if is_stale_spawn(record):
            reconcile(record)


def reconcile(record: SessionRecord) -> SessionRecord:
    """Bring one record up to date with the world; returns it as stored afterwards."""
    if is_stale_spawn(record):
        store.update(record["session"], status=Status.FAILED, activity="exited", ended_at=time.time(),
                     error="its `ao spawn` was killed before the session's supervisor started")
        return store.get(record["session"])
    record = fold_events(record)
    if not store.is_live(record) or not record.get("pid"):
        return record
    if not processes.alive(record["pid"]):
        fresh = store.get(record["session"])  # the runner may have finished between the two reads
        if not store.is_live(fresh):
            return fresh
        ended = end_orphan(fresh)  # codex must not run on unsupervised
        left = f"; ao ended its {len(ended)} leftover process(es)" if ended else ""
        store.update(record["session"], status=Status.FAILED, activity="exited", ended_at=time.time(),
                     codex_pid=None, error=f"the session's supervisor process died before codex finished{left}")
        return store.get(record["session"])
    return record


def reconcile_all(records: list[SessionRecord]) -> list[SessionRecord]:
    return [reconcile(r) for r in records]
