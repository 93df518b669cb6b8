"""Process trees: end one with terminate-wait-kill, and tie a child's life to its parent's."""
from __future__ import annotations

import os
import signal


def kill_tree(pid: int | None, grace: float = 3.0) -> list[int]:
    """Terminate a process and all its descendants, wait, then kill what is left; returns the pids."""
    import psutil  # lazy: most commands never end a process

    if not pid or pid <= 1 or pid == os.getpid():  # a corrupt record must never take init or ao down
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


def die_with_parent() -> None:
    """In a child (preexec_fn): get SIGTERM when the parent dies, even by kill -9 (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere `ao status` ends an orphaned codex when it sees the runner gone
