"""Process trees: end one with terminate-wait-kill, find a session's processes wherever they went, and tie
a child's life to its parent's."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil


def kill_tree(pid: int | None, grace: float = 3.0) -> list[int]:
    """Terminate a process and all its descendants, wait, then kill what is left; returns the pids.
    `grace=0` stops and kills at once (nothing of the tree gets to run another instruction)."""
    return end_all(_tree(pid), grace)


def _tree(pid: int | None) -> Callable[[], list[psutil.Process]]:
    """A finder for `end_all`: the live process `pid` and its descendants, and every one seen before
    (a child orphaned when its parent died is still ended). A pid of 1 or ao's own finds nothing."""
    import psutil  # lazy: most commands never end a process

    if not pid or pid <= 1 or pid == os.getpid():  # a corrupt record must never take init or ao down
        return list
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return list
    known: dict[int, psutil.Process] = {}

    def find() -> list[psutil.Process]:
        try:
            found = [root, *root.children(recursive=True)] if root.is_running() else []
        except psutil.Error:
            found = []
        for proc in found:
            known.setdefault(proc.pid, proc)
        return [p for p in known.values() if _running(p)]
    return find


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:  # is_running() also checks the start time, so a reused pid is not this process
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(pid: int | None) -> bool:
    """True while `pid` runs (a zombie has ended)."""
    import psutil

    if not pid:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def command_name(pid: int) -> str | None:
    """argv[0] of a running process, or None."""
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    return cmdline[0] if cmdline else None


def create_time(pid: int | None) -> float | None:
    """When `pid` started (epoch seconds), or None if it is not running."""
    import psutil

    if not pid:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _protected() -> set[int]:
    """ao itself and every process above it: `ao kill` typed in an agent's own shell must not end the typist."""
    import psutil

    out = {0, 1, os.getpid()}
    try:
        out.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:
        pass
    return out


# psutil's create_time is rounded to clock ticks; a record's started_at is written just before the spawn
CLOCK_SLACK_S = 2.0
AGENT_NAMES = ("codex", "bwrap")


def _env_session(proc: psutil.Process) -> str | None:
    import psutil

    try:
        return proc.environ().get("AO_SESSION")
    except (psutil.Error, OSError):
        return None


def _is_ours(proc: psutil.Process, session: str, since: float) -> bool:
    """A root pid from a record names this session's agent only if it started after the session did and
    is what ao started there: codex, the jail around it, or the tmux pane's script in the session dir."""
    import psutil

    try:
        if proc.create_time() < since - CLOCK_SLACK_S or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return (any(os.path.basename(word).endswith(AGENT_NAMES) for word in cmdline.split()[:1])
            or session in cmdline or _env_session(proc) == session)


def session_processes(session: str, roots: Iterable[int | None], since: float) -> list[psutil.Process]:
    """Every live process of SESSION: the verified roots (codex, its jail, the tmux pane) with all their
    descendants, plus any process that carries AO_SESSION=SESSION, wherever it was reparented to (an agent
    under `--approval skip` can setsid and double-fork out of codex's tree). Never ao or its ancestors."""
    import psutil

    protected = _protected()
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        if not pid or pid in protected:
            continue
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            continue
        if _is_ours(root, session, since):
            found[root.pid] = root
            try:
                found.update((c.pid, c) for c in root.children(recursive=True))
            except psutil.Error:
                pass
    uid = os.getuid()
    for proc in psutil.process_iter(["uids", "create_time"]):
        info = proc.info
        if proc.pid in found or proc.pid in protected or not info.get("uids") or info["uids"].real != uid:
            continue
        if (info.get("create_time") or 0) < since - CLOCK_SLACK_S:
            continue
        if _env_session(proc) == session:
            found[proc.pid] = proc
            try:
                found.update((c.pid, c) for c in proc.children(recursive=True))
            except psutil.Error:
                pass
    live = []
    for pid, proc in found.items():
        try:
            if pid not in protected and proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
        except psutil.Error:
            continue
    return live


def end_all(find: Callable[[], list[psutil.Process]], grace: float = 3.0, rounds: int = 6) -> list[int]:
    """End what `find` returns: SIGTERM and `grace` seconds for a clean exit (none with `grace=0`), then
    rounds of SIGSTOP (so nothing forks on) and SIGKILL, finding again each round, until nothing is
    left. Returns the pids."""
    import psutil

    procs = find()
    ended = {p.pid for p in procs}
    if not procs:
        return []
    if grace > 0:
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=grace)
    for _ in range(rounds):
        left = find()
        if not left:
            break
        for proc in left:
            try:
                proc.suspend()
            except psutil.Error:
                pass
        left = list({p.pid: p for p in [*left, *find()]}.values())  # children forked before the stop landed
        for proc in left:
            ended.add(proc.pid)
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=1.0)
    return sorted(ended)


def end_session(session: str, roots: Iterable[int | None], since: float, grace: float = 3.0) -> list[int]:
    """End every process of SESSION (see `session_processes`); returns the pids it ended."""
    pids = list(roots)
    return end_all(lambda: session_processes(session, pids, since), grace)


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGTERM when the parent dies, even by kill -9 (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere `ao status` ends an orphaned codex when it sees the runner gone
