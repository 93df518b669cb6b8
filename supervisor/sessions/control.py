"""The operator's verbs on one session: kill, rm and send."""
from __future__ import annotations

import re
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


def kept_outcome(record: SessionRecord) -> Status | None:
    """The status a kill keeps because the session's work had finished: done, an open or merged PR, or
    `done` for an interactive agent waiting for its user after its turn; None when the kill cuts work short."""
    from supervisor.sessions import reconcile

    if record["status"] in KEPT:
        return Status(record["status"])
    if reconcile.turn_ended(record):
        return Status.DONE
    return None


# statuses that say the work was done; a kill after them stops a process, not the work
KEPT = frozenset({Status.DONE, Status.PR_OPEN, Status.MERGED})


def kill(session: str) -> SessionRecord:
    """End the session's processes and runtime session; also what is left of one whose supervisor died.

    A session whose work had finished keeps its outcome (`kept_status`); any other becomes `killed`.
    """
    from supervisor.govern import ledger

    record = store.get(session)
    session = record["session"]
    if not store.is_live(record):
        return _end_leftovers(record)
    kept = kept_outcome(record)
    # written before anything is stopped: the runner's end must find it (runner.finish keeps either)
    store.update(session, kept_status=kept, **({} if kept else {"status": Status.KILLED}))
    ledger.append(paths.session_dir(session), "lifecycle",
                  {"event": "kill", **({"kept": kept.value} if kept else {})})
    ended = processes.end_session(session, [record.get("codex_pid")], record["started_at"])
    _stop_runtime(record)
    runner = record.get("pid")
    if runner and _is_runner(runner, session):
        processes.kill_tree(runner)
    ended += processes.end_session(session, [], record["started_at"])  # anything started meanwhile
    final: dict[str, object] = {}
    record = store.get(session)
    if kept:  # the runner may have recorded its SIGTERM as killed or failed before it learnt otherwise
        final.update(status=kept, kept_status=kept, error=None)
    if record.get("ended_at") is None:  # the runner died before it could record the end
        final.update(activity="exited", ended_at=time.time(), codex_pid=None)
    if final:
        store.update(session, **final)
    return store.get(session)


def _is_runner(pid: int, session: str) -> bool:
    """The record's runner pid still is this session's runner (pids get reused)."""
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "supervisor.sessions.runner" in cmdline and session in cmdline


def _stop_runtime(record: SessionRecord) -> None:
    try:
        runtimes.of(record).stop(record)
    except (FatalError, OSError):  # tmux uninstalled or its server gone: the processes are ended anyway
        pass


def _end_leftovers(record: SessionRecord) -> SessionRecord:
    """An ended session may still have processes (its supervisor was kill -9'd and nothing reconciled, or
    an agent's child escaped codex's tree): end them, or say there is nothing to end."""
    from supervisor.govern import ledger

    session = record["session"]
    runtime = runtimes.of(record)
    ended = processes.end_session(session, [record.get("codex_pid")], record["started_at"])
    # a terminal runtime's session is found by its name; a headless one's pid is covered above
    if ended or (runtime.interactive and runtime.alive(record)):
        _stop_runtime(record)
        ended = ended or [0]
    if not ended:
        raise FatalError(f"session {session} is not running (status {record['status']}) and has no process left")
    ledger.append(paths.session_dir(session), "lifecycle", {"event": "kill", "leftovers": [p for p in ended if p]})
    return store.get(session)


def _listed_worktree(session: str, workspace: Path, repo: Path) -> Path:
    """WORKSPACE, if it lies directly under $AO_HOME/worktrees and `git worktree list` of REPO lists it."""
    root = paths.worktrees_dir().resolve()
    real = workspace.resolve()
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


