"""The operator's verbs on one session: kill, rm and send."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from supervisor import paths, store
from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.launch import processes, runtimes
from supervisor.launch import workspace as ws
from supervisor.records import SessionRecord, Status


def kill(session: str) -> SessionRecord:
    from supervisor.govern import ledger

    record = store.get(session)
    session = record["session"]
    if not store.is_live(record):
        raise FatalError(f"session {session} is not running (status {record['status']})")
    store.update(session, status=Status.KILLED)
    ledger.append(paths.session_dir(session), "lifecycle", {"event": "kill"})
    processes.kill_tree(record.get("codex_pid"))
    runtimes.of(record).stop(record)
    processes.kill_tree(record.get("pid"))
    record = store.get(session)
    if record.get("ended_at") is None:  # the runner died before it could record the end
        store.update(session, activity="exited", ended_at=time.time(), codex_pid=None)
    return store.get(session)


def _ao_worktree(record: SessionRecord) -> Path:
    """The session's workspace, if it is a worktree ao made under $AO_HOME/worktrees and git lists."""
    session, workspace = record["session"], Path(record["workspace"])
    repo = record.get("repo")
    if not repo or Path(repo) == workspace:
        raise FatalError(f"session {session} ran in {workspace}, which ao did not create; it is left alone")
    root = paths.worktrees_dir().resolve()
    real = Path(workspace).resolve()
    if real.parent != root:
        raise FatalError(f"session {session}'s workspace {workspace} is not under {root}; ao removes only "
                         "worktrees it made there, so it is left alone")
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    worktrees = {Path(line[len("worktree "):]).resolve() for line in listed.stdout.splitlines()
                 if line.startswith("worktree ")}
    if listed.returncode != 0 or real not in worktrees:
        raise FatalError(f"{workspace} is not a worktree of {repo} (per `git worktree list`); it is left alone")
    return workspace


def remove(session: str, force: bool) -> str:
    """Remove the session's worktree (records stay); refuses anything ao did not create."""
    record = store.get(session)
    session = record["session"]
    if store.is_live(record):
        raise FatalError(f"session {session} is still running; `ao kill {session}` first")
    workspace = Path(record["workspace"])
    if not workspace.exists():
        return str(workspace)
    workspace = _ao_worktree(record)
    if not force:
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
        if dirty.returncode != 0:  # a status git cannot give is not "clean"
            raise FatalError(f"cannot tell whether {workspace} is clean (git status: {dirty.stderr.strip()}); "
                             "pass --force to remove it anyway")
        if dirty.stdout.strip():
            raise FatalError(f"{workspace} has uncommitted changes; commit them or pass --force")
    repo = Path(record["repo"] or "")
    ws.remove_worktree(repo, workspace)
    if workspace.exists():
        shutil.rmtree(workspace)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
    return str(workspace)


def send(cfg: Config, session: str, message: str) -> tuple[SessionRecord, bool]:
    """Deliver MESSAGE: typed into a live run where the runtime can, else a resumed turn.

    Returns the record and whether it was delivered live.
    """
    from supervisor.sessions import reconcile, spawn

    record = reconcile.reconcile(store.get(session))
    runtime = runtimes.of(record)
    if record["status"] in (Status.QUEUED, Status.SPAWNING):
        raise FatalError(f"session {record['session']} is {record['status']} and has not started yet; "
                         "send once it runs (`ao wait` does not help here: it waits for the end)")
    if store.is_live(record):
        if runtime.send(record, message):
            return record, True
        if runtime.interactive:
            raise FatalError(f"session {record['session']} has no live terminal; "
                             f"use `ao resume {record['session']} MESSAGE`")
        raise FatalError(f"{runtime.name} session {record['session']} is still working; "
                         "`ao wait` for it, then send")
    return spawn.resume(cfg, record["session"], message, None if runtime.interactive else runtime.name), False
