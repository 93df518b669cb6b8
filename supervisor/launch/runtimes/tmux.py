"""The tmux runtime: codex's TUI in one detached tmux session per agent, on ao's own tmux socket."""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.launch import command
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Changed, Exited, Job, Report, Run, Runtime, Started, Tick, Trouble
from supervisor.records import SessionRecord


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


def session_name(session: str) -> str:
    """The tmux session's name: the session id itself (ids already start with `ao-`; others get it)."""
    return session if session.startswith("ao-") else f"ao-{session}"


def _names(session: str) -> list[str]:
    """The name this ao gives, then the `ao-ao-<id>` an earlier ao gave, so its live sessions stay reachable."""
    return list(dict.fromkeys([session_name(session), f"ao-{session}"]))


def _live_name(session: str) -> str | None:
    for name in _names(session):
        # `=` asks for this exact name: plain `-t NAME` also takes the first session NAME is a prefix of
        if tmux("has-session", "-t", f"={name}", check=False).returncode == 0:
            return name
    return None


def target(session: str) -> str:
    """The exact-match tmux target of the session's pane (`=NAME:`), under whichever name it runs."""
    return f"={_live_name(session) or session_name(session)}:"


def start(session: str, workspace: str, argv: list[str], env: dict[str, str], unset: list[str]) -> int:
    """Start codex's TUI in a new tmux session; returns the pane's pid. The exit code lands in a file."""
    sdir = paths.session_dir(session)
    exit_file = sdir / "exit_code"
    env_args = ["env", *(f"-u{k}" for k in unset), *(f"{k}={v}" for k, v in env.items())]
    # tmux caps a command's length, and a jailed launch runs to many kilobytes: run it from a script
    # in the session dir (which the jail hides), not from tmux's argv
    script = sdir / "tmux-run.sh"
    paths.atomic_write(script, f"{shlex.join(env_args + argv)}\necho $? > {shlex.quote(str(exit_file))}\n",
                       mode=0o700)
    tmux("new-session", "-d", "-s", session_name(session), "-x", "220", "-y", "50", "-c", workspace,
         f"/bin/sh {shlex.quote(str(script))}")
    return pane_pid(session) or 0


def pane_pid(session: str) -> int | None:
    proc = tmux("display-message", "-p", "-t", target(session), "#{pane_pid}", check=False)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def alive(session: str) -> bool:
    return _live_name(session) is not None


def kill(session: str) -> None:
    for name in _names(session):
        tmux("kill-session", "-t", f"={name}", check=False)


def paste(session: str, message: str) -> None:
    """Type MESSAGE as one bracketed paste (so newlines do not submit early), then press Enter."""
    buffer = f"ao-send-{session}"
    tmux("load-buffer", "-b", buffer, "-", input=message)
    pane = target(session)
    tmux("paste-buffer", "-p", "-d", "-b", buffer, "-t", pane)
    time.sleep(0.3)  # let the TUI take the paste before the submit key
    tmux("send-keys", "-t", pane, "Enter")


def screen(session: str) -> str:
    """The text the TUI shows now (no colours)."""
    proc = tmux("capture-pane", "-p", "-t", target(session), check=False)
    return proc.stdout if proc.returncode == 0 else ""


def attach(session: str) -> None:
    if not alive(session):
        raise FatalError(f"session {session} has no live tmux session to attach to")
    os.execvp("tmux", ["tmux", "-L", socket_name(), "attach-session", "-t",
                       f"={_live_name(session) or session_name(session)}"])


