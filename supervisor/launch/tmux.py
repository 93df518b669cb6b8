"""The tmux runtime: one detached tmux session per agent on ao's own tmux socket."""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError


def socket_name() -> str:
    """One tmux server per AO_HOME, so ao never touches the user's own tmux sessions."""
    digest = hashlib.sha256(str(paths.ao_home().resolve()).encode()).hexdigest()[:8]
    return f"ao-{digest}"


def tmux(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    if not shutil.which("tmux"):
        raise FatalError("tmux is not installed (apt-get install tmux), or use --headless")
    proc = subprocess.run(["tmux", "-L", socket_name(), *args], capture_output=True, text=True,
                          input=input, timeout=30)
    if check and proc.returncode != 0:
        raise FatalError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
    return proc


def target(session: str) -> str:
    return f"ao-{session}"


def start(session: str, workspace: str, argv: list[str], env: dict[str, str], unset: list[str]) -> int:
    """Start codex's TUI in a new tmux session; returns the pane's pid. The exit code lands in a file."""
    exit_file = paths.session_dir(session) / "exit_code"
    env_args = ["env", *(f"-u{k}" for k in unset), *(f"{k}={v}" for k, v in env.items())]
    shell = f"{shlex.join(env_args + argv)}; echo $? > {shlex.quote(str(exit_file))}"
    tmux("new-session", "-d", "-s", target(session), "-x", "220", "-y", "50", "-c", workspace, shell)
    return pane_pid(session) or 0


def pane_pid(session: str) -> int | None:
    proc = tmux("display-message", "-p", "-t", target(session), "#{pane_pid}", check=False)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def alive(session: str) -> bool:
    return tmux("has-session", "-t", target(session), check=False).returncode == 0


def kill(session: str) -> None:
    tmux("kill-session", "-t", target(session), check=False)


def paste(session: str, message: str) -> None:
    """Type MESSAGE as one bracketed paste (so newlines do not submit early), then press Enter."""
    buffer = f"ao-send-{session}"
    tmux("load-buffer", "-b", buffer, "-", input=message)
    tmux("paste-buffer", "-p", "-d", "-b", buffer, "-t", target(session))
    time.sleep(0.3)  # let the TUI take the paste before the submit key
    tmux("send-keys", "-t", target(session), "Enter")


def attach(session: str) -> None:
    if not alive(session):
        raise FatalError(f"session {session} has no live tmux session to attach to")
    os.execvp("tmux", ["tmux", "-L", socket_name(), "attach-session", "-t", target(session)])


def exit_code(session: str) -> int | None:
    path: Path = paths.session_dir(session) / "exit_code"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