def _ao_worktree(record: SessionRecord) -> Path:
    """The session's workspace, if it is a worktree ao made under $AO_HOME/worktrees and git lists."""
    session, workspace = record["session"], Path(record["workspace"])
    repo = record.get("repo")
    if not repo or Path(repo) == workspace:
        raise FatalError(f"session {session} ran in {workspace}, which ao did not create; it is left alone")
    return _listed_worktree(session, workspace, Path(repo))


def _check_clean(workspace: Path) -> None:
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    if dirty.returncode != 0:  # a status git cannot give is not "clean"
        raise FatalError(f"cannot tell whether {workspace} is clean (git status: {dirty.stderr.strip()}); "
                         "pass --force to remove it anyway")
    if dirty.stdout.strip():
        raise FatalError(f"{workspace} has uncommitted changes; commit them or pass --force")


def _drop_worktree(repo: Path, workspace: Path) -> None:
    ws.remove_worktree(repo, workspace)
    if workspace.exists():
        shutil.rmtree(workspace)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


def remove(session: str, force: bool) -> str:
    """Remove the session's worktree (records stay); refuses anything ao did not create. A session id with
    no record (an interrupted spawn, a store restored from backup) has its leftover dirs removed instead."""
    record = store.find(session)
    if record is None:
        return _remove_recordless(session, force)
    session = record["session"]
    if store.is_live(record):
        raise FatalError(f"session {session} is still running; `ao kill {session}` first")
    workspace = Path(record["workspace"])
    if not workspace.exists():
        return str(workspace)
    workspace = _ao_worktree(record)
    if not force:
        _check_clean(workspace)
    _drop_worktree(Path(record["repo"] or ""), workspace)
    return str(workspace)


SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# a spawn makes the session dir and worktree before it records the session: younger dirs may be one at work
RECORDLESS_MIN_AGE_S = 60.0


def _remove_recordless(session: str, force: bool) -> str:
    """Remove $AO_HOME/sessions/ID and $AO_HOME/worktrees/ID that no record owns, with the same checks."""
    if not SESSION_ID.fullmatch(session) or session in (".", ".."):
        raise FatalError(f"unknown session {session!r}; `ao status` lists the known ones")
    sdir, tree = paths.session_dir(session), paths.worktrees_dir() / session
    found = [p for p in (tree, sdir) if p.exists() or p.is_symlink()]
    if not found:
        raise FatalError(f"unknown session {session!r}: no record and no {sdir} or {tree}; "
                         "`ao status` lists the known ones")
    for path in found:
        if path.is_symlink():
            raise FatalError(f"{path} is a symlink, not a dir ao made; it is left alone")
        if time.time() - path.stat().st_mtime < RECORDLESS_MIN_AGE_S:
            raise FatalError(f"{path} changed in the last {RECORDLESS_MIN_AGE_S:g} s and has no record yet: it may "
                             "belong to an `ao spawn` still at work; try again in a minute")
    if processes.session_processes(session, [], 0.0):
        raise FatalError(f"processes of {session} are still running; `ao kill {session}` first")
    removed = []
    if tree.exists():
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=tree,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if common.returncode != 0 or not common.stdout.strip():
            raise FatalError(f"{tree} has no record and git does not know it as a worktree "
                             f"({common.stderr.strip() or 'no git dir'}); it is left alone")
        repo = Path(common.stdout.strip()).parent
        _listed_worktree(session, tree, repo)
        if not force:
            _check_clean(tree)
        _drop_worktree(repo, tree)
        removed.append(str(tree))
    if sdir.exists():
        shutil.rmtree(sdir)
        removed.append(str(sdir))
    return " and ".join(removed)


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
    if not Path(record["workspace"]).is_dir():  # resuming would fail deep in git with a misleading word
        raise FatalError(f"session {record['session']} has ended and its workspace {record['workspace']} no longer "
                         "exists (removed by `ao rm`?), so it cannot be resumed; start a new one with `ao spawn`")
    return spawn.resume(cfg, record["session"], message, None if runtime.interactive else runtime.name), False