def exit_code(session: str) -> int | None:
    path: Path = paths.session_dir(session) / "exit_code"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class TmuxRun(Run):
    """Polls the tmux session; finds the thread's rollout by workspace; reports activity each poll.

    Progress is the rollout growing. Trouble is what the pane shows (the sign-in screen, a reconnect
    loop) or a turn the rollout says ended on a model error.
    """

    def __init__(self, job: Job, poll: float, clock: Callable[[], float], sleep: Callable[[float], None],
                 screen_every: float = 2.0) -> None:
        self.job, self.poll, self.clock, self.sleep = job, poll, clock, sleep
        self.screen_every = screen_every
        self.since = clock() - 1
        self.pid = start(job.session, job.workspace, job.argv, job.env, job.unset)

    def reports(self) -> Iterator[Report]:
        from supervisor.observe import activity, locate
        from supervisor.observe import codex_format as cf

        yield Started(self.pid or 0)
        thread, rollout = self.job.thread_id, self.job.rollout_path
        size = -1
        turn_error: str | None = None
        tool_running = False
        screen_trouble: str | None = None
        screen_at = float("-inf")
        while alive(self.job.session):
            if not thread:
                found = locate.find_by_workspace(self.job.workspace, self.since, self.job.codex_home)
                if found:
                    thread, rollout = found[0], str(found[1])
                    yield Changed({"thread_id": thread, "rollout_path": rollout})
            grew = False
            if rollout:
                now_size = _size(rollout)
                grew, size = now_size != size, now_size
                if grew:
                    events = activity.last_events(Path(rollout))
                    last = events[-1] if events else {}
                    turn_error = cf.turn_error(last)
                    tool_running = cf.line_kind(last) in (cf.Item.FUNCTION_CALL, cf.Item.CUSTOM_TOOL_CALL)
            if self.clock() - screen_at >= self.screen_every:
                screen_at = self.clock()
                screen_trouble = cf.tui_trouble(screen(self.job.session))
            trouble = turn_error or screen_trouble
            if rollout:
                now = activity.activity(rollout, True)
                if now:
                    yield Changed({"activity": now}, progress=grew and not trouble)
            yield Trouble(trouble) if trouble else Tick(tool_running=tool_running)
            self.sleep(self.poll)
        if not thread:  # codex ended (or was stopped) before a poll saw its rollout: the thread is resumable
            found = locate.find_by_workspace(self.job.workspace, self.since, self.job.codex_home)
            if found:
                yield Changed({"thread_id": found[0], "rollout_path": str(found[1])})
        code = exit_code(self.job.session)
        yield Exited(code, False, None if code == 0 else f"codex exited {code}")

    def stop(self) -> None:
        kill(self.job.session)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


class TmuxRuntime(Runtime):
    name = "tmux"
    interactive = True
    description = "Run the codex TUI in tmux."
    tools = {"tmux": ("tmux -V", "install tmux (apt-get install tmux) for the interactive runtime")}

    def __init__(self, poll: float = 0.5, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.poll, self.clock, self.sleep = poll, clock, sleep

    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        return command.tui_argv(codex, spec, prompt, resume_thread)

    def start(self, job: Job) -> Run:
        return TmuxRun(job, self.poll, self.clock, self.sleep)

    def stop(self, record: SessionRecord) -> None:
        kill(record["session"])

    def alive(self, record: SessionRecord) -> bool:
        return alive(record["session"])

    def send(self, record: SessionRecord, message: str, timeout: float = 15.0) -> bool:
        """Type the message into the TUI and confirm it by seeing it arrive in the rollout; retry once."""
        from supervisor.observe import locate

        session = record["session"]
        if not alive(session):
            return False
        rollout = record.get("rollout_path")
        if not rollout:
            raise FatalError(f"session {session} has no rollout yet; wait until codex has started")
        path = Path(rollout)
        offset = path.stat().st_size
        for _attempt in (1, 2):
            paste(session, message)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                texts, offset = locate.user_messages(path, offset)
                if any(text.strip() == message.strip() for text in texts):
                    return True
                time.sleep(0.2)
        raise FatalError(f"message not delivered to {session}: it did not appear in {path} after two tries")

    def attach(self, record: SessionRecord) -> None:
        attach(record["session"])


RUNTIME = TmuxRuntime()
