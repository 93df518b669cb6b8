"""The headless runtime: `codex exec --json`, its events read line by line from stdout."""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from supervisor.launch import command, processes
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Changed, Exited, Job, Report, Run, Runtime, Started, Tick, Trouble
from supervisor.records import SessionRecord
from supervisor.redact import redact, redact_text

# codex's start-up chatter on stderr is not an error
_STDERR_NOISE = ("Reading additional input from stdin", "WARNING: proceeding, even though")


def private_log(path: Path) -> IO[bytes]:
    """Open a log for appending, 0600: it may hold tool output the redactor did not catch."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def redacted_line(line: bytes) -> bytes:
    """An exec event with its secrets masked. Redacted as parsed JSON: in the raw text an escaped
    newline (`\\n`) glues the next word to an `n`, and a token right after it would slip through."""
    import orjson

    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return redact_text(line.decode("utf-8", "replace")).encode()
    return orjson.dumps(redact(event)) + b"\n"


def stderr_tail(path: Path) -> str:
    """codex's last meaningful stderr line."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if line.strip() and not line.startswith(_STDERR_NOISE)]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


# codex may print nothing for minutes (a dead model endpoint, a long command): report a `Tick` this
# often so the runner can look at its clock
TICK_S = 2.0


def _lines(stream: IO[bytes], tick_s: float) -> Iterator[bytes | None]:
    """The stream's lines, with None after each `tick_s` of silence; a thread does the blocking read."""
    found: queue.Queue[bytes | None] = queue.Queue()
    done = object()

    def pump() -> None:
        try:
            for line in stream:
                found.put(line)
        finally:
            found.put(done)  # type: ignore[arg-type]

    threading.Thread(target=pump, name="codex-stdout", daemon=True).start()
    while True:
        try:
            line = found.get(timeout=tick_s)
        except queue.Empty:
            yield None
            continue
        if line is done:
            return
        yield line


class HeadlessRun(Run):
    def __init__(self, job: Job, popen: Callable[..., subprocess.Popen[bytes]], tick_s: float = TICK_S) -> None:
        self.job = job
        self.tick_s = tick_s
        self.stopped = False
        self._events_out = private_log(job.session_dir / "exec.jsonl")
        self._stderr_path = job.session_dir / "codex.stderr.log"
        stdin: Any = subprocess.DEVNULL
        try:
            with private_log(self._stderr_path) as err_out:
                if job.prompt_file:
                    stdin = open(job.prompt_file, "rb")
                self.child = popen(job.argv, cwd=job.workspace, env=command.apply_env(job.env, job.unset), stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=err_out,
                                   preexec_fn=processes.die_with_parent)
        except BaseException:
            self._events_out.close()
            raise
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        self.pid = self.child.pid

    def reports(self) -> Iterator[Report]:
        from supervisor.observe import exec_events, locate

        yield Started(self.child.pid)
        fold = exec_events.ExecFold(thread_id=self.job.thread_id)
        rollout = self.job.rollout_path
        assert self.child.stdout is not None
        with self._events_out:
            for line in _lines(self.child.stdout, self.tick_s):
                if line is None:
                    yield Tick(tool_running=fold.tool_running)
                    continue
                # tool output reaches exec.jsonl: store it redacted, fold the original
                self._events_out.write(redacted_line(line))
                self._events_out.flush()
                calls = fold.tool_calls
                changes = fold.feed(line)
                if fold.tool_calls > calls:
                    yield Changed({}, tool_call=True)
                if fold.thread_id and not rollout and changes:
                    # codex creates the rollout a moment after thread.started: look again on each change
                    found = locate.find_rollout(fold.thread_id, self.job.codex_home, self.job.started_at)
                    if found:
                        rollout = changes["rollout_path"] = str(found)
                if changes or fold.progressed:
                    yield Changed(changes, progress=fold.progressed)
                elif fold.trouble:
                    yield Trouble(fold.trouble)
        code = self.child.wait()
        extra: dict[str, Any] = {}
        if fold.thread_id and not rollout:
            found = locate.find_rollout(fold.thread_id, self.job.codex_home, self.job.started_at)
            if found:
                extra["rollout_path"] = str(found)
        error = fold.error or stderr_tail(self._stderr_path)
        if code is not None and code < 0 and not self.stopped:
            error = f"codex was killed by signal {-code}" + (f" ({error})" if error else "")
        yield Exited(code, fold.failed, error or None, extra)

    def stop(self) -> None:
        self.stopped = True
        self.child.terminate()


class HeadlessRuntime(Runtime):
    name = "headless"
    interactive = False
    description = "Run `codex exec --json` (no tmux)."

    def __init__(self, popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
                 tick_s: float = TICK_S) -> None:
        self.popen = popen
        self.tick_s = tick_s

    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        return command.exec_argv(codex, spec, command.STDIN_PROMPT, resume_thread)

    def takes_prompt_on_stdin(self) -> bool:
        return True

    def start(self, job: Job) -> Run:
        return HeadlessRun(job, self.popen, self.tick_s)

    def stop(self, record: SessionRecord) -> None:
        pass  # the process tree is all there is; `ao kill` ends it


RUNTIME = HeadlessRuntime()
