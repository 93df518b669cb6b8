"""The Runtime interface: how one codex run is started, watched, stopped, talked to and attached.

A runtime only reports what happened (`Started`, `Changed`, `Trouble`, `Tick`, `Exited`); the
session's runner owns every record: status (`stalled` too), finish, budget. The process constructor
and the clock are injectable, so the runner can be tested with scripted histories as well as with
the real codex.
"""
from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from supervisor.errors import FatalError
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.local import codex_home_of, local_rollout_path
from supervisor.records import SessionRecord

__all__ = ["Changed", "Exited", "Job", "Report", "Run", "Runtime", "Started", "Tick", "Trouble", "codex_home_of",
           "local_rollout_path"]


@dataclass(frozen=True)
class Job:
    """Everything a runtime needs to start one codex run."""

    session: str
    workspace: str
    argv: list[str]
    env: dict[str, str]  # what ao sets on top of its own environment
    unset: list[str]  # and what it removes from it
    session_dir: Path
    codex_home: Path
    started_at: float
    thread_id: str | None = None
    rollout_path: str | None = None
    prompt_file: str | None = None  # fed to codex on stdin, so the prompt never shows in `ps`


@dataclass(frozen=True)
class Started:
    pid: int | None  # codex's pid (headless) or the tmux pane's; None when it runs on another machine


@dataclass(frozen=True)
class Changed:
    """Fields of the session record that changed (thread_id, rollout_path, activity, error...)."""

    fields: dict[str, Any]
    tool_call: bool = False  # a tool call started: the guard must have been reached by now
    progress: bool = True  # the run moved (a poll that only re-reads the same rollout did not)


@dataclass(frozen=True)
class Trouble:
    """codex is alive but cannot get on: its model does not answer or answers with an error, or it
    wants a login. Said again while it lasts; the next progress ends it."""

    reason: str  # words for `ao status`, never a backtrace


@dataclass(frozen=True)
class Tick:
    """Nothing new for a while: lets the runner read its clock while codex is quiet."""

    tool_running: bool = False  # a command runs, so quiet is the command's time, not the model's


@dataclass(frozen=True)
class Exited:
    code: int | None
    failed: bool = False  # the run reported a failure although the exit code may be 0
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # the machine it ran on (a Ray node) or its agent died: the run may go on elsewhere


Report = Union[Started, Changed, Trouble, Tick, Exited]  # noqa: UP007 - a runtime alias; `|` needs Python 3.10 at runtime


class Run(abc.ABC):
    """One live codex run, owned by the runner process."""

    pid: int | None = None

    @abc.abstractmethod
    def reports(self) -> Iterator[Report]:
        """What happens, in order, until the last report: `Exited`."""

    @abc.abstractmethod
    def stop(self) -> None:
        """End the run from inside the runner (budget spent, ungoverned, SIGTERM)."""


class Runtime(abc.ABC):
    """A way to run codex. A new one is one module plus one line in `runtimes.REGISTRY`."""

    name: ClassVar[str]
    interactive: ClassVar[bool]  # a TUI a person can attach to, rather than `codex exec --json`
    # codex runs on another machine: the runtime provisions and jails it there, so spawn plans no local
    # jail and the runner renders no local command line around it
    remote: ClassVar[bool] = False
    description: ClassVar[str]
    # programs this runtime needs: name -> (version command, how to install), for `ao doctor`
    tools: ClassVar[dict[str, tuple[str, str]]] = {}

    @abc.abstractmethod
    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        """The codex argv for this runtime (without the jail around it)."""

    def takes_prompt_on_stdin(self) -> bool:
        return False

    def preflight(self) -> None:
        """Raise FatalError before a spawn makes anything when this runtime cannot run here (say, how to
        install what it needs); must stay cheap. Local runtimes need nothing beyond codex."""
        return None

    @abc.abstractmethod
    def start(self, job: Job) -> Run:
        """Start codex; raises OSError or FatalError when it cannot."""

    @abc.abstractmethod
    def stop(self, record: SessionRecord) -> None:
        """End a session's run from another process (`ao kill`), beyond its process tree."""

    def alive(self, record: SessionRecord) -> bool:
        from supervisor.launch import processes

        return processes.alive(record.get("codex_pid"))

    def send(self, record: SessionRecord, message: str) -> bool:
        """Deliver MESSAGE to the live run; False when this runtime cannot (the caller resumes instead)."""
        return False

    def attach(self, record: SessionRecord) -> None:
        raise FatalError(f"session {record['session']} runs on the {self.name} runtime, which has no terminal "
                         "to attach to; `ao status` and `ao receipts` show what it does")

    def rollout_path(self, record: SessionRecord) -> str | None:
        """Where this session's rollout is read from: a local file for local runtimes (a remote
        runtime overrides this and lists itself in `registry.REMOTE_ROLLOUTS`)."""
        return local_rollout_path(record)
