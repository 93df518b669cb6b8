"""The headless runtime: `codex exec --json`, its events read line by line from stdout."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from supervisor.launch import command, processes
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Changed, Exited, Job, Report, Run, Runtime, Started
from supervisor.records import SessionRecord
from supervisor.redact import redact_text

# codex's start-up chatter on stderr is not an error
_STDERR_NOISE = ("Reading additional input from stdin", "WARNING: proceeding, even though")


def private_log(path: Path) -> IO[bytes]:
    """Open a log for appending, 0600: it may hold tool output the redactor did not catch."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def stderr_tail(path: Path) -> str:
    """codex's last meaningful stderr line."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if line.strip() and not line.startswith(_STDERR_NOISE)]
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


class HeadlessRun(Run):
    def __init__(self, job: Job, popen: Callable[..., subprocess.Popen[bytes]]) -> None:
        self.job = job
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
            for line in self.child.stdout:
                # tool output reaches exec.jsonl: store it redacted, fold the original
                self._events_out.write(redact_text(line.decode("utf-8", "replace")).encode())
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
                if changes:
                    yield Changed(changes)
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

    def __init__(self, popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen) -> None:
        self.popen = popen

    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        return command.exec_argv(codex, spec, command.STDIN_PROMPT, resume_thread)

    def takes_prompt_on_stdin(self) -> bool:
        return True

    def start(self, job: Job) -> Run:
        return HeadlessRun(job, self.popen)

    def stop(self, record: SessionRecord) -> None:
        pass  # the process tree is all there is; `ao kill` ends it


RUNTIME = HeadlessRuntime()
