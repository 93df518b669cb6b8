"""Reconcile: the writes a read needs, in one named step.

What a session's record says can lag behind the world: the wrappers wrote branch and PR events, or the
session's supervisor died without recording an end. `reconcile` folds the events into the store, moves
them into the signed ledger while the run is live, and ends a codex whose supervisor is gone. `ao status`,
`ao wait` and `ao send` call it before they read; nothing else writes on a read path.
"""
from __future__ import annotations

import time
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
    changed = {k: v for k, v in fields.items() if record.get(k) != v}
    if changed:
        store.update(record["session"], **changed)
        record = cast(SessionRecord, {**record, **changed})
    return record


def end_orphan(codex_pid: int | None) -> None:
    """End a codex (or the jail around it) whose supervisor died; only if the pid still is one (pids get reused)."""
    if not codex_pid:
        return
    name = processes.command_name(codex_pid) or ""
    if name.endswith(("codex", "bwrap")):
        processes.kill_tree(codex_pid)


# A spawn records its session, then starts the session's supervisor within a second or two; a record
# with no supervisor long after that belongs to an `ao spawn` killed in between (kill -9: a ^C or
# SIGTERM takes the record back itself). It must not hold a slot.
STALE_SPAWN_S = 30.0


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
        end_orphan(fresh.get("codex_pid"))  # codex must not run on unsupervised
        store.update(record["session"], status=Status.FAILED, activity="exited", ended_at=time.time(),
                     error="the session's supervisor process died before codex finished")
        return store.get(record["session"])
    return record


def reconcile_all(records: list[SessionRecord]) -> list[SessionRecord]:
    return [reconcile(r) for r in records]
