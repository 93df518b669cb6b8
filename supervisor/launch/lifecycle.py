"""Kill, remove and talk to running sessions."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from supervisor import paths, store
from supervisor.govern import ledger
from supervisor.errors import FatalError
from supervisor.launch import tmux, workspace as ws
from supervisor.observe import locate


def kill_tree(pid: int | None, grace: float = 3.0) -> list[int]:
    """Terminate a process and all its descendants, wait, then kill what is left."""
    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


def end_orphan(codex_pid: int | None) -> None:
    """End a codex whose supervisor died; only if that pid still is a codex (pids get reused)."""
    if not codex_pid:
        return
    try:
        name = " ".join(psutil.Process(codex_pid).cmdline()[:1])
    except psutil.Error:
        return
    if name.endswith("codex"):
        kill_tree(codex_pid)


def kill(session: str) -> dict[str, Any]:
    record = store.get(session)
    session = record["session"]
    if not store.is_live(record):
        raise FatalError(f"session {session} is not running (status {record['status']})")
    store.update(session, status="killed")
    ledger.append(paths.session_dir(session), "lifecycle", {"event": "kill"})
    kill_tree(record.get("codex_pid"))
    if record["runtime"] == "tmux":
        tmux.kill(session)
    kill_tree(record.get("pid"))
    record = store.get(session)
    if record.get("ended_at") is None:  # the runner died before it could record the end
        store.update(session, activity="exited", ended_at=time.time(), codex_pid=None)
    return store.get(session)


def remove(session: str, force: bool) -> str:
    record = store.get(session)
    session = record["session"]
    if store.is_live(record):
        raise FatalError(f"session {session} is still running; `ao kill {session}` first")
    workspace = Path(record["workspace"])
    if not record.get("repo") or Path(record["repo"]) == workspace:
        raise FatalError(f"session {session} ran in {workspace}, which ao did not create; it is left alone")
    if workspace.exists():
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True)
        if dirty.stdout.strip() and not force:
            raise FatalError(f"{workspace} has uncommitted changes; commit them or pass --force")
        ws.remove_worktree(Path(record["repo"]), workspace)
        if workspace.exists():
            shutil.rmtree(workspace)
            subprocess.run(["git", "worktree", "prune"], cwd=record["repo"], capture_output=True)
    return str(workspace)


def send_tmux(record: dict[str, Any], message: str, timeout: float = 15.0) -> None:
    """Type the message into the TUI and confirm it by seeing it arrive in the rollout; retry once."""
    session = record["session"]
    if not tmux.alive(session):
        raise FatalError(f"session {session} has no live tmux session; use `ao resume {session} MESSAGE`")
    rollout = record.get("rollout_path")
    if not rollout:
        raise FatalError(f"session {session} has no rollout yet; wait until codex has started")
    path = Path(rollout)
    offset = path.stat().st_size
    for attempt in (1, 2):
        tmux.paste(session, message)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts, offset = locate.user_messages(path, offset)
            if any(text.strip() == message.strip() for text in texts):
                return
            time.sleep(0.2)
    raise FatalError(f"message not delivered to {session}: it did not appear in {path} after two tries")
